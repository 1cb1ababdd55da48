"""The per-(miner, rule) alarm state machine: pending, firing, escalation, hysteresis, clearing.

A rule evaluation yields a :class:`Verdict`: the severities whose *raise* condition holds and
those whose *clear* condition holds (clear conditions sit below the raise conditions, so values in
between, the hysteresis band, neither raise nor clear). :class:`AlarmState` turns verdicts over
time into transitions:

- a severity raises (from inactive) or escalates (from a lower one) once its raise condition has
  held for its ``for_s`` and ``for_polls``;
- a firing alarm steps down to the highest severity ≤ the current one that has *not* cleared
  (its clear condition held for ``clear_for_s`` and ``clear_polls``): a de-escalation if that is
  a severity, a clear if none is left. Severities a rule does not define are always "cleared".

So an alarm is never raised twice in a row, never clears inside the hysteresis band, and moves
only inactive → raised → (escalated | de-escalated)* → cleared.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.alarms.model import Severity, TransitionKind

SEVERITIES = (Severity.INFO, Severity.WARNING, Severity.CRITICAL)


@dataclass(frozen=True, slots=True)
class Level:
    """Timing of one severity of a rule."""

    for_s: float = 0.0
    for_polls: int = 1
    clear_for_s: float = 0.0
    clear_polls: int = 1


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A rule's id, title and the timing of each severity it can fire at."""

    rule: str
    title: str
    levels: dict[Severity, Level]


@dataclass(slots=True)
class Verdict:
    """One evaluation of one rule: which severities raise, which clear, and the evidence.

    ``value``/``threshold``/``sea_level_threshold`` describe the most severe raising condition
    (or, when nothing raises, the condition closest to it); ``unit`` labels them.
    """

    raising: frozenset[Severity]
    clearing: frozenset[Severity]
    value: float | None = None
    threshold: float | None = None
    sea_level_threshold: float | None = None
    unit: str = ""
    what: str = ""
    below: bool = False
    """True when the rule raises for values *below* its thresholds (R5 hashrate, R8 cold)."""
    tags: tuple[str, ...] = ()
    details: dict[str, float | str | None] = field(default_factory=dict)
    thresholds: dict[Severity, tuple[float | None, float | None]] = field(default_factory=dict)
    """Per severity (threshold, sea-level threshold), used to explain the firing severity."""


def verdict_levels(
    value: float,
    raise_at: dict[Severity, float],
    clear_below: dict[Severity, float],
) -> tuple[frozenset[Severity], frozenset[Severity]]:
    """Raise severities with ``value ≥ raise_at``; clear those with ``value < clear_below``."""
    raising = frozenset(s for s, thr in raise_at.items() if value >= thr)
    clearing = frozenset(s for s, thr in clear_below.items() if value < thr)
    return raising, clearing


@dataclass(slots=True)
class Transition:
    """What :meth:`AlarmState.step` decided (the engine adds the explanation)."""

    kind: TransitionKind
    severity: Severity
    previous: Severity | None


class AlarmState:
    """Timers and firing severity of one (miner, rule)."""

    __slots__ = (
        "clear_polls",
        "clear_since",
        "raise_polls",
        "raise_since",
        "raised_at",
        "restored",
        "severity",
        "updated_at",
        "verdict",
    )

    def __init__(self) -> None:
        """Start inactive with no timers running."""
        self.severity: Severity | None = None
        self.raised_at: float | None = None
        self.updated_at: float | None = None
        self.raise_since: list[float | None] = [None, None, None]
        self.raise_polls = [0, 0, 0]
        self.clear_since: list[float | None] = [None, None, None]
        self.clear_polls = [0, 0, 0]
        self.verdict: Verdict | None = None
        self.restored = False

    @property
    def idle(self) -> bool:
        """Inactive and no raise timer running: the engine may drop this state."""
        return self.severity is None and all(s is None for s in self.raise_since)

    def _track(self, t: float, verdict: Verdict) -> None:
        for i, sev in enumerate(SEVERITIES):
            if sev in verdict.raising:
                if self.raise_since[i] is None:
                    self.raise_since[i] = t
                    self.raise_polls[i] = 0
                self.raise_polls[i] += 1
            else:
                self.raise_since[i] = None
                self.raise_polls[i] = 0
            if sev in verdict.clearing:
                if self.clear_since[i] is None:
                    self.clear_since[i] = t
                    self.clear_polls[i] = 0
                self.clear_polls[i] += 1
            else:
                self.clear_since[i] = None
                self.clear_polls[i] = 0

    def _held(self, spec: RuleSpec, sev: Severity, t: float) -> bool:
        level = spec.levels.get(sev)
        i = sev - 1
        since = self.raise_since[i]
        return (
            level is not None
            and since is not None
            and t - since >= level.for_s
            and self.raise_polls[i] >= level.for_polls
        )

    def _cleared(self, spec: RuleSpec, sev: Severity, t: float, *, now_only: bool) -> bool:
        level = spec.levels.get(sev)
        if level is None:
            return True
        i = sev - 1
        since = self.clear_since[i]
        if since is None:
            return False
        if now_only:
            return True
        return t - since >= level.clear_for_s and self.clear_polls[i] >= level.clear_polls

    def step(
        self,
        spec: RuleSpec,
        t: float,
        verdict: Verdict | None,
        *,
        allow_raise: bool = True,
    ) -> Transition | None:
        """Advance to time ``t`` with a new verdict (or, with None, re-check the timers).

        A restored alarm (loaded after a restart) is reconciled by its first verdict: every
        severity whose clear condition holds right now counts as cleared, without waiting.
        """
        reconcile = False
        if verdict is not None:
            self._track(t, verdict)
            self.verdict = verdict
            reconcile = self.restored
            self.restored = False
        current = self.severity or 0
        if allow_raise:
            up = [s for s in SEVERITIES if s > current and self._held(spec, s, t)]
            if up:
                new = max(up)
                previous = self.severity
                self.severity = new
                self.updated_at = t
                if previous is None:
                    self.raised_at = t
                    return Transition(TransitionKind.RAISED, new, None)
                return Transition(TransitionKind.ESCALATED, new, previous)
        if self.severity is None:
            return None
        stay = [
            s
            for s in SEVERITIES
            if s <= self.severity and not self._cleared(spec, s, t, now_only=reconcile)
        ]
        if stay and max(stay) == self.severity:
            return None
        previous = self.severity
        self.updated_at = t
        if stay:
            self.severity = max(stay)
            return Transition(TransitionKind.DEESCALATED, self.severity, previous)
        self.severity = None
        self.raised_at = None
        return Transition(TransitionKind.CLEARED, previous, previous)
