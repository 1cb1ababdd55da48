"""The real agent polling a mixed emulated fleet of every family (issue 3's must-show).

One emulator (33 miners: stock S19j Pro and S21, Whatsminer M30S+ and M50, Avalon 15-194,
VNish, Braiins OS+, Bitaxe Ultra and Gamma, LuxOS S19 XP) and one agent subprocess are shared
by the module; one miner is offline from the start.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.agent import agent_config, wait_until
from tests.support.prometheus import promtool_check_metrics

if TYPE_CHECKING:
    from tests.support.agent import AgentProcess
    from tests.support.emulator import EmulatorHandle

BASE = "127.30.1.1"
OFFLINE = "127.30.1.32"
MIX = {
    "name": "mixed-fleet",
    "site": {"name": "golmud", "altitude_m": 2800},
    "miners": [
        {"model": "antminer-s19jpro", "count": 5},
        {"model": "antminer-s21", "count": 3},
        {"model": "whatsminer-m30s+ve40", "count": 4},
        {"model": "whatsminer-m50", "count": 2},
        {"model": "avalon-15-194", "count": 4},
        {"model": "vnish-s19jpro", "count": 4},
        {"model": "braiins-s19jpro", "count": 4},
        {"model": "bitaxe-ultra", "count": 3},
        {"model": "bitaxe-gamma", "count": 3},
        {"model": "luxos-s19xp", "count": 1},
    ],
}
FAMILIES = {"antminer", "whatsminer", "avalon", "vnish", "braiins", "bitaxe", "luxos"}

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Parse an exposition into {sample name: [(labels, value)]}."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def by_miner(rows: list[tuple[dict[str, str], float]]) -> dict[str, float]:
    """{miner id: value} for series with only site/miner labels."""
    return {labels["miner"]: value for labels, value in rows}


@pytest.fixture(scope="module")
def fleet(
    module_emulator_factory: Any, module_agent_factory: Any
) -> tuple[EmulatorHandle, AgentProcess]:
    """The emulated fleet (one miner offline) and an agent polling it every 3 s."""
    emulator = module_emulator_factory(MIX, base_address=BASE)
    emulator.inject(OFFLINE, "offline")
    miners = [{"address": m["address"]} for m in emulator.miners()]
    config = agent_config(miners, interval_s=3.0)
    agent = module_agent_factory(config)
    return emulator, agent


def test_agent_fleet_covers_every_family(fleet):
    """The emulated fleet has at least 30 miners and every family."""
    emulator, _ = fleet
    miners = emulator.miners()
    assert len(miners) >= 30
    assert {m["family"] for m in miners} == FAMILIES


def test_agent_fleet_metrics_match_emulator_truth(fleet):
    """Hashrate, max chip temperature and fan speeds on /metrics equal the emulator's truth."""
    emulator, agent = fleet
    healthy = [m for m in emulator.miners() if m["address"] != OFFLINE]
    emulator.pause()
    try:
        paused_at = time.time()

        def all_polled_after_pause() -> bool:
            rows = samples(agent.metrics()).get("asic_last_poll_success_timestamp_seconds", [])
            fresh = {labels["miner"] for labels, value in rows if value > paused_at + 0.5}
            return len(fresh) >= len(healthy)

        agent.wait_for(all_polled_after_pause, "a poll of every miner after the pause", 60)
        metrics = samples(agent.metrics())
        hashrate = by_miner(metrics["asic_hashrate_hashes_per_second"])
        chips: dict[str, float] = {}
        for labels, value in metrics["asic_chip_temperature_celsius"]:
            chips[labels["miner"]] = max(value, chips.get(labels["miner"], value))
        fans: dict[str, dict[int, float]] = {}
        for labels, value in metrics["asic_fan_speed_rpm"]:
            fans.setdefault(labels["miner"], {})[int(labels["fan"])] = value
        mismatches = []
        for miner in healthy:
            truth = emulator.truth(miner["address"])
            mid = truth["mac"].upper()
            want_chip = max(b["chip_temp_c"] for b in truth["boards"] if not b["missing"])
            want_fans = {f["index"]: f["rpm"] for f in truth["fans"]}
            got = (hashrate.get(mid), chips.get(mid), fans.get(mid))
            if (
                got[0] is None
                or got[0] != pytest.approx(truth["hashrate_hs"], rel=2e-3)
                or got[1] != pytest.approx(want_chip, abs=0.5)
                or got[2] != want_fans
            ):
                mismatches.append(
                    (
                        miner["address"],
                        truth["family"],
                        got,
                        truth["hashrate_hs"],
                        want_chip,
                        want_fans,
                    )
                )
        assert not mismatches, json.dumps(mismatches, indent=1)
    finally:
        emulator.resume()


def test_agent_fleet_offline_miner_is_down_with_reason(fleet):
    """The offline miner shows asic_up 0 and asic_last_poll_error_info with a reason."""
    _, agent = fleet
    metrics = samples(agent.metrics())
    up = by_miner(metrics["asic_up"])
    assert up[OFFLINE] == 0
    assert sum(1 for v in up.values() if v == 1) >= 31
    errors = {
        labels["miner"]: labels["reason"] for labels, _ in metrics["asic_last_poll_error_info"]
    }
    assert errors[OFFLINE] == "refused"
    status, body = agent.fetch("/api/v1/fleet")
    assert status == 200
    offline = [m for m in json.loads(body) if m["address"] == OFFLINE]
    assert offline[0]["up"] is False
    assert offline[0]["last_error"] == "refused"
    assert offline[0]["hashrate_hs"] is None


