import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.agent import AgentProcess, agent_config
from tests.support.prometheus import PrometheusServer
from tests.unit.test_dashboards import dashboard_queries

pytestmark = [pytest.mark.prometheus, pytest.mark.broker, pytest.mark.slow]

# Polls every 5 s with a 4 s timeout: slow enough that a loaded CI machine does not flap miners.
POLL_INTERVAL_S = 5.0
SCENARIO = {
    "name": "golmud-dashboards",
    "description": "A small Golmud hall for the dashboard test.",
    "site": {
        "name": "golmud",
        "altitude_m": 2800,
        "ambient": {"mean_c": 18, "amplitude_k": 4, "peak_hour": 15, "utc_offset_h": 8},
    },
    "miners": [
        {"model": "antminer-s19jpro", "count": 3, "hostname_prefix": "s19"},
        {"model": "bitaxe-ultra", "count": 1, "hostname_prefix": "bitaxe"},
    ],
}

# Metric families the agent declares but cannot fill with this fleet, each with the reason.
# The test checks the agent's /metrics really has no sample of them, so an entry here fails as
# soon as the agent starts exporting the family (then delete the entry).
NOT_EXPORTED = {
    "asic_inlet_temperature_celsius": "stock S19j Pro and Bitaxe firmware have no inlet sensor",
    "asic_power_limit_watts": "stock S19j Pro and Bitaxe firmware report no power limit",
    "asic_coolant_temperature_celsius": "no liquid-cooled miner in this fleet",
    "asic_coolant_flow_estimate_liters_per_minute": "no liquid-cooled miner in this fleet",
}

RULES = (
    Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules" / "altiwatch.rules.yml"
)
EXPR_METRIC = re.compile(r"\b(asic_[a-z_]+|altiwatch_[a-z_]+)\b")


def _deadline_loop(timeout: float) -> Iterator[None]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        yield
        time.sleep(0.5)


def _sampled_families(exposition: str) -> set[str]:
    names: set[str] = set()
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def _wait_identified(prometheus: PrometheusServer, agent: AgentProcess, count: int) -> None:
    """Wait until Prometheus has every miner's info series (fail with the agent's view)."""
    for _ in _deadline_loop(120):
        if len(prometheus.query("asic_miner_info")) >= count:
            return
    info = [line for line in agent.metrics().splitlines() if line.startswith("asic_")]
    pytest.fail("not every miner identified:\n" + "\n".join(info[:40]) + agent.output()[-3000:])


def test_dashboards_every_panel_query_returns_data_from_a_real_stack(
    emulator_factory, agent_factory, prometheus_factory, mosquitto
):
    """Real emulator → real agent → real Prometheus: every dashboard query returns data."""
    emulator = emulator_factory(SCENARIO, base_address="127.70.0.1")
    addresses = [m["address"] for m in emulator.miners()]
    assert len(addresses) == 4
    # The rack heat-map reads asic_miner_info's location labels: two S19 share rack 2 shelf 1.
    places = [("C1", "2", "1"), ("C1", "1", "2"), ("C1", "2", "1"), ("C2", "1", "1")]
    config = agent_config(
        [
            {"address": a, "location": {"container": c, "rack": r, "shelf": s}}
            for a, (c, r, s) in zip(addresses, places, strict=True)
        ],
        site="golmud",
        altitude_m=2800.0,
        interval_s=POLL_INTERVAL_S,
        mqtt={"enabled": True, "host": mosquitto.host, "port": mosquitto.port},
    )
    agent = agent_factory(config)
    host_port = agent.url.removeprefix("http://")
    prometheus = prometheus_factory([host_port], scrape_interval_s=1.0)

    # Every miner identified before faults are injected (the info metric carries the model).
    _wait_identified(prometheus, agent, 4)
    # A board lost on one S19 raises an alarm (board-missing rule); another S19 goes offline.
    s19 = [m["address"] for m in emulator.miners() if m["family"] == "antminer"]
    emulator.inject(s19[0], "board_lost", board=1)
    emulator.inject(s19[1], "offline")
    prometheus.wait_for_series("asic_alarm_active", 1, timeout=90)
    prometheus.wait_for_series("asic_up == 0", 1, timeout=90)
    # Range functions over 1m need two samples of each counter after the errors began.
    prometheus.wait_for_series("rate(altiwatch_poll_errors_total[1m]) > 0", 1, timeout=90)

    exported = _sampled_families(agent.metrics())
    for family, reason in NOT_EXPORTED.items():
        assert family not in exported, (
            f"{family} is exported now; drop it from NOT_EXPORTED ({reason})"
        )

    queries = dashboard_queries()
    empty: dict[str, str] = {}
    for _ in _deadline_loop(60):
        empty = {}
        for query_id, expr in queries:
            if prometheus.query(expr):
                continue
            missing = set(EXPR_METRIC.findall(expr)) & set(NOT_EXPORTED)
            if not missing:
                empty[query_id] = expr
        if not empty:
            break
    assert not empty, "queries without data:\n" + "\n".join(f"{k}: {v}" for k, v in empty.items())

    # The heat-map's cell is the least headroom of the miners at that rack and shelf.
    by_id = dict(queries)
    heat = prometheus.query(
        by_id["thermal-altitude.json:Rack heat-map: headroom by rack × shelf:A"]
    )
    cells = {(r["metric"]["rack"], r["metric"]["shelf"]): float(r["value"][1]) for r in heat}
    assert (
        {("C1 / 2", "1"), ("C2 / 1", "1")}
        <= set(cells)
        <= {
            ("C1 / 2", "1"),
            ("C1 / 1", "2"),  # the offline S19: no temperature, no headroom once it is stale
            ("C2 / 1", "1"),
        }
    )
    headroom = prometheus.query(by_id["thermal-altitude.json:Headroom to derated warning:A"])
    by_miner = {r["metric"]["miner"]: float(r["value"][1]) for r in headroom}
    shared = [i["metric"]["miner"] for i in prometheus.query('asic_miner_info{rack="2"}')]
    assert len(shared) == 2
    assert cells[("C1 / 2", "1")] == pytest.approx(min(by_miner[m] for m in shared), abs=0.5)


