"""``make bench``'s headline: the real daemon end to end, MQTT on, against naive pyasic (issue 20).

``python -m tests.benchmarks.e2e [--miners 1000] [--per-family 200] [--interval-s 15]
[--minutes N] [--family LABEL ...] [--mqtt-off] [--smoke] [--out bench-results/NAME.json]``

What an operator's ``top`` would show, measured on an emulated fleet:

1. Fleet part. A real mosquitto (``tests.support.mosquitto``) and a real Prometheus scraping the
   agent every ``interval`` (``tests.support.prometheus``); the emulator split over processes
   of at most ``--emulator-miners`` miners each (127.140.<8i>.1 and up); the real
   ``python -m agent run`` with MQTT telemetry ON polls the fleet mix of ``run.MIX``. After the
   first poll cycle (``/readyz``), the MQTT link and one more interval of warm-up, a steady
   window: CPU of ALL the agent's processes (the agent and its HTTP front child, utime+stime
   from /proc over the process tree) per poll (``altiwatch_polls_total`` deltas, every tier),
   RSS of all of them (sum of VmRSS, sampled), poll lateness (``altiwatch_poll_lateness_seconds``:
   mean and p99 bucket bound), missed slots, poll errors, MQTT publishes and drops. Then, on
   the SAME miners, naive pyasic ``get_data()`` (``poll_worker`` baseline mode, its own
   process's CPU only) -> CPU per poll and the ratio.
2. Per-family part. The same with ``--per-family`` miners of ONE family at a time (each of
   ``run.FAMILIES``, emulator at 127.141.<8f>.1), a fresh agent each time, MQTT on, the same
   Prometheus; naive ``get_data()`` on the same miners.

CPU is reported as CPU time per poll, which contention from other processes barely changes;
lateness is wall-clock and is only as good as the machine was quiet. Prints markdown tables
and writes JSON. ``--smoke`` is a tiny version (make test runs it through
tests/integration/test_bench_e2e_smoke.py).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tests.benchmarks.run import (
    FAMILIES,
    MIX,
    histogram_quantiles,
    machine,
    parse_metrics,
    run_worker,
)
from tests.support.emulator import EmulatorError, EmulatorHandle, start_emulator
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port
from tests.support.prometheus import PrometheusServer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

REPO = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Stack:
    """What every agent of the run shares: the broker, Prometheus and the agent's HTTP port."""

    broker: Mosquitto
    prometheus: PrometheusServer
    port: int  # Prometheus scrapes <listen_host>:<port>, whichever agent listens there now


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes of one end-to-end run."""

    miners: int  # fleet part (0: skip it)
    per_family: int  # per-family part (0: skip it)
    families: tuple[str, ...]  # labels of run.FAMILIES measured in the per-family part
    interval_s: float
    fleet_window_s: float
    family_window_s: float
    emulator_miners: int  # at most this many miners per emulator process
    baseline_cycles: int
    fleet_base: str  # emulator i of the fleet at <fleet_base>.<8i>.1
    family_base: str  # family f at <family_base>.<8f>.1
    listen_host: str  # the agent's HTTP address (Prometheus scrapes it)
    smoke: bool
    mqtt: bool = True  # --mqtt-off: the same run without MQTT, to see what telemetry costs


def full_plan(miners: int, per_family: int, interval_s: float, minutes: float | None) -> Plan:
    """The real run: windows of 3 intervals after warm-up unless ``minutes`` says otherwise."""
    window = 60.0 * minutes if minutes else 3 * interval_s
    return Plan(
        miners=miners,
        per_family=per_family,
        families=tuple(label for label, _ in FAMILIES),
        interval_s=interval_s,
        fleet_window_s=window,
        family_window_s=window,
        emulator_miners=500,
        baseline_cycles=3,
        fleet_base="127.140",
        family_base="127.141",
        listen_host="127.143.0.1",
        smoke=False,
    )


SMOKE = Plan(
    miners=7,
    per_family=2,
    families=("Bitaxe",),
    interval_s=1.5,
    fleet_window_s=3.0,
    family_window_s=1.5,
    emulator_miners=4,  # two emulator processes, as the full run splits the fleet
    baseline_cycles=1,
    fleet_base="127.142",
    family_base="127.144",
    listen_host="127.143.0.2",
    smoke=True,
)


# ------------------------------------------------------------------------------------------
# the agent's processes
# ------------------------------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """``root`` and every descendant alive now (from /proc/<pid>/stat parent ids)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text(encoding="ascii").rpartition(")")[2].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_s(pids: list[int]) -> dict[int, float]:
    """utime+stime seconds of each pid still alive (its own threads, not reaped children)."""
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rpartition(")")[2]
            values = fields.split()
            out[pid] = (int(values[11]) + int(values[12])) / CLK_TCK
    return out


