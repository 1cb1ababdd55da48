"""A publish denied by Mosquitto's ACL (MQTT 5 PUBACK 0x87) is logged and counted, not fatal."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from agent.alarms.model import Severity, TransitionKind
from agent.fleet_state import FleetState
from agent.metrics import MetricsRenderer
from agent.mqtt.config import MqttSettings
from agent.mqtt.publisher import EventPublisher
from tests.support.events import transition
from tests.support.mosquitto import Subscriber, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, MutableMapping
    from pathlib import Path

pytestmark = pytest.mark.broker

PASSWORD = "acl-s3cret-pw"  # noqa: S105 - a throwaway test credential
EVENTS = "altiwatch/v1/xining/events"
ALARM = "altiwatch/v1/xining/m1/alarm/r1"


def broker_files(directory: Path) -> tuple[Path, Path]:
    """A password file with user altiwatch and an ACL denying it the retained alarm state."""
    passwd = directory / "passwd"
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([tool, "-b", "-c", str(passwd), "altiwatch", PASSWORD], check=True)
    acl = directory / "acl"
    acl.write_text(
        "# anonymous clients (the test subscriber) read everything, publish nothing\n"
        "topic read altiwatch/v1/#\n"
        "user altiwatch\n"
        "topic write altiwatch/v1/#\n"
        "topic deny altiwatch/v1/+/+/alarm/#\n",
        encoding="utf-8",
    )
    return passwd, acl


async def test_publisher_acl_denied_retained_state_is_logged_counted_and_not_fatal(
    mosquitto_factory: Callable[..., Any], tmp_path: Path
):
    """A denied retained alarm state is logged, counted as rejected and dropped; events flow on."""
    passwd, acl = await asyncio.to_thread(broker_files, tmp_path)
    broker = mosquitto_factory(extra=["user root", f"password_file {passwd}", f"acl_file {acl}"])
    settings = MqttSettings.model_validate(
        {
            "enabled": True,
            "host": broker.host,
            "port": broker.port,
            "protocol": "5",
            "username": "altiwatch",
            "password": PASSWORD,
            "site": "xining",
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 0.5,
        }
    )
    pub = EventPublisher(settings, agent_id="acl-agent", state_dir=tmp_path / "state")
    async with Subscriber(broker, ["altiwatch/v1/#"]) as sub:
        with capture_logs() as logs:
            task = asyncio.create_task(pub.run(), name="test.publisher")
            try:
                pub.alarm_transitions([transition(TransitionKind.RAISED, miner="m1", rule="R1")])

                def events() -> list[str]:
                    return [p.get("event") for p in sub.payloads(EVENTS)]

                def rejected() -> list[MutableMapping[str, Any]]:
                    return [e for e in logs if e["event"] == "mqtt_publish_rejected"]

                await wait_until(lambda: "raised" in events(), within=20, what="the raised event")
                await wait_until(lambda: len(rejected()) == 1, within=20, what="one rejection")
                await wait_until(
                    lambda: pub.stats().outbox_depth == 0, within=20, what="the outbox to drain"
                )
                stats = pub.stats()
                assert stats.dropped_total.get("rejected") == 1
                assert stats.connected
                entry = rejected()[0]
                assert entry["log_level"] == "warning"
                assert entry["topic"] == ALARM
                assert entry["kind"] == "retained"
                assert entry["reason"] == "Not authorized"
                assert PASSWORD not in repr(logs)

                # Still running: a later transition's event arrives, its state is refused again.
                pub.alarm_transitions(
                    [
                        transition(
                            TransitionKind.CLEARED, miner="m1", rule="R1", previous=Severity.WARNING
                        )
                    ]
                )
                await wait_until(lambda: "cleared" in events(), within=20, what="the cleared event")
                await wait_until(lambda: len(rejected()) == 2, within=20, what="a 2nd rejection")
                await wait_until(
                    lambda: pub.stats().outbox_depth == 0, within=20, what="the outbox to drain"
                )
                assert pub.stats().dropped_total.get("rejected") == 2
                metrics = MetricsRenderer(FleetState(), CollectorRegistry(), publisher=pub)
                assert b'altiwatch_mqtt_dropped_total{reason="rejected"} 2.0' in metrics.render()
                assert not task.done()
                assert not [m for m in sub.messages if m.topic == ALARM]
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                pub.close()
    assert not [e for e in logs if e["event"] == "mqtt_disconnected"]
