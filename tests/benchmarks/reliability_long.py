"""Long versions of the reliability tests (issue 8); minutes each, so not in ``make test``.

``python -m tests.benchmarks.reliability_long {miners,load,kill,front,hostile,drift,all} [--out FILE.json]``

* ``miners``: 500 healthy emulated miners + 8 misbehaving ones (hang, drip, garbage, truncated,
  reset, 50 MB reply, refuse, model change). The same agent process is measured for a window
  without faults, then for a window with them: poll lateness (mean, p50, p99 from
  ``altiwatch_poll_lateness_seconds``), polls completed, the agent's peak RSS (VmHWM) and the
  reason each bad miner is reported with.
* ``load``: 2,000 emulated miners; 30-s windows, quiet or 100 concurrent scrapers back to back
  on /metrics (gzip, or plain text), in quiet-storm-storm-quiet cycles (``--cycles``). The
  scrapers run at SCHED_IDLE, as they stand for Prometheus servers on other machines, and the
  emulator at nice 10, as it stands for the miners' own CPUs. Per window: failed scrapes, scrape
  latency, poll lateness (mean, and polls later than 1, 10 and 50 ms), garbage-collector
  pauses, CPU per process and a wake-up probe's oversleep; per kind of storm, the pooled mean
  lateness against the quiet windows' with a bootstrap interval.
* ``kill``: ten SIGKILLs at random points while alarms rise and clear (the integration test's
  scenario with ``kills=10``): produced vs delivered alarm events.
* ``front``: the HTTP front under hostile clients (issue 15), see `tests.benchmarks.front_attacks`.
* ``hostile``: 200 healthy miners beside hostile ones (issue 15: gzip bombs, endless replies,
  hostile identity fields, cloned MACs), see `tests.benchmarks.miner_attacks`.
* ``drift`` (not in ``all``): 2,000 quiet miners at 15 s for ``--minutes`` (25): the agent's CPU
  per poll and RSS minute by minute, first minutes against last.

Everything binds to 127.91-127.93.x.y and 127.95.x.y (reliability's loopback ranges) and stops
by itself.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collectors.pyasic_source import miner_from_hint
from collectors.source import CollectorError
from tests.benchmarks import front_attacks, miner_attacks
from tests.benchmarks.poll_worker import process_cpu_s
from tests.benchmarks.run import histogram_quantiles
from tests.benchmarks.run import parse_metrics as parse_flat
from tests.integration.test_reliability_kill import assert_kill_report, run_kill_scenario
from tests.integration.test_reliability_load import run_scrapers
from tests.integration.test_reliability_miners import BAD, parse_metrics, per_miner
from tests.support import agent as agent_support
from tests.support.agent import AgentProcess, wait_until
from tests.support.emulator import EmulatorHandle, start_emulator
from tests.support.mosquitto import Mosquitto, MosquittoSub
from tests.support.ports import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

DRIFT_MINUTES = 25
LOAD_GENERATOR_NICE = 19
EMULATOR_NICE = 10
LOAD_INTERVAL_S = 15.0
MIX = {"antminer-s19jpro": 60, "bitaxe-ultra": 20, "whatsminer-m30s+ve40": 20}


def _scenario(total: int, name: str) -> dict[str, Any]:
    groups = []
    left = total
    items = list(MIX.items())
    for index, (model, share) in enumerate(items):
        count = left if index == len(items) - 1 else round(total * share / 100)
        left -= count
        groups.append({"model": model, "count": count})
    return {"name": name, "site": {"name": "bench", "altitude_m": 2800}, "miners": groups}


class Agent:
    """A real agent process with its own work dir (``tests.support.agent.AgentProcess``)."""

    def __init__(
        self, workdir: Path, config: dict[str, Any], *, basic_auth: tuple[str, str] | None = None
    ) -> None:
        """Fill in state dir and listen address, start, wait for /readyz (unless basic_auth)."""
        workdir.mkdir(parents=True, exist_ok=True)
        config = {**config}
        config["agent"] = {"state_dir": str(workdir / "state"), **config.get("agent", {})}
        config["http"] = {"listen": f"127.0.0.1:{free_port()}", **config.get("http", {})}
        self._auth = basic_auth
        self.process = AgentProcess(workdir, config, {})
        if basic_auth is None:
            self.process.wait_ready(timeout=600)

    def metrics(self) -> str:
        """The /metrics text (with the basic-auth credentials, when given)."""
        if self._auth is None:
            return self.process.metrics()
        token = base64.b64encode(":".join(self._auth).encode()).decode()
        request = urllib.request.Request(  # noqa: S310 - loopback bench URL
            self.process.url + "/metrics", headers={"Authorization": f"Basic {token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - loopback bench URL
            return str(resp.read().decode())

    def stop(self) -> None:
        """SIGTERM, then SIGKILL."""
        if self.process.proc.poll() is None:
            self.process.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(Exception):
                self.process.proc.wait(timeout=30)
        self.process.kill()


def _status_kb(pid: int, key: str) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError, ValueError):
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii")
        return [int(child) for child in text.split()]
    return []


def _window(
    agent: Agent,
    seconds: float,
    during: Callable[[], Any] | None = None,
    others: dict[str, int] | None = None,
    probe: WakeupProbe | None = None,
) -> dict[str, Any]:
    """Lateness and polls over ``seconds`` (running ``during`` meanwhile, if given).

    ``others``: more processes whose CPU time is reported (name: pid); ``probe``: a wakeup
    probe whose oversleep over the window is reported.
    """
    pids = {"agent": agent.process.proc.pid, "bench": os.getpid(), **(others or {})}
    cpu_before = {name: process_cpu_s(pid) for name, pid in pids.items()}
    probe_before = probe.read() if probe is not None else None
    before = parse_flat(agent.metrics())
    began = time.monotonic()
    extra = during() if during is not None else None
    left = seconds - (time.monotonic() - began)
    if left > 0:
        time.sleep(left)
    after = parse_flat(agent.metrics())
    late = histogram_quantiles(before, after, "altiwatch_poll_lateness_seconds")
    buckets = dict(late.pop("buckets", []))
    for bound, key in ((0.001, "over_1ms"), (0.01, "over_10ms"), (0.05, "over_50ms")):
        if bound in buckets:  # polls later than the bound
            late[key] = late["count"] - buckets[bound]
    gc_pauses = {}  # the garbage collector's stops, per generation (2 = full collections)
    for generation in ("0", "1", "2"):
        label = f'generation="{generation}"'
        gc_pauses[generation] = histogram_quantiles(
            before, after, "altiwatch_gc_pause_seconds", label
        )
        gc_pauses[generation].pop("buckets", None)
    polls = sum(after.get("altiwatch_polls_total", {}).values()) - sum(
        before.get("altiwatch_polls_total", {}).values()
    )
    elapsed = time.monotonic() - began
    cpu: dict[str, float | None] = {}
    for name, pid in pids.items():
        first, last = cpu_before[name], process_cpu_s(pid)
        cpu[name] = None if first is None or last is None else round((last - first) / elapsed, 3)
    agent_cpu = cpu.get("agent")
    if agent_cpu is not None and polls:
        cpu["agent_ms_per_poll"] = round(1000 * agent_cpu * elapsed / polls, 3)
    return {
        "seconds": round(elapsed, 1),
        "lateness": late,
        "cpu_cores": cpu,
        "wakeup": probe.since(probe_before) if probe is not None and probe_before else None,
        "gc_pauses": gc_pauses,
        "polls": polls,
        "rss_kb": _status_kb(pids["agent"], "VmRSS"),
        "peak_rss_kb": _status_kb(pids["agent"], "VmHWM"),
        "during": extra,
    }


_PROBE = """
import json, sys, threading, time
stats = {"count": 0, "sum_s": 0.0, "over_1ms": 0, "over_5ms": 0}
def answer():
    for _ in sys.stdin:
        print(json.dumps(stats), flush=True)
