"""``altiwatch events audit``: gaps, duplicates, conflicts and restarts per (agent, site) stream."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from agent.cli import main
from agent.mqtt.audit import Audit, load_state, save_state

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def event(
    seq: int, *, agent: str = "a1", site: str = "s", event_id: str | None = None
) -> dict[str, object]:
    """A minimal event-stream payload."""
    return {
        "events_seq": seq,
        "event_id": event_id or f"{agent}-{site}-{seq}",
        "agent_id": agent,
        "site": site,
    }


def test_audit_reports_gaps_per_stream():
    """Missing numbers between the first and last seen are gaps, per (agent, site)."""
    audit = Audit()
    for n in (1, 2, 5, 6, 9):
        audit.feed(event(n))
    for n in (1, 2, 3):
        audit.feed(event(n, agent="a2"))
    reports = {r["agent_id"]: r for r in audit.reports()}
    assert reports["a1"]["gaps"] == [[3, 4], [7, 8]]
    assert reports["a1"]["missing"] == 4
    assert reports["a2"]["ok"]
    assert not audit.ok


def test_audit_counts_duplicates_without_calling_them_loss():
    """A re-delivered event_id (QoS1) is a duplicate, not a gap."""
    audit = Audit()
    for n in (1, 2, 2, 3):
        audit.feed(event(n))
    (report,) = audit.reports()
    assert (report["duplicates"], report["missing"], report["ok"]) == (1, 0, True)


def test_audit_flags_conflicts_and_restarts():
    """Same events_seq with another event_id is a conflict; a new 1 is a restart of the stream."""
    audit = Audit()
    for n in (1, 2, 3):
        audit.feed(event(n))
    audit.feed(event(3, event_id="other"))
    audit.feed(event(1, event_id="fresh-1"))
    audit.feed(event(2, event_id="fresh-2"))
    (report,) = audit.reports()
    assert report["conflicts"] == [3]
    assert report["restarts"] == 1
    assert report["last"] == 2


def test_audit_ignores_payloads_without_events_seq():
    """Payloads of older agents (no events_seq) are ignored and counted."""
    audit = Audit()
    assert not audit.feed({"event_id": "x", "agent_id": "a", "site": "s"})
    assert audit.ignored == 1
    assert audit.ok


def test_audit_state_carries_the_baseline_between_runs(tmp_path: Path):
    """With --state, a loss between two runs is a gap in the second."""
    state = tmp_path / "audit.json"
    first = Audit(load_state(state))
    for n in (1, 2, 3):
        first.feed(event(n))
    save_state(state, first.baselines())
    second = Audit(load_state(state))
    for n in (6, 7):
        second.feed(event(n))
    (report,) = second.reports()
    assert report["gaps"] == [[4, 5]]


def test_audit_cli_reads_json_lines_and_exits_1_on_loss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """`altiwatch events audit --input FILE --json` prints one object per stream; loss → exit 1."""
    lines = tmp_path / "events.jsonl"
    lines.write_text("\n".join(json.dumps(event(n)) for n in (1, 3)) + "\nnot json\n")
    assert main(["events", "audit", "--input", str(lines), "--json"]) == 1
    (report,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert report["gaps"] == [[2, 2]]
