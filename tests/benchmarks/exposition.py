"""/metrics latency and memory at fleet scale, with synthetic snapshots in the agent's own renderer.

``python -m tests.benchmarks.exposition --miners N`` builds, in this process, what an agent
polling N miners holds: N pyasic miner objects as ``PyasicSource`` caches them (built from a
model hint and tuned, no I/O), a ``FleetState`` with a fast and a slow snapshot per miner
(synthetic, S19-shaped: 3 boards, 4 fans, identity), the ``MetricsRenderer`` and the
``HttpApi``, and serves /metrics as the agent does, through the HTTP front process
(``agent.http_front``: nice 19, one fetch a second from this process over a Unix socket,
gzip made there) on a loopback port while, in the same event loop,

* an updater replaces ``N / interval`` snapshots per second with new values (what polling
  does to the fleet state, so the renderer really re-renders changed miners), and
* a poll-load task burns the CPU those polls would cost (``--poll-cpu-ms`` per poll, in
  slices of one poll), so scrapes queue behind polling as they would in the agent, and
* the renderer refreshes in the background as ``AgentService`` does (scrapes get a body at
  most ``METRICS_MAX_AGE_S`` old),

and a separate scraper process (``--scrape``) GETs /metrics repeatedly and reports each
latency. The same samples are then loaded into a ``prometheus_client`` registry of labelled
Gauges (the usual exporter pattern) and ``generate_latest`` is timed over it.

Prints one JSON object. Every figure from this module used synthetic snapshots.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.benchmarks.poll_worker import cpu_seconds, process_cpu_s, rss_bytes

SITE = "bench"
MODELS = ("antminer:Antminer S19j Pro", "antminer:Antminer S21", "vnish:Antminer S19j Pro")


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summarise_ms(values_s: list[float]) -> dict[str, float | int]:
    """Median, p99 and max of durations in seconds, reported in milliseconds."""
    if not values_s:
        return {"n": 0}
    return {
        "n": len(values_s),
        "median_ms": round(1000 * statistics.median(values_s), 2),
        "p99_ms": round(1000 * percentile(values_s, 0.99), 2),
        "max_ms": round(1000 * max(values_s), 2),
    }


def address_of(i: int) -> str:
    """The i-th synthetic miner address (127.86.0.0/16 and up, never contacted)."""
    return f"127.{86 + i // 65536}.{(i // 256) % 256}.{i % 256 or 1}"


class _Thresholds:
    warning_c = 80.5
    critical_c = 88.0
    inlet_max_c = 33.0


class _Alarms:
    """Stands in for the alarm engine: constant thresholds per miner, no active alarms."""

    def active(self) -> list[Any]:
        return []

    def thresholds(self, miner: str) -> Any:  # noqa: ARG002 — same for every miner
        return _Thresholds()

    def site_air(self, site: str) -> Any:  # noqa: ARG002 — no site air in this benchmark
        return None


def synthetic_fast(address: str, rng: random.Random, now: float) -> Any:
    """An S19-shaped fast-tier snapshot with noisy values."""
    from collectors.snapshot import BoardReading, FanReading, MinerSnapshot, PowerSource, Tier  # noqa: PLC0415

    boards = tuple(
        BoardReading(
            index=b,
            hashrate_hs=34.6e12 + rng.uniform(-5e11, 5e11),
            board_temp_c=round(rng.uniform(55, 65), 1),
            chip_temp_c=round(rng.uniform(68, 78), 1),
            chips=126,
            expected_chips=126,
        )
        for b in range(3)
    )
    return MinerSnapshot(
        address=address,
        collected_at=now,
        tier=Tier.FAST,
        hashrate_hs=sum(b.hashrate_hs or 0 for b in boards),
        expected_hashrate_hs=104e12,
        boards=boards,
        expected_boards=3,
        fans=tuple(FanReading(index=f, rpm=rng.randrange(4800, 6000)) for f in range(4)),
        expected_fans=4,
        inlet_temp_c=round(rng.uniform(10, 25), 1),
        power_w=round(rng.uniform(3000, 3200), 1),
        power_source=PowerSource.MEASURED,
        uptime_s=rng.randrange(1000, 10_000_000),
        is_mining=True,
    )


def synthetic_slow(address: str, i: int, now: float) -> Any:
    """The slow-tier identity of synthetic miner i."""
    from collectors.snapshot import Family, Identity, MinerSnapshot, PoolInfo, Tier  # noqa: PLC0415

    mac = f"02:42:{(i >> 24) & 255:02X}:{(i >> 16) & 255:02X}:{(i >> 8) & 255:02X}:{i & 255:02X}"
    return MinerSnapshot(
        address=address,
        collected_at=now,
        tier=Tier.SLOW,
        identity=Identity(
            family=Family.ANTMINER,
            make="AntMiner",
            model="S19j Pro",
            firmware="Stock",
            firmware_version="Mon Mar 28 10:03:14 CST 2022",
            mac=mac,
            serial=f"SN{i:010d}",
            hostname=f"miner-{i:05d}",
        ),
        errors=(),
        pools=(
            PoolInfo(
                url="stratum+tcp://pool.example:3333", user="acct.w1", alive=True, active=True
            ),
        ),
    )


def build_state(miners: int) -> dict[str, Any]:
    """The agent's in-memory state for ``miners`` miners; returns its parts and RSS figures."""
    from agent.fleet_state import FleetState  # noqa: PLC0415
    from agent.metrics import AgentMetrics, MetricsRenderer  # noqa: PLC0415
    from collectors import pyasic_tuning  # noqa: PLC0415
    from collectors.pyasic_source import miner_from_hint  # noqa: PLC0415
    from collectors.source import MinerTarget  # noqa: PLC0415

    gc.collect()
    rss_start = rss_bytes()
    rng = random.Random(7)  # noqa: S311 — benchmark noise
    now = time.time()
    miner_objects = []
    fleet = FleetState()
    for i in range(miners):
        address = address_of(i)
        miner = miner_from_hint(address, MODELS[i % len(MODELS)])
        pyasic_tuning.tune(miner)
        miner_objects.append(miner)
        fleet.add(SITE, MinerTarget(address=address), now)
        fleet.record_success(address, synthetic_slow(address, i, now), 0.05, now)
        fleet.record_success(address, synthetic_fast(address, rng, now), 0.05, now)
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry, version="bench")
    renderer = MetricsRenderer(fleet, registry, sites=[SITE], alarms=_Alarms())
    started = time.perf_counter()
    body = renderer.render()
    first_render_s = time.perf_counter() - started
    gc.collect()
    return {
        "fleet": fleet,
        "registry": registry,
        "metrics": metrics,
        "renderer": renderer,
        "miner_objects": miner_objects,
        "rng": rng,
        "rss_start": rss_start,
        "rss_state": rss_bytes(),
        "first_render_s": first_render_s,
        "body": body,
    }