def rss_kb(pids: list[int]) -> dict[int, int]:
    """VmRSS (KiB) of each pid still alive."""
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
                if line.startswith("VmRSS:"):
                    out[pid] = int(line.split()[1])
    return out


def _get(url: str, timeout_s: float = 30.0) -> tuple[int, bytes]:
    import urllib.error  # noqa: PLC0415 — only here
    import urllib.request  # noqa: PLC0415

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 — loopback
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except OSError:
        return 0, b""


class Agent:
    """One ``python -m agent run`` (MQTT telemetry on) and what the benchmark reads from it."""

    def __init__(
        self, workdir: Path, addresses: list[str], plan: Plan, port: int, broker: Mosquitto
    ) -> None:
        """Write the config and start the daemon."""
        interval = plan.interval_s
        config = {
            "agent": {
                "id": "bench-e2e",
                "state_dir": str(workdir / "state"),
                "log_format": "json",
                "log_level": "warning",
            },
            "sites": [{"name": "bench", "altitude_m": 2800}],
            "miners": [{"address": a} for a in addresses],
            "polling": {
                "interval_s": interval,
                "slow_interval_s": max(interval, 20 * interval),
                "timeout_s": round(0.8 * interval, 3),
            },
            "http": {"listen": f"{plan.listen_host}:{port}"},
            "mqtt": {
                "enabled": plan.mqtt,
                "host": broker.host,
                "port": broker.port,
                "telemetry": True,
            },
        }
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "altiwatch.yaml"
        self.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log_path = workdir / "agent.log"
        self.base = f"http://{plan.listen_host}:{port}"
        self.miners = len(addresses)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent", "run", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )

    def _alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
            msg = f"agent exited with {self.proc.returncode}:\n{tail}"
            raise RuntimeError(msg)

    def wait_for(self, what: str, predicate: Callable[[], bool], deadline_s: float) -> float:
        """Seconds until ``predicate`` holds; RuntimeError at the deadline or if the agent dies."""
        started = time.monotonic()
        while time.monotonic() - started < deadline_s:
            self._alive()
            if predicate():
                return time.monotonic() - started
            time.sleep(0.2)
        msg = f"{what}: not within {deadline_s:g} s"
        raise RuntimeError(msg)

    def ready(self) -> bool:
        """/readyz answers 200 (the first poll cycle is done)."""
        return _get(self.base + "/readyz", 5)[0] == 200

    def samples(self) -> dict[str, dict[str, float]]:
        """The agent's own ``altiwatch_*`` samples from /metrics."""
        status, body = _get(self.base + "/metrics")
        if status != 200:
            msg = f"/metrics answered {status}"
            raise RuntimeError(msg)
        return parse_metrics(body.decode())

    def mqtt_connected(self) -> bool:
        """``altiwatch_mqtt_connected`` is 1."""
        return self.samples().get("altiwatch_mqtt_connected", {}).get("", 0.0) == 1.0

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# ------------------------------------------------------------------------------------------
# one measured window
# ------------------------------------------------------------------------------------------


def _delta(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], name: str,
           contains: str = "") -> float:  # fmt: skip
    def total(s: dict[str, dict[str, float]]) -> float:
        return sum(v for labels, v in s.get(name, {}).items() if contains in labels)

    return total(after) - total(before)


