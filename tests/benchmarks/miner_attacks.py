"""Hostile miners at site scale (issue 15): memory, lateness and scrapes under each miner attack.

``python -m tests.benchmarks.reliability_long hostile [--altiwatch PATH]``

One real agent (``altiwatch run``: agent and HTTP front) polls 200 healthy emulated miners
(60 % S19j Pro, 20 % Bitaxe, 20 % Whatsminer) and 10 that turn hostile, every 5 s (slow tier
10 s, so identity fields are re-read within the window). A window without attack comes first,
then one window per attack (faults injected through the emulator's control API, cleared after):

* ``gzip_bomb``: 1 GiB gzip bombs (about 1 MB on the wire) from the web APIs of 2 VNish, 2
  Bitaxe and 2 S19s (the Digest path);
* ``endless``: bodies that never end from 2 VNish and 2 Bitaxe web APIs, a 4028 reply that
  never ends from a Whatsminer, a gRPC message declaring 4 GiB from a Braiins OS+ unit;
* ``identity``: a 70,000-char MAC, and serials and hostnames with NULs of 100,000 chars, on 2
  S19s;
* ``cloned_mac``: 2 S19s reporting the MACs of 2 healthy S19s.

Per window: the peak RSS of agent and front (VmHWM, reset at the window's start through
``clear_refs``, and the highest VmRSS sampled every 0.25 s), poll lateness of all polls
(mean, p50/p99 as bucket bounds; 200 of the 210 miners are healthy), polls completed, CPU,
healthy miners polled during the window and up at its end (by address, under their own ids),
a scraper's /metrics latency (median, max; one GET a second) and failures, and what each
hostile miner is reported with. Binds to 127.95.x.y.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

HEALTHY = 200
INTERVAL_S = 5.0
SLOW_INTERVAL_S = 10.0
WINDOW_S = 30.0
SETTLE_S = 10.0
"""After injecting, before measuring: every hostile miner has had a fast and a slow poll."""
HOSTILE = [
    {"model": "antminer-s19jpro", "count": 4},
    {"model": "vnish-s19jpro", "count": 2},
    {"model": "bitaxe-ultra", "count": 2},
    {"model": "whatsminer-m30s+ve40", "count": 1},
    {"model": "braiins-s19jpro", "count": 1},
]
BASE_ADDRESS = "127.95.0.1"
HUGE_MAC = "A" * 70_000
Fault = tuple[str, str, dict[str, Any]]
"""(address, fault kind, fault parameters)."""


def _attacks(hostile: dict[str, list[str]], victims: list[str]) -> dict[str, list[Fault]]:
    """Attack name -> (address, fault kind, fault parameters) to inject."""
    web = [*hostile["vnish"], *hostile["bitaxe"]]
    s19 = hostile["antminer"]
    return {
        "gzip_bomb": [(a, "gzip_bomb", {"port": "web"}) for a in [*web, *s19[:2]]],
        "endless": [
            *[(a, "endless", {"port": "web"}) for a in web],
            *[(a, "endless", {"port": "rpc"}) for a in hostile["whatsminer"]],
            *[(a, "endless", {"port": "grpc"}) for a in hostile["braiins"]],
        ],
        "identity": [
            (
                s19[0],
                "identity",
                {
                    "mac": HUGE_MAC,
                    "serial": "SN\x00" + "9" * 100_000,
                    "hostname": "rig\x00-\u200b01" + "h" * 100_000,
                },
            ),
            (s19[1], "identity", {"mac": "zz:zz:zz:zz:zz:zz\x00", "hostname": "h\x00" * 50_000}),
        ],
        "cloned_mac": [
            (s19[2], "identity", {"mac": victims[0]}),
            (s19[3], "identity", {"mac": victims[1]}),
        ],
    }


def _reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux ``clear_refs`` 5)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


class RssSampler:
    """The highest VmRSS of some processes, sampled every 0.25 s while running."""

    def __init__(self, pids: dict[str, int], status_kb: Callable[[int, str], int | None]) -> None:
        """Not sampling until used as a context manager."""
        self._pids = pids
        self._status_kb = status_kb
        self._stop = threading.Event()
        self.max_kb: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self._pids.items():
                kb = self._status_kb(pid, "VmRSS")
                if kb is not None and kb > self.max_kb.get(name, 0):
                    self.max_kb[name] = kb
            self._stop.wait(0.25)

    @contextlib.contextmanager
    def running(self) -> Iterator[RssSampler]:
        """Sample while inside the block."""
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=10)


class MetricsScraper:
    """GET /metrics once a second (as a Prometheus at a 1-s interval), latencies recorded."""

    def __init__(self, url: str) -> None:
        """Not running until used as a context manager."""
        self._url = url + "/metrics"
        self._stop = threading.Event()
        self.latencies: list[float] = []
        self.failed: list[str] = []
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                with urllib.request.urlopen(self._url, timeout=30) as response:  # noqa: S310 - loopback
                    response.read()
                    status = response.status
            except OSError as exc:
                self.failed.append(f"{type(exc).__name__}: {exc}"[:120])
            else:
                if status == 200:
                    self.latencies.append(time.monotonic() - began)
                else:
                    self.failed.append(f"status {status}")
            self._stop.wait(max(0.0, 1.0 - (time.monotonic() - began)))

    @contextlib.contextmanager
    def running(self) -> Iterator[MetricsScraper]:
        """Scrape while inside the block."""
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=60)

    def summary(self) -> dict[str, Any]:
        """Scrapes answered, failures and latency (s)."""
        lat = sorted(self.latencies)
        return {
            "ok": len(lat),
            "failed": len(self.failed),
            "errors": self.failed[:3],
            "median_s": round(statistics.median(lat), 4) if lat else None,
            "max_s": round(lat[-1], 4) if lat else None,
        }


def _state_after(
    text: str, healthy: list[str], faults: list[Fault], started: float
) -> dict[str, Any]:
    """Healthy miners polled since ``started`` and up (by address), flags, hostile miners' state."""
    from tests.integration.test_hostile_miners import _per_address  # noqa: PLC0415 - bench only
    from tests.integration.test_reliability_miners import parse_metrics  # noqa: PLC0415

    ids, up, last = _per_address(text)
    samples = parse_metrics(text)
    reasons = {
        labels.get("miner"): labels.get("reason")
        for labels, value in samples.get("asic_last_poll_error_info", [])
        if value == 1
    }
    return {
        "healthy_polled_in_window": sum(
            1 for a in healthy if last.get(ids.get(a, ""), 0.0) > started
        ),
        "healthy_up_at_end": sum(1 for a in healthy if up.get(ids.get(a, "")) == 1.0),
        "healthy_ids_distinct": len({ids.get(a) for a in healthy} - {None}),
        "duplicate_id_flags": len(samples.get("asic_duplicate_id_info", [])),
        "hostile_reported": {
            f"{kind}:{params.get('port', '')}@{address}": reasons.get(ids.get(address, ""))
            or ("up" if up.get(ids.get(address, "")) == 1.0 else "absent")
            for address, kind, params in faults
        },
    }


