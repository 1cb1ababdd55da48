"""The publisher's settle step, outcome by outcome: what a window's PUBACKs do to the outbox.

A row leaves the outbox only when the broker answered for it: accepted (deleted, counted as
published) or refused with a failing reason code (deleted, counted as dropped ``rejected``).
A publish that raised (timeout, link lost) leaves its row queued, and the error propagates so
the connection is dropped and the row goes out again on the next link.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from agent.mqtt.config import MqttSettings
from agent.mqtt.events import Outgoing
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import EventPublisher

if TYPE_CHECKING:
    from pathlib import Path

NOT_AUTHORIZED = 0x87


def publisher(tmp_path: Path) -> EventPublisher:
    """A publisher (never connected) whose outbox holds four alarm rows e0..e3."""
    settings = MqttSettings.model_validate({"enabled": True, "host": "127.0.0.1", "port": 1})
    pub = EventPublisher(settings, agent_id="settle", state_dir=tmp_path)
    pub._outbox.put(
        [Outgoing(f"altiwatch/v1/s/events/e{i}", b"{}", qos=1, retain=False) for i in range(4)]
    )
    return pub


def queued(pub: EventPublisher) -> list[str]:
    """Topics still queued, oldest first."""
    return [r.message.topic.rsplit("/", 1)[1] for r in pub._outbox.peek(100)]


def refused() -> ReasonCode:
    """A PUBACK reason code 0x87 (Not authorized)."""
    return ReasonCode(PacketTypes.PUBACK, identifier=NOT_AUTHORIZED)


def test_settle_accepted_rows_are_deleted_and_counted(tmp_path: Path):
    """PUBACK success (None) for every row: all deleted, counted as published."""
    pub = publisher(tmp_path)
    rows = pub._outbox.peek(4)
    pub._settle(rows, [None, None, None, None])
    assert queued(pub) == []
    assert pub.stats().published_total == 4
    assert pub.stats().dropped_total == {}


def test_settle_rejected_rows_are_deleted_and_counted_as_dropped(tmp_path: Path):
    """A failing reason code: the row is deleted (retrying a denied topic blocks the backlog)."""
    pub = publisher(tmp_path)
    rows = pub._outbox.peek(2)
    pub._settle(rows, [refused(), None])
    assert queued(pub) == ["e2", "e3"]
    assert pub.stats().dropped_total == {"rejected": 1}
    assert pub.stats().published_total == 1


def test_settle_failed_publish_keeps_its_row_and_raises(tmp_path: Path):
    """A publish that raised keeps its row (in order, durable) and the error propagates."""
    pub = publisher(tmp_path)
    rows = pub._outbox.peek(4)
    lost = aiomqtt.MqttError("Operation timed out")
    with pytest.raises(aiomqtt.MqttError, match="timed out"):
        pub._settle(rows, [None, lost, refused(), lost])
    assert queued(pub) == ["e1", "e3"]
    assert pub.stats().published_total == 1
    assert pub.stats().dropped_total == {"rejected": 1}
    pub.close()
    again = Outbox(tmp_path)  # the kept rows are on disk, not only in memory
    assert [r.message.topic[-2:] for r in again.peek(10)] == ["e1", "e3"]
    again.close()


def test_settle_every_publish_failed_keeps_the_whole_window(tmp_path: Path):
    """The link dropped under the whole window: nothing is deleted, nothing is counted."""
    pub = publisher(tmp_path)
    rows = pub._outbox.peek(4)
    with pytest.raises(OSError, match="reset"):
        pub._settle(rows, [ConnectionResetError("reset")] * 4)
    assert queued(pub) == ["e0", "e1", "e2", "e3"]
    assert pub.stats().published_total == 0
    assert pub.stats().dropped_total == {}


async def test_publish_rows_a_publish_that_raises_leaves_its_row_queued(tmp_path: Path):
    """Through _publish_rows: the second publish raises; rows 1, 3 and 4 go, row 2 stays queued."""
    pub = publisher(tmp_path)

    async def publish(client, topic, payload, *, qos, retain, properties=None):
        if topic.endswith("/e1"):
            raise aiomqtt.MqttCodeError(4, "not currently connected")

    pub._publish = publish  # type: ignore[method-assign]
    with pytest.raises(aiomqtt.MqttCodeError):
        await pub._publish_rows(None, pub._outbox.peek(4))  # type: ignore[arg-type]
    assert queued(pub) == ["e1"]
    assert pub.stats().published_total == 3
