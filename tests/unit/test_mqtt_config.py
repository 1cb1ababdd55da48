"""The ``mqtt:`` settings: validation and where the password comes from."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.mqtt.config import MqttSettings


def test_mqtt_config_defaults_are_safe():
    """Defaults: disabled, loopback broker, MQTT 5, prefix altiwatch/v1, HA discovery off."""
    s = MqttSettings()
    assert (s.enabled, s.host, s.port, s.protocol) == (False, "127.0.0.1", 1883, "5")
    assert s.topic_prefix == "altiwatch/v1"
    assert not s.home_assistant.enabled
    assert s.resolve_password(env={}) is None


def test_mqtt_config_password_file_is_read_and_stripped(tmp_path: Path):
    """password_file is read at resolve time, without its trailing newline."""
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    s = MqttSettings(username="agent", password_file=secret)
    pw = s.resolve_password(env={})
    assert pw is not None
    assert pw.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)


def test_mqtt_config_systemd_credential_is_used(tmp_path: Path):
    """With a username and no password, $CREDENTIALS_DIRECTORY/mqtt_password is used."""
    (tmp_path / "mqtt_password").write_text("from-systemd")
    s = MqttSettings(username="agent")
    pw = s.resolve_password(env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert pw is not None
    assert pw.get_secret_value() == "from-systemd"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"password": "a", "password_file": "/x", "username": "u"}, "at most one"),
        ({"password_file": "/x"}, "needs username"),
        ({"tls": {"cert_file": "/c.pem"}}, "together"),
        ({"protocol": "4"}, "protocol"),
        ({"reconnect_min_s": 10, "reconnect_max_s": 1}, "reconnect_min_s"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_mqtt_config_rejects_inconsistent_settings(fields: dict[str, object], message: str):
    """Contradictory or unknown settings fail validation with a message naming the problem."""
    with pytest.raises(ValidationError, match=message):
        MqttSettings.model_validate(fields)


def test_mqtt_config_example_file_validates():
    """deploy/examples/mqtt.yaml is a valid ``mqtt:`` section."""
    import yaml  # noqa: PLC0415 - only this test reads YAML

    example = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "mqtt.yaml"
    section = yaml.safe_load(example.read_text(encoding="utf-8"))["mqtt"]
    settings = MqttSettings.model_validate(section)
    assert settings.enabled
    assert settings.tls is not None