async def _updater(state: dict[str, Any], rate_per_s: float, stop: asyncio.Event) -> int:
    """Replace ``rate_per_s`` fast snapshots per second, in 20 ms batches."""
    fleet, rng = state["fleet"], state["rng"]
    addresses = [r.address for r in fleet]
    updates = 0
    carry = 0.0
    tick = 0.02
    index = 0
    while not stop.is_set():
        carry += rate_per_s * tick
        now = time.time()
        while carry >= 1:
            address = addresses[index % len(addresses)]
            index += 1
            fleet.record_success(address, synthetic_fast(address, rng, now), 0.05, now)
            updates += 1
            carry -= 1
        await asyncio.sleep(tick)
    return updates


async def _poll_load(poll_cpu_s: float, polls_per_s: float, stop: asyncio.Event) -> float:
    """Burn ``poll_cpu_s`` of CPU ``polls_per_s`` times a second, one poll per slice."""
    burned = 0.0
    if poll_cpu_s <= 0 or polls_per_s <= 0:
        return burned
    period = 1.0 / polls_per_s
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while not stop.is_set():
        start = time.thread_time()
        while time.thread_time() - start < poll_cpu_s:
            pass
        burned += time.thread_time() - start
        next_at += period
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    return burned


def _timed_get(url: str, *, gzip: bool) -> float:
    """One GET's latency in seconds (curl's time_total when curl is installed)."""
    curl = shutil.which("curl")
    if curl is not None:
        argv = [curl, "-s", "-o", "/dev/null", "-w", "%{time_total}", "--max-time", "60"]
        argv += ["-H", "Accept-Encoding: gzip"] if gzip else []
        done = subprocess.run([*argv, url], capture_output=True, text=True, check=True)
        return float(done.stdout)
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzip else {})  # noqa: S310
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 — loopback URL
        response.read()
    return time.perf_counter() - started


