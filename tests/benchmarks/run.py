"""``make bench``: altiwatch against naive pyasic polling on the same emulated fleet (issue 7).

``python -m tests.benchmarks.run [--smoke] [--out bench-results/NAME.json]``

1. Starts the emulator (its own process) with every firmware family at fixed loopback
   addresses (127.81.F.N), then runs polling processes one after another
   (``tests.benchmarks.poll_worker``), each measuring only its own CPU (getrusage):
   ``baseline`` (hass-miner style: detected objects kept, ``get_data()`` with every data
   option under ``gather`` + ``Semaphore(50)``), ``agent`` (``PyasicSource.fetch`` fast tier,
   tuned) and ``agent_untuned`` (the include sets alone). Per family and for a fleet mix.
2. /metrics latency and RSS at 1,000 and 10,000 miners (``tests.benchmarks.exposition``:
   synthetic snapshots in the agent's real renderer and HTTP server, under update and poll
   load) against ``prometheus_client.generate_latest`` over an equivalent registry.
3. A sustained run of the real agent (``python -m agent run``) with a generated config
   against an emulated mixed fleet (full: 2,000 miners at a 15 s fast tier for 10 minutes):
   poll lateness from ``altiwatch_poll_lateness_seconds``, missed polls, errors, the agent's
   CPU per poll and RSS, and /metrics latency while it polls.

Prints a table and writes JSON. ``--smoke`` runs a tiny version of every part (make test runs
it through tests/integration/test_bench_smoke.py).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.benchmarks.exposition import summarise_ms
from tests.support.emulator import start_emulator
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]

#: (label in the table, emulator profile key)
FAMILIES: tuple[tuple[str, str], ...] = (
    ("S19 stock", "antminer-s19jpro"),
    ("S21", "antminer-s21"),
    ("Whatsminer", "whatsminer-m30s+ve40"),
    ("Avalon", "avalon-15-194"),
    ("Bitaxe", "bitaxe-ultra"),
    ("BOS+", "braiins-s19jpro"),
    ("VNish", "vnish-s19jpro"),
    ("LuxOS", "luxos-s19xp"),
    ("Whatsminer v3", "whatsminer-m60s-v3"),
    ("WM v3 4028 closed", "whatsminer-m60s-v3-4433"),  # baseline: pyasic picks v2, reads nothing
    ("S21+ Hydro", "antminer-s21plus-hydro"),
    ("S19 Hydro", "antminer-s19-hydro"),
    ("BOS+ immersion", "braiins-s19jpro-immersion"),
)

#: Share of each family in the "fleet mix" figures and the sustained run: a Qinghai-like site,
#: mostly stock Antminers, some Whatsminers and aftermarket firmware, few others.
MIX: dict[str, int] = {
    "antminer-s19jpro": 35,
    "antminer-s21": 20,
    "whatsminer-m30s+ve40": 15,
    "avalon-15-194": 5,
    "bitaxe-ultra": 5,
    "braiins-s19jpro": 10,
    "vnish-s19jpro": 10,
}

# Loopback addresses (127.80.0.0/16 - 127.89.0.0/16 are the benchmark's); the smoke run has
# its own so that `make test` and `make bench` can run at the same time.


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes of one benchmark run."""

    per_family: int
    cycles: int
    repeats: int
    mix_total: int
    exposition_sizes: tuple[int, ...]
    exposition_scrapes: int
    sustained_miners: int
    sustained_interval_s: float
    sustained_s: float
    one_process_per_group: bool
    untuned: bool
    full: bool
    family_base: str  # per-family fleet: <family_base>.F.N
    sustained_base: str  # sustained fleet: consecutive addresses from here
    listen_host: str  # the agent's and the exposition benchmark's HTTP address


