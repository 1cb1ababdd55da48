"""EventPublisher against a real Debian mosquitto: payloads, retained state, outages, bounds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest

from agent.alarms.model import TransitionKind
from agent.mqtt import schemas
from agent.mqtt.config import MqttSettings
from agent.mqtt.events import Outgoing
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import EventPublisher
from collectors.snapshot import BoardReading, FanReading, Identity, MinerSnapshot, PowerSource
from tests.support.events import transition
from tests.support.mosquitto import Subscriber, TcpGate, publish_once, wait_until

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


async def test_publisher_stopping_mid_window_waits_for_pubacks_instead_of_resending(
    mosquitto, tmp_path
):
    """Stopped while a window awaits its PUBACKs, the publisher waits for them and sends no row twice."""
    pub = EventPublisher(
        settings(mosquitto), agent_id="agent-w", state_dir=tmp_path, sites=["xining"]
    )
    async with Subscriber(mosquitto, [f"{PREFIX}/xining/events"]) as sub:
        task = asyncio.create_task(pub.run(), name="test.publisher")
        try:
            await wait_until(lambda: pub.stats().connected, within=20, what="publisher connected")
            with mosquitto.paused():
                pub.alarm_transitions(
                    [transition(TransitionKind.RAISED, miner=f"m{i}") for i in range(30)]
                )
                # Private on purpose: the state under test is "a window handed to the client,
                # PUBACKs outstanding", which no public surface shows.
                await wait_until(
                    lambda: pub._in_flight is not None,
                    within=20,
                    what="a window in flight",
                )
                task.cancel()
                await wait_until(
                    lambda: not pub.stats().connected, within=20, what="shutdown under way"
                )
        finally:
            if not task.cancelling():  # a second cancel would cut the goodbye short
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            pub.close()
        await wait_until(
            lambda: any(p.get("event") == "agent_stopped" for p in sub.payloads()),
            within=20,
            what="agent_stopped (published after every alarm event)",
        )
    raised = Counter(p["miner"] for p in sub.payloads() if p.get("event") == "raised")
    assert raised == Counter(f"m{i}" for i in range(30))


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


async def test_publisher_broker_outage_during_alarm_storm_loses_nothing(mosquitto, tmp_path):
    """Broker stopped 30 s during a storm of 250 transitions: every event arrives, per-miner order kept."""
    gate = TcpGate(mosquitto)
    pub = EventPublisher(
        settings(mosquitto, host=gate.host, port=gate.port),
        agent_id="agent-storm",
        state_dir=tmp_path,
    )
    miners = [f"m{i:02d}" for i in range(10)]
    sent: dict[str, list[str]] = {m: [] for m in miners}
    counter = 0

    def storm(batches: int) -> None:
        nonlocal counter
        batch = []
        for _ in range(batches):
            miner = miners[counter % len(miners)]
            kind = (TransitionKind.RAISED, TransitionKind.ESCALATED, TransitionKind.CLEARED)[
                (counter // len(miners)) % 3
            ]
            tag = f"storm-{counter:04d}"
            batch.append(transition(kind, miner=miner, summary=tag))
            sent[miner].append(tag)
            counter += 1
        pub.alarm_transitions(batch)

    sub_topics = [f"{PREFIX}/+/events"]
    async with (
        gate,
        Subscriber(mosquitto, sub_topics, client_id="storm-sub", persistent=True) as sub,
        running(pub),
    ):
        await wait_until(lambda: pub.stats().connected, within=20, what="publisher connected")
        storm(50)
        # Let the first 50 reach the subscriber: mosquitto 2.0.11 loses QoS1 messages it had
        # already PUBACKed but not yet delivered to a subscriber when it is stopped at that
        # instant (observed; a broker-side window outside the publisher's control).
        await wait_until(
            lambda: len([p for p in sub.payloads() if "rule" in p]) >= 50,
            within=20,
            what="first 50 before the outage",
        )
        await asyncio.to_thread(mosquitto.stop)
        down_at = time.monotonic()
        while time.monotonic() - down_at < 30:
            storm(10)
            pub.telemetry("xining", "m00", snapshot())
            await asyncio.sleep(1.5)
        outage = time.monotonic() - down_at
        assert counter >= 200
        assert not pub.stats().connected
        backlog = pub.stats().outbox_depth
        # The subscriber must be back first (see TcpGate): hold the publisher at the gate.
        await gate.shut()
        await asyncio.to_thread(mosquitto.start)
        await wait_until(lambda: sub.connects == 2, within=30, what="subscriber reconnected")
        await gate.open()

        def received() -> list[dict[str, Any]]:
            return [p for p in sub.payloads() if p.get("schema") == "altiwatch.alarm/1"]

        expected = {t for v in sent.values() for t in v}
        try:
            await wait_until(
                lambda: {p["summary"] for p in received()} >= expected,
                within=90,
                what="every storm event after the outage",
            )
        except AssertionError as exc:
            missing = sorted(expected - {p["summary"] for p in received()})
            detail = f"{exc}: missing {len(missing)} {missing[:5]}..., stats={pub.stats()}"
            raise AssertionError(detail) from None
        payloads = received()
        for miner in miners:
            assert first_seen(payloads, miner) == sent[miner], f"order broken for {miner}"
        ids = [p["event_id"] for p in payloads]
        print(
            f"storm: sent={counter} received={len(ids)} unique={len(set(ids))}"
            f" duplicates={len(ids) - len(set(ids))} backlog_at_restart={backlog}"
            f" outage_s={outage:.1f} reconnects_seen_by_subscriber={sub.connects}"
        )
        assert len(set(ids)) == counter


async def test_publisher_outbox_bound_drops_telemetry_keeps_alarms(mosquitto, tmp_path):
    """At its bound the outbox drops the oldest telemetry (counted) and delivers every alarm event."""
    await asyncio.to_thread(mosquitto.stop)
    pub = EventPublisher(
        settings(mosquitto, outbox_max_messages=50), agent_id="agent-bound", state_dir=tmp_path
    )
    async with running(pub):
        await wait_until(lambda: pub.stats().outbox_depth == 1, within=10, what="agent_started")
        for i in range(100):
            pub.telemetry("xining", f"t{i:03d}", snapshot())
            if i % 7 == 0:
                pub.alarm_transitions([transition(TransitionKind.RAISED, miner=f"a{i:03d}")])
        stats = pub.stats()
        # 1 agent_started + 15 transitions x 2 rows (event + retained state) + 100 telemetry
        assert stats.outbox_depth == 50
        assert stats.dropped_total == {"outbox_full": 81}
        assert not stats.connected
        async with Subscriber(mosquitto_restarted(mosquitto), [f"{PREFIX}/#"]) as sub:
            await wait_until(lambda: pub.stats().outbox_depth == 0, within=60, what="drained")
            await wait_until(
                lambda: len([p for p in sub.payloads(f"{PREFIX}/+/events") if "rule" in p]) == 15,
                within=20,
                what="all 15 alarm events",
            )
            # PUBACKs came back (drained): the broker has every message; wait for the last one
            # to reach the subscriber too, then compare the whole list.
            await wait_until(
                lambda: any(p["miner"] == "t099" for p in sub.payloads(f"{PREFIX}/+/+/telemetry")),
                within=20,
                what="the last telemetry message",
            )
            telemetry = [p["miner"] for p in sub.payloads(f"{PREFIX}/+/+/telemetry")]
            assert telemetry == [f"t{i:03d}" for i in range(81, 100)]


def first_seen(payloads: list[dict[str, Any]], miner: str) -> list[str]:
    """Summaries of ``miner``'s events in order of first arrival (duplicates ignored)."""
    firsts: list[str] = []
    for p in payloads:
        if p["miner"] == miner and p["summary"] not in firsts:
            firsts.append(p["summary"])
    return firsts