def test_dashboards_fleet_numbers_match_the_emulated_site(
    emulator_factory, agent_factory, prometheus_factory
):
    """The fleet-overview queries count the emulated miners right (up, down, hashrate > 0)."""
    emulator = emulator_factory(SCENARIO, base_address="127.70.1.1")
    addresses = [m["address"] for m in emulator.miners()]
    agent = agent_factory(
        agent_config([{"address": a} for a in addresses], site="golmud", interval_s=POLL_INTERVAL_S)
    )
    prometheus = prometheus_factory([agent.url.removeprefix("http://")], scrape_interval_s=1.0)
    _wait_identified(prometheus, agent, 4)
    queries = dict(dashboard_queries())
    up_query = queries["fleet-overview.json:Miners up:A"]
    down_query = queries["fleet-overview.json:Miners down:A"]

    def value(expr: str) -> float:
        result = prometheus.query(expr)
        assert len(result) == 1, (expr, result)
        return float(result[0]["value"][1])

    for _ in _deadline_loop(60):
        if value(up_query) == 4:
            break
    assert value(up_query) == 4
    assert value(down_query) == 0  # a real 0, not "no data"
    assert value(queries["fleet-overview.json:Fleet hashrate:A"]) > 1e12
    site = prometheus.query(queries["thermal-altitude.json:Site altitude:A"])
    assert [(s["metric"]["site"], float(s["value"][1])) for s in site] == [("golmud", 2800.0)]

    emulator.inject(addresses[0], "offline")
    for _ in _deadline_loop(60):
        if value(down_query) == 1:
            break
    assert value(down_query) == 1
    assert value(up_query) == 3


def _load_rules(prometheus: PrometheusServer) -> None:
    """Add deploy/prometheus/rules/altiwatch.rules.yml to the running server and reload it."""
    config = yaml.safe_load(prometheus.config_path.read_text(encoding="utf-8"))
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(RULES)]
    prometheus.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    request = urllib.request.Request(prometheus.url + "/-/reload", method="POST")  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
        assert response.status == 200


def test_alert_rules_mirror_a_real_agent_alarm(emulator_factory, agent_factory, prometheus_factory):
    """A board lost on an emulated S19 fires AltiwatchAlarmCritical in a real Prometheus."""
    emulator = emulator_factory(SCENARIO, base_address="127.70.5.1")
    miners = emulator.miners()
    agent = agent_factory(
        agent_config(
            [{"address": m["address"]} for m in miners], site="golmud", interval_s=POLL_INTERVAL_S
        )
    )
    prometheus = prometheus_factory([agent.url.removeprefix("http://")], scrape_interval_s=1.0)
    _load_rules(prometheus)
    prometheus.wait_for_series('site:asic_hashrate_hashes_per_second:sum{site="golmud"}', 1)
    assert prometheus.query('ALERTS{alertname="AltiwatchAlarmCritical"}') == []

    lost = next(m for m in miners if m["family"] == "antminer")
    emulator.inject(lost["address"], "board_lost", board=2)
    firing = prometheus.wait_for_series(
        'ALERTS{alertname="AltiwatchAlarmCritical", alertstate="firing"}', 1, timeout=90
    )
    labels = firing[0]["metric"]
    assert labels["miner"] == lost["mac"]
    assert labels["site"] == "golmud"
    assert labels["rule"] == "R6"
    assert labels["severity"] == "critical"

    emulator.clear(lost["address"])
    for _ in _deadline_loop(120):
        if not prometheus.query('ALERTS{alertname="AltiwatchAlarmCritical"}'):
            break
    assert prometheus.query('ALERTS{alertname="AltiwatchAlarmCritical"}') == [], "not resolved"