FULL = Plan(
    per_family=40,
    cycles=5,
    repeats=3,
    mix_total=100,
    exposition_sizes=(1000, 10_000),
    exposition_scrapes=60,
    sustained_miners=2000,
    sustained_interval_s=15.0,
    sustained_s=600.0,
    one_process_per_group=True,
    untuned=True,
    full=True,
    family_base="127.81",
    sustained_base="127.82.0.1",
    listen_host="127.80.0.2",
)
SMOKE = Plan(
    per_family=1,
    cycles=2,
    repeats=1,
    mix_total=7,
    exposition_sizes=(200,),
    exposition_scrapes=5,
    sustained_miners=14,
    sustained_interval_s=3.0,
    sustained_s=8.0,
    one_process_per_group=False,
    untuned=False,
    full=False,
    family_base="127.84",
    sustained_base="127.85.0.1",
    listen_host="127.80.0.3",
)


# ------------------------------------------------------------------------------------------
# machine
# ------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in (
            Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").splitlines()
        ):
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text(encoding="ascii").split()[1])
    import pyasic  # noqa: PLC0415 — only for its version

    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pyasic": getattr(pyasic, "__version__", None) or _dist_version("pyasic"),
        "loadavg_start": os.getloadavg(),
        "started_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _dist_version(name: str) -> str | None:
    import importlib.metadata  # noqa: PLC0415

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# ------------------------------------------------------------------------------------------
# 1. CPU per poll, per family and for the mix
# ------------------------------------------------------------------------------------------


def family_addresses(plan: Plan) -> dict[str, list[str]]:
    """Fixed addresses <family_base>.F.N for each family's miners."""
    return {
        key: [f"{plan.family_base}.{f + 1}.{n + 1}" for n in range(plan.per_family)]
        for f, (_, key) in enumerate(FAMILIES)
    }


def family_scenario(addresses: dict[str, list[str]]) -> dict[str, Any]:
    """An emulator scenario with each family's miners at their fixed addresses."""
    return {
        "name": "bench-families",
        "site": {"name": "bench", "altitude_m": 2800},
        "miners": [
            {"model": key, "count": len(addrs), "addresses": addrs}
            for key, addrs in addresses.items()
        ],
    }


def mix_addresses(addresses: dict[str, list[str]], total: int) -> list[str]:
    """``total`` addresses taken from the per-family fleet in MIX proportions."""
    weight = sum(MIX.values())
    chosen: list[str] = []
    for key, share in MIX.items():
        count = max(1, round(total * share / weight))
        chosen.extend(addresses[key][:count])
    return chosen


def run_worker(
    mode: str, groups: dict[str, list[str]], cycles: int, timeout_s: float = 1200
) -> dict[str, dict[str, Any]]:
    """One polling process measuring ``groups`` in turn; label -> figures (or an error)."""
    args = ["--mode", mode]
    for label, addresses in groups.items():
        args += ["--group", f"{label}={','.join(addresses)}"]
    args += ["--cycles", str(cycles)]
    if mode == "agent":
        args += ["--loop", "uvloop"]  # as the daemon runs (agent.event_loop)
    # The arguments go in a file (argparse's @file): 10,000 addresses exceed the kernel's limit.
    with tempfile.NamedTemporaryFile("w", suffix=".args", delete=False) as argfile:
        argfile.write("\n".join(args) + "\n")
    argv = [sys.executable, "-m", "tests.benchmarks.poll_worker", f"@{argfile.name}"]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, cwd=REPO, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return {
            label: {"mode": mode, "error": f"timed out after {timeout_s} s"} for label in groups
        }
    finally:
        Path(argfile.name).unlink(missing_ok=True)
    if done.returncode != 0:
        return {label: {"mode": mode, "error": done.stderr.strip()[-2000:]} for label in groups}
    result: dict[str, dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])["groups"]
    return result