def mosquitto_restarted(broker: Mosquitto) -> Mosquitto:
    """Start ``broker`` again on its port and return it."""
    broker.start()
    return broker


@pytest.mark.parametrize(
    ("protocol", "persistent"), [("5", True), ("3.1.1", True), ("3.1.1", False)]
)
async def test_publisher_protocols_and_persistent_sessions_deliver(
    mosquitto, tmp_path, protocol, persistent
):
    """MQTT 5 and 3.1.1, with and without a persistent session, connect and deliver alarms."""
    pub = EventPublisher(
        settings(mosquitto, protocol=protocol, persistent_session=persistent),
        agent_id=f"agent-{protocol}-{persistent}",
        state_dir=tmp_path,
    )
    async with Subscriber(mosquitto, [f"{PREFIX}/+/events"]) as sub, running(pub):
        pub.alarm_transitions([transition(TransitionKind.RAISED, summary="proto")])
        await wait_until(
            lambda: any(p.get("summary") == "proto" for p in sub.payloads()),
            within=20,
            what=f"delivery over MQTT {protocol}",
        )
    assert pub.stats().connected is False


LONG_ID = "m" * 70_000
"""A miner id whose topic is over MQTT's 65,535-byte limit (paho raises ValueError)."""


async def test_publisher_unpublishable_message_is_dropped_and_counted_not_fatal(
    mosquitto, tmp_path
):
    """Telemetry whose topic exceeds 65,535 bytes is dropped and counted; the rest go out.

    (The id is only in the payload of a status event, which is published.)
    """
    pub = EventPublisher(settings(mosquitto), agent_id="agent-u", state_dir=tmp_path)
    async with Subscriber(mosquitto, [f"{PREFIX}/xining/events"]) as sub, running(pub):
        await wait_until(lambda: pub.stats().connected, within=20, what="publisher connected")
        pub.telemetry("xining", LONG_ID, snapshot())
        pub.miner_status("xining", LONG_ID, online=True, reason=None)
        pub.miner_status("xining", "m1", online=True, reason=None)
        await wait_until(
            lambda: any(b'"m1"' in m.payload for m in sub.messages),
            within=20,
            what="the publishable event delivered",
        )
        stats = pub.stats()
        assert stats.connected
        assert stats.dropped_total.get("unpublishable") == 1
        assert stats.outbox_depth == 0


async def test_publisher_unpublishable_rows_stored_earlier_do_not_stop_a_restart(
    mosquitto, tmp_path
):
    """Rows an older agent stored with a topic over 65,535 bytes are dropped at the next start."""
    outbox = Outbox(tmp_path, max_messages=100, memory_max=100, clock=time.time)
    outbox.put([Outgoing(f"{PREFIX}/xining/{LONG_ID}/telemetry", b"{}", qos=1, retain=False)])
    outbox.close()
    pub = EventPublisher(settings(mosquitto), agent_id="agent-v", state_dir=tmp_path)
    async with Subscriber(mosquitto, [f"{PREFIX}/xining/events"]) as sub, running(pub):
        pub.miner_status("xining", "m1", online=True, reason=None)
        await wait_until(
            lambda: any(b'"m1"' in m.payload for m in sub.messages),
            within=20,
            what="the event behind the stored row delivered",
        )
        assert pub.stats().dropped_total.get("unpublishable") == 1
