"""Operator settings for the thermal alarm engine: preset overrides per site, model and miner."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ThermalSettings(BaseModel):
    """The ``thermal:`` section of the agent config (extended by the alarm engine's owner)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
