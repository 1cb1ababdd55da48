"""The durable alert queue: dedupe by ``event_id``, grouping, retry schedule (SQLite, WAL).

``<state_dir>/notify-queue.sqlite3`` holds three tables:

* ``seen``: every accepted ``event_id`` (kept ``dedupe_retention_s``): a redelivered event is
  dropped at intake, so each event enters each channel's queue once;
* ``pending``: events per channel waiting for their group to close (the grouping window);
* ``batches``: closed groups, one per message to send, with attempts and the next try time.

An event is committed here before its MQTT PUBACK is sent, and a batch is deleted only after the
channel accepted it, so neither a lost uplink nor a restart loses an alert. Each step is one
transaction; the only duplicate left is a crash between a channel's "ok" and the delete.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.sqlite_tx import immediate

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Iterable
    from pathlib import Path

FILENAME = "notify-queue.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    event_id TEXT PRIMARY KEY,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pending (
    channel TEXT NOT NULL,
    event_id TEXT NOT NULL,
    group_key TEXT NOT NULL,
    received_at REAL NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (channel, event_id)
);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    group_key TEXT NOT NULL,
    payloads TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_next ON batches (next_at);
"""


@dataclass(frozen=True, slots=True)
class Batch:
    """One message to send: a closed group of events for one channel."""

    id: int
    channel: str
    group_key: str
    events: list[dict[str, Any]]
    created_at: float
    attempts: int

    @property
    def event_ids(self) -> list[str]:
        """The ``event_id`` of each event, in arrival order."""
        return [str(e.get("event_id")) for e in self.events]


class AlertQueue:
    """The SQLite queue of one ``notify`` instance (one writer: this process)."""

    def __init__(self, state_dir: Path) -> None:
        """Open (or create) the queue in ``state_dir``."""
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / FILENAME
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def accept(
        self, payload: dict[str, Any], channels: Iterable[str], group_key: str, now: float
    ) -> bool:
        """Queue ``payload`` for ``channels`` unless its ``event_id`` was seen; True if queued."""
        event_id = str(payload["event_id"])
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        with self._tx():
            cur = self._db.execute(
                "INSERT OR IGNORE INTO seen (event_id, received_at) VALUES (?, ?)",
                (event_id, now),
            )
            if cur.rowcount == 0:
                return False
            self._db.executemany(
                "INSERT OR IGNORE INTO pending VALUES (?, ?, ?, ?, ?)",
                [(ch, event_id, group_key, now, body) for ch in channels],
            )
        return True

    def close_groups(self, window_s: float, now: float) -> int:
        """Turn each group whose first event is ``window_s`` old into a batch; count them."""
        rows = self._db.execute(
            "SELECT channel, group_key FROM pending GROUP BY channel, group_key "
            "HAVING MIN(received_at) <= ?",
            (now - window_s,),
        ).fetchall()
        for channel, key in rows:
            with self._tx():
                events = self._db.execute(
                    "SELECT payload FROM pending WHERE channel = ? AND group_key = ? "
                    "ORDER BY received_at, rowid",
                    (channel, key),
                ).fetchall()
                payloads = "[" + ",".join(p for (p,) in events) + "]"
                self._db.execute(
                    "INSERT INTO batches (channel, group_key, payloads, created_at, next_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (channel, key, payloads, now, now),
                )
                self._db.execute(
                    "DELETE FROM pending WHERE channel = ? AND group_key = ?", (channel, key)
                )
        return len(rows)

    def due(self, now: float) -> list[Batch]:
        """Batches whose next try is due, oldest first."""
        rows = self._db.execute(
            "SELECT id, channel, group_key, payloads, created_at, attempts FROM batches "
            "WHERE next_at <= ? ORDER BY id",
            (now,),
        ).fetchall()
        return [Batch(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]

    def delivered(self, batch_id: int) -> None:
        """The channel accepted the batch: forget it."""
        with self._tx():
            self._db.execute("DELETE FROM batches WHERE id = ?", (batch_id,))

    def retry_at(self, batch_id: int, next_at: float) -> None:
        """Count a failed attempt and schedule the next."""
        with self._tx():
            self._db.execute(
                "UPDATE batches SET attempts = attempts + 1, next_at = ? WHERE id = ?",
                (next_at, batch_id),
            )

    def hurry(self, channel: str, now: float) -> int:
        """The channel answered again: its waiting batches are due now, not at their backoff."""
        with self._tx():
            cur = self._db.execute(
                "UPDATE batches SET next_at = ? WHERE channel = ? AND next_at > ?",
                (now, channel, now),
            )
        return cur.rowcount

    def next_wakeup(self, window_s: float) -> float | None:
        """When the next group closes or the next batch is due (None: nothing waiting)."""
        (first_pending,) = self._db.execute("SELECT MIN(received_at) FROM pending").fetchone()
        (first_batch,) = self._db.execute("SELECT MIN(next_at) FROM batches").fetchone()
        times = [t for t in (first_batch,) if t is not None]
        if first_pending is not None:
            times.append(first_pending + window_s)
        return min(times) if times else None

    def prune_seen(self, older_than: float) -> int:
        """Forget event ids received before ``older_than``."""
        with self._tx():
            cur = self._db.execute("DELETE FROM seen WHERE received_at < ?", (older_than,))
        return cur.rowcount

    def depth(self) -> tuple[int, int]:
        """(pending events, batches waiting)."""
        (pending,) = self._db.execute("SELECT COUNT(*) FROM pending").fetchone()
        (batches,) = self._db.execute("SELECT COUNT(*) FROM batches").fetchone()
        return int(pending), int(batches)

    def _tx(self) -> contextlib.AbstractContextManager[None]:
        return immediate(self._db)
