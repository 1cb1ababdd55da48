"""Specification of agent/maintenance.py: windows, expiry, persistence, reconciling alarms."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from pydantic import ValidationError

from agent.alarms.model import AlarmTransition, Severity, TransitionKind
from agent.maintenance import (
    MaintenanceBook,
    MaintenanceRequest,
    MaintenanceStore,
    Window,
    parse_duration,
    reconcile,
)

if TYPE_CHECKING:
    from pathlib import Path


def _window(miner: str = "M1", *, since: float = 100.0, until: float | None = 200.0, **kw):
    return Window("s", miner, kw.pop("reason", "fan swap"), since, until, "tech", **kw)


def _firing(rule: str, severity: Severity) -> AlarmTransition:
    return AlarmTransition(
        kind=TransitionKind.RAISED,
        site="s",
        miner="M1",
        rule=rule,
        severity=severity,
        previous_severity=None,
        at=0.0,
        value=90.0,
        threshold=80.0,
        sea_level_threshold=85.0,
        altitude_m=2800.0,
        delta=0.7,
        summary=f"{rule} firing",
    )


def test_maintenance_window_expires_by_itself_at_its_end():
    """``expire`` closes a window once ``until`` has passed, not before; open ones stay."""
    book = MaintenanceBook()
    book.start(_window("M1", until=200.0))
    book.start(_window("M2", until=None))
    assert book.expire(199.9) == []
    assert [w.miner for w in book.expire(200.0)] == ["M1"]
    assert "M1" not in book
    assert "M2" in book
    assert book.expire(1e12) == []  # no end: open until ended


def test_maintenance_renewal_keeps_start_and_held_alarms():
    """Starting again renews reason and end but keeps the original start and held alarms."""
    book = MaintenanceBook()
    book.start(_window(since=100.0, until=200.0, held={"R1": 3}))
    renewed = book.start(_window(since=150.0, until=500.0, reason="still waiting for parts"))
    assert (renewed.since, renewed.until, renewed.reason) == (
        100.0,
        500.0,
        "still waiting for parts",
    )
    assert renewed.held == {"R1": 3}


def test_maintenance_windows_persist_in_the_state_database(tmp_path: Path):
    """Open windows survive a restart; ended ones do not come back."""
    path = tmp_path / "alarms.sqlite3"
    book = MaintenanceBook(MaintenanceStore(path))
    book.start(_window("M1", held={"R7": 3}))
    book.start(_window("M2"))
    book.end("M2")
    book.close()
    again = MaintenanceBook(MaintenanceStore(path))
    assert [(w.miner, w.until, dict(w.held)) for w in again.windows()] == [("M1", 200.0, {"R7": 3})]


def test_maintenance_reconcile_announces_only_what_changed():
    """On close: still firing at the same severity → nothing; new → raised; gone → cleared."""
    window = _window(held={"R1": int(Severity.CRITICAL), "R3": int(Severity.WARNING), "R5": 2})
    firing = [
        _firing("R1", Severity.CRITICAL),
        _firing("R3", Severity.CRITICAL),
        _firing("R6", Severity.WARNING),
    ]
    out = {t.rule: t for t in reconcile(window, firing, now=300.0, air=None)}
    assert set(out) == {"R3", "R5", "R6"}
    assert out["R3"].kind is TransitionKind.ESCALATED
    assert out["R3"].previous_severity is Severity.WARNING
    assert out["R5"].kind is TransitionKind.CLEARED
    assert out["R6"].kind is TransitionKind.RAISED
    assert all(t.at == 300.0 for t in out.values())


@pytest.mark.parametrize(
    ("text", "seconds"), [("4h", 14400), ("90m", 5400), ("1h30m", 5400), ("2d", 172800), ("45", 45)]
)
def test_maintenance_parse_duration_reads_units(text, seconds):
    """Durations are written as people write them."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "4x", "h4", "0", "31d"])
def test_maintenance_parse_duration_refuses_nonsense(text):
    """Unknown units, zero and more than 30 days are refused."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_maintenance_request_needs_a_selection_and_a_reason():
    """A start names miners (or a rack/container) and gives a reason; unknown keys are refused."""
    MaintenanceRequest(action="end", rack="12")
    with pytest.raises(ValidationError, match="name miners"):
        MaintenanceRequest(action="end")
    with pytest.raises(ValidationError, match="reason is required"):
        MaintenanceRequest(action="start", miners=["M1"])
    with pytest.raises(ValidationError, match="Extra inputs"):
        MaintenanceRequest.model_validate({"action": "end", "miners": ["M1"], "force": True})


def test_maintenance_window_follows_a_renamed_miner(tmp_path: Path):
    """A miner first known by its address, then by its MAC, stays in maintenance (persisted)."""
    path = tmp_path / "alarms.sqlite3"
    book = MaintenanceBook(MaintenanceStore(path))
    book.start(_window("10.0.0.7"))
    moved = book.rename("10.0.0.7", "02:A1:55:77:8D:F5")
    assert moved is not None
    assert moved.since == 100.0
    assert "10.0.0.7" not in book
    book.close()
    assert [w.miner for w in MaintenanceBook(MaintenanceStore(path)).windows()] == [
        "02:A1:55:77:8D:F5"
    ]
