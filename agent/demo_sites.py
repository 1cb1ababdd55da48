"""``python -m agent.demo --sites N``: N emulated sites feeding one central view, all on loopback.

Per site (altitudes 2,275 m, 2,800 m, 3,500 m, … from deploy/scenarios/): the emulator, a site
mosquitto (persistence with the site kit's 10-s autosave) bridged to the central broker with
the site kit's topics, QoS and persistent session, the agent (MQTT to its site broker, the
bridge state topic exported), and a vmagent with a disk queue remote-writing to central.
Central: one VictoriaMetrics and one mosquitto. TLS and passwords of the kits are left out:
everything stays on 127.0.0.1. Prints the central URLs; Ctrl-C stops everything.
"""

from __future__ import annotations

import getpass
import shutil
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from agent.demo import (
    AGENT_READY_S,
    BROKER_READY_S,
    REPO,
    DemoError,
    _accepts,
    _http_status,
    _scenario_site,
    free_port,
    wait_until,
)

if TYPE_CHECKING:
    from pathlib import Path

    from agent.demo import Demo

SCENARIOS = ("xining-2275", "golmud-2800", "heatwave-3500", "sea-level")
SITE_BASE = "127.78.{index}.1"
MINERS_PER_SITE = 20
VM_READY_S = 60.0


@dataclass
class Central:
    """Ports of the central store and broker."""

    vm_port: int
    broker_port: int


def _binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        msg = f"{name} is not installed (make setup installs Debian's packages as root)"
        raise DemoError(msg)
    return path


def _mosquitto_conf(path: Path, port: int, extra: list[str]) -> None:
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "persistence true",
        f"persistence_location {path.parent}/",
        "autosave_interval 10",  # deploy/site/mosquitto.conf: what a SIGKILL can lose
        "max_queued_messages 1000000",
        "log_dest stderr",
        f"user {getpass.getuser()}",  # a privilege drop would clear PR_SET_PDEATHSIG
        *extra,
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def start_central(demo: Demo) -> Central:
    """One VictoriaMetrics and one mosquitto."""
    central = Central(free_port(), free_port())
    data = demo.workdir / "central"
    data.mkdir()
    demo.spawn(
        "central-victoria-metrics",
        [
            _binary("victoria-metrics"),
            f"-storageDataPath={data / 'vm'}",
            f"-httpListenAddr=127.0.0.1:{central.vm_port}",
            "-retentionPeriod=1",
            "-loggerLevel=WARN",
        ],
    )
    conf = data / "mosquitto.conf"
    _mosquitto_conf(conf, central.broker_port, [])
    demo.spawn("central-mosquitto", [_binary("mosquitto"), "-c", str(conf)])
    health = f"http://127.0.0.1:{central.vm_port}/health"
    wait_until(lambda: _http_status(health) == 200, "VictoriaMetrics", VM_READY_S, alive=demo.alive)  # noqa: PLR2004 - HTTP OK
    wait_until(
        lambda: _accepts("127.0.0.1", central.broker_port),
        "the central broker",
        BROKER_READY_S,
        alive=demo.alive,
    )
    return central


