"""The alarm engine's output types: severities, transition kinds and AlarmTransition.

These are the contract between the engine (producer) and its consumers: the MQTT publisher,
the metrics renderer and the JSON API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum


class Severity(IntEnum):
    """Alarm severity, ordered; ``label`` is the lowercase name used on the wire."""

    INFO = 1
    WARNING = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        """Lowercase name: ``info``, ``warning``, ``critical``."""
        return self.name.lower()


class TransitionKind(StrEnum):
    """What happened to one (miner, rule) alarm."""

    RAISED = "raised"
    ESCALATED = "escalated"
    DEESCALATED = "deescalated"
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class AlarmTransition:
    """One state change of one alarm, with the evidence an operator needs.

    ``miner`` is the stable miner id, or ``None`` for site-level alarms (R7 site, R9).
    ``threshold`` is the derated value in force; ``sea_level_threshold`` the same rule at 0 m.
    ``name`` and ``location`` (container, rack, shelf, slot) say which miner, for people; the
    service fills them in before publishing (None when unknown or site-level).
    """

    kind: TransitionKind
    site: str
    miner: str | None
    rule: str
    severity: Severity
    previous_severity: Severity | None
    at: float
    value: float | None
    threshold: float | None
    sea_level_threshold: float | None
    altitude_m: float
    delta: float
    tags: tuple[str, ...] = ()
    summary: str = ""
    details: dict[str, float | str | None] = field(default_factory=dict)
    name: str | None = None
    location: dict[str, str | None] | None = None