def test_agent_fleet_exposition_passes_promtool(fleet):
    """Promtool check metrics passes on the real exposition of the whole fleet."""
    _, agent = fleet
    code, output = promtool_check_metrics(agent.metrics())
    assert code == 0, output


def test_agent_fleet_scraped_by_real_prometheus(fleet, prometheus_factory):
    """A real Prometheus scraping the agent has asic_hashrate_hashes_per_second for every healthy miner."""
    emulator, agent = fleet
    healthy = {
        emulator.truth(m["address"])["mac"].upper()
        for m in emulator.miners()
        if m["address"] != OFFLINE
    }
    prometheus = prometheus_factory([agent.url.removeprefix("http://")])
    result = prometheus.wait_for_series("asic_hashrate_hashes_per_second", len(healthy))
    assert {r["metric"]["miner"] for r in result} == healthy
    assert all(float(r["value"][1]) > 0 for r in result)
    up = prometheus.query('up{job="altiwatch"}')
    assert [r["value"][1] for r in up] == ["1"]
    wait_until(lambda: prometheus.query("asic_up == 0"), "asic_up 0 in Prometheus")


RATED_MAX_RPM = {"antminer-s21": 6600, "whatsminer": 7000, "avalon": 6800}
"""Rated max rpm of the alarm presets; 6000 for S19-class and Bitaxe."""


def test_agent_fleet_fan_duty_and_threshold_sensor_per_family(fleet):
    """Every healthy miner: duty = fastest fan / its preset's rated max rpm; stock S19 on board."""
    emulator, agent = fleet
    healthy = [m for m in emulator.miners() if m["address"] != OFFLINE]

    def complete() -> dict[str, Any] | None:
        metrics = samples(agent.metrics())
        duty = by_miner(metrics.get("asic_fan_duty_ratio", []))
        if not all(m["mac"].upper() in duty for m in healthy):
            return None
        return metrics

    metrics = agent.wait_for(complete, "asic_fan_duty_ratio of every healthy miner", 60)
    duty = by_miner(metrics["asic_fan_duty_ratio"])
    rated = by_miner(metrics["asic_fan_max_rpm"])
    fastest: dict[str, float] = {}
    for labels, value in metrics["asic_fan_speed_rpm"]:
        fastest[labels["miner"]] = max(value, fastest.get(labels["miner"], value))
    sensors = {
        labels["miner"]: labels["sensor"]
        for labels, _ in metrics["asic_temperature_threshold_celsius"]
    }
    sea_level = {
        (labels["miner"], labels["kind"]): value
        for labels, value in metrics["asic_temperature_threshold_sea_level_celsius"]
    }
    wrong = []
    for miner in healthy:
        mid = miner["mac"].upper()
        key = "antminer-s21" if "S21" in miner["model"] else miner["family"]
        want_rated = RATED_MAX_RPM.get(key, 6000)
        stock_s19 = miner["family"] == "antminer" and "S19" in miner["model"]
        want_sensor = "board" if stock_s19 else "die"
        got = (rated.get(mid), duty.get(mid), sensors.get(mid))
        if (
            got[0] != want_rated
            or got[1] != pytest.approx(min(fastest[mid] / want_rated, 1.5))
            or got[2] != want_sensor
            or (mid, "critical") not in sea_level
        ):
            wrong.append((miner["address"], miner["family"], miner["model"], got, want_rated))
    assert not wrong, json.dumps(wrong, indent=1)


def test_agent_fleet_luxos_has_mac_id_measured_power_and_atm_state(fleet):
    """The LuxOS S19 XP: its MAC is its id (pyasic 0.79 drops it), power measured, ATM on."""
    emulator, agent = fleet
    lux = next(m for m in emulator.miners() if m["family"] == "luxos")
    truth = emulator.truth(lux["address"])
    mid = truth["mac"].upper()

    def complete() -> dict[str, Any] | None:
        metrics = samples(agent.metrics())
        return metrics if mid in by_miner(metrics.get("asic_atm_enabled", [])) else None

    metrics = agent.wait_for(complete, "asic_atm_enabled of the LuxOS miner", 60)
    assert by_miner(metrics["asic_atm_enabled"]) == {mid: 1.0}  # no other family has ATM
    info = next(labels for labels, _ in metrics["asic_miner_info"] if labels["miner"] == mid)
    assert (info["firmware"], info["model"], info["address"]) == (
        "LuxOS",
        "S19 XP",
        lux["address"],
    )
    power = {
        labels["miner"]: (labels["source"], value) for labels, value in metrics["asic_power_watts"]
    }
    assert power[mid][0] == "measured"
    assert power[mid][1] == pytest.approx(truth["power_w"], rel=0.05)
    limits = by_miner(metrics["asic_power_limit_watts"])
    assert limits[mid] == pytest.approx(3010)  # the active LuxOS profile's Watts
