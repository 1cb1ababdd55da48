"""JSON Schemas (draft 2020-12) of every MQTT payload, keyed by the payload's ``schema`` field."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

FILES = {
    "altiwatch.alarm/1": "alarm.json",
    "altiwatch.miner_status/1": "miner_status.json",
    "altiwatch.agent_event/1": "agent_event.json",
    "altiwatch.agent_status/1": "agent_status.json",
    "altiwatch.telemetry/1": "telemetry.json",
    "altiwatch.maintenance/1": "maintenance.json",
}


@cache
def load(schema: str) -> dict[str, Any]:
    """Return the JSON Schema for a payload ``schema`` name such as ``altiwatch.alarm/1``."""
    text = resources.files(__package__).joinpath(FILES[schema]).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data
