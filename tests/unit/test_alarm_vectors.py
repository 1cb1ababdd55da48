"""The 12 test vectors of altitude-thermal.md §6, fed to the engine over simulated time."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from agent.alarms.model import Severity
from agent.alarms.testing import Driver

W, C = Severity.WARNING, Severity.CRITICAL


@dataclass(frozen=True)
class Phase:
    """Hold ``fields`` for ``minutes`` of 30-s polls, then expect these alarms (rule → severity)."""

    minutes: float
    fields: dict[str, object]
    expect: dict[str, Severity | None]
    tags: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Vector:
    """One row of §6: the site, the thresholds in force (0.1 K) and the phases fed."""

    id: str
    preset: str
    altitude_m: float
    thresholds: dict[str, float]
    phases: tuple[Phase, ...]
    pressure_kpa: float | None = None
    rh: float | None = None


def ramp(start: float, per_min: float, minutes: float) -> list[float]:
    """Die temperatures of a linear ramp sampled every 30 s."""
    return [start + per_min * i / 2 for i in range(int(minutes * 2) + 1)]


VECTORS = [
    Vector(
        "1-sea",
        "s19",
        0,
        {"warning_c": 65.0, "critical_c": 75.0},
        (
            Phase(
                3,
                {"board": 62.0, "inlet": 25.0, "rpm": 3600, "hashrate_ratio": 1.0},
                {"R1": None, "R2": None, "R5": None},
            ),
        ),
    ),
    Vector(
        "1-3000",
        "s19",
        3000,
        {"warning_c": 59.3, "critical_c": 72.4},
        (
            Phase(
                3,
                {"board": 62.0, "inlet": 25.0, "rpm": 3600, "hashrate_ratio": 1.0},
                {"R1": W, "R2": None, "R3": None},
            ),
        ),
    ),
    Vector(
        "2-3000",
        "s19",
        3000,
        {"inlet_max_c": 28.0, "inlet_warning_c": 25.0},
        (Phase(6, {"inlet": 29.0}, {"R2": C}),),
    ),
    Vector("2-sea", "s19", 0, {"inlet_max_c": 40.0}, (Phase(6, {"inlet": 29.0}, {"R2": None}),)),
    Vector(
        "3",
        "whatsminer",
        4500,
        {"inlet_max_c": 26.7, "inlet_warning_c": 23.7, "pressure_altitude_m": 4491.0},
        (Phase(12, {"inlet": 25.0}, {"R2": W}),),
        pressure_kpa=57.8,
    ),
    Vector(
        "4",
        "s21",
        3000,
        {"warning_c": 81.9, "critical_c": 95.0},
        (
            Phase(
                6,
                {"die": ramp(78.0, 0.4, 6), "inlet": 20.0, "rpm": 6600},
                {"R3": W, "R1": None},
                {"R3": ("degraded_airflow",)},
            ),
        ),
    ),
    Vector(
        "5",
        "s21",
        0,
        {"warning_c": 85.0},
        (Phase(2, {"die": ramp(70.0, 5.0, 2), "inlet": 22.0}, {"R4": W, "R1": None}),),
    ),
    Vector(
        "5-variant",
        "s21",
        0,
        {"warning_c": 85.0},
        (Phase(2, {"die": ramp(70.0, 8.0, 2), "inlet": 22.0}, {"R4": C}),),
    ),
    Vector(
        "6-3500",
        "s21",
        3500,
        {"warning_c": 81.2},
        (
            Phase(
                20,
                {"die": 83.0, "inlet": 20.0, "hashrate_ratio": 0.72},
                {"R5": C, "R1": W},
                {"R5": ("thermal_throttle",)},
            ),
        ),
    ),
    Vector(
        "6-sea",
        "s21",
        0,
        {"warning_c": 85.0},
        (
            Phase(
                20,
                {"die": 83.0, "inlet": 20.0, "hashrate_ratio": 0.72},
                {"R5": C, "R1": None},
                {"R5": ()},
            ),
        ),
    ),
    Vector(
        "7",
        "s21",
        3000,
        {},
        (
            Phase(0, {"die": 70.0, "present": 2}, {"R6": None}),
            Phase(0, {"die": 70.0, "present": 2}, {"R6": C}),
        ),
    ),
    Vector(
        "8",
        "whatsminer",
        3200,
        {"t_min_c": -5.0},
        (
            Phase(
                1,
                {
                    "inlet": -18.0,
                    "board": -18.0,
                    "is_mining": False,
                    "hashrate_ratio": 0.0,
                    "uptime_s": 60,
                },
                {"R8": C},
                {"R8": ("cold_start", "start_blocked")},
            ),
            Phase(
                3,
                {
                    "inlet": 10.0,
                    "board": -15.0,
                    "is_mining": False,
                    "hashrate_ratio": 0.0,
                    "uptime_s": 60,
                },
                {"R8": C},
                {"R8": ("condensation", "start_blocked")},
            ),
        ),
        rh=60.0,
    ),
    Vector(
        "9",
        "s21",
        3000,
        {"warning_c": 81.9},
        (
            Phase(0, {"die": 84.0, "inlet": 20.0}, {"R7": None}),
            Phase(6, {"offline": True}, {"R7": C}, {"R7": ("probable_thermal_shutdown",)}),
        ),
    ),
    Vector("10", "s21", 3000, {"delta": 0.692}, (Phase(0, {"die": 60.0}, {}),), pressure_kpa=101.0),
    Vector(
        "11-3000",
        "bitaxe",
        3000,
        {"warning_c": 64.1, "critical_c": 72.0},
        (Phase(3, {"die": 65.0}, {"R1": W}),),
    ),
    Vector("11-sea", "bitaxe", 0, {"warning_c": 66.0}, (Phase(3, {"die": 65.0}, {"R1": None}),)),
    Vector(
        "12",
        "s19",
        3000,
        {"inlet_max_c": 28.0, "inlet_warning_c": 25.0},
        (
            Phase(5, {"inlet": 28.5}, {"R2": C}),
            Phase(5, {"inlet": 27.0}, {"R2": C}),
            Phase(5, {"inlet": 25.5}, {"R2": W}),
            Phase(5, {"inlet": 22.5}, {"R2": None}),
        ),
    ),
]


def feed(drv: Driver, phase: Phase) -> None:
    """Hold a phase; a list value is a per-poll sequence."""
    seq = {k: v for k, v in phase.fields.items() if isinstance(v, list)}
    if not seq:
        drv.hold(phase.minutes, **phase.fields)
        return
    n = len(next(iter(seq.values())))
    for i in range(n):
        drv.poll(**{k: (v[i] if isinstance(v, list) else v) for k, v in phase.fields.items()})


@pytest.mark.parametrize("vec", VECTORS, ids=lambda v: v.id)
def test_alarm_vectors_thresholds_and_states(vec: Vector):
    """Each design-note vector gives the note's thresholds (0.1 K) and alarm states."""
    drv = Driver(vec.altitude_m, vec.pressure_kpa, vec.preset, relative_humidity_pct=vec.rh)
    for phase in vec.phases:
        feed(drv, phase)
        for rule, severity in phase.expect.items():
            assert drv.severity(rule) is severity, (vec.id, rule, drv.engine.active())
        for rule, tags in phase.tags.items():
            assert set(drv.tags(rule)) == set(tags), (vec.id, rule, drv.tags(rule))
    th = drv.engine.thresholds("m1")
    assert th is not None
    for name, expected in vec.thresholds.items():
        tol = 0.001 if name == "delta" else 1.0 if name == "pressure_altitude_m" else 0.05
        assert getattr(th, name) == pytest.approx(expected, abs=tol), name


