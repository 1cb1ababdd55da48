"""Synthetic alarm transitions, as the alarm engine emits them, for the MQTT tests."""

from __future__ import annotations

import time
from typing import Any

from agent.alarms.model import AlarmTransition, Severity, TransitionKind


def transition(
    kind: TransitionKind,
    *,
    miner: str = "02:1a:2b:3c:4d:5e",
    rule: str = "chip_temp",
    severity: Severity = Severity.WARNING,
    previous: Severity | None = None,
    site: str = "xining",
    summary: str = "",
    **fields: Any,
) -> AlarmTransition:
    """A synthetic transition as the alarm engine would emit it; ``fields`` override the rest."""
    values: dict[str, Any] = {
        "value": 83.5,
        "threshold": 80.2,
        "sea_level_threshold": 85.0,
        "altitude_m": 2275.0,
        "delta": 0.7653,
        "tags": ("thermal",),
    }
    return AlarmTransition(
        kind=kind,
        site=site,
        miner=miner,
        rule=rule,
        severity=severity,
        previous_severity=previous,
        at=time.time(),
        summary=summary or f"{kind.value} {rule}",
        **(values | fields),
    )