threading.Thread(target=answer, daemon=True).start()
while True:
    asked = time.perf_counter()
    time.sleep(%(period)r)
    late = time.perf_counter() - asked - %(period)r
    stats["count"] += 1
    stats["sum_s"] += late
    stats["over_1ms"] += late > 0.001
    stats["over_5ms"] += late > 0.005
"""


class WakeupProbe:
    """A process at the agent's priority that sleeps 2 ms at a time and counts its oversleep.

    It tells what the OS does to a sleeping process's wake-ups (CPU contention, softirqs),
    apart from what the agent's own work does to its polls.
    """

    PERIOD_S = 0.002

    def __init__(self) -> None:
        """Start the probe (stopped by `stop`)."""
        self.process = subprocess.Popen(
            [sys.executable, "-c", _PROBE % {"period": self.PERIOD_S}],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def read(self) -> dict[str, float]:
        """The probe's cumulative counts."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        result: dict[str, float] = json.loads(self.process.stdout.readline())
        return result

    def since(self, before: dict[str, float]) -> dict[str, Any]:
        """Oversleep since ``before``: wake-ups, mean, share later than 1 and 5 ms."""
        now = self.read()
        count = now["count"] - before["count"]
        if not count:
            return {"count": 0}
        return {
            "count": int(count),
            "mean_s": round((now["sum_s"] - before["sum_s"]) / count, 7),
            "over_1ms": round((now["over_1ms"] - before["over_1ms"]) / count, 5),
            "over_5ms": round((now["over_5ms"] - before["over_5ms"]) / count, 5),
        }

    def stop(self) -> None:
        """Kill the probe."""
        self.process.kill()
        self.process.wait()