def bench_hostile(tmp: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """A window without attack, then one window per miner attack, on one agent."""
    from tests.benchmarks import reliability_long as rl  # noqa: PLC0415 - avoids an import cycle
    from tests.support.emulator import start_emulator  # noqa: PLC0415 - bench only

    scenario = rl._scenario(HEALTHY, "reliability-hostile")
    scenario["miners"] += HOSTILE
    emulator = start_emulator(scenario, base_address=BASE_ADDRESS, tmp_dir=tmp)
    # The emulator stands for 210 machines with CPUs of their own (streaming an endless reply
    # costs the miner, not the agent): at nice 10 it does not compete with the agent.
    os.setpriority(os.PRIO_PROCESS, emulator.process.pid, rl.EMULATOR_NICE)
    agent = None
    try:
        inventory = emulator.miners()
        healthy = [m["address"] for m in inventory[:HEALTHY]]
        hostile: dict[str, list[str]] = {}
        for miner in inventory[HEALTHY:]:
            hostile.setdefault(miner["family"], []).append(miner["address"])
        s19 = [m for m in inventory[:HEALTHY] if m["family"] == "antminer"]
        victims = [m["mac"] for m in s19[:2]]
        attacks = _attacks(hostile, victims)
        config = rl._config(emulator, INTERVAL_S)
        config["polling"]["slow_interval_s"] = SLOW_INTERVAL_S
        # The emulator's model name ("Antminer S19j Pro") would make VNish and BOS+ units stock
        # Antminers: they are detected instead.
        detected = {a for family in ("vnish", "braiins") for a in hostile.get(family, [])}
        config["miners"] = [
            {"address": m["address"]} if m["address"] in detected else m for m in config["miners"]
        ]
        agent = rl.Agent(tmp / "agent", config)
        rl._all_up(agent, len(inventory), timeout=300)
        pid = agent.process.proc.pid
        front = rl._children(pid)
        pids = {"agent": pid, **({"front": front[0]} if front else {})}
        results: dict[str, Any] = {
            "healthy": HEALTHY,
            "hostile": {family: len(addresses) for family, addresses in hostile.items()},
            "interval_s": INTERVAL_S,
            "slow_interval_s": SLOW_INTERVAL_S,
            "window_s": WINDOW_S,
            "windows": {},
        }
        for name in ["none", *attacks]:
            faults = attacks.get(name, [])
            for address, kind, params in faults:
                emulator.inject(address, kind, **params)
            if faults:
                log(f"hostile: {name} on {len(faults)} miners; settling {SETTLE_S:g} s")
                time.sleep(SETTLE_S)  # a measurement phase: the attack reaches every poll tier
            log(f"hostile: window {name} ({WINDOW_S:g} s)")
            reset = {n: _reset_peak(p) for n, p in pids.items()}
            started = time.time()
            sampler = RssSampler(pids, rl._status_kb)
            scraper = MetricsScraper(agent.process.url)
            with sampler.running(), scraper.running():
                window = rl._window(agent, WINDOW_S, others={"front": front[0]} if front else None)
            window |= _state_after(agent.metrics(), healthy, faults, started)
            window["peak_rss_kb"] = {
                n: rl._status_kb(p, "VmHWM") if reset[n] else None for n, p in pids.items()
            }
            window["sampled_max_rss_kb"] = sampler.max_kb
            window["scrapes"] = scraper.summary()
            window["agent_running"] = agent.process.proc.poll() is None
            results["windows"][name] = window
            for address, _kind, _params in faults:
                emulator.clear(address)
        return results
    finally:
        if agent is not None:
            agent.stop()
        emulator.stop()
