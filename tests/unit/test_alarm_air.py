"""Site air for the engine: ISA, measured pressure within ±5 %, fallback and R9."""

from __future__ import annotations

import pytest

from agent.alarms.air import PressureSource, site_air
from agent.alarms.config import ThermalSettings
from agent.alarms.engine import AlarmEngine, Observation
from agent.alarms.model import Severity
from agent.alarms.testing import Site, make_snapshot
from collectors import air


@pytest.mark.parametrize(
    ("h", "delta", "m"),
    [(0, 1.0, 1.0), (2275, 0.758, 1.223), (2800, 0.710, 1.285), (4500, 0.570, 1.520)],
)
def test_alarm_air_isa_matches_table(h, delta, m):
    """Without a pressure, δ and M(δ) come from ISA at the configured altitude."""
    a = site_air("s", h)
    assert a.pressure_source is PressureSource.ISA
    assert a.delta == pytest.approx(delta, abs=0.001)
    assert a.cooling_multiplier == pytest.approx(m, abs=0.001)
    assert a.pressure_altitude_m == h


def test_alarm_air_plausible_measured_pressure_is_used():
    """57.8 kPa at 4,500 m is within 5 %: δ = p/p0 and h_p = 4,491 m."""
    a = site_air("s", 4500, 57.8)
    assert a.pressure_source is PressureSource.MEASURED
    assert a.delta == pytest.approx(57_800 / air.P0_PA)
    assert a.pressure_altitude_m == pytest.approx(4491, abs=1)


@pytest.mark.parametrize("kpa", [101.0, 66.0, 74.0])
def test_alarm_air_implausible_pressure_falls_back_to_isa(kpa):
    """More than 5 % from ISA (a QNH, a wrong altitude): ISA δ, flagged implausible."""
    a = site_air("s", 3000, kpa)
    assert a.pressure_implausible
    assert a.delta == pytest.approx(air.pressure_ratio_isa(3000))


def test_alarm_air_live_pressure_moves_thresholds_and_r9():
    """A new pressure reading re-derates thresholds; an implausible one raises R9 and clears after."""
    engine = AlarmEngine(ThermalSettings(), [Site("site", 1500)])
    snap = make_snapshot(0, preset="whatsminer", die=60.0, inlet=20.0)
    engine.evaluate(0, [Observation("m1", "site", 0, snap)])
    before = engine.thresholds("m1")
    engine.set_site_pressure("site", 82.0)  # plausible at 1,500 m (ISA 84.6): h_p ≈ 1,760 m
    engine.evaluate(30, [Observation("m1", "site", 30, snap)])
    after = engine.thresholds("m1")
    assert before is not None
    assert after is not None
    assert after.delta < before.delta
    assert after.warning_c < before.warning_c
    engine.set_site_pressure("site", 101.3)
    out = engine.evaluate(60, [])
    assert [(t.rule, t.kind.value, t.severity) for t in out] == [("R9", "raised", Severity.WARNING)]
    engine.set_site_pressure("site", None)
    out = engine.evaluate(90, [])
    assert [(t.rule, t.kind.value) for t in out] == [("R9", "cleared")]


def test_alarm_air_site_info_alarms_by_altitude():
    """R9 INFO above 2,000 m (PSU rating) and tags 'outside ASHRAE' above 3,050 m; none at 1,000 m."""
    engine = AlarmEngine(
        ThermalSettings(), [Site("low", 1000), Site("mid", 2800), Site("high", 3500)]
    )
    engine.evaluate(0, [])
    by_site = {a.site: a for a in engine.active()}
    assert set(by_site) == {"mid", "high"}
    assert by_site["mid"].severity is Severity.INFO
    assert by_site["mid"].tags == ("psu_altitude_rating",)
    assert "outside_ashrae_envelope" in by_site["high"].tags
