"""The durable outbox: order, bound, persistence, and surviving storage failures."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest
from structlog.testing import capture_logs

from agent.mqtt.events import Outgoing
from agent.mqtt.outbox import DB_NAME, Outbox, RetainedAlarm

if TYPE_CHECKING:
    from pathlib import Path


def alarm(n: int) -> Outgoing:
    """A kept (non-droppable) QoS1 message."""
    return Outgoing(f"p/s/m/alarm/r{n}", f"alarm-{n}".encode(), qos=1, retain=False)


def tele(n: int) -> Outgoing:
    """A droppable telemetry message."""
    return Outgoing(
        "p/s/m/telemetry", f"tele-{n}".encode(), qos=0, retain=False, droppable=True, expiry_s=60
    )


def payloads(box: Outbox) -> list[str]:
    """Queued payloads, oldest first."""
    return [r.message.payload.decode() for r in box.peek(10_000)]


def test_outbox_survives_reopen_in_order(tmp_path: Path):
    """Committed rows and the seq counter survive closing and reopening, in insertion order."""
    box = Outbox(tmp_path)
    box.next_seq()
    box.next_seq()
    box.put([alarm(1), tele(2), alarm(3)])
    box.close()
    again = Outbox(tmp_path)
    assert payloads(again) == ["alarm-1", "tele-2", "alarm-3"]
    assert again.seq == 2
    assert again.next_seq() == 3
    assert again.depth == 3


def test_outbox_ack_deletes_only_acked_rows(tmp_path: Path):
    """ack() removes exactly the rows passed; the rest stay in order."""
    box = Outbox(tmp_path)
    box.put([alarm(i) for i in range(5)])
    rows = box.peek(2)
    box.ack(rows)
    assert payloads(box) == ["alarm-2", "alarm-3", "alarm-4"]
    box.close()
    assert payloads(Outbox(tmp_path)) == ["alarm-2", "alarm-3", "alarm-4"]


def test_outbox_bound_drops_oldest_telemetry_first(tmp_path: Path):
    """Over the bound, the oldest droppable rows go first and are counted; alarms stay."""
    box = Outbox(tmp_path, max_messages=10)
    box.put([tele(i) for i in range(8)])
    box.put([alarm(i) for i in range(5)])
    assert box.depth == 10
    assert box.dropped == {"outbox_full": 3}
    assert payloads(box) == [f"tele-{i}" for i in range(3, 8)] + [f"alarm-{i}" for i in range(5)]


def test_outbox_bound_never_drops_alarms(tmp_path: Path):
    """With only alarm rows queued, the bound is exceeded rather than losing an alarm."""
    box = Outbox(tmp_path, max_messages=10)
    box.put([alarm(i) for i in range(15)])
    box.put([tele(99)])
    assert box.depth == 15
    assert payloads(box) == [f"alarm-{i}" for i in range(15)]
    assert box.dropped == {"outbox_full": 1}


def test_outbox_corrupt_file_is_moved_aside_and_rebuilt(tmp_path: Path):
    """A corrupt database file is renamed with a log line and a fresh outbox works."""
    (tmp_path / DB_NAME).write_bytes(b"this is not a sqlite database" * 100)
    with capture_logs() as logs:
        box = Outbox(tmp_path)
    assert any(e["event"] == "mqtt_outbox_corrupt_rebuilt" for e in logs)
    assert list(tmp_path.glob(f"{DB_NAME}.corrupt-*"))
    box.put([alarm(1)])
    assert payloads(box) == ["alarm-1"]
    assert not box.degraded


def test_outbox_disk_full_keeps_rows_in_memory_then_flushes(tmp_path: Path):
    """SQLITE_FULL on commit keeps rows in memory (still readable, in order) until storage returns."""
    box = Outbox(tmp_path)
    box.put([alarm(0)])
    assert box._db is not None
    pages = box._db.execute("PRAGMA page_count").fetchone()[0]
    box._db.execute(f"PRAGMA max_page_count={pages}")
    big = Outgoing("p/s/m/alarm/big", b"x" * 200_000, qos=1, retain=False)
    with capture_logs() as logs:
        box.put([big, alarm(1)])
        box.put([alarm(2)])
    assert any(e["event"] == "mqtt_outbox_storage_failed" for e in logs)
    assert box.degraded
    assert box.storage_failures >= 1
    assert [r.message.topic for r in box.peek(10)][-1] == "p/s/m/alarm/r2"
    assert box.depth == 4
    box.maintain()  # still full: nothing lost, still degraded
    assert box.degraded
    assert box.depth == 4
    box._db.execute("PRAGMA max_page_count=1073741823")
    box.maintain()
    recovered = not box.degraded
    assert recovered
    box.close()
    again = Outbox(tmp_path)
    assert [r.message.topic for r in again.peek(10)] == [
        "p/s/m/alarm/r0",
        "p/s/m/alarm/big",
        "p/s/m/alarm/r1",
        "p/s/m/alarm/r2",
    ]


def test_outbox_unwritable_directory_runs_from_memory(tmp_path: Path):
    """When the database cannot be opened at all the outbox still queues in memory, bounded."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("file where the state dir should be")
    box = Outbox(blocker, memory_max=10)
    assert box.degraded
    box.put([tele(i) for i in range(5)])
    box.put([alarm(i) for i in range(8)])
    assert box.depth == 10
    assert box.dropped == {"memory_full": 3}
    assert payloads(box) == ["tele-3", "tele-4"] + [f"alarm-{i}" for i in range(8)]
    box.ack(box.peek(3))
    assert box.depth == 7


