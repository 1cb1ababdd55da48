"""Hypothesis state machine over random temperature walks fed to the engine (R1 and R2)."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from agent.alarms.model import Severity, TransitionKind
from agent.alarms.rules import SPECS
from agent.alarms.testing import Driver

W, C = Severity.WARNING, Severity.CRITICAL


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
    """Random walks of die (R1) and inlet (R2) temperatures at 3,000 m, polled at random gaps."""

    @initialize(die=st.floats(60, 100), inlet=st.floats(15, 32))
    def start(self, die: float, inlet: float) -> None:
        """A fresh engine and fresh bookkeeping."""
        self.drv = Driver(3000, preset="s21")
        th = self.drv.engine.site_air("site")
        assert th.delta > 0
        self.die, self.inlet = die, inlet
        self.firing: dict[str, Severity | None] = {"R1": None, "R2": None}
        self.raise_runs = {(r, s): Run() for r in ("R1", "R2") for s in (W, C)}
        self.clear_runs = {(r, s): Run() for r in ("R1", "R2") for s in (W, C)}

    def _levels(self, rule: str) -> dict[Severity, tuple[float, float]]:
        th = self.drv.engine.thresholds("m1")
        if th is None:  # before the first poll: the S21 figures at 3,000 m
            return (
                {W: (81.9, 78.9), C: (95.0, 92.0)}
                if rule == "R1"
                else {W: (25.0, 23.0), C: (28.0, 26.0)}
            )
        if rule == "R1":
            return {W: (th.warning_c, th.warning_c - 3), C: (th.critical_c, th.critical_c - 3)}
        return {
            W: (th.inlet_warning_c, th.inlet_warning_c - 2),
            C: (th.inlet_max_c, th.inlet_max_c - 2),
        }

    @rule(
        d_die=st.floats(-4, 4),
        d_inlet=st.floats(-1.5, 1.5),
        gap=st.sampled_from([15.0, 30.0, 30.0, 60.0, 120.0]),
    )
    def poll(self, d_die: float, d_inlet: float, gap: float) -> None:
        """Walk both temperatures, poll, and check every transition against the bookkeeping."""
        self.die = min(110.0, max(50.0, self.die + d_die))
        self.inlet = min(35.0, max(10.0, self.inlet + d_inlet))
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
        spec = SPECS[r].levels
        current = self.firing[r]
        if kind is TransitionKind.RAISED:
            assert current is None, f"{r} raised twice in a row"
        if kind in (TransitionKind.RAISED, TransitionKind.ESCALATED):
            assert current is None or sev > current, "escalation must go up"
            lvl = spec[sev]
            assert self.raise_runs[r, sev].held(t, lvl.for_s, lvl.for_polls), (
                f"{r} {sev.label} raised without its for duration"
            )
            self.firing[r] = sev
        elif kind is TransitionKind.DEESCALATED:
            assert current is not None, "only a firing alarm de-escalates"
            assert sev < current, "de-escalation must go down"
            assert prev == current
            lvl = spec[current]
            assert self.clear_runs[r, current].held(t, lvl.clear_for_s, lvl.clear_polls), (
                f"{r} left {current.label} inside the hysteresis band or too early ({value})"
            )
            self.firing[r] = sev
        else:
            assert current is not None, "only a firing alarm clears"
            assert sev == current, "a clear names the severity that cleared"
            for level in (s for s in (W, C) if s <= current):
                lv = spec[level]
                assert self.clear_runs[r, level].held(t, lv.clear_for_s, lv.clear_polls), (
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
