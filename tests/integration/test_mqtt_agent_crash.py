"""The real agent SIGKILLed: its Last Will fires; a backlog queued with the broker down survives.

Real emulator (127.52.0.0/16, four S19j Pro), real ``altiwatch run`` with MQTT on a real
mosquitto, a QoS 1 subscriber on ``altiwatch/v1/#``. Phase A: the connected agent is SIGKILLed,
the broker publishes its retained Last Will ``offline``. Phase B: the broker is stopped, two
hashboards are removed so rule R6 raises while nothing can be published, the agent is SIGKILLed
with those transitions in its outbox, the broker comes back (the subscriber reconnects first:
mosquitto 2.0.11 queues nothing for a client that is not back yet) and a new agent on the same
state dir delivers the backlog under the event_ids the killed agent committed.

What the agents produced is read from their JSON log lines (``alarm_raised`` etc.); the event_ids
of the backlog are read from the killed agent's SQLite outbox after the kill.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest

from agent.mqtt import schemas
from agent.mqtt.outbox import DB_NAME
from tests.integration.test_reliability_miners import log_events, parse_metrics
from tests.support.agent import agent_config
from tests.support.mosquitto import Subscriber, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.support.agent import AgentProcess
    from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.broker

PREFIX = "altiwatch/v1"
SITE = "golmud"
AGENT_ID = "crash-agent"
EVENTS = f"{PREFIX}/{SITE}/events"
STATUS = f"{PREFIX}/{SITE}/agent/{AGENT_ID}/status"
SCENARIO = {
    "name": "mqtt-agent-crash",
    "site": {"name": SITE, "altitude_m": 2800},
    "miners": [{"model": "antminer-s19jpro", "count": 4}],
}
KIND = {
    "alarm_raised": "raised",
    "alarm_escalated": "escalated",
    "alarm_deescalated": "deescalated",
    "alarm_cleared": "cleared",
}

Key = tuple[str | None, str, str]


def _produced(agents: list[AgentProcess]) -> Counter[Key]:
    """(miner, rule, kind) of every alarm transition the agents logged."""
    counts: Counter[Key] = Counter()
    for agent in agents:
        for line in log_events(agent):
            if line.get("event") in KIND:
                counts[(line.get("miner"), line["rule"], KIND[line["event"]])] += 1
    return counts


def _metric(agent: AgentProcess, name: str) -> float | None:
    samples = parse_metrics(agent.metrics()).get(name)
    return None if not samples else sum(v for _labels, v in samples)


def _outbox_alarm_events(state_dir: Path) -> list[dict[str, Any]]:
    """Alarm events still queued in the (dead) agent's outbox, oldest first."""
    db = sqlite3.connect(state_dir / DB_NAME)
    try:
        rows = db.execute(
            "SELECT payload FROM outbox WHERE topic = ? ORDER BY id", (EVENTS,)
        ).fetchall()
    finally:
        db.close()
    payloads = [json.loads(bytes(row[0])) for row in rows]
    return [p for p in payloads if p.get("schema") == "altiwatch.alarm/1"]


def _unique_alarm_events(sub: Subscriber) -> list[dict[str, Any]]:
    """Alarm events on the site stream, one per event_id (QoS 1 may deliver copies)."""
    seen: dict[str, dict[str, Any]] = {}
    for payload in sub.payloads(EVENTS):
        if payload.get("schema") == "altiwatch.alarm/1":
            seen.setdefault(payload["event_id"], payload)
    return sorted(seen.values(), key=lambda p: p["seq"])


def _check_no_double_raise(events: list[dict[str, Any]]) -> None:
    """Per (miner, rule): raised, escalated/deescalated, cleared; never raised while active."""
    firing: dict[tuple[str | None, str], bool] = {}
    for event in events:
        key = (event["miner"], event["rule"])
        if event["event"] == "raised":
            assert not firing.get(key), f"{key} raised again while active: {event['event_id']}"
            firing[key] = True
        elif event["event"] == "cleared":
            firing[key] = False


def _statuses(sub: Subscriber, since: int = 0) -> list[dict[str, Any]]:
    """The agent status payloads received since message index ``since``."""
    return [m.json() for m in sub.messages[since:] if m.topic == STATUS and m.payload]


def _alarm_keys(sub: Subscriber) -> Counter[Key]:
    """(miner, rule, kind) of every distinct alarm event delivered so far."""
    return Counter((p["miner"], p["rule"], p["event"]) for p in _unique_alarm_events(sub))


async def _online(sub: Subscriber, since: int, what: str) -> None:
    """Wait for an ``online`` status received since message index ``since``."""
    await wait_until(
        lambda: any(s["state"] == "online" for s in _statuses(sub, since)), within=60, what=what
    )


async def _kill_connected_expect_will(sub: Subscriber, agent: AgentProcess) -> dict[str, Any]:
    """Phase A: wait for the site's R9 raise on the stream, SIGKILL, return the Will received."""
    await wait_until(
        lambda: _alarm_keys(sub)[(None, "R9", "raised")] >= 1,
        within=60,
        what="the site-level R9 raise published by the first agent",
    )
    mark = len(sub.messages)
    agent.kill()
    await wait_until(
        lambda: any(s["state"] == "offline" for s in _statuses(sub, mark)),
        within=60,
        what="Last Will offline after SIGKILL",
    )
    message = next(m for m in sub.messages[mark:] if m.topic == STATUS and m.payload)
    assert message.qos == 1, "the Will is published with QoS 1"
    will: dict[str, Any] = message.json()
    return will


