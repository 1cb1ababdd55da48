"""Maintenance mode: which miners are on the bench, since when, until when, why, and by whom.

A miner in maintenance keeps its alarm state (the engine goes on evaluating it), but its alarm
transitions are held back: nothing is published on MQTT and ``asic_alarm_active`` leaves out its
alarms. It leaves the site-outage ratio of R7, and ``asic_maintenance`` is 1. A window with an
end (``until``) expires by itself; one without stays open until ended (and counts as overdue in
``altiwatch dispatch`` after a while).

When a window closes, :func:`reconcile` turns the difference between the alarms announced
before it opened (``held``) and those firing now into transitions, so MQTT subscribers end up
with the true state: what cleared on the bench is cleared, what still fires is raised.

``MaintenanceBook`` is the pure bookkeeping (start, end, expire), ``MaintenanceStore`` its
SQLite table beside the alarm state (``state_dir/alarms.sqlite3``), ``MaintenanceRequest`` the
strict body of ``POST /api/v1/maintenance`` and :func:`select` the miners a request names.
"""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, Self

import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.alarms.model import AlarmTransition, Severity, TransitionKind
from agent.sqlite_tx import immediate

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from pathlib import Path

    from agent.alarms.air import SiteAir
    from agent.fleet_state import MinerRecord

log = structlog.get_logger(__name__)

MAX_WINDOW_S = 30 * 86400.0
"""Longest maintenance window a request may ask for (30 days)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS maintenance (
    miner TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    reason TEXT NOT NULL,
    since REAL NOT NULL,
    until REAL,                   -- NULL: open until ended
    by TEXT,
    held TEXT NOT NULL            -- JSON {rule: severity} announced before the window opened
) WITHOUT ROWID;
"""


class MaintenanceRequest(BaseModel):
    """Body of ``POST /api/v1/maintenance``: start or end maintenance for the miners named.

    Miners are named by id (MAC), display name or address (``miners``), or all of a rack
    and/or a container (``rack``, ``container``), optionally within one ``site``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["start", "end"] = Field(description="open or close maintenance windows")
    miners: list[str] = Field(default=[], max_length=10_000, description="ids, names, addresses")
    rack: str | None = Field(default=None, min_length=1, max_length=64)
    container: str | None = Field(default=None, min_length=1, max_length=64)
    site: str | None = Field(default=None, min_length=1, max_length=64)
    for_s: float | None = Field(default=None, gt=0, le=MAX_WINDOW_S)
    reason: str | None = Field(default=None, min_length=1, max_length=500)
    by: str | None = Field(default=None, min_length=1, max_length=128)

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if not self.miners and self.rack is None and self.container is None:
            msg = "name miners, a rack or a container"
            raise ValueError(msg)
        if self.action == "start" and self.reason is None:
            msg = "a reason is required to start maintenance"
            raise ValueError(msg)
        return self


@dataclass(frozen=True, slots=True)
class Window:
    """One miner's maintenance window."""

    site: str
    miner: str
    reason: str
    since: float
    until: float | None
    by: str | None
    held: Mapping[str, int] = field(default_factory=dict)
    """Alarms announced (rule → severity) when the window opened: what subscribers believe."""

    def as_dict(self) -> dict[str, object]:
        """The JSON API's ``maintenance`` object."""
        return {"reason": self.reason, "since": self.since, "until": self.until, "by": self.by}

    def expired(self, now: float) -> bool:
        """True once ``until`` has passed."""
        return self.until is not None and now >= self.until


