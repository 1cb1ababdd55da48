"""The ``mqtt:`` section of the agent config: broker, TLS, credentials, topics, outbox."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class MqttSettings(BaseModel):
    """Broker connection and publishing settings (extended by the MQTT publisher's owner)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883