async def _kill_with_backlog(
    agent: AgentProcess, broker: Mosquitto, emulator: Any, addresses: list[str]
) -> tuple[set[str], float]:
    """Phase B: broker down, board_lost on two miners, wait for R6 in log and outbox, SIGKILL."""
    await asyncio.to_thread(broker.stop)
    await asyncio.to_thread(
        agent.wait_for,
        lambda: _metric(agent, "altiwatch_mqtt_connected") == 0,
        "the agent to see the broker gone",
    )
    macs = {emulator.truth(a)["mac"].upper() for a in addresses}
    for address in addresses:
        emulator.inject(address, "board_lost", board=1)

    def r6_raised() -> set[str | None]:
        return {
            line.get("miner")
            for line in log_events(agent)
            if line.get("event") == "alarm_raised" and line.get("rule") == "R6"
        }

    await asyncio.to_thread(
        agent.wait_for,
        lambda: r6_raised() >= macs,
        "alarm_raised R6 for both miners while the broker is down",
        60,
    )

    def depth() -> float | None:
        value = _metric(agent, "altiwatch_mqtt_outbox_depth")
        return value if value is not None and value >= 2 * len(macs) else None

    # Each transition is two rows: the event and the retained alarm state.
    depth_at_kill: float = await asyncio.to_thread(
        agent.wait_for, depth, "the R6 events and retained states in the outbox"
    )
    agent.kill()
    return macs, depth_at_kill


async def test_agent_sigkill_will_offline_and_backlog_delivered_after_broker_restart(
    emulator_factory: Callable[..., Any],
    agent_factory: Callable[..., AgentProcess],
    mosquitto: Mosquitto,
    tmp_path: Path,
) -> None:
    """SIGKILL online → Will `offline`; SIGKILL, broker down → backlog delivered, same event_ids."""
    began = time.monotonic()
    emulator = emulator_factory(SCENARIO, base_address="127.52.0.1")
    addresses = emulator.addresses()
    state_dir = tmp_path / "state"
    config = agent_config(
        [{"address": a} for a in addresses],
        site=SITE,
        interval_s=1.0,
        agent={"id": AGENT_ID, "state_dir": str(state_dir)},
        polling={"slow_interval_s": 30.0},
        mqtt={
            "enabled": True,
            "host": mosquitto.host,
            "port": mosquitto.port,
            "telemetry": False,  # the outbox then holds only events: its depth is checkable
            "reconnect_max_s": 2.0,
        },
    )
    agents: list[AgentProcess] = []

    async def start_agent() -> AgentProcess:
        agent = await asyncio.to_thread(agent_factory, config)
        agents.append(agent)
        return agent

    async with Subscriber(mosquitto, [f"{PREFIX}/#"], client_id="crash-agent-sub") as sub:
        # Phase A: the connected agent is SIGKILLed; the broker publishes its Last Will.
        first = await start_agent()
        await _online(sub, 0, "first agent online")
        will = await _kill_connected_expect_will(sub, first)
        assert will["state"] == "offline", will
        assert will["reason"] == "connection_lost", will

        # Phase B: broker down, R6 raised on two miners, SIGKILL with the backlog queued.
        mark = len(sub.messages)
        second = await start_agent()
        await _online(sub, mark, "second agent online")
        macs, depth = await _kill_with_backlog(second, mosquitto, emulator, addresses[:2])
        killed_at = time.time()
        backlog = _outbox_alarm_events(state_dir)
        assert {p["miner"] for p in backlog if p["rule"] == "R6"} == macs, backlog

        # Broker back, the subscriber reconnected first, then a new agent on the same state dir.
        await asyncio.to_thread(mosquitto.start)
        await wait_until(lambda: sub.connects >= 2, within=30, what="subscriber reconnected")
        third = await start_agent()
        produced = _produced(agents[:2])

        def backlog_delivered() -> bool:
            ids = {p["event_id"] for p in _unique_alarm_events(sub)}
            got = _alarm_keys(sub)
            return {p["event_id"] for p in backlog} <= ids and all(
                got[k] >= n for k, n in produced.items()
            )

        try:
            await wait_until(backlog_delivered, within=60, what="the backlog delivered")
        except AssertionError as exc:
            got = _alarm_keys(sub)
            missing = {k: n - got[k] for k, n in produced.items() if got[k] < n}
            detail = f"{exc}: produced-but-missing {missing}\n{third.output()[-2000:]}"
            raise AssertionError(detail) from None
        assert await asyncio.to_thread(third.stop) == 0

    events = _unique_alarm_events(sub)
    by_id = {p["event_id"]: p for p in events}
    for queued in backlog:
        assert by_id[queued["event_id"]] == queued, "delivered payload differs from committed"
        assert queued["ts_unix"] < killed_at
    _check_no_double_raise(events)
    raised = Counter((p["miner"], p["rule"]) for p in events if p["event"] == "raised")
    assert all(raised[(mac, "R6")] == 1 for mac in macs), f"R6 raised twice: {raised}"
    assert raised[(None, "R9")] == 1, f"the site alarm was raised again: {raised}"
    # Everything on the site stream and the status topic validates against its schema.
    for payload in sub.payloads(EVENTS) + _statuses(sub):
        jsonschema.validate(payload, schemas.load(payload["schema"]))
    print(
        f"agent-crash: logged_transitions={sum(produced.values())} {dict(produced)} "
        f"backlog_alarm_events_at_kill={len(backlog)} outbox_depth_at_kill={depth:g} "
        f"delivered_unique={len(events)} received={len(sub.payloads(EVENTS))} "
        f"took={time.monotonic() - began:.1f}s"
    )
