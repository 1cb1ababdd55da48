"""The ``mqtt:`` section of the agent config: broker, TLS, credentials, topics, outbox.

Example::

    mqtt:
      enabled: true
      host: broker.site.lan
      port: 8883
      protocol: "5"
      username: altiwatch
      password_file: /run/credentials/altiwatch.service/mqtt_password
      tls: {ca_file: /etc/altiwatch/ca.pem}
      home_assistant: {enabled: true}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

CREDENTIAL_NAME = "mqtt_password"
"""Name of the systemd credential (``LoadCredential=mqtt_password:...``) read as the password."""


class TlsSettings(BaseModel):
    """TLS towards the broker: a CA bundle and, for mutual TLS, a client certificate and key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: Path | None = Field(
        default=None, description="CA bundle the broker's certificate is checked against."
    )
    cert_file: Path | None = Field(
        default=None, description="Client certificate for mutual TLS (with `key_file`)."
    )
    key_file: Path | None = Field(
        default=None, description="Client key for mutual TLS (with `cert_file`)."
    )
    insecure_skip_hostname_check: bool = Field(
        default=False,
        description="Accept a broker certificate that does not name the host (testing only).",
    )

    @model_validator(mode="after")
    def _cert_needs_key(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            msg = "cert_file and key_file must be set together"
            raise ValueError(msg)
        return self


class HomeAssistantSettings(BaseModel):
    """Home Assistant MQTT discovery (opt-in)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=False, description="Announce each miner as a Home Assistant device."
    )
    prefix: str = Field(default="homeassistant", description="Home Assistant discovery prefix.")


class MqttSettings(BaseModel):
    """Broker connection and publishing settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=False, description="Publish MQTT events.")
    host: str = Field(default="127.0.0.1", description="Broker host.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port.")
    protocol: Literal["3.1.1", "5"] = Field(
        default="5",
        description='MQTT version, `"5"` or `"3.1.1"` (quoted in YAML). Only MQTT 5 reports a '
        "publish the broker refused (e.g. by ACL).",
    )
    username: str | None = Field(default=None, description="Broker user.")
    password: SecretStr | None = Field(
        default=None,
        description="Broker password (or `password_credential: NAME`). With a username and no "
        "password, the systemd credential `mqtt_password` is used when present.",
    )
    password_file: Path | None = Field(
        default=None, description="File holding the broker password (needs `username`)."
    )
    tls: TlsSettings | None = Field(
        default=None, description="TLS towards the broker; none: plain MQTT."
    )
    persistent_session: bool = Field(
        default=False, description="Persistent session for the agent's client."
    )
    session_expiry_s: int = Field(
        default=14 * 24 * 3600, ge=0, description="Session expiry of a persistent session."
    )
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keepalive.")
    topic_prefix: str = Field(default="altiwatch/v1", description="Prefix of every topic.")
    site: str | None = Field(
        default=None,
        description="Site segment of the agent status topic. Default: the first configured site.",
    )
    telemetry: bool = Field(
        default=True, description="Publish per-miner telemetry (QoS 0, message expiry)."
    )
    telemetry_expiry_s: int = Field(
        default=120,
        ge=1,
        description="MQTT 5 message expiry of telemetry; telemetry still queued after this is "
        "dropped rather than sent late.",
    )
    outbox_max_messages: int = Field(
        default=100_000,
        ge=10,
        description="Durable outbox bound; when full the oldest telemetry is dropped first, "
        "alarm, status and removal messages never.",
    )
    memory_max_messages: int = Field(
        default=10_000,
        ge=10,
        description="In-memory bound while storage fails (telemetry dropped first).",
    )
    publish_timeout_s: float = Field(default=10.0, gt=0, description="PUBACK wait.")
    inflight_window: int = Field(default=20, ge=1, le=1000, description="QoS 1 messages in flight.")
    reconnect_min_s: float = Field(
        default=0.5, gt=0, description="Shortest reconnect delay (capped, jittered backoff)."
    )
    reconnect_max_s: float = Field(
        default=60.0, gt=0, description="Longest reconnect delay; at least `reconnect_min_s`."
    )
    home_assistant: HomeAssistantSettings = Field(
        default=HomeAssistantSettings(), description="Home Assistant device discovery."
    )
    bridge_state_topic: str | None = Field(
        default=None,
        description="The site broker's bridge notification topic (mosquitto "
        "`notification_topic`, e.g. `altiwatch/v1/<site>/bridge/state`): read and exported as "
        "`altiwatch_mqtt_bridge_connected`, so central sees a bridge down.",
    )

    @model_validator(mode="after")
    def _one_password_source(self) -> MqttSettings:
        if self.password is not None and self.password_file is not None:
            msg = "set at most one of password and password_file"
            raise ValueError(msg)
        if self.password_file is not None and self.username is None:
            msg = "password_file needs username"
            raise ValueError(msg)
        if self.reconnect_min_s > self.reconnect_max_s:
            msg = "reconnect_min_s must not exceed reconnect_max_s"
            raise ValueError(msg)
        return self

    def resolve_password(self, env: dict[str, str] | None = None) -> SecretStr | None:
        """Return the password: inline, from ``password_file``, or the systemd credential.

        The credential ``$CREDENTIALS_DIRECTORY/mqtt_password`` is used only when a username is
        set and neither ``password`` nor ``password_file`` is. A trailing newline is stripped.
        """
        if self.password is not None:
            return self.password
        path = self.password_file
        if path is None and self.username is not None:
            creds = (env if env is not None else dict(os.environ)).get("CREDENTIALS_DIRECTORY")
            candidate = Path(creds) / CREDENTIAL_NAME if creds else None
            if candidate is not None and candidate.is_file():
                path = candidate
        if path is None:
            return None
        return SecretStr(path.read_text(encoding="utf-8").rstrip("\r\n"))