def test_alarm_vectors_10_pressure_fallback_raises_r9_warning():
    """Vector 10: 101.0 kPa configured at 3,000 m is rejected: R9 WARN, δ from ISA."""
    drv = Driver(3000, 101.0)
    drv.poll(die=60.0)
    assert drv.severity("R9", miner=None) is W
    air = drv.engine.site_air("site")
    assert air.delta == pytest.approx(0.692, abs=0.001)
    assert air.pressure_source.value == "isa_fallback"


def test_alarm_vectors_12_transition_sequence():
    """Vector 12: raised CRIT, held in the band, de-escalated to WARN, cleared — in that order."""
    drv = Driver(3000, preset="s19")
    for value in (28.5, 27.0, 25.5, 22.5):
        drv.hold(5, inlet=value)
    seq = [(t.kind.value, t.severity.label) for t in drv.transitions if t.rule == "R2"]
    assert seq == [("raised", "critical"), ("deescalated", "warning"), ("cleared", "warning")]
    raised = next(t for t in drv.transitions if t.rule == "R2")
    assert raised.threshold == pytest.approx(28.0, abs=0.05)
    assert raised.sea_level_threshold == pytest.approx(40.0)


def test_alarm_vectors_2_raises_only_after_five_minutes():
    """Vector 2: the CRIT needs 5 min at or above T_in,max; 4.5 min is not enough."""
    drv = Driver(3000, preset="s19")
    drv.hold(4.5, inlet=29.0)
    assert drv.severity("R2") is None
    drv.hold(0.5, inlet=29.0)
    assert drv.severity("R2") is C