def test_outbox_records_retained_alarm_topics(tmp_path: Path):
    """Retained alarm topics per miner persist with the rows and can be forgotten."""
    box = Outbox(tmp_path)
    a = RetainedAlarm("p/s/m1/alarm/chip", "s", "m1", "chip", 2)
    b = RetainedAlarm("p/s/m1/alarm/inlet", "s", "m1", "inlet", None)
    box.put([alarm(1)], retained=[a, b])
    box.close()
    again = Outbox(tmp_path)
    assert sorted(r.topic for r in again.retained_alarms("s", "m1")) == sorted([a.topic, b.topic])
    again.put([alarm(2)], forget=[a])
    again.close()
    assert [r.topic for r in Outbox(tmp_path).retained_alarms("s", "m1")] == [b.topic]


def test_outbox_write_is_visible_to_another_connection(tmp_path: Path):
    """put() has committed when it returns (another reader sees the row: commit before publish)."""
    box = Outbox(tmp_path)
    box.put([alarm(7)])
    other = sqlite3.connect(tmp_path / DB_NAME)
    try:
        assert other.execute("SELECT payload FROM outbox").fetchall() == [(b"alarm-7",)]
    finally:
        other.close()


@pytest.mark.parametrize("n", [1, 3])
def test_outbox_oldest_age(tmp_path: Path, n: int):
    """oldest_age_s is None when empty and the age of the oldest row otherwise."""
    now = [1000.0]
    box = Outbox(tmp_path, clock=lambda: now[0])
    assert box.oldest_age_s() is None
    for i in range(n):
        box.put([alarm(i)])
        now[0] += 10
    assert box.oldest_age_s() == pytest.approx(10.0 * n)


def test_outbox_events_seq_per_topic_survives_reopen(tmp_path: Path):
    """events_seq counters are per events topic and persisted with the next write."""
    box = Outbox(tmp_path)
    assert [box.next_events_seq("a/events") for _ in range(3)] == [1, 2, 3]
    assert box.next_events_seq("b/events") == 1
    box.put([alarm(1)])
    box.close()
    again = Outbox(tmp_path)
    assert again.next_events_seq("a/events") == 4
    assert again.next_events_seq("b/events") == 2
    again.close()