def scrape(url: str, count: int, interval_s: float) -> dict[str, Any]:
    """GET ``url`` ``count`` times plain and ``count`` times asking for gzip, alternately.

    With curl installed its ``time_total`` is used (a C client, like Prometheus' Go one: the
    figure is the agent's, not a Python client's read loop); else urllib's wall time. The
    gzip series is what Prometheus sees (it sends ``Accept-Encoding: gzip``); the body is
    received compressed, not inflated, as Prometheus inflates it after the transfer.
    """
    plain: list[float] = []
    gzip: list[float] = []
    for _ in range(count):
        plain.append(_timed_get(url, gzip=False))
        time.sleep(interval_s / 2)
        gzip.append(_timed_get(url, gzip=True))
        time.sleep(interval_s / 2)
    return {"client": "curl" if shutil.which("curl") else "urllib", "plain": plain, "gzip": gzip}


def equivalent_registry(body: bytes) -> tuple[CollectorRegistry, int]:
    """A registry of labelled Gauges holding exactly the samples of ``body``."""
    registry = CollectorRegistry()
    samples = 0
    for family in text_string_to_metric_families(body.decode()):
        label_names: list[str] = []
        for sample in family.samples:
            for name in sample.labels:
                if name not in label_names:
                    label_names.append(name)
        gauge = Gauge(
            family.name, family.documentation or family.name, label_names, registry=registry
        )
        for sample in family.samples:
            child = (
                gauge.labels(**{n: sample.labels.get(n, "") for n in label_names})
                if label_names
                else gauge
            )
            child.set(sample.value)
            samples += 1
    return registry, samples


def time_generate_latest(registry: CollectorRegistry, repeats: int) -> list[float]:
    """Time ``generate_latest(registry)`` ``repeats`` times."""
    durations = []
    for _ in range(repeats):
        started = time.perf_counter()
        generate_latest(registry)
        durations.append(time.perf_counter() - started)
    return durations


