"""Figures of the many-sites kits (issue 17), with Debian's vmagent and VictoriaMetrics.

``python -m tests.benchmarks.multisite wan [--miners 200] [--minutes 5]``
    WAN bytes per miner per hour, full and with deploy/site/wan-diet.yml: one emulated site,
    its agent, two vmagents with the site kit's flags (one with the diet) each writing to its
    own VictoriaMetrics; ``vmagent_remotewrite_bytes_sent_total`` (compressed request bodies,
    without HTTP/TLS framing) per scrape, scaled to the kit's 30-s scrape interval.

``python -m tests.benchmarks.multisite backfill [--miners 500] [--outage-s 600]``
    Central down for ``--outage-s`` while vmagent (kit flags, rate limit 1 MB/s) queues on disk;
    then the time and rate at which the backlog drains, and what an hour's backlog of a
    10,000-miner site would take at that rate.

``python -m tests.benchmarks.multisite central [--sites 5] [--miners 200] [--minutes 3]``
    Central ingestion: ``--sites`` emulated sites (emulator, agent, vmagent each) writing into
    one VictoriaMetrics; its ingestion rate, active series, CPU and RSS.

Scrape and poll every ``--interval-s`` (10 s) to gather samples faster than the kit's 30 s;
per-hour figures are scaled to 30 s. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from tests.support.agent import AgentProcess, agent_config
from tests.support.emulator import start_emulator
from tests.support.multisite import SITE_KIT, VictoriaMetrics, VmAgent, http_get
from tests.support.ports import free_port

KIT_SCRAPE_S = 30.0


def _site(
    workdir: Path, name: str, base: str, miners: int, interval_s: float
) -> tuple[Any, AgentProcess]:
    scenario = {
        "name": name,
        "site": {"name": name, "altitude_m": 2800},
        "miners": [{"model": "antminer-s19jpro", "count": miners}],
    }
    emulator = start_emulator(scenario, base_address=base, tmp_dir=workdir)
    config = agent_config(
        [{"address": a} for a in emulator.addresses()], site=name, interval_s=interval_s
    )
    state = workdir / f"agent-{name}"
    state.mkdir()
    config["agent"] = {**config["agent"], "id": name, "state_dir": str(state / "state")}
    config["http"] = {"listen": f"127.0.0.1:{free_port()}"}
    agent = AgentProcess(state, config, {})
    agent.wait_ready(timeout=300)
    return emulator, agent


def _vmagent(
    workdir: Path, site: str, targets: list[str], url: str, interval_s: float, **flags: str | None
) -> VmAgent:
    scrape = yaml.safe_load((SITE_KIT / "vmagent.yml").read_text(encoding="utf-8"))
    scrape["global"] = {
        "scrape_interval": f"{interval_s:g}s",
        "scrape_timeout": f"{interval_s * 0.8:g}s",
    }
    scrape["scrape_configs"][0]["static_configs"][0]["targets"] = targets
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "vmagent.yml"
    path.write_text(yaml.safe_dump(scrape), encoding="utf-8")
    return VmAgent(
        workdir,
        path,
        url,
        ALTIWATCH_SITE=site,
        remoteWrite_basicAuth_username=None,
        remoteWrite_basicAuth_passwordFile=None,
        remoteWrite_tlsCAFile=None,
        **flags,
    ).start()


def _vm_metric(url: str, name: str) -> float:
    status, body = http_get(f"{url}/metrics")
    assert status == 200
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in {" ", "{"}:
            total += float(line.rsplit(" ", 1)[1])
    return total


def wan(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """WAN bytes per miner per hour, full and diet."""
    emulator, agent = _site(workdir, "golmud", "127.173.0.1", args.miners, args.interval_s)
    target = [agent.url.removeprefix("http://")]
    (workdir / "vm-full").mkdir()
    (workdir / "vm-diet").mkdir()
    full_vm = VictoriaMetrics(workdir / "vm-full").start()
    diet_vm = VictoriaMetrics(workdir / "vm-diet").start()
    full = _vmagent(
        workdir / "va-full", "golmud", target, f"{full_vm.url}/api/v1/write", args.interval_s
    )
    diet = _vmagent(
        workdir / "va-diet",
        "golmud",
        target,
        f"{diet_vm.url}/api/v1/write",
        args.interval_s,
        remoteWrite_urlRelabelConfig=str(SITE_KIT / "wan-diet.yml"),
    )
    try:
        time.sleep(args.interval_s * 3)  # warm-up: first scrapes carry the series' first samples
        start = {
            key: (
                va.metric("vmagent_remotewrite_bytes_sent_total"),
                va.metric("vm_promscrape_scrapes_total"),
            )
            for key, va in (("full", full), ("diet", diet))
        }
        rows0 = {
            k: _vm_metric(vm.url, "vm_rows_inserted_total")
            for k, vm in (("full", full_vm), ("diet", diet_vm))
        }
        time.sleep(args.minutes * 60)
        out: dict[str, Any] = {
            "miners": args.miners,
            "interval_s": args.interval_s,
            "minutes": args.minutes,
        }
        for key, agent_ in (("full", full), ("diet", diet)):
            sent = agent_.metric("vmagent_remotewrite_bytes_sent_total") - start[key][0]
            scrapes = agent_.metric("vm_promscrape_scrapes_total") - start[key][1]
            per_scrape_per_miner = sent / scrapes / args.miners
            rows = (
                _vm_metric((full_vm if key == "full" else diet_vm).url, "vm_rows_inserted_total")
                - rows0[key]
            )
            out[key] = {
                "bytes_sent": sent,
                "scrapes": scrapes,
                "bytes_per_miner_per_scrape": round(per_scrape_per_miner, 1),
                "bytes_per_miner_per_hour_at_30s": round(
                    per_scrape_per_miner * 3600 / KIT_SCRAPE_S
                ),
                "samples_per_miner_per_scrape": round(rows / scrapes / args.miners, 1),
            }
        return out
    finally:
        for service in (full, diet, full_vm, diet_vm):
            service.stop()
        agent.stop()
        emulator.stop()


def backfill(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Back-fill time and rate after an outage of ``--outage-s``."""
    emulator, agent = _site(workdir, "golmud", "127.173.0.1", args.miners, args.interval_s)
    vm = VictoriaMetrics(workdir).start()
    va = _vmagent(
        workdir / "va",
        "golmud",
        [agent.url.removeprefix("http://")],
        f"{vm.url}/api/v1/write",
        args.interval_s,
    )
    try:
        time.sleep(args.interval_s * 3)
        vm.stop()
        down = time.time()
        sent0 = va.metric("vmagent_remotewrite_bytes_sent_total")
        time.sleep(args.outage_s)
        queued = va.metric("vm_persistentqueue_bytes_pending")
        vm.start()
        up = time.time()
        while va.metric("vmagent_remotewrite_bytes_sent_total") - sent0 < 1:
            time.sleep(0.2)
        resumed = time.time()  # vmagent's retry back-off (up to 1 min in 1.79) ends here
        sent_resumed = va.metric("vmagent_remotewrite_bytes_sent_total")
        while va.metric("vm_persistentqueue_bytes_pending") > 0:
            time.sleep(0.2)
        drained = time.time()
        # The last blocks of the outage may still be in vmagent's retry back-off: wait until
        # central has every scrape of the outage for one miner (no step above 1.5 intervals).
        while True:
            series = vm.export('asic_up{site="golmud"}', down, up)
            stamps = sorted(series[0]["timestamps"]) if series else []
            points = [down * 1000, *stamps, up * 1000]
            if max(b - a for a, b in itertools.pairwise(points)) <= 1500 * args.interval_s:
                break
            time.sleep(1)
        complete = time.time()
        sent = va.metric("vmagent_remotewrite_bytes_sent_total") - sent0
        rate = (va.metric("vmagent_remotewrite_bytes_sent_total") - sent_resumed) / max(
            drained - resumed, 1e-3
        )
        return {
            "miners": args.miners,
            "interval_s": args.interval_s,
            "outage_s": round(up - down),
            "queued_bytes_at_return": queued,
            "bytes_sent_after_return": sent,
            "sending_resumed_after_s": round(resumed - up, 1),
            "queue_drained_s": round(drained - up, 1),
            "backfill_complete_s": round(complete - up, 1),
            "drain_rate_bytes_per_s": round(rate),
            "rate_limit_bytes_per_s": 1_000_000,
        }
    finally:
        va.stop()
        vm.stop()
        agent.stop()
        emulator.stop()


