"""End to end, pool side: emulated pool faults through the real agent to MQTT (issue 18).

Real emulator (127.118.2.0/24 - 127.118.4.0/24, 10x simulated time so shares come quickly),
real ``altiwatch run``, real mosquitto (a ``mosquitto_sub`` process records every topic):

1. ``pool_latency`` on 5 miners of 5 firmware families fires R12 within its window, only on
   them, and R12 clears once the fault is over;
2. ``pool_down`` fires R13 after ``failover_for_s`` and clears when the miner is back on its
   primary pool;
3. ``pool_hijack`` fires R14 within one slow-tier cycle with an event naming both pools, and the
   hijacker's URL password appears in no label, payload, log line or API answer.

The pool rules run with short windows here (``pool_alarms`` in the config): 30 s for R12, 8 s
for R13's failover time; the defaults are 15 and 10 minutes.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest

from agent.mqtt import schemas
from tests.support.agent import agent_config, wait_until
from tests.support.mosquitto import MosquittoSub

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.support.agent import AgentProcess
    from tests.support.emulator import EmulatorHandle

pytestmark = [pytest.mark.broker, pytest.mark.slow]

SECRET = "planted-pool-Pw-5c71"  # noqa: S105 - planted on purpose
INTERVAL_S = 2.0
SLOW_S = 4.0
WINDOW_S = 30.0
FAILOVER_S = 8.0
ALLOWED = [{"url": "stratum+tcp://*.emulated-pool.example:*", "worker": "altiwatch.*"}]
LATENCY_MODELS = (
    "antminer-s19jpro",
    "vnish-s19jpro",
    "whatsminer-m30s+ve40",
    "avalon-15-194",
    "braiins-s19jpro",
)


@pytest.fixture
def recorder(mosquitto: Any, tmp_path: Path) -> Iterator[MosquittoSub]:
    """Every altiwatch topic, recorded by a separate mosquitto_sub."""
    sub = MosquittoSub(mosquitto.host, mosquitto.port, tmp_path / "mqtt.log")
    yield sub
    sub.close()


def _start(
    emulator: EmulatorHandle,
    agent_factory: Callable[..., AgentProcess],
    mosquitto: Any,
    recorder: MosquittoSub,
) -> tuple[AgentProcess, dict[str, str]]:
    """An agent polling every emulated miner; returns it and address -> miner id (MAC)."""
    macs = {a: emulator.truth(a)["mac"].upper() for a in emulator.addresses()}
    config = agent_config(
        [{"address": a} for a in macs],
        site="golmud",
        interval_s=INTERVAL_S,
        polling={"slow_interval_s": SLOW_S},
        mqtt={"enabled": True, "host": mosquitto.host, "port": mosquitto.port},
        pool_alarms={
            "share_window_s": WINDOW_S,
            "share_min_shares": 50,
            "failover_for_s": FAILOVER_S,
        },
    )
    config["sites"][0]["pools"] = {"allowed": ALLOWED}
    agent = agent_factory(config)
    wait_until(
        lambda: all(f'miner="{m}",pool="0"' in agent.metrics() for m in macs.values()),
        "pool series of every miner",
        timeout=60,
    )
    assert any(e.get("event") == "agent_started" for e in recorder.events())
    return agent, macs


def _alarms(recorder: MosquittoSub, rule: str, event: str) -> dict[str, dict[str, Any]]:
    """Miner id -> the first ``event`` payload of ``rule`` on the site's event stream."""
    out: dict[str, dict[str, Any]] = {}
    for payload in recorder.alarm_events():
        if payload["rule"] == rule and payload["event"] == event:
            out.setdefault(payload["miner"], payload)
    return out


def test_pools_latency_fires_r12_within_its_window_and_clears(
    emulator_factory, agent_factory, mosquitto, recorder
):
    """1. pool_latency on 5 miners (5 families) → R12 within the window; 2. over → cleared."""
    scenario = {
        "name": "pool-latency",
        "site": {"name": "golmud", "altitude_m": 2800},
        "miners": [{"model": m} for m in (*LATENCY_MODELS, "antminer-s21")],
    }
    emulator = emulator_factory(scenario, base_address="127.118.2.1", speedup=10.0)
    agent, macs = _start(emulator, agent_factory, mosquitto, recorder)
    by_model = {emulator.truth(a)["profile"]: a for a in macs}
    faulty = {macs[by_model[m]] for m in LATENCY_MODELS}
    healthy = macs[by_model["antminer-s21"]]

    start = time.monotonic()
    for model in LATENCY_MODELS:
        emulator.inject(by_model[model], "pool_latency", factor=0.08)
    deadline = WINDOW_S + 2 * SLOW_S + 3.0
    raised = wait_until(
        lambda: (r := _alarms(recorder, "R12", "raised")).keys() >= faulty and r,
        "R12 raised on the 5 miners",
        timeout=deadline,
    )
    took = time.monotonic() - start
    print(f"R12 raised on 5 miners {took:.1f} s after the fault (window {WINDOW_S:g} s)")
    assert took <= deadline
    assert healthy not in raised, "a healthy miner's shares do not raise R12"
    for payload in raised.values():
        jsonschema.validate(payload, schemas.load(payload["schema"]))
        assert payload["severity"] in {"warning", "critical"}
        assert payload["value"] >= 0.015
        assert payload["details"]["shares"] >= 50

    for model in LATENCY_MODELS:
        emulator.clear(by_model[model], "pool_latency")
    wait_until(
        lambda: _alarms(recorder, "R12", "cleared").keys() >= faulty,
        "R12 cleared on the 5 miners after the fault",
        timeout=2 * WINDOW_S + 2 * SLOW_S + 10.0,
    )
    assert not any(a["rule"] == "R12" for a in json.loads(agent.fetch("/api/v1/alarms")[1]))