def measure_window(agent: Agent, window_s: float, interval_s: float) -> dict[str, Any]:
    """Steady-state figures of ``agent`` over ``window_s`` (it must be warmed up)."""
    pids = process_tree(agent.proc.pid)
    before = agent.samples()
    cpu0 = cpu_s(pids)
    started = time.monotonic()
    rss_sums: list[int] = []
    rss_by_pid: dict[int, int] = {}
    while (left := window_s - (time.monotonic() - started)) > 0:
        sample = rss_kb(pids)
        rss_sums.append(sum(sample.values()))
        for pid, kb in sample.items():
            rss_by_pid[pid] = max(kb, rss_by_pid.get(pid, 0))
        time.sleep(min(2.0, left))
    cpu1 = cpu_s(pids)
    elapsed = time.monotonic() - started
    after = agent.samples()
    sample = rss_kb(pids)
    rss_sums.append(sum(sample.values()))
    gone = sorted(set(cpu0) - set(cpu1))
    cpu_by_pid = {pid: round(cpu1[pid] - cpu0[pid], 3) for pid in cpu1 if pid in cpu0}
    cpu_total = sum(cpu_by_pid.values())
    polls = _delta(before, after, "altiwatch_polls_total")
    fast = _delta(before, after, "altiwatch_polls_total", 'tier="fast"')
    expected_fast = agent.miners * elapsed / interval_s
    skipped = _delta(before, after, "altiwatch_polls_skipped_total")
    errors = {
        labels: value - before.get("altiwatch_poll_errors_total", {}).get(labels, 0.0)
        for labels, value in after.get("altiwatch_poll_errors_total", {}).items()
    }
    lateness = histogram_quantiles(before, after, "altiwatch_poll_lateness_seconds")
    dropped = {
        labels: value - before.get("altiwatch_mqtt_dropped_total", {}).get(labels, 0.0)
        for labels, value in after.get("altiwatch_mqtt_dropped_total", {}).items()
    }
    return {
        "miners": agent.miners,
        "window_s": round(elapsed, 1),
        "pids": {str(pid): ("agent" if pid == agent.proc.pid else "child") for pid in pids},
        "pids_gone_during_window": gone,
        "polls": polls,
        "fast_polls": fast,
        "expected_fast_polls": round(expected_fast),
        "skipped_slots": skipped,
        # As run.sustained_figures: skipped slots exactly, plus any shortfall beyond one slot
        # per miner of phase slack at the window's two ends.
        "missed_slots": int(skipped) + max(0, round(expected_fast - fast) - agent.miners),
        "poll_errors": {k: v for k, v in errors.items() if v},
        "cpu_s": round(cpu_total, 3),
        "cpu_s_by_pid": {str(pid): v for pid, v in cpu_by_pid.items()},
        "cpu_ms_per_poll": round(1000 * cpu_total / polls, 3) if polls else None,
        "cpu_share_of_one_core": round(cpu_total / elapsed, 3),
        "rss_bytes_max": 1024 * max(rss_sums),
        "rss_bytes_max_by_pid": {str(pid): 1024 * kb for pid, kb in rss_by_pid.items()},
        "lateness_mean_s": lateness.get("mean_s"),
        "lateness_p99_le_s": lateness.get("p99_le_s"),
        "lateness_max_le_s": lateness.get("max_le_s"),
        "lateness_count": lateness["count"],
        "mqtt_published": _delta(before, after, "altiwatch_mqtt_published_total"),
        "mqtt_dropped": {k: v for k, v in dropped.items() if v},
        "mqtt_outbox_depth_end": after.get("altiwatch_mqtt_outbox_depth", {}).get(""),
        "mqtt_connected_end": after.get("altiwatch_mqtt_connected", {}).get(""),
    }


