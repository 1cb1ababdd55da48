"""Specification of agent/dispatch.py: who needs a visit, why, and in which walking order."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from agent import cli, dispatch

NOW = 1_800_000_000.0


def _miner(miner: str, rack: str | None, slot: str | None = "1", **fields: Any) -> dict[str, Any]:
    """A fleet object shaped like agent.http_api.miner_json: up, healthy, placed in C1."""
    return {
        "miner": miner,
        "site": "golmud",
        "address": f"10.28.{rack}.{slot}",
        "name": None,
        "location": {"container": "C1", "rack": rack, "shelf": "1", "slot": slot},
        "maintenance": None,
        "up": True,
        "last_success_at": NOW - 5,
        "last_error": None,
        "boards": [{"index": i, "missing": False} for i in range(3)],
        "expected_boards": 3,
        "fans": [{"index": i, "rpm": 5400} for i in range(4)],
        "alarms": [],
        **fields,
    }


def test_dispatch_healthy_miners_need_no_visit():
    """Up, all boards and fans, no critical alarm: not on the list."""
    assert dispatch.visits([_miner("A", "1")], now=NOW) == []


def test_dispatch_reasons_name_crit_alarms_boards_fans_and_offline():
    """Each reason is said in words; warnings and short outages are not reasons."""
    crit = {"severity": "critical", "rule": "R1", "summary": "R1 chip temp critical: 95 °C"}
    warn = {"severity": "warning", "rule": "R3", "summary": "R3 warning"}
    fleet = [
        _miner("crit", "1", alarms=[crit, warn]),
        _miner("boards", "2", boards=[{"index": 0, "missing": False}]),
        _miner("fans", "3", fans=[{"index": 0, "rpm": 0}, {"index": 1, "rpm": 5000}]),
        _miner("off", "4", up=False, last_success_at=NOW - 3600, last_error="timeout"),
        _miner("blip", "5", up=False, last_success_at=NOW - 60, last_error="timeout"),
        _miner("never", "6", up=False, last_success_at=None, last_error="refused"),
        _miner("warn", "7", alarms=[warn]),
    ]
    found = {v.miner: v.reasons for v in dispatch.visits(fleet, now=NOW)}
    assert found == {
        "crit": ("CRIT R1 chip temp critical: 95 °C",),
        "boards": ("2 hashboards missing",),
        "fans": ("1 fan stopped (fan 0)",),
        "off": ("offline for 1.0 h (timeout)",),
        "never": ("offline: never answered (refused)",),
    }


def test_dispatch_maintenance_lists_only_overdue_windows():
    """A miner in maintenance is listed only when its window is overdue, whatever else it has."""
    crit = {"severity": "critical", "rule": "R1", "summary": "R1"}
    window = {"reason": "fan swap", "since": NOW - 600, "until": NOW + 600, "by": "t"}
    fleet = [
        _miner("bench", "1", alarms=[crit], maintenance=window),
        _miner("late", "2", maintenance={**window, "until": NOW - 7200}),
        _miner("open", "3", maintenance={**window, "since": NOW - 9 * 3600, "until": None}),
    ]
    found = {v.miner: v.reasons for v in dispatch.visits(fleet, now=NOW)}
    assert found == {
        "late": ("maintenance overdue: ended 2.0 h ago (fan swap)",),
        "open": ("maintenance overdue: open 9.0 h (fan swap)",),
    }


def test_dispatch_orders_by_container_rack_shelf_slot_naturally():
    """Walking order: rack 2 before rack 10, slot 2 before slot 10, unknown places last."""
    down: dict[str, Any] = {"up": False, "last_success_at": None}
    fleet = [
        _miner("r10", "10", **down),
        _miner("nowhere", None, **{**down, "location": None}),
        _miner("r2s10", "2", "10", **down),
        _miner("r2s2", "2", "2", **down),
    ]
    order = [v.miner for v in dispatch.visits(fleet, now=NOW)]
    assert order == ["r2s2", "r2s10", "r10", "nowhere"]


def test_dispatch_formats_text_json_and_csv():
    """Text groups by container and rack with the name before the id; JSON and CSV carry all."""
    fleet = [_miner("02:A1", "12", up=False, last_success_at=None, name="S19-0412")]
    found = dispatch.visits(fleet, now=NOW)
    text = dispatch.render_text(found, now=NOW)
    assert "site golmud — container C1, rack 12" in text
    assert "S19-0412 (02:A1)" in text
    assert json.loads(dispatch.render_json(found))[0]["reasons"] == [
        "offline: never answered (no answer)"
    ]
    rows = list(csv.DictReader(io.StringIO(dispatch.render_csv(found))))
    assert rows[0]["rack"] == "12"
    assert rows[0]["name"] == "S19-0412"


def test_dispatch_and_maintenance_are_cli_subcommands():
    """``altiwatch dispatch`` and ``altiwatch maintenance start`` parse their options."""
    parser = cli.build_parser()
    args = parser.parse_args(["dispatch", "--csv", "--offline-after", "30m"])
    assert (args.csv, args.offline_after) == (True, "30m")
    args = parser.parse_args(
        ["maintenance", "start", "--rack", "12", "--for", "4h", "--reason", "PSU swap"]
    )
    assert (args.action, args.rack, args.duration, args.reason) == ("start", "12", "4h", "PSU swap")
