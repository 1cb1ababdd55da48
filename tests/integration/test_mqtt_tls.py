"""The publisher over mutual TLS with a password from a file, MQTT 3.1.1, against a real mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import pytest

from agent.alarms.model import TransitionKind
from agent.mqtt.config import MqttSettings
from agent.mqtt.publisher import EventPublisher
from tests.support.events import transition
from tests.support.mosquitto import wait_until
from tests.unit.test_web_security import Pki, make_pki

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.broker


def broker_files(directory: Path) -> tuple[Pki, Path]:
    """A throwaway PKI and a mosquitto password file with user altiwatch."""
    pki = make_pki(directory)
    passwd = directory / "passwd"
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([tool, "-b", "-c", str(passwd), "altiwatch", "s3cret-pw"], check=True)
    return pki, passwd


async def publish_one(settings: MqttSettings, state: Path, within: float) -> tuple[bool, int]:
    """Queue one alarm, run the publisher up to ``within`` s; return (connected, outbox depth)."""
    pub = EventPublisher(settings, agent_id="tls-agent", state_dir=state)
    pub.alarm_transitions([transition(TransitionKind.RAISED, miner="m1", rule="R1")])
    task = asyncio.create_task(pub.run(), name="test.publisher")
    try:
        with contextlib.suppress(AssertionError):
            await wait_until(lambda: pub.stats().outbox_depth == 0, within=within, what="drain")
        return pub.stats().connected, pub.stats().outbox_depth
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        pub.close()


async def test_publisher_mutual_tls_with_password_file_v311(
    mosquitto_factory: Callable[..., Any], tmp_path: Path
):
    """Right CA, client cert and password: delivered; wrong password or no client cert: kept queued."""
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
    connected, depth = await publish_one(MqttSettings.model_validate(base), tmp_path / "ok", 20)
    assert (connected, depth) == (True, 0)

    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    bad_pw = MqttSettings.model_validate({**base, "password_file": wrong})
    connected, depth = await publish_one(bad_pw, tmp_path / "badpw", 3)
    assert (connected, depth) == (False, 3)  # agent_started + event + retained state, all kept

    no_cert = MqttSettings.model_validate({**base, "tls": {"ca_file": pki.ca_cert}})
    connected, depth = await publish_one(no_cert, tmp_path / "nocert", 3)
    assert (connected, depth) == (False, 3)