def start_site(demo: Demo, index: int, central: Central) -> dict[str, Any]:
    """Emulator, bridged site broker, agent and vmagent of site ``index``."""
    from agent.demo import start_emulator  # noqa: PLC0415 - reuse, renamed below

    scenario = REPO / "deploy" / "scenarios" / f"{SCENARIOS[index % len(SCENARIOS)]}.yaml"
    site = _scenario_site(scenario)
    name = site["name"]
    workdir = demo.workdir / name
    workdir.mkdir()
    start_emulator(demo, scenario, SITE_BASE.format(index=index), MINERS_PER_SITE)
    demo.children[-1].name = f"{name}-emulator"
    assert demo.emulator_control is not None
    control = demo.emulator_control
    broker = free_port()
    topics = [
        f"topic altiwatch/v1/{name}/events out 1",
        f"topic altiwatch/v1/{name}/+/alarm/# out 1",
        f"topic altiwatch/v1/{name}/agent/+/status out 1",
    ]
    _mosquitto_conf(
        workdir / "mosquitto.conf",
        broker,
        [
            "connection central",
            f"address 127.0.0.1:{central.broker_port}",
            f"remote_clientid bridge-{name}",
            f"local_clientid bridge-{name}-local",
            "cleansession false",
            "restart_timeout 2 30",
            "notifications true",
            f"notification_topic altiwatch/v1/{name}/bridge/state",
            *topics,
        ],
    )
    demo.spawn(f"{name}-mosquitto", [_binary("mosquitto"), "-c", str(workdir / "mosquitto.conf")])
    wait_until(
        lambda: _accepts("127.0.0.1", broker), f"{name}'s broker", BROKER_READY_S, alive=demo.alive
    )
    from agent.demo import _emulator_miners  # noqa: PLC0415 - same helper as the one-site demo

    agent_port = free_port()
    config = {
        "agent": {"id": f"{name}-a", "state_dir": str(workdir / "state"), "log_format": "json"},
        "sites": [site],
        "miners": [{"address": m["address"]} for m in _emulator_miners(control)],
        "polling": {"interval_s": 10, "slow_interval_s": 60, "timeout_s": 8},
        "http": {"listen": f"127.0.0.1:{agent_port}"},
        "mqtt": {
            "enabled": True,
            "host": "127.0.0.1",
            "port": broker,
            "bridge_state_topic": f"altiwatch/v1/{name}/bridge/state",
        },
    }
    config_path = workdir / "altiwatch.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    demo.spawn(
        f"{name}-agent", [sys.executable, "-m", "agent", "run", "--config", str(config_path)]
    )
    scrape = {
        "global": {"scrape_interval": "10s", "scrape_timeout": "8s"},
        "scrape_configs": [
            {
                "job_name": "altiwatch",
                "honor_labels": True,
                "static_configs": [
                    {"targets": [f"127.0.0.1:{agent_port}"], "labels": {"site": name}}
                ],
            }
        ],
    }
    (workdir / "vmagent.yml").write_text(yaml.safe_dump(scrape), encoding="utf-8")
    demo.spawn(
        f"{name}-vmagent",
        [
            _binary("vmagent"),
            f"-promscrape.config={workdir / 'vmagent.yml'}",
            f"-httpListenAddr=127.0.0.1:{free_port()}",
            f"-remoteWrite.url=http://127.0.0.1:{central.vm_port}/api/v1/write",
            f"-remoteWrite.tmpDataPath={workdir / 'vmagent-queue'}",
            "-remoteWrite.maxDiskUsagePerURL=1GiB",
            "-promscrape.maxScrapeSize=64MiB",
            "-loggerLevel=WARN",
        ],
    )
    url = f"http://127.0.0.1:{agent_port}"
    wait_until(
        lambda: _http_status(f"{url}/readyz") == 200,  # noqa: PLR2004 - HTTP OK
        f"{name}'s agent",
        AGENT_READY_S,
        alive=demo.alive,
        interval_s=0.25,
    )
    return {"name": name, "altitude_m": site["altitude_m"], "agent": url, "emulator": control}


def banner(central: Central, sites: list[dict[str, Any]]) -> str:
    """What the many-sites demo prints once everything is up."""
    vm = f"http://127.0.0.1:{central.vm_port}"
    query = "sum+by+(site)+(altiwatch_miners_up)"
    lines = [
        "",
        f"altiwatch many-sites demo: {len(sites)} sites, one central view.",
        "",
        f"  Central VictoriaMetrics: {vm}/vmui",
        f"  Miners up per site:      {vm}/api/v1/query?query={query}",
        (
            f"  Central MQTT:            mosquitto_sub -h 127.0.0.1 -p {central.broker_port}"
            " -t 'altiwatch/v1/+/events' -v"
        ),
        (
            f"  Event audit:             altiwatch events audit --port {central.broker_port}"
            " --duration 60"
        ),
        "",
    ]
    lines.extend(
        f"  {s['name']} ({s['altitude_m']:,.0f} m): agent {s['agent']}/metrics,"
        f" emulator {s['emulator']}"
        for s in sites
    )
    lines += ["", "Press Ctrl-C to stop.", ""]
    return "\n".join(lines)


def start(demo: Demo, count: int) -> str:
    """Start central and ``count`` sites; return the banner."""
    central = start_central(demo)
    sites = [start_site(demo, index, central) for index in range(count)]
    return banner(central, sites)
