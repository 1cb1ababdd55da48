"""The outbox's promise where it can break: the broker link drops while QoS1 windows are in flight.

Each test queues alarm events, breaks the link while a window of them is handed to the client
with PUBACKs outstanding, restores it, and checks what a subscriber got: every event arrives
(none lost), and an event seen twice (QoS1 is at-least-once) carries the same ``event_id``.

- PUBLISHes swallowed on their way to the broker until the publishes time out (they raise), then
  the link is cut: the rows must still be queued.
- PUBACKs swallowed on their way back (the broker has the messages): duplicates, same ids.
- The broker frozen (SIGSTOP) with a window in flight, then SIGKILLed and restarted.

Loopback: the proxies listen on 127.122.0.x (this module only); brokers on 127.0.0.1, free ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import pytest

from agent.alarms.model import TransitionKind
from agent.mqtt.config import MqttSettings
from agent.mqtt.publisher import EventPublisher
from tests.support.events import transition
from tests.support.link import LinkProxy
from tests.support.mosquitto import Subscriber, wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.broker

PREFIX = "altiwatch/v1"
EVENTS = f"{PREFIX}/+/events"
WINDOW = 10
"""In-flight window of the publisher under test (rows handed to the client at once)."""
BURST = 3 * WINDOW
"""Alarm transitions queued at once: each is two rows (event + retained state)."""


def settings(proxy: LinkProxy) -> MqttSettings:
    """Publisher settings through ``proxy``: short publish timeout, fast reconnects."""
    return MqttSettings.model_validate(
        {
            "enabled": True,
            "host": proxy.host,
            "port": proxy.port,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
            "publish_timeout_s": 2.0,
            "inflight_window": WINDOW,
            "telemetry": False,
        }
    )


@contextlib.asynccontextmanager
async def running(pub: EventPublisher) -> AsyncIterator[EventPublisher]:
    """Run the publisher as a task; cancel it (clean shutdown) on exit."""
    task = asyncio.create_task(pub.run(), name="test.publisher")
    try:
        yield pub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        pub.close()


def burst(pub: EventPublisher, tag: str) -> set[str]:
    """Queue BURST alarm transitions tagged ``<tag>-NN`` (in their summary); return the tags."""
    tags = [f"{tag}-{i:02d}" for i in range(BURST)]
    pub.alarm_transitions(
        [
            transition(TransitionKind.RAISED, miner=f"m{i:02d}", summary=t)
            for i, t in enumerate(tags)
        ]
    )
    return set(tags)


def alarm_events(sub: Subscriber) -> list[dict[str, Any]]:
    """Alarm events the subscriber received (duplicates included)."""
    return [p for p in sub.payloads(EVENTS) if p.get("schema") == "altiwatch.alarm/1"]


async def every_event_arrives(sub: Subscriber, tags: set[str], pub: EventPublisher) -> None:
    """Wait until every tag was received; fail naming the missing ones."""
    try:
        await wait_until(
            lambda: {p["summary"] for p in alarm_events(sub)} >= tags,
            within=60,
            what="every queued alarm event",
        )
    except AssertionError as exc:
        missing = sorted(tags - {p["summary"] for p in alarm_events(sub)})
        msg = f"{exc}: {len(missing)} lost {missing[:6]}, stats {pub.stats()}"
        raise AssertionError(msg) from None


def ids_by_tag(sub: Subscriber) -> dict[str, set[str]]:
    """The event ids each tag was received with (one id per tag: duplicates are the same event)."""
    ids: dict[str, set[str]] = defaultdict(set)
    for p in alarm_events(sub):
        ids[p["summary"]].add(p["event_id"])
    return ids


async def window_in_flight(pub: EventPublisher) -> None:
    """Wait until a window was handed to the client and its PUBACKs are outstanding."""
    # Private on purpose: "handed to the client, PUBACKs outstanding" shows on no public surface.
    await wait_until(lambda: pub._in_flight is not None, within=20, what="a window in flight")


async def test_link_publishes_swallowed_until_they_raise_rows_stay_queued(mosquitto, tmp_path):
    """PUBLISHes never reach the broker and time out (raise): no row is lost, all go on reconnect."""
    async with (
        LinkProxy(mosquitto, host="127.122.0.1") as proxy,
        Subscriber(mosquitto, [EVENTS]) as sub,
        running(EventPublisher(settings(proxy), agent_id="drop-up", state_dir=tmp_path)) as pub,
    ):
        await wait_until(lambda: pub.stats().connected, within=20, what="publisher connected")
        proxy.swallow_up = True
        tags = burst(pub, "up")
        await window_in_flight(pub)
        # The window's publishes time out (publish_timeout_s) and raise: the link is dropped.
        await wait_until(lambda: not pub.stats().connected, within=20, what="publishes failed")
        assert proxy.swallowed_up_bytes > 0
        assert alarm_events(sub) == [], "swallowed PUBLISHes reached the broker"
        assert pub.stats().outbox_depth >= 2 * BURST, "rows whose publish failed were deleted"
        proxy.swallow_up = False
        await proxy.cut()  # a reconnect stuck on a swallowed CONNECT starts over
        await every_event_arrives(sub, tags, pub)
        assert all(len(ids) == 1 for ids in ids_by_tag(sub).values())
        await wait_until(lambda: pub.stats().outbox_depth == 0, within=30, what="outbox drained")
    assert pub.stats().dropped_total == {}


async def test_link_pubacks_swallowed_duplicates_carry_the_same_event_id(mosquitto, tmp_path):
    """The broker gets the window but its PUBACKs are lost: re-sent rows arrive with the same ids."""
    async with (
        LinkProxy(mosquitto, host="127.122.0.2") as proxy,
        Subscriber(mosquitto, [EVENTS]) as sub,
        running(EventPublisher(settings(proxy), agent_id="drop-down", state_dir=tmp_path)) as pub,
    ):
        await wait_until(lambda: pub.stats().connected, within=20, what="publisher connected")
        proxy.swallow_down = True
        tags = burst(pub, "down")
        await window_in_flight(pub)
        await wait_until(
            lambda: len(alarm_events(sub)) >= 1, within=20, what="the window at the broker"
        )
        await wait_until(lambda: not pub.stats().connected, within=20, what="publishes failed")
        proxy.swallow_down = False
        await proxy.cut()
        await every_event_arrives(sub, tags, pub)
        await wait_until(lambda: pub.stats().outbox_depth == 0, within=30, what="outbox drained")
        ids = ids_by_tag(sub)
        assert all(len(i) == 1 for i in ids.values()), {t: i for t, i in ids.items() if len(i) > 1}
        received = [p["summary"] for p in alarm_events(sub)]
        duplicated = {t for t in received if received.count(t) > 1}
        assert duplicated, "the unacknowledged window was not sent again"


async def test_link_broker_sigkilled_with_a_window_in_flight_loses_nothing(
    mosquitto: Mosquitto, tmp_path: Path
):
    """Broker frozen with a window in flight, SIGKILLed, restarted: every event arrives once or more."""
    proxy = LinkProxy(mosquitto, host="127.122.0.3")
    await proxy.open()
    try:
        async with (
            Subscriber(mosquitto, [EVENTS]) as sub,
            running(EventPublisher(settings(proxy), agent_id="kill", state_dir=tmp_path)) as pub,
        ):
            await wait_until(lambda: pub.stats().connected, within=20, what="publisher connected")
            with mosquitto.paused():
                tags = burst(pub, "kill")
                await window_in_flight(pub)
                proc = mosquitto._proc
                assert proc is not None
                proc.send_signal(signal.SIGKILL)  # still stopped: it dies without a reply
                await asyncio.to_thread(proc.wait, 10)
            # Hold the publisher until the subscriber is back: a QoS1 message published to a
            # broker with no subscription yet is (correctly) delivered to nobody.
            await proxy.shut()
            await asyncio.to_thread(mosquitto.start)
            await wait_until(lambda: sub.connects >= 2, within=30, what="subscriber reconnected")
            await proxy.open()
            await every_event_arrives(sub, tags, pub)
            assert all(len(ids) == 1 for ids in ids_by_tag(sub).values())
            await wait_until(lambda: pub.stats().outbox_depth == 0, within=30, what="drained")
    finally:
        await proxy.shut()