def run_agent(
    addresses: list[str],
    plan: Plan,
    window_s: float,
    stack: Stack,
    workdir: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Start an agent on ``addresses``, warm it up, measure one window, stop it."""
    agent = Agent(workdir, addresses, plan, stack.port, stack.broker)
    result: dict[str, Any] = {}
    try:
        deadline = max(120.0, 4 * plan.interval_s)
        result["ready_after_s"] = round(agent.wait_for("/readyz", agent.ready, deadline), 1)
        if plan.mqtt:
            agent.wait_for("MQTT connected", agent.mqtt_connected, 30.0)
        log(f"    agent ready after {result['ready_after_s']} s; warm-up {plan.interval_s:g} s")
        time.sleep(plan.interval_s)  # a fixed warm-up interval, not a wait for a condition
        result |= measure_window(agent, window_s, plan.interval_s)
        result["prometheus"] = prometheus_view(stack.prometheus)
    finally:
        agent.stop()
    return result


def naive(label: str, addresses: list[str], plan: Plan) -> dict[str, Any]:
    """Naive ``get_data()`` on ``addresses`` in its own process (poll_worker baseline mode)."""
    return run_worker("baseline", {label: addresses}, plan.baseline_cycles)[label]


# ------------------------------------------------------------------------------------------
# the parts
# ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def emulators(
    scenarios: list[tuple[dict[str, Any], str, int]], tmp: Path
) -> Iterator[list[EmulatorHandle]]:
    """Start one emulator per (scenario, base address, miners); stop them all afterwards."""
    handles: list[EmulatorHandle] = []
    try:
        # started side by side: each start waits for its process's ready line
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            futures = [
                pool.submit(start_emulator, scenario, base_address=base, tmp_dir=tmp, miners=n)
                for scenario, base, n in scenarios
            ]
            for future in futures:
                with contextlib.suppress(EmulatorError):
                    handles.append(future.result())
        if len(handles) < len(scenarios):
            msg = f"{len(scenarios) - len(handles)} emulator(s) did not start"
            raise EmulatorError(msg)
        yield handles
    finally:
        for handle in handles:
            handle.stop()


def _emulator_cpu(handles: list[EmulatorHandle]) -> float:
    return sum(cpu_s([h.process.pid for h in handles]).values())


Spec = tuple[dict[str, Any], str, int]  # (emulator scenario, base address, miners)


def fleet_specs(plan: Plan) -> list[Spec]:
    """The fleet mix split over emulator processes of at most ``plan.emulator_miners``."""
    scenario = {
        "name": "bench-e2e-fleet",
        "site": {"name": "bench", "altitude_m": 2800},
        "miners": [{"model": key, "count": share} for key, share in MIX.items()],
    }
    chunks = [
        min(plan.emulator_miners, plan.miners - start)
        for start in range(0, plan.miners, plan.emulator_miners)
    ]
    return [(scenario, f"{plan.fleet_base}.{8 * i}.1", n) for i, n in enumerate(chunks)]


def family_specs(plan: Plan) -> dict[str, Spec]:
    """One emulator process per measured family: label -> spec."""
    if not plan.per_family:
        return {}
    return {
        label: (
            {
                "name": f"bench-e2e-{key}",
                "site": {"name": "bench", "altitude_m": 2800},
                "miners": [{"model": key, "count": plan.per_family}],
            },
            f"{plan.family_base}.{8 * f}.1",
            plan.per_family,
        )
        for f, (label, key) in enumerate(FAMILIES)
        if label in plan.families
    }


def measure_pair(
    label: str,
    handles: list[EmulatorHandle],
    plan: Plan,
    window_s: float,
    stack: Stack,
    workdir: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The agent end to end on the miners of ``handles``, then naive get_data() on them."""
    addresses = [a for h in handles for a in h.addresses()]
    families: dict[str, int] = {}
    for h in handles:
        for miner in h.miners():
            families[miner["family"]] = families.get(miner["family"], 0) + 1
    log(f"  {label}: {len(addresses)} miners in {len(handles)} emulator processes {families}")
    emu0 = _emulator_cpu(handles)
    try:
        agent = run_agent(addresses, plan, window_s, stack, workdir, log)
        agent["emulator_cpu_s"] = round(_emulator_cpu(handles) - emu0, 2)
    except RuntimeError as exc:
        agent = {"error": str(exc)}
    log(f"    agent {agent.get('cpu_ms_per_poll')} ms CPU/poll; naive get_data() ...")
    baseline = naive(label, addresses, plan)
    log(f"    naive {baseline.get('cpu_ms_per_poll', baseline.get('error'))} ms CPU/poll")
    head = {"miners": len(addresses), "emulators": len(handles), "families": families}
    return _pair(head, agent, baseline)


def _pair(head: dict[str, Any], agent: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    ours, theirs = agent.get("cpu_ms_per_poll"), baseline.get("cpu_ms_per_poll")
    ratio = round(ours / theirs, 3) if ours and theirs else None
    return head | {"agent": agent, "naive": baseline, "agent_over_naive": ratio}


def _scalar(server: PrometheusServer, expr: str) -> float | None:
    with contextlib.suppress(AssertionError, KeyError, IndexError, ValueError):
        return float(server.query(expr)[0]["value"][1])
    return None


def prometheus_view(server: PrometheusServer) -> dict[str, Any]:
    """What Prometheus itself saw of the agent target at its last scrape."""
    return {
        name: _scalar(server, f'{name}{{job="altiwatch"}}')
        for name in ("up", "scrape_duration_seconds", "scrape_samples_scraped")
    }


def good_scrapes(server: PrometheusServer) -> float | None:
    """Scrapes of the agents that succeeded over the whole run (``up`` is 1 for each)."""
    return _scalar(server, 'sum_over_time(up{job="altiwatch"}[2h])')


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------


def _f(value: Any, spec: str = ".2f") -> str:
    return "–" if value is None else format(value, spec)


def _ratio(ratio: float | None) -> str:
    if not ratio:
        return "–"
    return f"{ratio:.3f} (1/{1 / ratio:.1f})" if ratio < 1 else f"{ratio:.3f} ({ratio:.1f}× naive)"


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{1000 * seconds:.1f} ms"


def table(results: dict[str, Any]) -> str:
    """The human-readable summary (markdown)."""
    m = results["machine"]
    plan = results["plan"]
    lines = [
        (
            f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['mem_gib']} GiB, Linux {m['kernel']}, "
            f"Python {m['python']}, pyasic {m['pyasic']}; load average at start "
            f"{', '.join(f'{x:.1f}' for x in m['loadavg_start'])} (shared machine: lateness is "
            "wall-clock under that load, CPU per poll is CPU time)."
        )
    ]
    fleet = results.get("fleet")
    if fleet:
        a, n = fleet["agent"], fleet["naive"]
        lines += [
            "",
            (
                f"Fleet mix, {fleet['miners']:,} miners ({fleet['emulators']} emulator processes), "
                f"{plan['interval_s']:g} s interval, MQTT telemetry {'on' if plan['mqtt'] else 'OFF'}, Prometheus scraping every "
                f"{plan['interval_s']:g} s; window {a.get('window_s', '–')} s after warm-up"
            ),
            "",
            "| figure | value |",
            "|---|---|",
        ]
        if "error" in a:
            lines.append(f"| agent | error: {a['error'][:300]} |")
        else:
            lines += [
                f"| agent CPU per poll (all its processes, every tier) | **{_f(a['cpu_ms_per_poll'])} ms** ({a['polls']:.0f} polls, {a['cpu_s']:.1f} CPU-s) |",
                f"| naive `get_data()` CPU per poll, same miners | {_f(n.get('cpu_ms_per_poll'))} ms ({n.get('polls', '–')} polls) |",
                f"| agent / naive | **{_ratio(fleet['agent_over_naive'])}** |",
                f"| agent CPU, share of one core | {100 * a['cpu_share_of_one_core']:.1f} % |",
                f"| RSS, all the agent's processes (max) | {a['rss_bytes_max'] / 2**20:.0f} MiB |",
                f"| poll lateness mean / p99 (bucket bound) | {_ms(a['lateness_mean_s'])} / ≤ {_ms(a['lateness_p99_le_s'])} |",
                f"| fast polls / expected, missed slots, errors | {a['fast_polls']:.0f} / {a['expected_fast_polls']}, {a['missed_slots']}, {a['poll_errors'] or 0} |",
                f"| MQTT published in the window, dropped, outbox at end | {a['mqtt_published']:.0f}, {a['mqtt_dropped'] or 0}, {_f(a['mqtt_outbox_depth_end'], '.0f')} |",
            ]
    families = results.get("families")
    if families:
        lines += [
            "",
            (
                f"Per family, {plan['per_family']} miners of one family at a time, same set-up (MQTT {'on' if plan['mqtt'] else 'OFF'}); "
                f"window {plan['family_window_s']:g} s"
            ),
            "",
            "| family | agent e2e ms CPU/poll | naive `get_data()` ms/poll | agent / naive | RSS MiB | lateness mean / p99 | missed | errors | MQTT published |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for label, fam in families.items():
            a, n = fam["agent"], fam["naive"]
            if "error" in a:
                lines.append(
                    f"| {label} | error: {a['error'][:200]} | {_f(n.get('cpu_ms_per_poll'))} | | | | | | |"
                )
                continue
            lines.append(
                f"| {label} | {_f(a['cpu_ms_per_poll'])} | {_f(n.get('cpu_ms_per_poll'))} | "
                f"{_ratio(fam['agent_over_naive'])} | {a['rss_bytes_max'] / 2**20:.0f} | "
                f"{_ms(a['lateness_mean_s'])} / ≤ {_ms(a['lateness_p99_le_s'])} | "
                f"{a['missed_slots']} | {sum(a['poll_errors'].values()):.0f} | {a['mqtt_published']:.0f} |"
            )  # fmt: skip
    prom = (fleet or {}).get("agent", {}).get("prometheus")
    if prom:
        lines += [
            "",
            (
                f"Prometheus, its last scrape of the fleet agent: up {_f(prom.get('up'), '.0f')}, "
                f"{_f(prom.get('scrape_samples_scraped'), ',.0f')} samples in "
                f"{_ms(prom.get('scrape_duration_seconds'))}; "
                f"{_f(results.get('prometheus_good_scrapes'), '.0f')} good scrapes of the agents "
                "over the whole run."
            ),
        ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------


def plan_of(args: argparse.Namespace) -> Plan:
    """The plan the command line asks for."""
    if args.smoke:
        plan = SMOKE
    else:
        plan = full_plan(args.miners, args.per_family, args.interval_s, args.minutes)
        if args.family:
            plan = dataclasses.replace(plan, families=tuple(args.family))
    if args.emulator_miners:
        plan = dataclasses.replace(plan, emulator_miners=args.emulator_miners)
    if args.mqtt_off:
        plan = dataclasses.replace(plan, mqtt=False)
    return plan


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the tables; write the JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.e2e", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--miners", type=int, default=1000, help="fleet part (0: skip it)")
    parser.add_argument(
        "--per-family", type=int, default=200, help="miners per family (0: skip that part)"
    )
    parser.add_argument("--interval-s", type=float, default=15.0, help="poll and scrape interval")
    parser.add_argument(
        "--minutes", type=float, default=None, help="each measured window (default 3 intervals)"
    )
    parser.add_argument(
        "--family",
        action="append",
        choices=[label for label, _ in FAMILIES],
        help="only these families (repeatable; default all)",
    )
    parser.add_argument(
        "--emulator-miners", type=int, default=None, help="miners per emulator process (500)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny version (for make test)")
    parser.add_argument(
        "--mqtt-off", action="store_true", help="MQTT disabled (a comparison, not the headline)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON output (default bench-results/e2e-<time>.json)"
    )
    args = parser.parse_args(argv)
    plan = plan_of(args)
    stamp = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}"
    out = args.out or REPO / "bench-results" / f"e2e-{'smoke-' if args.smoke else ''}{stamp}.json"

    t0 = time.monotonic()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f} s] {text}", file=sys.stderr, flush=True)

    results: dict[str, Any] = {
        "plan": dataclasses.asdict(plan),
        "machine": machine(),
        "command": "python -m tests.benchmarks.e2e " + " ".join(sys.argv[1:] if argv is None else argv),
    }  # fmt: skip
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="altiwatch-e2e-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "mosquitto").mkdir()
        broker = Mosquitto(tmp / "mosquitto")
        broker.start()
        port = free_port(plan.listen_host)
        (tmp / "prometheus").mkdir()
        prometheus = PrometheusServer(
            tmp / "prometheus", [f"{plan.listen_host}:{port}"], plan.interval_s
        )
        try:
            prometheus.wait_ready()
            stack = Stack(broker, prometheus, port)
            fleet, per_family = fleet_specs(plan) if plan.miners else [], family_specs(plan)
            log(f"starting {len(fleet) + len(per_family)} emulator processes ...")
            with emulators([*fleet, *per_family.values()], tmp) as handles:
                if fleet:
                    log(f"fleet part: {plan.miners} miners @ {plan.interval_s:g} s ...")
                    results["fleet"] = measure_pair(
                        "Fleet mix",
                        handles[: len(fleet)],
                        plan,
                        plan.fleet_window_s,
                        stack,
                        tmp / "agent-fleet",
                        log,
                    )
                results["families"] = {
                    label: measure_pair(
                        label, [handle], plan, plan.family_window_s, stack, tmp / f"agent-{i}", log
                    )
                    for i, (label, handle) in enumerate(
                        zip(per_family, handles[len(fleet) :], strict=True)
                    )
                }
            results["prometheus_good_scrapes"] = good_scrapes(prometheus)
        finally:
            prometheus.stop()
            broker.stop()
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["machine"]["loadavg_end"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(table(results))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
