"""Which events are alerts, and the grouping key that turns a burst into one message.

Pure functions over decoded event payloads (``altiwatch.alarm/1``, ``altiwatch.miner_status/1``).
Events of one site, one rule and one transition (``raised``, ``cleared``…) share a key: a site
outage raising R7 on 300 miners inside the grouping window becomes one message.
"""

from __future__ import annotations

from typing import Any

ALARM_SCHEMA = "altiwatch.alarm/1"
MINER_STATUS_SCHEMA = "altiwatch.miner_status/1"
SEVERITY_RANK = {"info": 1, "warning": 2, "critical": 3}
_STATUS_EVENTS = frozenset({"miner_offline", "miner_online"})


def alert_level(payload: dict[str, Any]) -> str | None:
    """The severity an alarm event is judged at (a ``cleared`` one: what it cleared from)."""
    level = payload.get("severity")
    if payload.get("event") == "cleared" and payload.get("previous_severity"):
        level = payload["previous_severity"]
    return str(level) if level is not None else None


def is_alert(payload: dict[str, Any], *, min_severity: str, miner_status: bool) -> bool:
    """Whether ``payload`` is delivered at all (before any per-channel severity filter)."""
    schema = payload.get("schema")
    if schema == ALARM_SCHEMA:
        return passes(payload, min_severity)
    if schema == MINER_STATUS_SCHEMA:
        return miner_status and payload.get("event") in _STATUS_EVENTS
    return False


def passes(payload: dict[str, Any], min_severity: str) -> bool:
    """Whether an event reaches ``min_severity`` (miner status events always do)."""
    if payload.get("schema") != ALARM_SCHEMA:
        return True
    return SEVERITY_RANK.get(alert_level(payload) or "", 0) >= SEVERITY_RANK[min_severity]


def group_key(payload: dict[str, Any]) -> str:
    """``site|rule|event`` (miner status: ``site|status|event``): events sent together."""
    site = str(payload.get("site"))
    event = str(payload.get("event"))
    if payload.get("schema") == ALARM_SCHEMA:
        return f"{site}|{payload.get('rule')}|{event}|{alert_level(payload)}"
    return f"{site}|status|{event}"
