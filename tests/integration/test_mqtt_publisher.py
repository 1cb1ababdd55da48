"""EventPublisher against a real Debian mosquitto: payloads, retained state, outages, bounds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest

from agent.alarms.model import AlarmTransition, Severity, TransitionKind
from agent.mqtt import schemas
from agent.mqtt.config import MqttSettings
from agent.mqtt.publisher import EventPublisher
from collectors.snapshot import BoardReading, FanReading, Identity, MinerSnapshot, PowerSource
from tests.support.mosquitto import Subscriber, publish_once, wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.broker

PREFIX = "altiwatch/v1"


def settings(broker: Mosquitto, **overrides: object) -> MqttSettings:
    """MqttSettings for ``broker`` with fast reconnects."""
    base: dict[str, object] = {
        "enabled": True,
        "host": broker.host,
        "port": broker.port,
        "reconnect_min_s": 0.2,
        "reconnect_max_s": 1.0,
        "publish_timeout_s": 5.0,
    }
    base.update(overrides)
    return MqttSettings.model_validate(base)


def transition(
    kind: TransitionKind,
    *,
    miner: str = "02:1a:2b:3c:4d:5e",
    rule: str = "chip_temp",
    severity: Severity = Severity.WARNING,
    previous: Severity | None = None,
    site: str = "xining",
    summary: str = "",
) -> AlarmTransition:
    """A synthetic transition as the alarm engine would emit it."""
    return AlarmTransition(
        kind=kind,
        site=site,
        miner=miner,
        rule=rule,
        severity=severity,
        previous_severity=previous,
        at=time.time(),
        value=83.5,
        threshold=80.2,
        sea_level_threshold=85.0,
        altitude_m=2275.0,
        delta=0.7653,
        tags=("thermal",),
        summary=summary or f"{kind.value} {rule}",
    )


def snapshot(address: str = "127.50.0.1") -> MinerSnapshot:
    """A snapshot with some unknown values (inlet, one fan)."""
    return MinerSnapshot(
        address=address,
        collected_at=time.time(),
        identity=Identity(model="S19j Pro", mac="02:1a:2b:3c:4d:5e"),
        hashrate_hs=1.0e14,
        expected_hashrate_hs=1.04e14,
        boards=(BoardReading(index=0, hashrate_hs=3.3e13, chip_temp_c=71.0, board_temp_c=58.0),),
        fans=(FanReading(index=0, rpm=4800), FanReading(index=1, rpm=None)),
        inlet_temp_c=None,
        power_w=3050.0,
        power_source=PowerSource.MEASURED,
    )


def validate(payload: dict[str, object]) -> None:
    """Validate a received payload against the JSON Schema its ``schema`` names."""
    jsonschema.validate(
        payload,
        schemas.load(str(payload["schema"])),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


@contextlib.asynccontextmanager
async def running(publisher: EventPublisher) -> AsyncIterator[EventPublisher]:
    """Run ``publisher.run()`` as a task; cancel it (clean shutdown) on exit."""
    task = asyncio.create_task(publisher.run(), name="test.publisher")
    try:
        yield publisher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        publisher.close()


async def test_publisher_raise_and_clear_validate_against_schemas(mosquitto, tmp_path: Path):
    """A raise and a clear reach a subscriber on the events stream and retained state topic, schema-valid."""
    pub = EventPublisher(
        settings(mosquitto), agent_id="agent-a", state_dir=tmp_path, sites=["xining"]
    )
    async with Subscriber(mosquitto, [f"{PREFIX}/#"]) as sub, running(pub):
        await wait_until(lambda: pub.stats().connected, within=20, what="publisher connected")
        pub.alarm_transitions([transition(TransitionKind.RAISED)])
        pub.telemetry("xining", "02:1a:2b:3c:4d:5e", snapshot())
        pub.miner_status("xining", "02:1a:2b:3c:4d:5e", online=False, reason="timeout")
        pub.alarm_transitions([transition(TransitionKind.CLEARED)])

        def alarm_events() -> list[dict[str, Any]]:
            return [p for p in sub.payloads(f"{PREFIX}/xining/events") if "rule" in p]

        await wait_until(lambda: len(alarm_events()) == 2, within=20, what="raise + clear")
        await wait_until(
            lambda: len(sub.payloads(f"{PREFIX}/xining/+/telemetry")) == 1,
            within=20,
            what="telemetry",
        )
        await wait_until(
            lambda: any(p.get("event") == "miner_offline" for p in sub.payloads()),
            within=20,
            what="miner_offline",
        )
        for msg in sub.messages:
            if msg.payload:
                validate(msg.json())
        raised, cleared = alarm_events()
        assert (raised["event"], raised["state"]) == ("raised", "firing")
        assert (cleared["event"], cleared["state"]) == ("cleared", "cleared")
        assert cleared["seq"] > raised["seq"]
        telemetry = sub.payloads(f"{PREFIX}/xining/+/telemetry")[0]
        assert telemetry["alarm_severity"] == "warning"
        assert telemetry["inlet_temp_c"] is None
        assert telemetry["fans"][1]["rpm"] is None
        assert any(p.get("state") == "online" for p in sub.payloads(f"{PREFIX}/+/agent/+/status"))

    # A fresh subscriber sees the retained current state: explicitly cleared.
    async with Subscriber(mosquitto, [f"{PREFIX}/xining/+/alarm/#"]) as late:
        await wait_until(lambda: bool(late.messages), within=20, what="retained alarm state")
        state = late.messages[0]
        assert state.retain
        assert state.topic == f"{PREFIX}/xining/02-1a-2b-3c-4d-5e/alarm/chip_temp"
        assert state.json()["state"] == "cleared"


async def test_publisher_clean_shutdown_publishes_offline_and_agent_stopped(mosquitto, tmp_path):
    """Cancelling run() publishes agent_stopped and a retained `offline` status (the Will is not sent on DISCONNECT)."""
    pub = EventPublisher(settings(mosquitto), agent_id="agent-b", state_dir=tmp_path)
    async with Subscriber(mosquitto, [f"{PREFIX}/#"]) as sub:
        async with running(pub):
            await wait_until(lambda: pub.stats().connected, within=20, what="publisher connected")
        await wait_until(
            lambda: any(p.get("event") == "agent_stopped" for p in sub.payloads()),
            within=20,
            what="agent_stopped",
        )
    async with Subscriber(mosquitto, [f"{PREFIX}/+/agent/+/status"]) as late:
        await wait_until(lambda: bool(late.messages), within=20, what="retained status")
        status = late.messages[-1].json()
        validate(status)
        assert (status["state"], status["reason"]) == ("offline", "shutdown")


async def test_publisher_miner_removed_empties_retained_topics(mosquitto, tmp_path):
    """miner_removed publishes an empty retained payload on each of the miner's alarm topics."""
    pub = EventPublisher(settings(mosquitto), agent_id="agent-c", state_dir=tmp_path)
    async with running(pub):
        await wait_until(lambda: pub.stats().connected, within=20, what="publisher connected")
        pub.alarm_transitions(
            [
                transition(TransitionKind.RAISED, miner="m1", rule="chip_temp"),
                transition(TransitionKind.RAISED, miner="m1", rule="inlet_temp"),
                transition(TransitionKind.RAISED, miner="m2", rule="chip_temp"),
            ]
        )
        await wait_until(lambda: pub.stats().outbox_depth == 0, within=20, what="outbox drained")
        pub.miner_removed("xining", "m1")
        await wait_until(lambda: pub.stats().outbox_depth == 0, within=20, what="outbox drained")
    async with Subscriber(mosquitto, [f"{PREFIX}/xining/+/alarm/#", "test/marker"]) as late:
        # Retained messages are sent right after SUBACK, so they precede a later marker.
        await publish_once(mosquitto, "test/marker", b"x")
        await wait_until(
            lambda: any(m.topic == "test/marker" for m in late.messages), within=20, what="marker"
        )
        retained = {m.topic for m in late.messages if m.retain}
        assert retained == {f"{PREFIX}/xining/m2/alarm/chip_temp"}
