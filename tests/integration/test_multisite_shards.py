"""Three shards of one site: hashmod-exact partition, one site at central, one alert per outage.

Real emulator (127.172.0.0/24, 60 miners), three real ``altiwatch run`` with
``agent.shard: {index: 0..2, count: 3}`` and the same ``sites:``, Debian's vmagent (site kit
flags) scraping all three into VictoriaMetrics, vmalert with the agents' rules
(deploy/prometheus/rules/, unchanged) and the central rules (deploy/central/rules/, ``for:``
shortened to seconds), and Alertmanager with the central kit's config. Debian's Prometheus
computes ``hashmod`` over the same addresses for the equality check.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from agent.shard import hashmod
from tests.support.agent import agent_config, wait_until
from tests.support.multisite import (
    CENTRAL_KIT,
    REPO,
    SITE_KIT,
    Alertmanager,
    Service,
    VictoriaMetrics,
    VmAgent,
    VmAlert,
    http_get,
    require_binaries,
)
from tests.support.ports import free_port
from tests.support.prometheus import PROMETHEUS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

pytestmark = pytest.mark.slow

SITE = "golmud"
SHARDS = 3
MINERS = 60
SCRAPE_S = 2.0


class Central:
    """The site's vmagent and the central VictoriaMetrics, vmalert and Alertmanager."""

    def __init__(self, workdir: Path, targets: list[str]) -> None:
        """Start central, then the vmagent scraping every shard."""
        self.vm = VictoriaMetrics(workdir).start()
        self.am = Alertmanager(workdir).start()
        rules = workdir / "central.rules.yml"
        text = (CENTRAL_KIT / "rules" / "central.rules.yml").read_text(encoding="utf-8")
        text = re.sub(r"for: \d+m", "for: 4s", text)
        # AltiwatchSiteSilent's windows in scrape intervals: "seen within 60 s, nothing for 8 s".
        text = text.replace("[1h]", "[60s]").replace("[5m]", f"[{4 * SCRAPE_S:g}s]")
        rules.write_text(text, encoding="utf-8")
        self.alert = VmAlert(
            workdir,
            datasource=self.vm.url,
            rules=[REPO / "deploy" / "prometheus" / "rules" / "altiwatch.rules.yml", rules],
            notifier=self.am.url,
        ).start()
        scrape = yaml.safe_load((SITE_KIT / "vmagent.yml").read_text(encoding="utf-8"))
        scrape["global"] = {"scrape_interval": f"{SCRAPE_S:g}s", "scrape_timeout": "1500ms"}
        scrape["scrape_configs"][0]["static_configs"][0]["targets"] = targets
        config = workdir / "vmagent.yml"
        config.write_text(yaml.safe_dump(scrape), encoding="utf-8")
        self.vmagent = VmAgent(
            workdir,
            config,
            f"{self.vm.url}/api/v1/write",
            ALTIWATCH_SITE=SITE,
            remoteWrite_basicAuth_username=None,
            remoteWrite_basicAuth_passwordFile=None,
            remoteWrite_tlsCAFile=None,
        ).start()

    def value(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """(labels, value) of each series of an instant query."""
        return [(r["metric"], float(r["value"][1])) for r in self.vm.query(expr)]

    def stop(self) -> None:
        """Stop everything."""
        for service in (self.vmagent, self.alert, self.am, self.vm):
            service.stop()


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
    module_emulator_factory: Callable[..., Any],
    module_agent_factory: Callable[..., Any],
) -> Iterator[tuple[Any, list[Any], Central]]:
    """60 emulated miners, three shard agents, the central stack."""
    require_binaries("victoria-metrics", "vmagent", "vmalert", "prometheus-alertmanager")
    scenario = {
        "name": "multisite-shards",
        "site": {"name": SITE, "altitude_m": 2800},
        "miners": [{"model": "antminer-s19jpro", "count": MINERS}],
    }
    emulator = module_emulator_factory(scenario, base_address="127.172.0.1")
    miners = [{"address": a} for a in emulator.addresses()]
    agents = []
    for index in range(SHARDS):
        config = agent_config(miners, site=SITE, interval_s=SCRAPE_S)
        config["agent"] = {**config["agent"], "id": f"shard-{index}"}
        config["agent"]["shard"] = {"index": index, "count": SHARDS}
        agents.append(module_agent_factory(config, wait_ready=False))
    for agent in agents:
        agent.wait_ready()
    central = Central(
        tmp_path_factory.mktemp("central"), [a.url.removeprefix("http://") for a in agents]
    )
    yield emulator, agents, central
    central.stop()


