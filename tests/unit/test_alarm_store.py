"""AlarmStore: restart reconciliation and storage failures that must not stop evaluation."""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

from agent.alarms.config import ThermalSettings
from agent.alarms.engine import AlarmEngine, Observation
from agent.alarms.model import AlarmTransition, Severity, TransitionKind
from agent.alarms.store import AlarmStore
from agent.alarms.testing import Site, make_snapshot

if TYPE_CHECKING:
    from pathlib import Path


def engine_at(path: Path, altitude: float = 3000.0) -> AlarmEngine:
    """An engine on a 3,000 m site persisting to ``path``."""
    return AlarmEngine(ThermalSettings(), [Site("site", altitude)], store=AlarmStore(path))


def poll(engine: AlarmEngine, t: float, **miners: dict[str, float]) -> list[AlarmTransition]:
    """One poll per miner: ``m1={"die": 90}``; returns the transitions."""
    obs = [
        Observation(m, "site", t, make_snapshot(t, **fields))  # type: ignore[arg-type]
        for m, fields in miners.items()
    ]
    return engine.evaluate(t, obs)


def heat(engine: AlarmEngine, t0: float = 0.0) -> float:
    """m1 hot die (R1 WARN), m2 hot inlet (R2 CRIT), both on a 3,000 m site."""
    for i in range(12):
        poll(engine, t0 + i * 30, m1={"die": 85.0, "inlet": 20.0}, m2={"die": 60.0, "inlet": 29.0})
    return t0 + 12 * 30


def firing(engine: AlarmEngine) -> dict[tuple[str | None, str], Severity]:
    """Firing per-miner alarms by (miner, rule)."""
    return {(a.miner, a.rule): a.severity for a in engine.active() if a.miner}


def test_alarm_store_restart_does_not_raise_firing_alarms_again(tmp_path):
    """After a restart, alarms still firing are restored, not raised again; cleared ones clear."""
    path = tmp_path / "alarms.sqlite3"
    first = engine_at(path)
    t = heat(first)
    assert firing(first) == {("m1", "R1"): Severity.WARNING, ("m2", "R2"): Severity.CRITICAL}
    # no close(): the process is gone; what was committed is all there is
    second = engine_at(path)
    assert firing(second) == firing(first)
    restored = {a.miner: a for a in second.active() if a.miner}
    assert restored["m2"].threshold is not None
    out = poll(second, t + 600, m1={"die": 85.0, "inlet": 20.0}, m2={"die": 60.0, "inlet": 20.0})
    kinds = [(tr.miner, tr.rule, tr.kind) for tr in out if tr.miner]
    assert kinds == [("m2", "R2", TransitionKind.CLEARED)]
    assert firing(second) == {("m1", "R1"): Severity.WARNING}
    third = engine_at(path)
    assert firing(third) == {("m1", "R1"): Severity.WARNING}


def test_alarm_store_restart_keeps_an_alarm_in_the_hysteresis_band(tmp_path):
    """A restored alarm whose value sits between raise and clear thresholds stays firing."""
    path = tmp_path / "alarms.sqlite3"
    t = heat(engine_at(path))
    second = engine_at(path)
    out = poll(second, t, m1={"die": 80.0, "inlet": 20.0}, m2={"die": 60.0, "inlet": 27.0})
    assert [tr for tr in out if tr.miner] == []
    assert firing(second) == {("m1", "R1"): Severity.WARNING, ("m2", "R2"): Severity.CRITICAL}


def test_alarm_store_full_disk_is_counted_and_persisted_later(tmp_path):
    """SQLITE_FULL does not stop evaluation; the state is written once space is back."""
    path = tmp_path / "alarms.sqlite3"
    store = AlarmStore(path)
    engine = AlarmEngine(ThermalSettings(), [Site("site", 3000)], store=store)
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count={pages}")  # the database cannot grow: "disk full"
    for i in range(40):  # enough rows to need a new page
        poll(engine, i * 30, **{f"m{j}": {"die": 90.0, "inlet": 29.0} for j in range(40)})
    assert len(engine.active()) > 40
    assert engine.state_write_failures > 0
    assert [row for row in AlarmStore(path).load() if row.miner] == []
    store._conn.execute("PRAGMA max_page_count=1073741823")
    engine.evaluate(40 * 30, [])
    assert len(AlarmStore(path).load()) == len(engine.active())


def test_alarm_store_read_only_database_does_not_stop_evaluation(tmp_path):
    """A read-only database fails every write; transitions are still produced and counted."""
    path = tmp_path / "alarms.sqlite3"
    store = AlarmStore(path)
    store._conn.execute("PRAGMA query_only=ON")
    engine = AlarmEngine(ThermalSettings(), [Site("site", 3000)], store=store)
    transitions = []
    for i in range(12):
        transitions += poll(engine, i * 30, m1={"die": 90.0, "inlet": 20.0})
    assert any(tr.rule == "R1" and tr.kind is TransitionKind.RAISED for tr in transitions)
    assert engine.state_write_failures >= 1


def test_alarm_store_rows_are_json_evidence(tmp_path):
    """Each firing alarm is one row with its evidence as JSON."""
    path = tmp_path / "alarms.sqlite3"
    heat(engine_at(path))
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT miner, rule, severity, evidence FROM alarm ORDER BY miner"
        ).fetchall()
    by_rule = {(m, r): (s, json.loads(e)) for m, r, s, e in rows}
    sev, ev = by_rule["m2", "R2"]
    assert sev == Severity.CRITICAL
    assert ev["threshold"] == 28.0
    assert ev["sea_level_threshold"] == 40.0


def test_alarm_store_corrupt_file_is_moved_aside(tmp_path):
    """A state file that is not a database is kept for inspection and a fresh one is used."""
    path = tmp_path / "alarms.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    store = AlarmStore(path)
    assert store.load() == []
    engine = AlarmEngine(ThermalSettings(), [Site("site", 3000)], store=store)
    heat(engine)
    assert len(AlarmStore(path).load()) >= 2
    assert [p.name.split(".corrupt-")[0] for p in tmp_path.glob("*.corrupt-*")] == [
        "alarms.sqlite3"
    ]
