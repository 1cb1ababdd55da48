"""SIGKILL at random points of a poll cycle, restart, repeat: no alarm event lost or duplicated.

Real agent, real emulator, real Mosquitto. While the agent is killed and restarted, hashboards
are removed and restored in the emulator so that rule R6 raises and clears alarms (two polls
each way); the site's altitude (2,800 m) also keeps a site-level R9 alarm firing throughout.

What the agent produced is read from its own log lines (``alarm_raised`` etc. are written after
the transition was committed to the outbox); what was delivered is what a QoS 1 subscriber got,
deduplicated by ``event_id``. The checks:

* none lost: every logged transition was delivered;
* no duplicate raise: per (miner, rule) the delivered events alternate raised → … → cleared,
  never two raises of an alarm that stayed active (the R9 alarm is raised exactly once);
* the delivered final state equals the last agent's active alarms.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.test_reliability_miners import log_events, parse_metrics
from tests.support.agent import agent_config
from tests.support.mosquitto import MosquittoSub

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.support.agent import AgentProcess

pytestmark = pytest.mark.broker

TRANSITIONS = {"alarm_raised", "alarm_escalated", "alarm_deescalated", "alarm_cleared"}
KIND = {"alarm_raised": "raised", "alarm_escalated": "escalated"}
KIND |= {"alarm_deescalated": "deescalated", "alarm_cleared": "cleared"}


@dataclass
class KillReport:
    """What a kill run did and saw."""

    kills: int = 0
    restarts_s: list[float] = field(default_factory=list)
    produced: Counter[tuple[str | None, str, str]] = field(default_factory=Counter)
    delivered: Counter[tuple[str | None, str, str]] = field(default_factory=Counter)
    duplicates_by_event_id: int = 0
    final_active: set[tuple[str | None, str]] = field(default_factory=set)

    def summary(self) -> str:
        """One line for the test output and the README table."""
        raised = sum(n for (_m, _r, k), n in self.produced.items() if k == "raised")
        cleared = sum(n for (_m, _r, k), n in self.produced.items() if k == "cleared")
        return (
            f"kills={self.kills} produced={sum(self.produced.values())} "
            f"(raised={raised}, cleared={cleared}) delivered={sum(self.delivered.values())} "
            f"redelivered_copies={self.duplicates_by_event_id} "
            f"restart_to_ready_s(max)={max(self.restarts_s, default=0):.1f}"
        )


@pytest.fixture
def subscription(mosquitto: Any, tmp_path: Path) -> Iterator[MosquittoSub]:
    """A QoS 1 subscriber on the site event streams."""
    sub = MosquittoSub(
        mosquitto.host, mosquitto.port, tmp_path / "events.log", "altiwatch/v1/+/events"
    )
    yield sub
    sub.close()


def _produced(agents: list[AgentProcess]) -> Counter[tuple[str | None, str, str]]:
    counts: Counter[tuple[str | None, str, str]] = Counter()
    for agent in agents:
        for event in log_events(agent):
            if event.get("event") in TRANSITIONS:
                counts[(event.get("miner"), event["rule"], KIND[event["event"]])] += 1
    return counts


def _check_sequences(events: list[dict[str, Any]]) -> None:
    """Per (miner, rule): raised, then only escalated/deescalated, then cleared, and again."""
    by_alarm: dict[tuple[str | None, str], list[str]] = {}
    for event in sorted(events, key=lambda e: (e["ts_unix"], e["seq"])):
        by_alarm.setdefault((event["miner"], event["rule"]), []).append(event["event"])
    for key, kinds in by_alarm.items():
        firing = False
        for kind in kinds:
            if kind == "raised":
                assert not firing, f"{key}: raised again while active: {kinds}"
                firing = True
            elif kind == "cleared":
                assert firing, f"{key}: cleared while not active: {kinds}"
                firing = False
            else:
                assert firing, f"{key}: {kind} while not active: {kinds}"


def _active(agent: AgentProcess) -> set[tuple[str | None, str]]:
    status, body = agent.fetch("/api/v1/alarms")
    assert status == 200
    return {(a["miner"], a["rule"]) for a in json.loads(body)}


def run_kill_scenario(
    emulator: Any,
    start_agent: Callable[[dict[str, Any]], AgentProcess],
    mosquitto: Any,
    subscription: MosquittoSub,
    tmp_path: Path,
    *,
    kills: int,
    seed: int = 8,
) -> KillReport:
    """Kill the agent ``kills`` times at random moments while alarms rise and clear."""
    rng = random.Random(seed)  # noqa: S311 - test schedule, not cryptography
    addresses = emulator.addresses()
    config = agent_config(
        [{"address": a} for a in addresses],
        interval_s=1.0,
        agent={"state_dir": str(tmp_path / "state")},
        polling={"slow_interval_s": 30.0},
        mqtt={"enabled": True, "host": mosquitto.host, "port": mosquitto.port},
    )
    report = KillReport()
    agents = [start_agent(config)]
    lost: set[str] = set()
    for _ in range(kills):
        # Remove or restore hashboards (rule R6 follows within two polls), then kill somewhere
        # in the next cycles: before, during or after the transitions this causes.
        for _toggle in range(2):
            if lost and rng.random() < 0.5:
                address = rng.choice(sorted(lost))
                emulator.clear(address, "board_lost")
                lost.discard(address)
            else:
                address = rng.choice(addresses)
                emulator.inject(address, "board_lost", board=rng.choice([0, 1, 2]))
                lost.add(address)
            time.sleep(rng.uniform(0.2, 2.5))
        time.sleep(rng.uniform(0.0, 2.0))
        agents[-1].kill()
        report.kills += 1
        began = time.monotonic()
        agents.append(start_agent(config))
        report.restarts_s.append(time.monotonic() - began)

    # Let everything settle: no fault changes, the outbox drained, then a graceful stop.
    last = agents[-1]
    polls = sum(v for _l, v in parse_metrics(last.metrics()).get("altiwatch_polls_total", []))
    last.wait_for(
        lambda: (
            sum(v for _l, v in parse_metrics(last.metrics()).get("altiwatch_polls_total", []))
            > polls + 3 * len(addresses)
        ),
        "three quiet poll cycles",
        timeout=60,
    )

    def drained() -> bool:
        samples = parse_metrics(last.metrics())
        depth = sum(v for _l, v in samples.get("altiwatch_mqtt_outbox_depth", []))
        connected = sum(v for _l, v in samples.get("altiwatch_mqtt_connected", []))
        return depth == 0 and connected == 1

    last.wait_for(drained, "the MQTT outbox drained", timeout=60)
    report.final_active = _active(last)
    last.signal(signal.SIGTERM)
    assert last.proc.wait(timeout=30) == 0

    report.produced = _produced(agents)

    def delivered_all() -> bool:
        events = subscription.alarm_events()
        got = Counter((e["miner"], e["rule"], e["event"]) for e in events)
        return all(got[key] >= n for key, n in report.produced.items())

    with contextlib.suppress(pytest.fail.Exception):  # the assertions below say what is missing
        last.wait_for(delivered_all, "every produced transition delivered", timeout=30)
    events = subscription.alarm_events()
    report.delivered = Counter((e["miner"], e["rule"], e["event"]) for e in events)
    raw = [e for e in subscription.events() if e.get("event") in KIND.values()]
    report.duplicates_by_event_id = len(raw) - len(events)
    return report


def assert_kill_report(report: KillReport, subscription: MosquittoSub) -> None:
    """None lost, no duplicate raise, final state consistent."""
    missing = {
        k: n - report.delivered[k] for k, n in report.produced.items() if report.delivered[k] < n
    }
    assert not missing, f"produced but not delivered: {missing}\n{report.summary()}"
    events = subscription.alarm_events()
    _check_sequences(events)
    last_state: dict[tuple[str | None, str], str] = {}
    for event in sorted(events, key=lambda e: (e["ts_unix"], e["seq"])):
        last_state[(event["miner"], event["rule"])] = event["event"]
    delivered_active = {k for k, kind in last_state.items() if kind != "cleared"}
    assert delivered_active == report.final_active, (
        f"delivered says {delivered_active}, the agent says {report.final_active}"
    )
    assert report.delivered[(None, "R9", "raised")] == 1, "the site alarm was raised again"


def test_reliability_sigkill_loses_no_alarm_event(
    emulator_factory, agent_factory, mosquitto, subscription, tmp_path
):
    """Three SIGKILLs at random moments while R6 alarms rise and clear: nothing lost or doubled."""
    emulator = emulator_factory(
        {
            "name": "kill",
            "site": {"name": "golmud", "altitude_m": 2800},
            "miners": [{"model": "antminer-s19jpro", "count": 4}],
        },
        base_address="127.90.5.1",
    )
    report = run_kill_scenario(emulator, agent_factory, mosquitto, subscription, tmp_path, kills=3)
    print(report.summary())
    assert report.produced[(None, "R9", "raised")] >= 1
    assert any(kind == "raised" for (_m, rule, kind) in report.produced if rule == "R6")
    assert_kill_report(report, subscription)
