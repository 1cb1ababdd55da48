"""The durable MQTT outbox: SQLite (WAL) in the state dir; commit before publish, delete on PUBACK.

Every outgoing message is committed here first; the publisher reads the oldest rows in order,
publishes them and deletes them only once the broker acknowledged them (PUBACK for QoS1), so a
broker outage or an agent crash loses nothing that was committed.

Bound: when more than ``max_messages`` rows are queued, the oldest *droppable* rows (telemetry)
are deleted first and counted under ``outbox_full``; alarm and status events are never evicted by
the bound. Storage failures (disk full, read-only, I/O errors) never raise to the caller: rows are
kept in memory up to ``memory_max`` and written to disk once storage works again. A corrupt
database file is moved aside (``<name>.corrupt-<unix time>``) and rebuilt, with a log line.

The outbox also keeps the per-agent ``seq`` counter, one ``events_seq`` counter per events topic
and the set of retained alarm topics per miner (to empty them when a miner is removed), all
persisted in the same transaction as the rows that carry them.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from agent.mqtt.events import Outgoing

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from pathlib import Path

log = structlog.get_logger(__name__)

DB_NAME = "mqtt-outbox.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    droppable INTEGER NOT NULL,
    expiry_s INTEGER,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_droppable ON outbox (droppable, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events_seq (topic TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS retained (
    topic TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    miner TEXT NOT NULL,
    rule TEXT NOT NULL,
    severity INTEGER
);
"""

_MEMORY_KEY_BASE = 1 << 62
"""Keys of rows held in memory start here, so they sort after every database row."""


@dataclass(frozen=True, slots=True)
class Row:
    """One queued message, as read back for publishing (``key`` orders rows)."""

    key: int
    message: Outgoing
    created_at: float

    @property
    def in_memory(self) -> bool:
        """True while the row lives only in memory (storage failed when it was queued)."""
        return self.key >= _MEMORY_KEY_BASE


@dataclass(frozen=True, slots=True)
class RetainedAlarm:
    """A retained alarm topic of one miner, with the severity in force (None = cleared)."""

    topic: str
    site: str
    miner: str
    rule: str
    severity: int | None