async def serve_and_scrape(state: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Serve /metrics with the agent's HttpApi under update and poll load; scrape it."""
    from agent.http_api import HttpApi  # noqa: PLC0415
    from agent.http_front import HttpFront  # noqa: PLC0415
    from agent.service import METRICS_MAX_AGE_S, METRICS_REFRESH_S  # noqa: PLC0415

    renderer = state["renderer"]
    api = HttpApi(fleet=state["fleet"], renderer=renderer, ready=lambda: True)
    # Served as the agent serves it: the HTTP front process (nice 19) holds the port and
    # fetches /metrics from this process over a Unix socket, at most once a second.
    front = HttpFront(api, host=args.listen, port=0, web_config_file=None, log_format="json")
    await front.start()
    supervisor = asyncio.create_task(front.run(), name="bench_http_front")
    stop = asyncio.Event()
    polls_per_s = args.miners / args.interval
    updater = asyncio.create_task(_updater(state, polls_per_s, stop), name="bench_updater")

    async def refresh() -> None:
        # What AgentService._metrics_refresh does: render in the background, scrapes get
        # a body at most METRICS_MAX_AGE_S old.
        renderer.scrape_max_age_s = METRICS_MAX_AGE_S
        while not stop.is_set():
            renderer.miners_body()
            await asyncio.sleep(max(METRICS_REFRESH_S, 20 * renderer.last_render_s))

    refresher = asyncio.create_task(refresh(), name="bench_metrics_refresh")
    load = asyncio.create_task(
        _poll_load(args.poll_cpu_ms / 1000, polls_per_s, stop), name="bench_poll_load"
    )
    url = f"http://{args.listen}:{front.port}/metrics"
    await asyncio.to_thread(_wait_serving, url, 30.0)
    assert front.pid is not None
    front_cpu0 = process_cpu_s(front.pid) or 0.0
    cpu0 = cpu_seconds()
    renders0 = state["renderer"].renders
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.benchmarks.exposition",
        "--scrape",
        url,
        "--scrapes",
        str(args.scrapes),
        "--scrape-interval",
        str(args.scrape_interval),
        stdout=subprocess.PIPE,
    )
    out, _ = await process.communicate()
    stop.set()
    updates = await updater
    burned = await load
    refresher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await refresher
    cpu = cpu_seconds() - cpu0
    front_cpu = (process_cpu_s(front.pid) or front_cpu0) - front_cpu0
    front_rss = rss_bytes(front.pid)
    supervisor.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await supervisor
    await front.stop()
    scraped = json.loads(out)
    return {
        "scrape": summarise_ms(scraped["plain"]),
        "scrape_gzip": summarise_ms(scraped["gzip"]),
        "scrape_client": scraped["client"],
        "updates": updates,
        "renders": state["renderer"].renders - renders0,
        "poll_load_cpu_s": round(burned, 3),
        "agent_cpu_s": round(cpu, 3),
        "front_cpu_s": round(front_cpu, 3),
        "rss_bytes_serving": rss_bytes(),
        "front_rss_bytes": front_rss,
        "served_by": "http_front",
    }


def _wait_serving(url: str, within_s: float) -> None:
    """Block until ``url`` answers 200 (the front process is up), or raise after ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback URL
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            msg = f"{url} did not answer within {within_s} s"
            raise TimeoutError(msg)
        time.sleep(0.05)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the state, serve and scrape it, then time generate_latest on the same samples."""
    state = build_state(args.miners)
    body: bytes = state["body"]
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    served = asyncio.run(serve_and_scrape(state, args))
    render_times = []
    addresses = [r.address for r in state["fleet"]]
    per_second = max(1, round(args.miners / args.interval))
    for i in range(args.repeats):
        # One second of polling (miners / interval fresh snapshots), then one render.
        now = time.time()
        for address in addresses[i * per_second : (i + 1) * per_second] or addresses[:per_second]:
            state["fleet"].record_success(
                address, synthetic_fast(address, state["rng"], now), 0.05, now
            )
        started = time.perf_counter()
        state["renderer"].miners_body()
        render_times.append(time.perf_counter() - started)
    registry, samples = equivalent_registry(body)
    generate = time_generate_latest(registry, args.repeats)
    return {
        "miners": args.miners,
        "synthetic": True,
        "series": series,
        "body_bytes": len(body),
        "first_render_ms": round(1000 * state["first_render_s"], 1),
        "rss_bytes_baseline": state["rss_start"],
        "rss_bytes_with_state": state["rss_state"],
        "serving": served,
        "render_after_1s_of_polls": summarise_ms(render_times),
        "generate_latest": summarise_ms(generate),
        "generate_latest_samples": samples,
        "update_rate_per_s": round(args.miners / args.interval, 1),
        "poll_cpu_ms": args.poll_cpu_ms,
    }


def main(argv: list[str] | None = None) -> int:
    """Either the benchmark (``--miners``) or its scraper (``--scrape URL``)."""
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.exposition")
    parser.add_argument("--miners", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=30.0, help="fast-tier interval (s)")
    parser.add_argument("--poll-cpu-ms", type=float, default=1.6, help="CPU per poll to burn")
    parser.add_argument("--scrapes", type=int, default=60)
    parser.add_argument("--scrape-interval", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--listen", default="127.80.0.1")
    parser.add_argument("--scrape", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scrape:
        sys.stdout.write(json.dumps(scrape(args.scrape, args.scrapes, args.scrape_interval)) + "\n")
        return 0
    sys.stdout.write(json.dumps(run(args)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
