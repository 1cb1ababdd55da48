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

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_hostname_check: bool = False

    @model_validator(mode="after")
    def _cert_needs_key(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            msg = "cert_file and key_file must be set together"
            raise ValueError(msg)
        return self


class HomeAssistantSettings(BaseModel):
    """Home Assistant MQTT discovery (opt-in)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    prefix: str = "homeassistant"


class MqttSettings(BaseModel):
    """Broker connection and publishing settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    protocol: Literal["3.1.1", "5"] = "5"
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    tls: TlsSettings | None = None
    persistent_session: bool = False
    session_expiry_s: int = Field(default=14 * 24 * 3600, ge=0)
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    topic_prefix: str = "altiwatch/v1"
    site: str | None = Field(
        default=None,
        description="site segment of the agent status topic; default: the first configured site",
    )
    telemetry: bool = True
    telemetry_expiry_s: int = Field(default=120, ge=1)
    outbox_max_messages: int = Field(default=100_000, ge=10)
    memory_max_messages: int = Field(default=10_000, ge=10)
    publish_timeout_s: float = Field(default=10.0, gt=0)
    inflight_window: int = Field(default=20, ge=1, le=1000)
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=60.0, gt=0)
    home_assistant: HomeAssistantSettings = HomeAssistantSettings()
    bridge_state_topic: str | None = Field(
        default=None,
        description=(
            "the site broker's bridge notification topic (mosquitto notification_topic, e.g."
            " altiwatch/v1/<site>/bridge/state): read and exported as"
            " altiwatch_mqtt_bridge_connected, so central sees a bridge down"
        ),
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