class Outbox:
    """Durable, bounded, ordered message queue; never raises on storage failure."""

    def __init__(
        self,
        directory: Path,
        *,
        max_messages: int = 100_000,
        memory_max: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Open (or create, or rebuild when corrupt) the outbox in ``directory``."""
        self.path = directory / DB_NAME
        self.max_messages = max_messages
        self.memory_max = memory_max
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._sync_mode = ""
        self._db_depth = 0
        self._seq = 0
        self._seq_dirty = False
        self._events_seq: dict[str, int] = {}
        self._events_seq_dirty: set[str] = set()
        self._memory: deque[Row] = deque()
        self._next_memory_key = _MEMORY_KEY_BASE
        self._unacked_deletes: set[int] = set()
        self._retained: dict[tuple[str, str], dict[str, RetainedAlarm]] = {}
        self._retained_dirty: dict[str, RetainedAlarm | None] = {}
        self.dropped: Counter[str] = Counter()
        self.storage_failures = 0
        self._directory = directory
        self._open()

    # -- storage lifecycle -------------------------------------------------------------------

    def _open(self) -> None:
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            if _is_corruption(exc):
                self._quarantine(exc)
                try:
                    self._db = self._connect()
                except (sqlite3.Error, OSError) as again:
                    self._storage_failed("open", again)
            else:
                self._storage_failed("open", exc)
        except OSError as exc:
            self._storage_failed("open", exc)

    def _synchronous(self, mode: str) -> None:
        """FULL (fsync per commit) for kept events, NORMAL for telemetry and deletes."""
        if self._db is not None and mode != self._sync_mode:
            self._db.execute(f"PRAGMA synchronous={mode}")
            self._sync_mode = mode

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._sync_mode = "FULL"
            db.executescript(_SCHEMA)
            self._db_depth = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
            row = db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()
            self._seq = max(self._seq, int(row[0]) if row else 0)
            for topic, value in db.execute("SELECT topic, value FROM events_seq"):
                self._events_seq[topic] = max(self._events_seq.get(topic, 0), int(value))
            for topic, site, miner, rule, sev in db.execute(
                "SELECT topic, site, miner, rule, severity FROM retained"
            ):
                known = self._retained.setdefault((site, miner), {})
                known.setdefault(topic, RetainedAlarm(topic, site, miner, rule, sev))
        except BaseException:
            db.close()
            raise
        return db

    def _quarantine(self, exc: BaseException) -> None:
        stamp = int(self._clock())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = self.path.with_name(self.path.name + suffix)
            if src.exists():
                src.replace(target.with_name(target.name + suffix))
        log.error(
            "mqtt_outbox_corrupt_rebuilt", path=str(self.path), moved_to=str(target), error=str(exc)
        )

    def _storage_failed(self, op: str, exc: BaseException) -> None:
        self.storage_failures += 1
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
        log.warning("mqtt_outbox_storage_failed", op=op, path=str(self.path), error=str(exc))
        if isinstance(exc, sqlite3.DatabaseError) and _is_corruption(exc):
            self.close()
            self._quarantine(exc)
            self._db_depth = 0
            self._unacked_deletes.clear()
            try:
                self._db = self._connect()
            except (sqlite3.Error, OSError) as again:
                log.warning("mqtt_outbox_reopen_failed", path=str(self.path), error=str(again))

    @property
    def degraded(self) -> bool:
        """True while some rows live only in memory or the database is not open."""
        return self._db is None or bool(self._memory)

    def close(self) -> None:
        """Close the database (rows still in memory are lost; they were never persisted)."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    # -- seq -----------------------------------------------------------------------------------

    def next_seq(self) -> int:
        """Return the next per-agent sequence number (persisted with the next write)."""
        self._seq += 1
        self._seq_dirty = True
        return self._seq

    @property
    def seq(self) -> int:
        """The last sequence number handed out."""
        return self._seq

    def next_events_seq(self, topic: str) -> int:
        """The next ``events_seq`` of the events topic ``topic`` (persisted with the next write)."""
        value = self._events_seq.get(topic, 0) + 1
        self._events_seq[topic] = value
        self._events_seq_dirty.add(topic)
        return value

    # -- writes ----------------------------------------------------------------------------------

    def put(
        self,
        messages: Sequence[Outgoing],
        *,
        retained: Iterable[RetainedAlarm] = (),
        forget: Iterable[RetainedAlarm] = (),
    ) -> None:
        """Commit ``messages`` (in order) before returning; on storage failure keep them in memory.

        ``retained`` records retained alarm topics and ``forget`` drops them, in the same
        transaction as the messages.
        """
        now = self._clock()
        for item in forget:
            self._retained.get((item.site, item.miner), {}).pop(item.topic, None)
            self._retained_dirty[item.topic] = None
        for item in retained:
            self._retained.setdefault((item.site, item.miner), {})[item.topic] = item
            self._retained_dirty[item.topic] = item
        if self._memory or self._db is None:
            self._to_memory(messages, now)
            return
        durable = any(not m.droppable for m in messages)
        try:
            self._write([(m, now) for m in messages], durable=durable)
        except sqlite3.Error as exc:
            self._storage_failed("put", exc)
            self._to_memory(messages, now)
            return
        self._enforce_bound()

    def _write(self, items: Sequence[tuple[Outgoing, float]], *, durable: bool) -> None:
        db = self._db
        assert db is not None
        self._synchronous("FULL" if durable else "NORMAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO outbox (topic, payload, qos, retain, droppable, expiry_s, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (m.topic, m.payload, m.qos, m.retain, m.droppable, m.expiry_s, created)
                    for m, created in items
                ],
            )
            if self._seq_dirty:
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('seq', ?)", (self._seq,)
                )
            db.executemany(
                "INSERT OR REPLACE INTO events_seq (topic, value) VALUES (?, ?)",
                [(topic, self._events_seq[topic]) for topic in self._events_seq_dirty],
            )
            for topic, item in self._retained_dirty.items():
                if item is None:
                    db.execute("DELETE FROM retained WHERE topic = ?", (topic,))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO retained VALUES (?, ?, ?, ?, ?)",
                        (item.topic, item.site, item.miner, item.rule, item.severity),
                    )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._seq_dirty = False
        self._events_seq_dirty.clear()
        self._retained_dirty.clear()
        self._db_depth += len(items)

    def _to_memory(self, messages: Sequence[Outgoing], now: float) -> None:
        for m in messages:
            self._memory.append(Row(self._next_memory_key, m, now))
            self._next_memory_key += 1
        self._enforce_memory_bound()
        self._enforce_bound()

    def _enforce_memory_bound(self) -> None:
        excess = len(self._memory) - self.memory_max
        if excess <= 0:
            return
        kept: deque[Row] = deque()
        for row in self._memory:
            if excess > 0 and row.message.droppable:
                excess -= 1
                self.dropped["memory_full"] += 1
            else:
                kept.append(row)
        while excess > 0 and kept:
            kept.popleft()
            excess -= 1
            self.dropped["memory_full"] += 1
            log.error("mqtt_outbox_event_dropped", reason="memory_full")
        self._memory = kept

    def _enforce_bound(self) -> None:
        excess = self.depth - self.max_messages
        if excess <= 0:
            return
        if self._db is not None:
            try:
                cur = self._db.execute(
                    "DELETE FROM outbox WHERE id IN"
                    " (SELECT id FROM outbox WHERE droppable = 1 ORDER BY id LIMIT ?)",
                    (excess,),
                )
            except sqlite3.Error as exc:
                self._storage_failed("evict", exc)
            else:
                removed = max(cur.rowcount, 0)
                self._db_depth -= removed
                self.dropped["outbox_full"] += removed
                excess -= removed
        if excess > 0 and self._memory:
            kept: deque[Row] = deque()
            for row in self._memory:
                if excess > 0 and row.message.droppable:
                    excess -= 1
                    self.dropped["outbox_full"] += 1
                else:
                    kept.append(row)
            self._memory = kept

    # -- reads and acks ----------------------------------------------------------------------------

    def peek(self, limit: int) -> list[Row]:
        """Return up to ``limit`` of the oldest queued rows, in order (database rows first)."""
        rows: list[Row] = []
        if self._db is not None:
            try:
                cur = self._db.execute(
                    "SELECT id, topic, payload, qos, retain, droppable, expiry_s, created_at"
                    " FROM outbox ORDER BY id LIMIT ?",
                    (limit + len(self._unacked_deletes),),
                )
                for key, topic, payload, qos, retain, droppable, expiry_s, created in cur:
                    if key in self._unacked_deletes:
                        continue
                    msg = Outgoing(
                        topic, bytes(payload), qos, bool(retain), bool(droppable), expiry_s
                    )
                    rows.append(Row(key, msg, created))
                    if len(rows) >= limit:
                        return rows
            except sqlite3.Error as exc:
                self._storage_failed("peek", exc)
                rows = []
        for row in self._memory:
            if len(rows) >= limit:
                break
            rows.append(row)
        return rows

    def ack(self, rows: Sequence[Row], *, reason: str | None = None) -> None:
        """Delete delivered rows; with ``reason`` the rows are counted as dropped for it."""
        if reason is not None:
            self.dropped[reason] += len(rows)
        memory_keys = {r.key for r in rows if r.in_memory}
        if memory_keys:
            self._memory = deque(r for r in self._memory if r.key not in memory_keys)
        db_keys = [r.key for r in rows if not r.in_memory]
        if db_keys:
            self._unacked_deletes.update(db_keys)
            self._flush_deletes()

    def _flush_deletes(self) -> None:
        if self._db is None or not self._unacked_deletes:
            return
        keys = list(self._unacked_deletes)
        try:
            self._synchronous("NORMAL")
            self._db.execute("BEGIN IMMEDIATE")
            removed = 0
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                cur = self._db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk)  # noqa: S608 - only placeholders are interpolated
                removed += max(cur.rowcount, 0)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._storage_failed("ack", exc)
            return
        self._db_depth -= removed
        self._unacked_deletes.clear()

    def maintain(self) -> None:
        """Retry storage after a failure: reopen, flush pending deletes and in-memory rows."""
        if self._db is None:
            self._open()
            if self._db is None:
                return
        self._flush_deletes()
        if not self._memory:
            return
        rows = list(self._memory)
        try:
            self._write([(r.message, r.created_at) for r in rows], durable=True)
        except sqlite3.Error as exc:
            self._storage_failed("flush", exc)
            return
        self._memory.clear()
        log.info("mqtt_outbox_storage_recovered", flushed=len(rows))

    # -- introspection ---------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Rows queued (database and memory)."""
        return self._db_depth - len(self._unacked_deletes) + len(self._memory)

    def oldest_age_s(self) -> float | None:
        """Age of the oldest queued row, or None when empty."""
        rows = self.peek(1)
        if not rows:
            return None
        return max(0.0, self._clock() - rows[0].created_at)

    def retained_alarms(self, site: str, miner: str) -> list[RetainedAlarm]:
        """Retained alarm topics recorded for ``(site, miner)``."""
        return list(self._retained.get((site, miner), {}).values())


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return False
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text or "corrupt" in text
