"""Hypothesis state machine over random temperature walks fed to the engine (R1 and R2).

The oracle is the design note (altitude-thermal.md), transcribed below as literals, never the
implementation's tables (``SPECS``, ``AlarmEngine.thresholds``). Safety: every transition was
earned by the note's durations. Liveness: a condition held for its duration has raised its
severity (a machine that can never raise an alarm fails).
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from agent.alarms.model import Severity, TransitionKind
from agent.alarms.testing import Driver

W, C = Severity.WARNING, Severity.CRITICAL

# altitude-thermal.md §5 "Proposed rule set": (raise for_s, raise polls, clear for_s) per severity.
# R1 — WARN ≥ warn for 2 min, CRIT ≥ crit for 2 polls, clears 3 K below after 2 min.
# R2 — WARN ≥ T_in,max − 3 for 10 min, CRIT ≥ T_in,max for 5 min, clears 2 K below (held 5 min).
DURATIONS: dict[str, dict[Severity, tuple[float, int, float]]] = {
    "R1": {W: (120.0, 1, 120.0), C: (0.0, 2, 120.0)},
    "R2": {W: (600.0, 1, 300.0), C: (300.0, 1, 300.0)},
}
CLEAR_K = {"R1": 3.0, "R2": 2.0}
# S21 thresholds (raise at) by site altitude. 0 m: §5 preset table with δ = 1 (crit C0 = 95,
# warn C0 − H0 = 85; T_in,max 40 °C, the vendor rule below 900 m). 3,000 m: §6 vector 4 (warn
# 81.9, die crit not derated, 95) and vector 2 / §2 A3 column (T_in,max 28.0, warn 25.0).
THRESHOLDS: dict[float, dict[str, dict[Severity, float]]] = {
    0.0: {"R1": {W: 85.0, C: 95.0}, "R2": {W: 37.0, C: 40.0}},
    3000.0: {"R1": {W: 81.9, C: 95.0}, "R2": {W: 25.0, C: 28.0}},
}
# The note's figures are to 0.1 K, so the walks move on a 0.1 K grid: on it, ``≥ 81.9`` and
# the engine's unrounded 81.8998 agree.


class Run:
    """Test-side bookkeeping of how long a condition has held (independent of the engine)."""

    def __init__(self) -> None:
        """No run yet."""
        self.since: float | None = None
        self.polls = 0

    def update(self, t: float, *, holds: bool) -> None:
        """Record one poll at ``t``."""
        if holds:
            if self.since is None:
                self.since, self.polls = t, 0
            self.polls += 1
        else:
            self.since, self.polls = None, 0

    def held(self, t: float, for_s: float, polls: int) -> bool:
        """Has the condition held for ``for_s`` seconds and ``polls`` polls at ``t``?"""
        return self.since is not None and t - self.since >= for_s and self.polls >= polls


class TemperatureWalk(RuleBasedStateMachine):
    """Random walks of die (R1) and inlet (R2) temperatures at 0 or 3,000 m, polled at random gaps."""

    @initialize(
        altitude=st.sampled_from(sorted(THRESHOLDS)),
        die=st.floats(60, 100),
        inlet=st.floats(15, 42),
    )
    def start(self, altitude: float, die: float, inlet: float) -> None:
        """A fresh engine and fresh bookkeeping at a site of the note's tables."""
        self.drv = Driver(altitude, preset="s21")
        self.levels = THRESHOLDS[altitude]
        self.die, self.inlet = round(die, 1), round(inlet, 1)
        self.firing: dict[str, Severity | None] = {"R1": None, "R2": None}
        self.raise_runs = {(r, s): Run() for r in ("R1", "R2") for s in (W, C)}
        self.clear_runs = {(r, s): Run() for r in ("R1", "R2") for s in (W, C)}

    def _levels(self, rule: str) -> dict[Severity, tuple[float, float]]:
        """(raise at, clear below) per severity, from the note."""
        k = CLEAR_K[rule]
        return {sev: (thr, round(thr - k, 1)) for sev, thr in self.levels[rule].items()}

    @rule(
        d_die=st.floats(-4, 4),
        d_inlet=st.floats(-1.5, 1.5),
        gap=st.sampled_from([15.0, 30.0, 30.0, 60.0, 120.0]),
    )
    def poll(self, d_die: float, d_inlet: float, gap: float) -> None:
        """Walk both temperatures, poll, and check every transition against the bookkeeping."""
        self.die = round(min(110.0, max(50.0, self.die + d_die)), 1)
        self.inlet = round(min(45.0, max(10.0, self.inlet + d_inlet)), 1)
        self.drv.step_s = gap
        t = self.drv.t
        values = {"R1": self.die, "R2": self.inlet}
        for r in ("R1", "R2"):
            for sev, (raise_at, clear_below) in self._levels(r).items():
                self.raise_runs[r, sev].update(t, holds=values[r] >= raise_at)
                self.clear_runs[r, sev].update(t, holds=values[r] < clear_below)
        out = self.drv.poll(die=self.die, inlet=self.inlet)
        for tr in out:
            if tr.rule not in ("R1", "R2"):
                continue  # R4 (rate of rise) and R9 (site altitude) are not under test here
            self.check(tr.rule, tr.kind, tr.severity, tr.previous_severity, t, values[tr.rule])
        self.check_liveness(t)

    def check_liveness(self, t: float) -> None:
        """A raise condition held for the note's duration has raised (at least) its severity."""
        for r in ("R1", "R2"):
            for sev in (W, C):
                for_s, polls, _ = DURATIONS[r][sev]
                if self.raise_runs[r, sev].held(t, for_s, polls):
                    current = self.firing[r]
                    assert current is not None, f"{r} held ≥ {sev.label} for {for_s} s: not raised"
                    assert current >= sev, f"{r} held ≥ {sev.label}: still {current.label}"

    def check(
        self,
        r: str,
        kind: TransitionKind,
        sev: Severity,
        prev: Severity | None,
        t: float,
        value: float,
    ) -> None:
        """Assert one transition is legal and was earned by its durations."""
        spec = DURATIONS[r]
        current = self.firing[r]
        if kind is TransitionKind.RAISED:
            assert current is None, f"{r} raised twice in a row"
        if kind in (TransitionKind.RAISED, TransitionKind.ESCALATED):
            assert current is None or sev > current, "escalation must go up"
            for_s, polls, _ = spec[sev]
            assert self.raise_runs[r, sev].held(t, for_s, polls), (
                f"{r} {sev.label} raised without its for duration"
            )
            self.firing[r] = sev
        elif kind is TransitionKind.DEESCALATED:
            assert current is not None, "only a firing alarm de-escalates"
            assert sev < current, "de-escalation must go down"
            assert prev == current
            assert self.clear_runs[r, current].held(t, spec[current][2], 1), (
                f"{r} left {current.label} inside the hysteresis band or too early ({value})"
            )
            self.firing[r] = sev
        else:
            assert current is not None, "only a firing alarm clears"
            assert sev == current, "a clear names the severity that cleared"
            for level in (s for s in (W, C) if s <= current):
                assert self.clear_runs[r, level].held(t, spec[level][2], 1), (
                    f"{r} cleared inside the hysteresis band or too early ({value})"
                )
            self.firing[r] = None
        assert self.drv.severity(r) is self.firing[r]


TestTemperatureWalk = TemperatureWalk.TestCase
TestTemperatureWalk.settings = settings(
    max_examples=60,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
