"""The agent wired end to end: alarms to /metrics, the JSON API and MQTT; discovery; no secrets."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.agent import agent_config
from tests.support.mosquitto import MosquittoSub

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

BASE = "127.30.4.1"
DISCOVERY_BASE = "127.30.5.1"
MINER_SECRET = "never-log-me-7f3a91"  # noqa: S105 - the secret the test looks for
MQTT_SECRET = "mqtt-secret-9b2c44"  # noqa: S105 - likewise
SCENARIO = {
    "name": "events",
    "site": {"name": "golmud", "altitude_m": 2800},
    "miners": [
        {"model": "antminer-s19jpro", "count": 1},
        {"model": "bitaxe-ultra", "count": 1},
        {"model": "whatsminer-m30s+ve40", "count": 1},
    ],
}

pytestmark = pytest.mark.broker


@pytest.fixture
def subscription(mosquitto: Any, tmp_path: Path) -> Iterator[MosquittoSub]:
    """A subscriber on the test broker."""
    sub = MosquittoSub(mosquitto.host, mosquitto.port, tmp_path / "mqtt.log")
    yield sub
    sub.close()


def test_agent_alarm_reaches_metrics_api_and_mqtt_without_leaking_secrets(
    emulator_factory, agent_factory, mosquitto, subscription
):
    """A lost hashboard raises R6: on /metrics, /api/v1/alarms and MQTT; no secret in logs."""
    emulator = emulator_factory(SCENARIO, base_address=BASE)
    miners: list[dict[str, Any]] = []
    for m in emulator.miners():
        entry: dict[str, Any] = {"address": m["address"]}
        if m["family"] == "bitaxe":
            entry["password"] = MINER_SECRET  # AxeOS ignores it; it must still never be logged
        miners.append(entry)
    mqtt = {
        "enabled": True,
        "host": mosquitto.host,
        "port": mosquitto.port,
        "username": "altiwatch",
        "password": MQTT_SECRET,
    }
    agent = agent_factory(
        agent_config(miners, interval_s=2.0, mqtt=mqtt, agent={"log_level": "info"})
    )
    s19 = next(m for m in emulator.miners() if m["family"] == "antminer")
    mac = emulator.truth(s19["address"])["mac"].upper()
    emulator.inject(s19["address"], "board_lost", board=1)

    agent.wait_for(
        lambda: f'asic_alarm_active{{site="golmud",miner="{mac}",rule="R6"' in agent.metrics(),
        "asic_alarm_active for R6",
        timeout=60,
    )
    status, body = agent.fetch("/api/v1/alarms")
    assert status == 200
    alarms = [a for a in json.loads(body) if a["miner"] == mac and a["rule"] == "R6"]
    assert alarms
    assert alarms[0]["severity"] == "critical"
    assert "explanation" in alarms[0]
    topic = f"altiwatch/v1/golmud/{mac.replace(':', '-').lower()}/alarm/r6"
    retained = agent.wait_for(
        lambda: [json.loads(p) for t, p in subscription.messages() if t == topic],
        f"an MQTT message on {topic}",
        timeout=60,
    )
    assert retained[-1]["severity"] == "critical"
    assert retained[-1]["miner"] == mac
    agent.wait_for(
        lambda: [m for m in subscription.messages() if m[0].endswith("/telemetry")],
        "MQTT telemetry",
        timeout=30,
    )
    assert agent.stop() == 0
    output = agent.output() + subscription.path.read_text(errors="replace")
    assert MINER_SECRET not in output
    assert MQTT_SECRET not in output


def test_agent_miner_identified_late_drops_its_address_id_everywhere(
    emulator_factory, agent_factory, mosquitto, tmp_path
):
    """A miner first known by its address (web API failing), then by its MAC: one id at a time.

    The address id's series go, its retained Home Assistant config is emptied, MQTT gets
    ``miner_removed`` (reason ``renamed``) for it and ``miner_online`` for the MAC.
    """
    one = {**SCENARIO, "miners": [{"model": "antminer-s19jpro", "count": 1}]}
    emulator = emulator_factory(one, base_address="127.30.11.1")
    (address,) = emulator.addresses()
    mac = emulator.truth(address)["mac"].upper()
    emulator.inject(address, "reset", port="web")
    sub = MosquittoSub(mosquitto.host, mosquitto.port, tmp_path / "all.log", topic="#")
    try:
        mqtt = {
            "enabled": True,
            "host": mosquitto.host,
            "port": mosquitto.port,
            "home_assistant": {"enabled": True},
        }
        polling = {"slow_interval_s": 2.0}
        agent = agent_factory(
            agent_config([{"address": address}], interval_s=1.0, mqtt=mqtt, polling=polling)
        )

        def events(kind: str, miner: str) -> list[dict[str, Any]]:
            return [e for e in sub.events() if e.get("event") == kind and e.get("miner") == miner]

        agent.wait_for(lambda: events("miner_online", address), "miner_online for the address id")
        old_config = agent.wait_for(
            lambda: [
                t for t, p in sub.messages() if t.endswith("/config") and p not in ("", "(null)")
            ],
            "a Home Assistant config for the address id",
        )
        emulator.clear(address)
        agent.wait_for(lambda: events("miner_online", mac), "miner_online for the MAC", timeout=30)
        removed = agent.wait_for(
            lambda: events("miner_removed", address), "miner_removed for the address id"
        )
        assert removed[0]["reason"] == "renamed"
        agent.wait_for(
            lambda: [t for t, p in sub.messages() if t == old_config[0] and p in ("", "(null)")],
            "the address id's retained config emptied",
        )

        def one_id() -> bool:  # /metrics is refreshed at most once a second
            text = agent.metrics()
            up = f'asic_up{{site="golmud",miner="{mac}"}} 1' in text
            return up and f'miner="{address}"' not in text

        agent.wait_for(one_id, "series under the MAC only", timeout=10)
    finally:
        sub.close()


def test_agent_discovery_polls_miners_found_in_a_range(emulator_factory, agent_factory):
    """Miners found by a ``discovery:`` range are polled without being listed."""
    emulator = emulator_factory(SCENARIO, base_address=DISCOVERY_BASE)
    config = agent_config([], interval_s=2.0)
    config["discovery"] = [{"cidr": "127.30.5.0/29", "interval_s": 600}]
    agent = agent_factory(config)
    macs = {emulator.truth(m["address"])["mac"].upper() for m in emulator.miners()}

    def all_up() -> bool:
        text = agent.metrics()
        return all(f'asic_up{{site="golmud",miner="{mac}"}} 1' in text for mac in macs)

    agent.wait_for(all_up, "every discovered miner up", timeout=90)