def median_result(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median CPU per poll (others' CPU figures kept for the JSON)."""
    good = [r for r in runs if r.get("cpu_ms_per_poll") is not None]
    if not good:
        return runs[0] if runs else {"error": "no run"}
    good.sort(key=lambda r: r["cpu_ms_per_poll"])
    chosen = dict(good[len(good) // 2])
    chosen["cpu_ms_per_poll_runs"] = [r["cpu_ms_per_poll"] for r in good]
    return chosen


def measure_cpu(plan: Plan, tmp: Path, log: Any, only: tuple[str, ...] = ()) -> dict[str, Any]:
    """Per-family and mix CPU figures for every mode (``only``: these labels or keys, no mix)."""
    addresses = family_addresses(plan)
    modes = ["baseline", "agent"] + (["agent_untuned"] if plan.untuned else [])
    chosen = [(label, key) for label, key in FAMILIES if not only or {label, key} & set(only)]
    addresses = {key: addresses[key] for _, key in chosen}
    groups = {label: addresses[key] for label, key in chosen}
    mix = [] if only else mix_addresses(addresses, plan.mix_total)
    if mix:
        groups["Fleet mix"] = mix
    if plan.one_process_per_group:
        jobs = [(mode, {label: addrs}) for label, addrs in groups.items() for mode in modes]
    else:
        jobs = [(mode, groups) for mode in modes]
    handle = start_emulator(
        family_scenario(addresses), base_address=f"{plan.family_base}.1.1", tmp_dir=tmp
    )
    emulator_cpu0 = _proc_cpu_s(handle.process.pid)
    results: dict[str, dict[str, Any]] = {}
    try:
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for _ in range(plan.repeats):
            for mode, job_groups in jobs:
                for label, figures in run_worker(mode, job_groups, plan.cycles).items():
                    runs.setdefault((label, mode), []).append(figures)
                    shown = figures.get("cpu_ms_per_poll", figures.get("error", ""))
                    log(f"  {label:<11} {mode:<14} {shown}")
        for (label, mode), mode_runs in runs.items():
            results.setdefault(label, {})[mode] = median_result(mode_runs)
    finally:
        emulator_cpu = _proc_cpu_s(handle.process.pid) - emulator_cpu0
        handle.stop()
    for figures in results.values():
        base = figures.get("baseline", {}).get("cpu_ms_per_poll")
        for mode in ("agent", "agent_untuned"):
            agent = figures.get(mode, {}).get("cpu_ms_per_poll")
            if base and agent:
                figures[f"{mode}_over_baseline"] = round(agent / base, 3)
    return {
        "per_family": plan.per_family,
        "cycles": plan.cycles,
        "repeats": plan.repeats,
        "mix": {"addresses": len(mix), "shares": MIX},
        "emulator_cpu_s": round(emulator_cpu, 2),
        "families": results,
    }


# ------------------------------------------------------------------------------------------
# 2. /metrics at scale (synthetic snapshots)
# ------------------------------------------------------------------------------------------


def _front(serving: dict[str, Any]) -> str:
    """The HTTP front's share of a serving run, for the summary ('' from older results)."""
    if "front_rss_bytes" not in serving:
        return ""
    return (
        f"; served through the HTTP front: front CPU {serving['front_cpu_s']:.1f} s, "
        f"front RSS {serving['front_rss_bytes'] / 2**20:.0f} MiB"
    )


def measure_exposition(plan: Plan, agent_poll_ms: float | None, log: Any) -> list[dict[str, Any]]:
    """Run the exposition benchmark for each size in its own process."""
    results = []
    for miners in plan.exposition_sizes:
        argv = [
            sys.executable,
            "-m",
            "tests.benchmarks.exposition",
            "--miners",
            str(miners),
            "--scrapes",
            str(plan.exposition_scrapes),
            "--scrape-interval",
            "0.5" if plan.full else "0.1",
            "--repeats",
            "10" if plan.full else "2",
            "--listen",
            plan.listen_host,
        ]
        if agent_poll_ms is not None:
            argv += ["--poll-cpu-ms", f"{agent_poll_ms:.3f}"]
        done = subprocess.run(
            argv, capture_output=True, text=True, cwd=REPO, timeout=1800, check=False
        )
        if done.returncode != 0:
            results.append({"miners": miners, "error": done.stderr.strip()[-2000:]})
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        log(
            f"  exposition {miners}: scrape {result['serving']['scrape']}, "
            f"gzip {result['serving']['scrape_gzip']}"
        )
        results.append(result)
    return results


# ------------------------------------------------------------------------------------------
# 3. sustained run of the real agent
# ------------------------------------------------------------------------------------------


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def parse_metrics(text: str) -> dict[str, dict[str, float]]:
    """``altiwatch_*`` samples: name -> {label text: value} (per-miner series skipped)."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line.startswith("altiwatch_"):
            continue
        match = _SAMPLE.match(line)
        if match:
            out.setdefault(match[1], {})[match[2] or ""] = float(match[3])
    return out


def _total(samples: dict[str, dict[str, float]], name: str, contains: str = "") -> float:
    return sum(v for labels, v in samples.get(name, {}).items() if contains in labels)


def histogram_quantiles(
    before: dict[str, dict[str, float]],
    after: dict[str, dict[str, float]],
    name: str,
    contains: str = "",
) -> dict[str, Any]:
    """Observations between two scrapes of a histogram (count, sum), p50/p99 as bucket bounds."""
    buckets: list[tuple[float, float]] = []
    for labels, value in after.get(f"{name}_bucket", {}).items():
        if contains not in labels:
            continue
        le = re.search(r'le="([^"]+)"', labels)
        if le:
            bound = float(le[1])
            buckets.append((bound, value - before.get(f"{name}_bucket", {}).get(labels, 0.0)))
    buckets.sort()
    total = _total(after, f"{name}_count", contains) - _total(before, f"{name}_count", contains)
    result: dict[str, Any] = {"count": total, "buckets": buckets}
    observed = _total(after, f"{name}_sum", contains) - _total(before, f"{name}_sum", contains)
    result["sum_s"] = round(observed, 4)
    if total > 0:
        for q, key in ((0.5, "p50_le_s"), (0.99, "p99_le_s"), (1.0, "max_le_s")):
            result[key] = next((b for b, c in buckets if c >= q * total), None)
        result["mean_s"] = round(observed / total, 7)
    return result


def _proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_status_kb(pid: int, key: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def _get(url: str, timeout_s: float = 30.0) -> tuple[int, bytes, float]:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 — loopback
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        return exc.code, b"", time.perf_counter() - started
    return status, body, time.perf_counter() - started


def sustained_config(
    addresses: list[str], plan: Plan, port: int, state_dir: Path
) -> dict[str, Any]:
    """The agent config of the sustained run."""
    interval = plan.sustained_interval_s
    return {
        "agent": {
            "id": "bench",
            "state_dir": str(state_dir),
            "log_format": "json",
            "log_level": "warning",
        },
        "sites": [{"name": "bench", "altitude_m": 2800}],
        "miners": [{"address": a} for a in addresses],
        "polling": {
            "interval_s": interval,
            "slow_interval_s": max(interval, 300.0 if plan.full else interval * 2),
            "timeout_s": round(0.8 * interval, 3),
        },
        "http": {"listen": f"{plan.listen_host}:{port}"},
    }


def _start_agent(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as agent_log:
        return subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(config_path)],
            stdout=agent_log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


def _wait_ready(
    agent: subprocess.Popen[bytes], base: str, deadline_s: float, log_path: Path
) -> float:
    """Seconds until /readyz answers 200 (first poll cycle done); RuntimeError otherwise."""
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        if agent.poll() is not None:
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
            msg = f"agent exited with {agent.returncode}:\n{tail}"
            raise RuntimeError(msg)
        with contextlib.suppress(OSError):
            if _get(base + "/readyz", 5)[0] == 200:
                return time.monotonic() - started
        time.sleep(0.2)
    msg = f"agent not ready (first poll cycle) within {deadline_s:g} s"
    raise RuntimeError(msg)


def _timed_scrape(url: str) -> float | None:
    """Latency of one GET (curl's time_total when curl is installed, like exposition.scrape)."""
    curl = shutil.which("curl")
    if curl is None:
        status, _, latency = _get(url)
        return latency if status == 200 else None
    done = subprocess.run(
        [curl, "-s", "-f", "-o", "/dev/null", "-w", "%{time_total}", "--max-time", "60", url],
        capture_output=True,
        text=True,
        check=False,
    )
    return float(done.stdout) if done.returncode == 0 else None


def _window(agent_pid: int, base: str, seconds: float, scrape_every_s: float) -> dict[str, Any]:
    """Scrape /metrics every ``scrape_every_s`` for ``seconds``; first and last samples + stats."""
    _, body, _ = _get(base + "/metrics")
    before = parse_metrics(body.decode())
    cpu0 = _proc_cpu_s(agent_pid)
    started = time.monotonic()
    latencies: list[float] = []
    rss_samples: list[int] = []
    while time.monotonic() - started < seconds:
        latency = _timed_scrape(base + "/metrics")
        if latency is not None:
            latencies.append(latency)
        rss = _proc_status_kb(agent_pid, "VmRSS")
        if rss is not None:
            rss_samples.append(rss)
        time.sleep(max(0.0, scrape_every_s - (latency or 0.0)))
    window = time.monotonic() - started
    _, body, _ = _get(base + "/metrics")
    return {
        "before": before,
        "after": parse_metrics(body.decode()),
        "window_s": window,
        "cpu_s": _proc_cpu_s(agent_pid) - cpu0,
        "latencies": latencies,
        "rss_kb": rss_samples,
        "body_bytes": len(body),
    }


def _delta(w: dict[str, Any], name: str, contains: str = "") -> float:
    return _total(w["after"], name, contains) - _total(w["before"], name, contains)


def sustained_figures(w: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """What the sustained run reports, from a measurement window."""
    fast = _delta(w, "altiwatch_polls_total", 'tier="fast"')
    slow = _delta(w, "altiwatch_polls_total", 'tier="slow"')
    expected = plan.sustained_miners * w["window_s"] / plan.sustained_interval_s
    errors_after = w["after"].get("altiwatch_poll_errors_total", {})
    errors_before = w["before"].get("altiwatch_poll_errors_total", {})
    errors = {k: v - errors_before.get(k, 0.0) for k, v in errors_after.items()}
    rss = w["rss_kb"]
    return {
        "window_s": round(w["window_s"], 1),
        "fast_polls": fast,
        "slow_polls": slow,
        "expected_fast_polls": round(expected),
        # The poller counts each fast slot it had to skip (previous poll overran) exactly; the
        # count check allows one slot per miner of phase slack at the window's two ends.
        "skipped_slots": _delta(w, "altiwatch_polls_skipped_total"),
        "missed_fast_polls": int(_delta(w, "altiwatch_polls_skipped_total"))
        + max(0, round(expected - fast) - plan.sustained_miners),
        "errors": {k: v for k, v in errors.items() if v},
        "lateness": histogram_quantiles(w["before"], w["after"], "altiwatch_poll_lateness_seconds"),
        "poll_duration_fast": histogram_quantiles(
            w["before"], w["after"], "altiwatch_poll_duration_seconds", 'tier="fast"'
        ),
        "agent_cpu_s": round(w["cpu_s"], 2),
        "agent_cpu_ms_per_poll": round(1000 * w["cpu_s"] / (fast + slow), 3)
        if fast + slow
        else None,
        "agent_cpu_share_of_one_core": round(w["cpu_s"] / w["window_s"], 3),
        "rss_bytes_max": 1024 * max(rss) if rss else None,
        "rss_bytes_end": 1024 * rss[-1] if rss else None,
        "metrics_scrape": summarise_ms(w["latencies"]),
        "metrics_body_bytes": w["body_bytes"],
    }


def measure_sustained(plan: Plan, tmp: Path, log: Any) -> dict[str, Any]:
    """Run the real agent against an emulated mixed fleet and read its own metrics."""
    scenario = {
        "name": "bench-sustained",
        "site": {"name": "bench", "altitude_m": 2800},
        "miners": [{"model": key, "count": share} for key, share in MIX.items()],
    }
    handle = start_emulator(
        scenario, base_address=plan.sustained_base, tmp_dir=tmp, miners=plan.sustained_miners
    )
    agent: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {
        "miners": plan.sustained_miners,
        "interval_s": plan.sustained_interval_s,
    }
    try:
        port = free_port(plan.listen_host)
        config_path = tmp / "altiwatch-bench.yaml"
        config = sustained_config(handle.addresses(), plan, port, tmp / "state")
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        log_path = tmp / "agent.log"
        agent = _start_agent(config_path, log_path)
        base = f"http://{plan.listen_host}:{port}"
        deadline = max(120.0, 4 * plan.sustained_interval_s)
        result["ready_after_s"] = round(_wait_ready(agent, base, deadline, log_path), 1)
        log(f"  agent ready after {result['ready_after_s']} s; steady state for one interval")
        time.sleep(plan.sustained_interval_s)
        emu_cpu0 = _proc_cpu_s(handle.process.pid)
        window = _window(agent.pid, base, plan.sustained_s, 5.0 if plan.full else 1.0)
        result |= sustained_figures(window, plan)
        result["emulator_cpu_s"] = round(_proc_cpu_s(handle.process.pid) - emu_cpu0, 2)
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if agent is not None and agent.poll() is None:
            agent.terminate()
            try:
                agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait(timeout=10)
        handle.stop()
    return result


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = ".2f") -> str:
    if value is None:
        return "–"
    if isinstance(value, float | int):
        return format(value, spec)
    return str(value)


def table(results: dict[str, Any]) -> str:
    """The human-readable summary (markdown)."""
    lines = []
    m = results["machine"]
    lines.append(
        f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['mem_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}, pyasic {m['pyasic']}; emulator in its own process on the same cores."
    )
    cpu = results.get("cpu")
    if cpu:
        lines += [
            "",
            f"CPU per fast-tier poll ({cpu['per_family']} miners per family, {cpu['cycles']} cycles, median of {cpu['repeats']} runs)",
            "",
            "| family | baseline get_data() ms | agent ms | agent/baseline | polls per CPU-s (agent) | include sets only ms |",
            "|---|---|---|---|---|---|",
        ]
        for label, figures in cpu["families"].items():
            base = figures.get("baseline", {})
            agent = figures.get("agent", {})
            untuned = figures.get("agent_untuned", {})
            ratio = figures.get("agent_over_baseline")
            lines.append(
                f"| {label} | {_fmt(base.get('cpu_ms_per_poll'))} | {_fmt(agent.get('cpu_ms_per_poll'))} | "
                f"{_fmt(ratio, '.3f')}{f' (1/{1 / ratio:.1f})' if ratio else ''} | {_fmt(agent.get('polls_per_cpu_s'), '.0f')} | "
                f"{_fmt(untuned.get('cpu_ms_per_poll'))} |"
            )
            failed = {
                mode: f.get("failed") or f.get("error")
                for mode, f in figures.items()
                if isinstance(f, dict) and (f.get("failed") or f.get("error"))
            }
            if failed:
                lines.append(f"|   ↳ failures | {failed} | | | | |")
    for expo in results.get("exposition", []):
        if "error" in expo:
            lines.append(f"\n/metrics at {expo['miners']}: error {expo['error'][:200]}")
            continue
        scrape = expo["serving"]["scrape"]
        lines += [
            "",
            (
                f"/metrics at {expo['miners']:,} miners (synthetic snapshots): {expo['series']:,} series, "
                f"{expo['body_bytes'] / 1e6:.1f} MB; scrape during updates+poll load median {_fmt(scrape.get('median_ms'), '.1f')} ms, "
                f"p99 {_fmt(scrape.get('p99_ms'), '.1f')} ms (gzip, as Prometheus asks: median "
                f"{_fmt(expo['serving'].get('scrape_gzip', {}).get('median_ms'), '.1f')} ms, p99 "
                f"{_fmt(expo['serving'].get('scrape_gzip', {}).get('p99_ms'), '.1f')} ms); agent re-render after 1 s of polls median "
                f"{_fmt(expo['render_after_1s_of_polls'].get('median_ms'), '.1f')} ms; generate_latest over an equivalent "
                f"registry median {_fmt(expo['generate_latest'].get('median_ms'), '.1f')} ms, p99 "
                f"{_fmt(expo['generate_latest'].get('p99_ms'), '.1f')} ms; RSS {expo['rss_bytes_with_state'] / 2**20:.0f} MiB "
                f"(state built), {expo['serving']['rss_bytes_serving'] / 2**20:.0f} MiB (serving)"
                f"{_front(expo['serving'])}"
            ),
        ]
    sus = results.get("sustained")
    if sus:
        lines.append("")
        if "error" in sus:
            lines.append(f"Sustained run: error {sus['error'][:500]}")
        else:
            late = sus["lateness"]
            scrape = sus["metrics_scrape"]
            lines.append(
                f"Sustained real agent: {sus['miners']:,} miners @ {sus['interval_s']:g} s for {sus['window_s']:g} s: "
                f"{sus['fast_polls']:.0f}/{sus['expected_fast_polls']} fast polls, missed {sus['missed_fast_polls']}, "
                f"skipped slots {sus['skipped_slots']:.0f}, errors {sus['errors'] or 0}; lateness p50 ≤ {_fmt(late.get('p50_le_s'), 'g')} s, "
                f"p99 ≤ {_fmt(late.get('p99_le_s'), 'g')} s (histogram buckets); agent CPU {sus['agent_cpu_ms_per_poll']} ms/poll, "
                f"{100 * sus['agent_cpu_share_of_one_core']:.0f} % of one core; RSS max {(sus['rss_bytes_max'] or 0) / 2**20:.0f} MiB; "
                f"/metrics median {_fmt(scrape.get('median_ms'), '.1f')} ms, p99 {_fmt(scrape.get('p99_ms'), '.1f')} ms "
                f"({sus['metrics_body_bytes'] / 1e6:.1f} MB)"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table; write the JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny fleet, every part (for make test)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON output (default bench-results/<time>.json)"
    )
    parser.add_argument(
        "--skip", action="append", default=[], choices=["cpu", "exposition", "sustained"]
    )
    parser.add_argument("--sustained-s", type=float, default=None, help="sustained duration")
    parser.add_argument("--sustained-miners", type=int, default=None)
    parser.add_argument("--per-family", type=int, default=None, help="miners per family")
    parser.add_argument("--repeats", type=int, default=None, help="runs per figure (median)")
    parser.add_argument("--cycles", type=int, default=None, help="measured cycles per run")
    parser.add_argument(
        "--family",
        action="append",
        default=[],
        help="CPU part: only this family (table label or emulator profile; repeatable, no mix)",
    )
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    overrides = {
        "sustained_s": args.sustained_s,
        "sustained_miners": args.sustained_miners,
        "per_family": args.per_family,
        "repeats": args.repeats,
        "cycles": args.cycles,
    }
    plan = dataclasses.replace(plan, **{k: v for k, v in overrides.items() if v is not None})
    out = (
        args.out
        or REPO
        / "bench-results"
        / f"{'smoke' if args.smoke else 'bench'}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    )

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    results: dict[str, Any] = {"plan": dataclasses.asdict(plan)}
    results["machine"] = machine()
    results["command"] = "python -m tests.benchmarks.run" + (" --smoke" if args.smoke else "")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="altiwatch-bench-") as tmp_name:
        tmp = Path(tmp_name)
        agent_poll_ms = None
        if "cpu" not in args.skip:
            log("CPU per poll (baseline vs agent) ...")
            results["cpu"] = measure_cpu(plan, tmp, log, tuple(args.family))
            agent_poll_ms = (
                results["cpu"]["families"]
                .get("Fleet mix", {})
                .get("agent", {})
                .get("cpu_ms_per_poll")
            )
        if "exposition" not in args.skip:
            log("/metrics at scale (synthetic) ...")
            results["exposition"] = measure_exposition(plan, agent_poll_ms, log)
        if "sustained" not in args.skip:
            log(
                f"sustained run: {plan.sustained_miners} miners @ {plan.sustained_interval_s:g} s for {plan.sustained_s:g} s ..."
            )
            results["sustained"] = measure_sustained(plan, tmp, log)
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["machine"]["loadavg_end"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(table(results))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