def central(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Central ingestion with ``--sites`` emulated sites."""
    vm = VictoriaMetrics(workdir).start()
    sites = []
    agents = []
    try:
        for index in range(args.sites):
            name = f"site{index}"
            site_dir = workdir / name
            site_dir.mkdir()
            emulator, agent = _site(
                site_dir, name, f"127.174.{index}.1", args.miners, args.interval_s
            )
            va = _vmagent(
                site_dir / "va",
                name,
                [agent.url.removeprefix("http://")],
                f"{vm.url}/api/v1/write",
                args.interval_s,
            )
            sites.append((emulator, agent))
            agents.append(va)
        time.sleep(args.interval_s * 3)
        rows0 = _vm_metric(vm.url, "vm_rows_inserted_total")
        cpu0 = _vm_metric(vm.url, "process_cpu_seconds_total")
        t0 = time.time()
        time.sleep(args.minutes * 60)
        elapsed = time.time() - t0
        rows = _vm_metric(vm.url, "vm_rows_inserted_total") - rows0
        cpu = _vm_metric(vm.url, "process_cpu_seconds_total") - cpu0
        series = vm.query('count({site=~".+"})')
        return {
            "sites": args.sites,
            "miners_per_site": args.miners,
            "interval_s": args.interval_s,
            "samples_per_s": round(rows / elapsed),
            "active_series": int(float(series[0]["value"][1])) if series else 0,
            "vm_cpu_cores": round(cpu / elapsed, 3),
            "vm_rss_bytes": _vm_metric(vm.url, "process_resident_memory_bytes"),
            "samples_per_s_per_core": round(rows / max(cpu, 1e-3)),
        }
    finally:
        for va in agents:
            va.stop()
        for emulator, agent in sites:
            agent.stop()
            emulator.stop()
        vm.stop()


def main(argv: list[str] | None = None) -> int:
    """Run one benchmark and print its JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bench", choices=["wan", "backfill", "central"])
    parser.add_argument("--miners", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--outage-s", type=float, default=600.0)
    parser.add_argument("--sites", type=int, default=5)
    parser.add_argument("--interval-s", type=float, default=10.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="altiwatch-multisite-") as tmp:
        result = {"wan": wan, "backfill": backfill, "central": central}[args.bench](args, Path(tmp))
    json.dump({"bench": args.bench, **result}, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