def _hint(model: str) -> str | None:
    """The emulator's model name as a hint when pyasic resolves it (else detection)."""
    try:
        miner_from_hint("127.0.0.1", model)
    except CollectorError:
        return None  # e.g. Whatsminer "M30S+_VE40": detected instead
    return model


def _config(emulator: EmulatorHandle, interval_s: float) -> dict[str, Any]:
    miners = [
        {"address": m["address"], **({"model": h} if (h := _hint(m["model"])) else {})}
        for m in emulator.miners()
    ]
    return {
        "agent": {"id": "reliability-bench", "log_format": "json", "log_level": "warning"},
        "sites": [{"name": "bench", "altitude_m": 2800}],
        "miners": miners,
        "polling": {
            "interval_s": interval_s,
            "slow_interval_s": max(60.0, interval_s * 4),
            "timeout_s": round(0.8 * interval_s, 3),
        },
    }


def _all_up(agent: Agent, count: int, timeout: float) -> None:
    def up() -> bool:
        values = per_miner(parse_metrics(agent.metrics()), "asic_up")
        return sum(1 for v in values.values() if v == 1) >= count

    wait_until(up, f"{count} miners up", timeout=timeout, every=2.0)


def bench_miners(tmp: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """500 healthy + 8 bad miners: lateness and memory with and without the bad ones."""
    healthy, window_s, interval = 500, 120.0, 10.0
    emulator = start_emulator(
        _scenario(healthy + len(BAD) + 1, "reliability-miners"),
        base_address="127.91.0.1",
        tmp_dir=tmp,
    )
    agent = None
    try:
        addresses = [m["address"] for m in emulator.miners()]
        agent = Agent(tmp / "agent-miners", _config(emulator, interval))
        _all_up(agent, len(addresses), timeout=300)
        log(f"miners: {len(addresses)} up; window without faults ({window_s:g} s)")
        without = _window(agent, window_s)
        bad = dict(zip(BAD, addresses[healthy:], strict=False))
        for name, address in bad.items():
            emulator.inject(address, **BAD[name][0])
        changer = addresses[-1]
        emulator.inject(changer, "model_change", model="antminer-s21")
        log(f"miners: faults injected; window with faults ({window_s:g} s)")
        time.sleep(interval)  # let the first failures happen before measuring
        with_faults = _window(agent, window_s)
        samples = parse_metrics(agent.metrics())
        reasons = {
            labels.get("miner"): labels.get("reason")
            for labels, value in samples.get("asic_last_poll_error_info", [])
            if value == 1
        }
        ids = {
            labels["address"]: labels["miner"]
            for labels, _v in samples.get("asic_miner_info", [])
            if "address" in labels
        }
        up = per_miner(samples, "asic_up")
        healthy_down = [a for a in addresses[:healthy] if up.get(ids.get(a, "")) != 1]
        result = {
            "healthy": healthy,
            "bad": {name: reasons.get(ids.get(address, "")) for name, address in bad.items()},
            "healthy_down_at_end": len(healthy_down),
            "without_faults": without,
            "with_faults": with_faults,
        }
        mean_a = without["lateness"].get("mean_s") or 0.0
        mean_b = with_faults["lateness"].get("mean_s") or 0.0
        result["lateness_mean_ratio"] = round(mean_b / mean_a, 3) if mean_a else None
        return result
    finally:
        if agent is not None:
            agent.stop()
        emulator.stop()


LOAD_STORM_S = 30.0
"""One storm: 100 scrapers back to back for 30 s, as issue 8 asks; quiet windows are as long."""
LOAD_CYCLES = {"gzip": 6, "plain": 2}
"""Quiet-storm-storm-quiet cycles per kind (gzip as Prometheus asks, plain text as a harder case)."""
BOOTSTRAP_RESAMPLES = 2000


def _load_windows(cycles: dict[str, int]) -> list[str]:
    """Windows in quiet-storm-storm-quiet cycles (ABBA).

    So neither kind of window always falls on the same phase of the 60-s slow polling tier, or
    of the machine's own slow drifts.
    """
    windows: list[str] = []
    for kind, count in cycles.items():
        for _ in range(count):
            windows += ["quiet", kind, kind, "quiet"]
    return windows


def _split(cycles: list[list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(storm windows, quiet windows) of ``cycles``."""
    windows = [w for cycle in cycles for w in cycle]
    return [w for w in windows if w["kind"] != "quiet"], [
        w for w in windows if w["kind"] == "quiet"
    ]


def _pooled_mean(windows: list[dict[str, Any]]) -> float | None:
    total = sum(w["lateness"].get("sum_s", 0.0) for w in windows)
    count = sum(w["lateness"].get("count", 0) for w in windows)
    return total / count if count else None


def _storm_ratio(cycles: list[list[dict[str, Any]]], seed: int = 8) -> dict[str, Any]:
    """Storms' pooled mean lateness over the quiet windows' of the same cycles.

    With each cycle's own ratio and a 90 % bootstrap interval over cycles (how much of the ratio
    is this machine's noise).
    """

    def ratio(chosen: list[list[dict[str, Any]]]) -> float | None:
        storms, quiets = _split(chosen)
        storm, quiet = _pooled_mean(storms), _pooled_mean(quiets)
        return storm / quiet if storm is not None and quiet else None

    pooled = ratio(cycles)
    rng = random.Random(seed)  # noqa: S311 - resampling, not cryptography
    samples = [
        r
        for _ in range(BOOTSTRAP_RESAMPLES)
        if (r := ratio(rng.choices(cycles, k=len(cycles)))) is not None
    ]
    interval = None
    if len(samples) > 1:
        cuts = statistics.quantiles(samples, n=20, method="inclusive")  # 5 %, 10 %, ... 95 %
        interval = [round(cuts[0], 3), round(cuts[-1], 3)]
    storms, quiets = _split(cycles)
    return {
        "cycles": len(cycles),
        "quiet_mean_s": _pooled_mean(quiets),
        "storm_mean_s": _pooled_mean(storms),
        "ratio": round(pooled, 3) if pooled is not None else None,
        "ratio_90pct_interval": interval,
        "per_cycle": [round(r, 3) if (r := ratio([c])) is not None else None for c in cycles],
        "scrapes_ok": sum(w["scrapes"]["ok"] for w in storms),
        "scrapes_failed": sum(w["scrapes"]["failed"] for w in storms),
    }


def _idle_priority() -> None:
    """Run this process at SCHED_IDLE (nice 19 where that is refused)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError:
        os.nice(LOAD_GENERATOR_NICE)


def bench_load(
    tmp: Path,
    log: Callable[[str], None],
    interval: float = LOAD_INTERVAL_S,
    *,
    cycles: dict[str, int] | None = None,
) -> dict[str, Any]:
    """2,000 miners; 30-s windows, quiet or 100 back-to-back scrapers, in ABBA cycles.

    Storms ask for gzip (as Prometheus does) or plain text. Per kind, the storms' pooled mean
    poll lateness is compared with that of the quiet windows of the same cycles.
    """
    miners, window_s, scrapers = 2000, LOAD_STORM_S, 100
    cycles = cycles or LOAD_CYCLES
    emulator = start_emulator(
        _scenario(miners, "reliability-load"), base_address="127.92.0.1", tmp_dir=tmp
    )
    # The emulator stands for 2,000 machines with CPUs of their own: at nice 10 it answers with
    # the CPU the agent leaves, and does not compete with the agent it is measuring.
    os.setpriority(os.PRIO_PROCESS, emulator.process.pid, EMULATOR_NICE)
    agent = None
    probe = None
    try:
        config = _config(emulator, interval)
        # The 100 scrapers stand for 100 Prometheus servers, but share one source address:
        # lift the per-client connection limit (32 by default) above their number.
        config["http"] = {"max_connections_per_client": 2 * scrapers}
        agent = Agent(tmp / "agent-load", config)
        _all_up(agent, miners, timeout=600)
        url = agent.process.url + "/metrics"
        front = _children(agent.process.proc.pid)
        others = {"emulator": emulator.process.pid, **({"front": front[0]} if front else {})}
        probe = WakeupProbe()
        measure = functools.partial(_window, others=others, probe=probe)
        # The scrapers stand for Prometheus servers on other machines. Here they share the two
        # cores with the agent: at SCHED_IDLE they get only the CPU nothing else wants (agent,
        # front and emulator were started before, at their own priorities).
        _idle_priority()
        log(f"load: settling ({2 * window_s:g} s, not counted)")
        measure(agent, 2 * window_s)
        windows: list[dict[str, Any]] = []
        for kind in _load_windows(cycles):
            if kind == "quiet":
                log(f"load: quiet window ({window_s:g} s)")
                result = measure(agent, window_s)
            else:
                log(f"load: {scrapers} {kind} scrapers back to back ({window_s:g} s)")
                storm = functools.partial(
                    run_scrapers,
                    url,
                    scrapers=scrapers,
                    duration_s=window_s,
                    timeout_s=30.0,
                    accept_encoding="gzip" if kind == "gzip" else "identity",
                )
                result = measure(agent, window_s, storm)
                stats = result.pop("during")
                result["scrapes"] = {
                    "ok": stats.ok,
                    "failed": stats.failed,
                    "checked_whole": stats.verified,
                    "errors": stats.errors[:5],
                    "summary": stats.summary(),
                }
            windows.append({"kind": kind, **result})
        ordered = [windows[i : i + 4] for i in range(0, len(windows), 4)]  # the cycles
        verdicts = {}
        for kind in cycles:
            of_kind = [cycle for cycle in ordered if cycle[1]["kind"] == kind]
            verdicts[kind] = _storm_ratio(of_kind) if of_kind else None
        return {
            "miners": miners,
            "interval_s": interval,
            "window_s": window_s,
            "storms": verdicts,
            "windows": windows,
        }
    finally:
        if probe is not None:
            probe.stop()
        if agent is not None:
            agent.stop()
        emulator.stop()


@contextlib.contextmanager
def _broker(tmp: Path) -> Iterator[Mosquitto]:
    workdir = tmp / "mosquitto"
    workdir.mkdir()
    broker = Mosquitto(workdir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def bench_kill(tmp: Path, log: Callable[[str], None], kills: int = 10) -> dict[str, Any]:
    """Ten SIGKILLs while alarms rise and clear; produced vs delivered."""
    emulator = start_emulator(
        {
            "name": "reliability-kill",
            "site": {"name": "golmud", "altitude_m": 2800},
            "miners": [{"model": "antminer-s19jpro", "count": 6}],
        },
        base_address="127.93.0.1",
        tmp_dir=tmp,
    )
    started: list[Agent] = []
    try:
        with _broker(tmp) as broker:
            subscription = MosquittoSub(
                broker.host, broker.port, tmp / "events.log", "altiwatch/v1/+/events"
            )
            try:

                def start(config: dict[str, Any]) -> AgentProcess:
                    agent = Agent(tmp / f"agent-kill-{len(started)}", config)
                    started.append(agent)
                    return agent.process

                log(f"kill: {kills} SIGKILLs")
                report = run_kill_scenario(
                    emulator, start, broker, subscription, tmp, kills=kills, seed=10
                )
                verdict = "ok"
                try:
                    assert_kill_report(report, subscription)
                except AssertionError as exc:
                    verdict = f"FAILED: {exc}"
                return {
                    "summary": report.summary(),
                    "verdict": verdict,
                    "produced": {"|".join(map(str, k)): n for k, n in report.produced.items()},
                    "delivered": {"|".join(map(str, k)): n for k, n in report.delivered.items()},
                }
            finally:
                subscription.close()
    finally:
        for agent in started:
            agent.stop()
        emulator.stop()


def _polls_total(text: str) -> float:
    """Sum of ``altiwatch_polls_total`` over its tiers."""
    return sum(parse_flat(text).get("altiwatch_polls_total", {}).values())


def _drift_summary(minutes: list[dict[str, Any]], edge: int = 5) -> dict[str, Any]:
    """Mean CPU per poll of the first and last ``edge`` minutes, range, RSS range, polls."""
    cpu = [m["cpu_ms_per_poll"] for m in minutes if m["cpu_ms_per_poll"] is not None]
    rss = [m["rss_mb"] for m in minutes if m["rss_mb"] is not None]
    edge = max(1, min(edge, len(cpu) // 2))
    return {
        "minutes": len(minutes),
        "polls": sum(m["polls"] for m in minutes),
        "cpu_ms_per_poll_first": round(statistics.fmean(cpu[:edge]), 3) if cpu else None,
        "cpu_ms_per_poll_last": round(statistics.fmean(cpu[-edge:]), 3) if cpu else None,
        "cpu_ms_per_poll_range": [min(cpu), max(cpu)] if cpu else None,
        "rss_mb_range": [min(rss), max(rss)] if rss else None,
    }


def bench_drift(
    tmp: Path, log: Callable[[str], None], minutes: int = DRIFT_MINUTES
) -> dict[str, Any]:
    """2,000 miners at 15 s, quiet, for ``minutes``: agent CPU per poll and RSS minute by minute.

    A cost that grows with uptime (a list that only grows, a cache never pruned) shows as a
    rising CPU per poll or RSS; the first and last minutes are compared.
    """
    emulator = start_emulator(
        _scenario(2000, "reliability-drift"), base_address="127.93.0.1", tmp_dir=tmp
    )
    os.setpriority(os.PRIO_PROCESS, emulator.process.pid, EMULATOR_NICE)
    agent = None
    try:
        agent = Agent(tmp / "agent-drift", _config(emulator, 15.0))
        _all_up(agent, 2000, timeout=600)
        pid = agent.process.proc.pid
        rows: list[dict[str, Any]] = []
        cpu0, polls0 = process_cpu_s(pid), _polls_total(agent.metrics())
        for minute in range(1, minutes + 1):
            time.sleep(60)  # a measurement window, not a wait for a condition
            cpu1, polls1 = process_cpu_s(pid), _polls_total(agent.metrics())
            polls = polls1 - polls0
            used = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
            rss_kb = _status_kb(pid, "VmRSS")
            rows.append(
                {
                    "minute": minute,
                    "polls": polls,
                    "cpu_ms_per_poll": round(1000 * used / polls, 3) if used and polls else None,
                    "rss_mb": None if rss_kb is None else rss_kb // 1024,
                }
            )
            log(f"drift: {rows[-1]}")
            cpu0, polls0 = cpu1, polls1
        return {"per_minute": rows, **_drift_summary(rows)}
    finally:
        if agent is not None:
            agent.stop()
        emulator.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the chosen long benchmarks; print JSON and write it to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "which", choices=["miners", "load", "kill", "drift", "front", "hostile", "all"]
    )
    parser.add_argument(
        "--altiwatch",
        type=Path,
        help="the altiwatch to run (default: this venv's), e.g. another checkout's to compare",
    )
    parser.add_argument(
        "--minutes", type=int, default=DRIFT_MINUTES, help="drift: how long to watch the agent"
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--interval-s",
        type=float,
        default=LOAD_INTERVAL_S,
        help="load: the agent's fast-tier interval (windows are max(60 s, 4 intervals))",
    )
    parser.add_argument(
        "--cycles",
        default=",".join(f"{k}={v}" for k, v in LOAD_CYCLES.items()),
        help="load: quiet-storm-storm-quiet cycles per kind, e.g. gzip=6,plain=2",
    )
    args = parser.parse_args(argv)
    if args.altiwatch is not None:
        agent_support.ALTIWATCH = args.altiwatch
    # SIGTERM runs the finally blocks (emulator, agents and broker are stopped).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("PATH", "/usr/sbin:/usr/bin:/bin")
    if "/usr/sbin" not in os.environ["PATH"]:
        os.environ["PATH"] = "/usr/sbin:" + os.environ["PATH"]

    def log(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    benches: dict[str, Callable[[Path, Callable[[str], None]], dict[str, Any]]] = {
        "miners": bench_miners,
        "load": functools.partial(
            bench_load,
            interval=args.interval_s,
            cycles={k: int(v) for k, _, v in (p.partition("=") for p in args.cycles.split(","))},
        ),
        "kill": bench_kill,
        "drift": functools.partial(bench_drift, minutes=args.minutes),
        "front": front_attacks.bench_front,
        "hostile": miner_attacks.bench_hostile,
    }
    # "all" is what make bench runs; drift (25 minutes more) only when asked for.
    chosen = [n for n in benches if n != "drift"] if args.which == "all" else [args.which]
    tmp = Path(tempfile.mkdtemp(prefix="altiwatch-reliability-"))
    try:
        for name in chosen:
            sub = tmp / name
            sub.mkdir()
            results[name] = benches[name](sub, log)
            log(f"{name}: done")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