def test_pools_down_fires_r13_and_the_miner_returns(
    emulator_factory, agent_factory, mosquitto, recorder
):
    """1. pool_down → R13 WARN after failover_for_s naming the backup; 2. back → cleared."""
    scenario = {
        "name": "pool-down",
        "site": {"name": "golmud", "altitude_m": 2800},
        "miners": [{"model": "antminer-s21"}, {"model": "antminer-s19jpro", "count": 3}],
    }
    emulator = emulator_factory(scenario, base_address="127.118.3.1", speedup=10.0)
    agent, macs = _start(emulator, agent_factory, mosquitto, recorder)
    address = next(a for a in macs if emulator.truth(a)["profile"] == "antminer-s21")
    mac = macs[address]

    start = time.monotonic()
    emulator.inject(address, "pool_down")
    raised = wait_until(
        lambda: _alarms(recorder, "R13", "raised").get(mac),
        "R13 raised",
        timeout=FAILOVER_S + 2 * SLOW_S + 10.0,
    )
    took = time.monotonic() - start
    assert took >= FAILOVER_S, "not before failover_for_s"
    assert raised["severity"] == "warning"
    assert raised["tags"] == ["backup_pool"]
    assert "btc-backup.emulated-pool.example" in raised["details"]["active_pool"]
    jsonschema.validate(raised, schemas.load(raised["schema"]))
    assert not _alarms(recorder, "R13", "raised").keys() - {mac}, "one miner: no site alarm"

    emulator.clear(address, "pool_down")
    wait_until(
        lambda: _alarms(recorder, "R13", "cleared").get(mac),
        "R13 cleared when the primary pool is back",
        timeout=2 * SLOW_S + 10.0,
    )
    primary = f'asic_pool_active{{site="golmud",miner="{mac}",pool="0",'
    assert any(
        line.startswith(primary) and line.endswith(" 1") for line in agent.metrics().splitlines()
    ), "mining on the primary pool again"


def test_pools_hijack_fires_r14_within_one_slow_cycle_and_leaks_no_password(
    emulator_factory, agent_factory, mosquitto, recorder
):
    """pool_hijack → R14 CRIT within one slow cycle naming both pools; the URL password nowhere."""
    scenario = {
        "name": "pool-hijack",
        "site": {"name": "golmud", "altitude_m": 2800},
        "miners": [{"model": "antminer-s19jpro", "count": 2}],
    }
    emulator = emulator_factory(scenario, base_address="127.118.4.1", speedup=10.0)
    agent, macs = _start(emulator, agent_factory, mosquitto, recorder)
    address = next(iter(macs))
    mac = macs[address]
    hijack_url = f"stratum+tcp://thief:{SECRET}@evil-pool.example:3333"

    start = time.monotonic()
    emulator.inject(address, "pool_hijack", url=hijack_url, worker="thief.rig7")
    raised = wait_until(
        lambda: _alarms(recorder, "R14", "raised").get(mac),
        "R14 raised",
        timeout=SLOW_S + 2 * INTERVAL_S + 10.0,
    )
    took = time.monotonic() - start
    print(f"R14 raised {took:.1f} s after the hijack (slow tier every {SLOW_S:g} s)")
    # One slow cycle, then the slot's fast poll, the 1-s alarm tick and the MQTT hop.
    assert took <= SLOW_S + INTERVAL_S + 1.0 + 2.0
    jsonschema.validate(raised, schemas.load(raised["schema"]))
    assert raised["severity"] == "critical"
    details = raised["details"]
    assert details["pool_before"] == "stratum+tcp://btc.emulated-pool.example:3333"
    assert details["worker_before"].startswith("altiwatch.")
    assert details["pool_after"] == "stratum+tcp://evil-pool.example:3333"
    assert details["worker_after"] == "thief.rig7"
    assert "evil-pool.example" in raised["summary"]
    assert "btc.emulated-pool.example" in raised["summary"]

    artifacts = {
        "/metrics": agent.metrics(),
        "/api/v1/fleet": agent.fetch("/api/v1/fleet")[1].decode(),
        "/api/v1/alarms": agent.fetch("/api/v1/alarms")[1].decode(),
    }
    assert 'url="stratum+tcp://evil-pool.example:3333"' in artifacts["/metrics"]
    assert "evil-pool.example" in artifacts["/api/v1/fleet"]
    emulator.clear(address, "pool_hijack")
    wait_until(
        lambda: _alarms(recorder, "R14", "cleared").get(mac),
        "R14 cleared once the pool is ours again",
        timeout=2 * SLOW_S + 10.0,
    )
    assert agent.stop() == 0
    artifacts["agent log"] = agent.output()
    artifacts["mqtt"] = "\n".join(f"{t} {p}" for t, p in recorder.messages())
    leaks = [name for name, text in artifacts.items() if SECRET in text or "thief:" in text]
    assert not leaks, leaks
