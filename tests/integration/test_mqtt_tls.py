"""The publisher over mutual TLS with a password from a file, MQTT 3.1.1, against a real mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import pytest
import structlog

from agent.alarms.model import TransitionKind
from agent.mqtt.config import MqttSettings
from agent.mqtt.publisher import EventPublisher
from tests.support.events import transition
from tests.support.mosquitto import wait_until
from tests.unit.test_web_security import Pki, make_pki

if TYPE_CHECKING:
    from collections.abc import Callable, MutableMapping
    from pathlib import Path

pytestmark = pytest.mark.broker


def broker_files(directory: Path) -> tuple[Pki, Path]:
    """A throwaway PKI and a mosquitto password file with user altiwatch."""
    pki = make_pki(directory)
    passwd = directory / "passwd"
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([tool, "-b", "-c", str(passwd), "altiwatch", "s3cret-pw"], check=True)
    return pki, passwd


async def publish_one(
    settings: MqttSettings, state: Path, until: Callable[[EventPublisher, list[Any]], bool]
) -> tuple[EventPublisher, list[MutableMapping[str, Any]]]:
    """Queue one alarm, run the publisher until ``until(pub, logs)``; return it and its logs."""
    pub = EventPublisher(settings, agent_id="tls-agent", state_dir=state)
    pub.alarm_transitions([transition(TransitionKind.RAISED, miner="m1", rule="R1")])
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(pub.run(), name="test.publisher")
        try:
            await wait_until(lambda: until(pub, logs), within=20, what="the expected outcome")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            pub.close()
    return pub, logs


def disconnects(logs: list[MutableMapping[str, Any]]) -> list[str]:
    """The errors of the publisher's ``mqtt_disconnected`` log lines."""
    return [str(e["error"]) for e in logs if e["event"] == "mqtt_disconnected"]


async def test_publisher_mutual_tls_with_password_file_v311(
    mosquitto_factory: Callable[..., Any], tmp_path: Path
):
    """Right CA, cert and password: delivered; wrong password or no client cert: refused (reason code, broker log), kept queued."""
    pki, passwd = await asyncio.to_thread(broker_files, tmp_path)
    broker = mosquitto_factory(
        extra=[
            "user root",  # stay root: the test's files live in a root-only temp dir
            f"cafile {pki.ca_cert}",
            f"certfile {pki.server_cert}",
            f"keyfile {pki.server_key}",
            "require_certificate true",
            "tls_version tlsv1.2",
            "allow_anonymous false",
            f"password_file {passwd}",
        ]
    )
    secret = tmp_path / "mqtt_password"
    secret.write_text("s3cret-pw\n")
    base: dict[str, Any] = {
        "enabled": True,
        "host": broker.host,
        "port": broker.port,
        "protocol": "3.1.1",
        "username": "altiwatch",
        "password_file": secret,
        "tls": {"ca_file": pki.ca_cert, "cert_file": pki.client_cert, "key_file": pki.client_key},
        "reconnect_min_s": 0.2,
        "reconnect_max_s": 0.5,
    }
    pub, _ = await publish_one(
        MqttSettings.model_validate(base), tmp_path / "ok", lambda p, _: p.stats().outbox_depth == 0
    )
    assert pub.stats().outbox_depth == 0
    assert pub.stats().published_total >= 3  # agent_started + event + retained state (+ stopped)

    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    bad_pw = MqttSettings.model_validate({**base, "password_file": wrong})
    pub, logs = await publish_one(
        bad_pw, tmp_path / "badpw", lambda _, logs: bool(disconnects(logs))
    )
    # The broker refused the CONNECT with a reason code (3.1.1 CONNACK 5: not authorised)...
    assert any("not authori" in e.lower() for e in disconnects(logs)), disconnects(logs)
    # ...and says why in its own log.
    assert "not authorised" in broker.log.read_text(errors="replace")
    # agent_started, the event, its retained state and agent_stopped: all kept.
    assert (pub.stats().connected, pub.stats().outbox_depth) == (False, 4)

    no_cert = MqttSettings.model_validate({**base, "tls": {"ca_file": pki.ca_cert}})
    before = broker.log.read_text(errors="replace")
    pub, logs = await publish_one(
        no_cert,
        tmp_path / "nocert",
        lambda _, logs: (
            bool(disconnects(logs))
            and "certificate" in broker.log.read_text(errors="replace")[len(before) :]
        ),
    )
    # The broker refused the TLS handshake for want of a client certificate.
    refusal = broker.log.read_text(errors="replace")[len(before) :]
    assert "peer did not return a certificate" in refusal, refusal
    assert (pub.stats().connected, pub.stats().outbox_depth) == (False, 4)