class MaintenanceStore:
    """The ``maintenance`` table of the agent's state database (WAL, beside the alarms)."""

    def __init__(self, path: Path) -> None:
        """Open (creating) the table; ``sqlite3.Error`` when the database cannot be used."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.write_failures = 0
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA busy_timeout=2000")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error:
            self._conn.close()
            raise

    def load(self) -> list[Window]:
        """Every stored window (an unreadable table: none, logged)."""
        try:
            with closing(self._conn.cursor()) as cur:
                rows = cur.execute(
                    "SELECT site, miner, reason, since, until, by, held FROM maintenance"
                ).fetchall()
        except sqlite3.Error as exc:
            log.warning("maintenance_state_unreadable", path=str(self.path), error=str(exc))
            return []
        out = []
        for site, miner, reason, since, until, by, held in rows:
            try:
                parsed = json.loads(held)
            except json.JSONDecodeError:
                parsed = {}
            clean = {str(k): int(v) for k, v in parsed.items() if isinstance(v, int)}
            out.append(Window(site, miner, reason, since, until, by, clean))
        return out

    def save(self, windows: Iterable[Window], ended: Iterable[str]) -> bool:
        """Write open windows, delete ended ones, in one transaction; False if it failed."""
        try:
            with immediate(self._conn):
                self._conn.executemany(
                    "DELETE FROM maintenance WHERE miner=?", [(m,) for m in ended]
                )
                self._conn.executemany(
                    "INSERT OR REPLACE INTO maintenance VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (w.miner, w.site, w.reason, w.since, w.until, w.by, json.dumps(w.held))
                        for w in windows
                    ],
                )
        except sqlite3.Error as exc:
            self.write_failures += 1
            log.warning("maintenance_state_write_failed", path=str(self.path), error=str(exc))
            return False
        return True

    def close(self) -> None:
        """Close the database."""
        self._conn.close()


class MaintenanceBook:
    """The open maintenance windows by miner id, persisted in ``store`` when there is one."""

    def __init__(self, store: MaintenanceStore | None = None) -> None:
        """Load the windows left open before a restart."""
        self._store = store
        self._windows: dict[str, Window] = {}
        #: Bumped on every change (renderers cache on it).
        self.changes = 0
        if store is not None:
            for window in store.load():
                self._windows[window.miner] = window
            if self._windows:
                log.info("maintenance_restored", miners=len(self._windows))

    def __contains__(self, miner: object) -> bool:
        """Whether ``miner`` (an id) is in maintenance."""
        return miner in self._windows

    def get(self, miner: str | None) -> Window | None:
        """The open window of ``miner``, if any."""
        return None if miner is None else self._windows.get(miner)

    def windows(self) -> list[Window]:
        """Every open window, oldest first."""
        return sorted(self._windows.values(), key=lambda w: (w.since, w.miner))

    def miners(self) -> frozenset[str]:
        """Ids of the miners in maintenance."""
        return frozenset(self._windows)

    def start(self, window: Window) -> Window:
        """Open ``window`` (or renew the miner's open one: reason, end and who change).

        A renewed window keeps its start and the alarms it held back from the first opening.
        """
        current = self._windows.get(window.miner)
        if current is not None:
            window = Window(
                current.site,
                current.miner,
                window.reason,
                current.since,
                window.until,
                window.by,
                current.held,
            )
        self._windows[window.miner] = window
        self._save([window], [])
        return window

    def end(self, miner: str) -> Window | None:
        """Close the window of ``miner``; the window closed (None if it had none)."""
        window = self._windows.pop(miner, None)
        if window is not None:
            self._save([], [miner])
        return window

    def rename(self, old: str, new: str) -> Window | None:
        """Move the window of ``old`` to the miner's new id (its MAC read late); the moved one."""
        window = self._windows.pop(old, None)
        if window is None or new in self._windows:
            if window is not None:
                self._save([], [old])
            return None
        moved = replace(window, miner=new)
        self._windows[new] = moved
        self._save([moved], [old])
        return moved

    def expire(self, now: float) -> list[Window]:
        """Close and return every window whose end has passed at ``now``."""
        gone = [w for w in self._windows.values() if w.expired(now)]
        for window in gone:
            del self._windows[window.miner]
        if gone:
            self._save([], [w.miner for w in gone])
        return gone

    def _save(self, windows: list[Window], ended: list[str]) -> None:
        self.changes += 1
        if self._store is not None:
            self._store.save(windows, ended)

    def close(self) -> None:
        """Close the store."""
        if self._store is not None:
            self._store.close()


def select(records: Iterable[MinerRecord], request: MaintenanceRequest) -> list[MinerRecord]:
    """The visible miners a request names: by id, name or address, or by rack and/or container.

    ``rack`` and ``container`` together mean that rack of that container; ``site`` narrows all.
    """
    wanted = {m.lower() for m in request.miners}
    out = []
    for record in records:
        if not record.visible or (request.site is not None and record.site != request.site):
            continue
        names = {record.miner_id.lower(), record.address.lower()}
        if record.name:
            names.add(record.name.lower())
        if names & wanted:
            out.append(record)
            continue
        if request.rack is None and request.container is None:
            continue
        loc = record.location
        if loc is None:
            continue
        if request.rack is not None and loc.rack != request.rack:
            continue
        if request.container is not None and loc.container != request.container:
            continue
        out.append(record)
    return out


def reconcile(
    window: Window,
    firing: Sequence[AlarmTransition],
    *,
    now: float,
    air: SiteAir | None,
) -> list[AlarmTransition]:
    """Transitions that bring subscribers from ``window.held`` to what fires now.

    ``firing`` are the miner's firing alarms at ``now`` as RAISED transitions (their evidence);
    an alarm announced before the window and still firing at the same severity needs nothing.
    """
    out: list[AlarmTransition] = []
    now_firing = {t.rule: t for t in firing}
    for rule, t in sorted(now_firing.items()):
        before = window.held.get(rule)
        if before is not None and before == int(t.severity):
            continue
        kind = TransitionKind.RAISED
        previous: Severity | None = None
        if before is not None:
            previous = Severity(before)
            kind = TransitionKind.ESCALATED if t.severity > previous else TransitionKind.DEESCALATED
        summary = f"{t.summary} (after maintenance)"
        out.append(replace(t, kind=kind, previous_severity=previous, at=now, summary=summary))
    for rule, before in sorted(window.held.items()):
        if rule in now_firing:
            continue
        severity = Severity(before)
        out.append(
            AlarmTransition(
                kind=TransitionKind.CLEARED,
                site=window.site,
                miner=window.miner,
                rule=rule,
                severity=severity,
                previous_severity=severity,
                at=now,
                value=None,
                threshold=None,
                sea_level_threshold=None,
                altitude_m=air.altitude_m if air is not None else 0.0,
                delta=air.delta if air is not None else 1.0,
                summary=f"{rule} cleared during maintenance",
            )
        )
    return out


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``4h``, ``90m``, ``1h30m``, ``2d``, ``45s`` or plain seconds → seconds; ValueError else."""
    compact = text.strip().lower().replace(" ", "")
    if not compact:
        msg = "empty duration"
        raise ValueError(msg)
    total, position = 0.0, 0
    for match in _DURATION.finditer(compact):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        position = match.end()
    if position != len(compact) or not 0 < total <= MAX_WINDOW_S:
        msg = f"not a duration of up to 30 days: {text!r} (e.g. 4h, 90m, 1h30m, 2d)"
        raise ValueError(msg)
    return total