def polled(agent: Any) -> set[str]:
    """Addresses an agent polls (its /api/v1/fleet)."""
    status, body = agent.fetch("/api/v1/fleet")
    assert status == 200
    return {m["address"] for m in json.loads(body)}


def prometheus_hashmod(workdir: Path, addresses: list[str], modulus: int) -> dict[str, int]:
    """What Debian's Prometheus relabel ``hashmod`` gives each address (its targets API)."""
    port = free_port()
    config = {
        "global": {"scrape_interval": "1h"},
        "scrape_configs": [
            {
                "job_name": "shards",
                "static_configs": [{"targets": addresses}],
                "relabel_configs": [
                    {
                        "source_labels": ["__address__"],
                        "modulus": modulus,
                        "target_label": "shard",
                        "action": "hashmod",
                    },
                    {"source_labels": ["__address__"], "target_label": "address"},
                ],
            }
        ],
    }
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    server = Service(
        "prometheus",
        [
            PROMETHEUS,
            f"--config.file={path}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        workdir,
        ready_url=f"http://127.0.0.1:{port}/-/ready",
    ).start()
    try:

        def targets() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = json.loads(
                http_get(f"http://127.0.0.1:{port}/api/v1/targets")[1]
            )["data"]["activeTargets"]
            return found if len(found) == len(addresses) else []

        found = wait_until(targets, "Prometheus' targets", timeout=30)
        return {t["labels"]["address"]: int(t["labels"]["shard"]) for t in found}
    finally:
        server.stop()


def test_shards_partition_sixty_miners_exactly_as_prometheus_hashmod(
    site: tuple[Any, list[Any], Central], tmp_path: Path
):
    """Each address is polled by exactly one shard: the one Prometheus' hashmod names."""
    emulator, agents, _ = site
    addresses = emulator.addresses()
    expected = prometheus_hashmod(tmp_path, addresses, SHARDS)
    assert expected == {a: hashmod(a, SHARDS) for a in addresses}
    shards = [polled(agent) for agent in agents]
    assert sorted(a for shard in shards for a in shard) == sorted(addresses)
    for index, shard in enumerate(shards):
        assert shard == {a for a, s in expected.items() if s == index}, index


def test_central_sums_the_shards_as_one_site(site: tuple[Any, list[Any], Central]):
    """Central sees one site of 60 miners, every miner once, from three agents."""
    _, _, central = site

    def summed() -> list[tuple[dict[str, str], float]]:
        rows = central.value("sum by (site) (altiwatch_inventory_miners)")
        return rows if rows and rows[0][1] == MINERS else []

    rows = wait_until(summed, "60 miners summed at central", timeout=60)
    assert [labels["site"] for labels, _ in rows] == [SITE]
    assert central.value(f'count(asic_up{{site="{SITE}"}})')[0][1] == MINERS
    assert central.value("count(count by (instance) (altiwatch_inventory_miners))")[0][1] == SHARDS
    ups = central.value('count by (site) (up{job="altiwatch"})')
    assert ups == [({"site": SITE}, SHARDS)]


def test_site_outage_across_two_shards_is_one_central_alert(
    site: tuple[Any, list[Any], Central],
):
    """Every miner of shards 0 and 1 offline: one un-inhibited alert for the site, not one per shard."""
    emulator, agents, central = site
    down = sorted(polled(agents[0]) | polled(agents[1]))
    assert len(down) / MINERS > 0.3
    for address in down:
        emulator.inject(address, "offline")
    started = time.monotonic()

    def shard_alarms() -> set[str]:
        return {
            a["labels"]["instance"]
            for a in central.alert.alerts()
            if a["labels"].get("alertname") == "AltiwatchSiteAlarm" and a.get("state") == "firing"
        }

    def settled() -> list[dict[str, Any]]:
        """Both shards' own site alarms at Alertmanager, and the central outage alert."""
        at_am = [a for a in central.am.alerts(active="true") if a["labels"].get("site") == SITE]
        names = [a["labels"]["alertname"] for a in at_am]
        enough = names.count("AltiwatchSiteAlarm") >= 2 and "AltiwatchSiteOutage" in names
        return at_am if enough and len(shard_alarms()) == 2 else []

    wait_until(settled, "both shards' site alarms and AltiwatchSiteOutage", timeout=90, every=0.5)
    unmuted = [
        a["labels"]["alertname"]
        for a in central.am.alerts(active="true", inhibited="false", silenced="false")
        if a["labels"].get("site") == SITE
    ]
    assert unmuted == ["AltiwatchSiteOutage"], central.am.alerts(active="true")
    print(f"one central alert {time.monotonic() - started:.0f} s after the outage began")
    # The outage stays: the next test reads the dashboards with offline miners and alarms.


def test_dashboards_work_unchanged_at_central(site: tuple[Any, list[Any], Central]):
    """Every dashboard query is accepted by VictoriaMetrics and has data (site = all sites)."""
    from tests.integration.test_dashboards_prometheus import (  # noqa: PLC0415 - reuse its lists
        EXPR_METRIC,
        NOT_EXPORTED,
    )
    from tests.unit.test_dashboards import dashboard_queries  # noqa: PLC0415

    _, _, central = site
    queries = dashboard_queries()

    def expected_empty(expr: str) -> bool:
        """Families this fleet and config cannot fill, each for a reason."""
        return bool(
            set(EXPR_METRIC.findall(expr)) & set(NOT_EXPORTED)
            or "altiwatch_mqtt_" in expr  # the shard agents run without MQTT
            or 'sensor="die"' in expr  # S19j Pro only: no die-sensor model (Bitaxe) here
            or expr.startswith("asic_alarm_active{")  # site outage: miner R7 alarms suppressed
        )

    def empty() -> dict[str, str]:
        # central.vm.query asserts HTTP 200: VictoriaMetrics accepts every query as written.
        return {
            query_id: expr
            for query_id, expr in queries
            if not central.vm.query(expr) and not expected_empty(expr)
        }

    last: dict[str, str] = {}

    def all_answer() -> bool:
        nonlocal last
        last = empty()
        return not last

    try:
        wait_until(all_answer, "every dashboard query answered", timeout=60, every=1.0)
    except pytest.fail.Exception:
        pytest.fail(
            "queries without data at central:\n" + "\n".join(f"{k}: {v}" for k, v in last.items())
        )


def test_site_gone_silent_is_one_central_alert_that_resolves(site: tuple[Any, list[Any], Central]):
    """The site's vmagent stops: vmalert fires AltiwatchSiteSilent for the site, then resolves."""
    _, _, central = site

    def silent() -> list[dict[str, Any]]:
        return [
            a
            for a in central.alert.alerts()
            if a["labels"].get("alertname") == "AltiwatchSiteSilent" and a.get("state") == "firing"
        ]

    assert silent() == []
    central.vmagent.stop()
    try:
        fired = wait_until(silent, "AltiwatchSiteSilent firing", timeout=60, every=0.5)
    finally:
        central.vmagent.start()
    assert [a["labels"]["site"] for a in fired] == [SITE]
    wait_until(lambda: not silent(), "AltiwatchSiteSilent resolved", timeout=60, every=0.5)


def test_central_rules_pass_promtool_checks_and_unit_tests():
    """Promtool accepts the central rules and their unit tests (for durations included) pass."""
    from tests.support.prometheus import PROMTOOL  # noqa: PLC0415 - only here

    rules = CENTRAL_KIT / "rules"
    for argv in (
        ["check", "rules", str(rules / "central.rules.yml")],
        ["test", "rules", str(rules / "central.rules.test.yml")],
    ):
        result = subprocess.run([PROMTOOL, *argv], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_kit_systemd_units_verify_cleanly():
    """The kits' units (vmagent, vmalert, vmauth) pass systemd-analyze verify without a word."""
    units = [
        SITE_KIT / "vmagent.service",
        CENTRAL_KIT / "vmalert.service",
        CENTRAL_KIT / "vmauth.service",
    ]
    for unit in units:
        result = subprocess.run(
            ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
        )
        assert (result.returncode, result.stdout + result.stderr) == (0, ""), unit
