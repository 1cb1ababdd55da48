"""Maintenance mode end to end: a real agent, emulator and Mosquitto, driven by the real CLI.

Addresses: 127.143.0.0/24. Three S19s: A and B in container C1 rack 1, C in rack 2.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.agent import ALTIWATCH, agent_config
from tests.support.mosquitto import MosquittoSub

if TYPE_CHECKING:
    from tests.support.agent import AgentProcess

BASE = "127.143.0.1"
SCENARIO = {
    "name": "field",
    "site": {"name": "golmud", "altitude_m": 2800},
    "miners": [{"model": "antminer-s19jpro", "count": 3}],
}

pytestmark = pytest.mark.broker


def _cli(agent: AgentProcess, *args: str) -> str:
    """Run ``altiwatch maintenance …`` against the agent; its stdout (exit 0 required)."""
    done = subprocess.run(
        [str(ALTIWATCH), "maintenance", *args, "--url", agent.url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _gauge(text: str, name: str, mac: str) -> float | None:
    match = re.search(
        rf'^{name}{{[^}}]*miner="{re.escape(mac)}"[^}}]*}} (\S+)$', text, re.MULTILINE
    )
    return float(match.group(1)) if match else None


def _alarms(agent: AgentProcess) -> list[dict[str, Any]]:
    status, body = agent.fetch("/api/v1/alarms")
    return json.loads(body) if status == 200 else []


def test_maintenance_holds_alarms_leaves_r7_expires_and_survives_restart(
    emulator_factory, agent_factory, mosquitto, tmp_path
):
    """Maintenance holds alarms back, leaves R7, survives a restart and expires by itself.

    1. Rack 1 in maintenance; A loses a board, B goes offline: engine state kept, no MQTT
    alarm, no R7 site alarm, asic_maintenance 1. 2. B's window ended: R7 site fires.
    3. Restart: A's window is still open. 4. Renewed for 2 s, it expires by itself and A's R6
    is announced.
    """
    emulator = emulator_factory(SCENARIO, base_address=BASE)
    a, b, c = emulator.addresses()
    mac = {addr: emulator.truth(addr)["mac"].upper() for addr in (a, b, c)}
    rack1 = {"container": "C1", "rack": "1"}
    miners = [
        {"address": a, "name": "s19-a", "location": {**rack1, "shelf": "1", "slot": "1"}},
        {"address": b, "location": {**rack1, "shelf": "1", "slot": "2"}},
        {"address": c, "location": {"container": "C1", "rack": "2"}},
    ]
    config = agent_config(
        miners,
        interval_s=1.0,
        mqtt={"enabled": True, "host": mosquitto.host, "port": mosquitto.port},
        thermal={"site_outage_min_miners": 1},
    )
    sub = MosquittoSub(mosquitto.host, mosquitto.port, tmp_path / "mqtt.log")
    try:
        agent = agent_factory(config)
        agent.wait_for(
            lambda: all(_gauge(agent.metrics(), "asic_maintenance", m) == 0 for m in mac.values()),
            "every miner known by its MAC, out of maintenance",
        )
        out = _cli(agent, "start", "--container", "C1", "--rack", "1", "--reason", "fan swap")
        assert "2 miner(s) in maintenance" in out
        assert "s19-a (" in out
        emulator.inject(a, "board_lost", board=1)
        emulator.inject(b, "offline")

        def held() -> bool:
            firing = {(x["miner"], x["rule"]) for x in _alarms(agent)}
            return {(mac[a], "R6"), (mac[b], "R7")} <= firing

        agent.wait_for(held, "R6 on A and R7 on B in the engine's state", timeout=30)
        metrics = agent.metrics()
        assert _gauge(metrics, "asic_maintenance", mac[a]) == 1
        assert _gauge(metrics, "asic_maintenance", mac[c]) == 0
        assert _gauge(metrics, "asic_alarm_active", mac[a]) is None
        assert not [x for x in _alarms(agent) if x["miner"] is None and x["rule"] == "R7"]
        on_bench = {mac[a], mac[b]}
        assert not [e for e in sub.alarm_events() if e["miner"] in on_bench]
        started = agent.wait_for(
            lambda: [e for e in sub.events() if e.get("event") == "maintenance_started"],
            "maintenance_started on MQTT",
        )
        first = next(e for e in started if e["miner"] == mac[a])
        assert first["name"] == "s19-a"
        assert first["location"] == {**rack1, "shelf": "1", "slot": "1"}

        _cli(agent, "end", mac[b])
        agent.wait_for(
            lambda: [x for x in _alarms(agent) if x["miner"] is None and x["rule"] == "R7"],
            "the R7 site alarm once B counts again",
        )
        emulator.clear(b)
        assert agent.stop() == 0
        assert "maintenance_started" in agent.output()

        restarted = agent_factory({**config, "agent": agent.config["agent"]})
        windows = json.loads(_cli(restarted, "list", "--json"))
        assert [w["miner"] for w in windows] == [mac[a]]
        _cli(restarted, "start", "s19-a", "--for", "2s", "--reason", "closing up")
        restarted.wait_for(
            lambda: [e for e in sub.events() if e.get("event") == "maintenance_expired"],
            "maintenance_expired on MQTT",
            timeout=20,
        )
        raised = restarted.wait_for(
            lambda: [e for e in sub.alarm_events() if e["miner"] == mac[a] and e["rule"] == "R6"],
            "A's R6 announced after maintenance",
        )
        assert len(raised) == 1
        assert raised[0]["event"] == "raised"
        assert "after maintenance" in raised[0]["summary"]
        assert "s19-a" in raised[0]["summary"]
        assert json.loads(restarted.fetch("/api/v1/maintenance")[1]) == []
    finally:
        sub.close()
