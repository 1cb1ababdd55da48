"""Durable alarm state: the firing alarms in SQLite (WAL) in the state directory.

One row per firing (site, miner, rule), written in one transaction per evaluation. The engine
loads the rows at start so that an alarm already firing before a restart is not raised again;
its first evaluation afterwards reconciles (clears what cleared meanwhile). A write that fails
(disk full, read-only file system, I/O error) is counted and retried with the next evaluation;
it never stops the engine.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from agent.sqlite_tx import immediate

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarm (
    site TEXT NOT NULL,
    miner TEXT NOT NULL,          -- '' for site-level alarms
    rule TEXT NOT NULL,
    severity INTEGER NOT NULL,
    raised_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    evidence TEXT NOT NULL,       -- JSON: value, threshold, unit, what, tags, details
    PRIMARY KEY (site, miner, rule)
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class StoredAlarm:
    """One persisted firing alarm."""

    site: str
    miner: str | None
    rule: str
    severity: int
    raised_at: float
    updated_at: float
    evidence: dict[str, object]


class AlarmStore:
    """SQLite persistence of firing alarms (``state_dir/alarms.sqlite3``)."""

    def __init__(self, path: Path) -> None:
        """Open (creating) the database; WAL journal, synchronous=NORMAL."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.write_failures = 0
        try:
            self._conn = self._open(path)
        except sqlite3.DatabaseError as exc:
            # Not a database (or damaged): keep it for inspection, start a fresh one.
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            log.warning("alarm_state_corrupt", path=str(path), moved_to=str(aside), error=str(exc))
            path.replace(aside)
            for suffix in ("-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
            self._conn = self._open(path)

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=2000")
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("SELECT count(*) FROM alarm").fetchone()
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def load(self) -> list[StoredAlarm]:
        """Every persisted firing alarm."""
        try:
            with closing(self._conn.cursor()) as cur:
                rows = cur.execute(
                    "SELECT site, miner, rule, severity, raised_at, updated_at, evidence FROM alarm"
                ).fetchall()
        except sqlite3.Error as exc:
            log.warning("alarm_state_unreadable", path=str(self.path), error=str(exc))
            return []
        out = []
        for site, miner, rule, severity, raised_at, updated_at, evidence in rows:
            try:
                ev = json.loads(evidence)
            except json.JSONDecodeError:
                ev = {}
            out.append(StoredAlarm(site, miner or None, rule, severity, raised_at, updated_at, ev))
        return out

    def save(
        self, upserts: Iterable[StoredAlarm], deletes: Iterable[tuple[str, str | None, str]]
    ) -> bool:
        """Write firing alarms and remove cleared ones in one transaction; False if it failed."""
        try:
            with immediate(self._conn):
                self._conn.executemany(
                    "DELETE FROM alarm WHERE site=? AND miner=? AND rule=?",
                    [(site, miner or "", rule) for site, miner, rule in deletes],
                )
                self._conn.executemany(
                    "INSERT OR REPLACE INTO alarm VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            a.site,
                            a.miner or "",
                            a.rule,
                            a.severity,
                            a.raised_at,
                            a.updated_at,
                            json.dumps(a.evidence, default=str),
                        )
                        for a in upserts
                    ],
                )
        except sqlite3.Error as exc:
            self.write_failures += 1
            log.warning("alarm_state_write_failed", path=str(self.path), error=str(exc))
            return False
        return True

    def close(self) -> None:
        """Close the database."""
        self._conn.close()
