"""One polling process of the benchmark: polls a list of miners and reports its own CPU.

``python -m tests.benchmarks.poll_worker --mode MODE --group LABEL=A,B,... [--group ...]
--cycles N`` prints one JSON object on stdout with the figures of each group, measured one
group after another in this one process. Modes:

* ``baseline``: what hass-miner-style tools do. ``pyasic.get_miner`` once per address (the
  objects are kept), then every cycle ``await miner.get_data()`` (all data options) for every
  miner under ``asyncio.gather`` with ``Semaphore(concurrency)``. pyasic as pip installs it:
  no tuning, no Rust protobuf codec.
* ``agent``: the agent's fast-tier poll, ``PyasicSource.fetch(target, Tier.FAST)`` (detection
  cached by the source; ``collectors.pyasic_tuning`` as the source applies it). The benchmark
  runs it with ``--loop uvloop``, the daemon's default event loop.
* ``agent_untuned``: the same with ``collectors.pyasic_tuning`` disabled, to separate what the
  include sets save from what the tuning saves.

The first cycle (detection, first Digest challenge, imports warming up) is not measured. CPU
is ``getrusage(RUSAGE_SELF)`` user+system of this process only, so the emulator's cost (its
own process) is excluded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import time
from typing import Any

from agent import event_loop

MODES = ("baseline", "agent", "agent_untuned")


def cpu_seconds() -> float:
    """User + system CPU of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_bytes(pid: int | str = "self") -> int:
    """Current resident set size of process ``pid``, this one by default (from /proc)."""
    with open(f"/proc/{pid}/statm", encoding="ascii") as statm:  # noqa: PTH123 — procfs read
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize()


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads), None if it is gone."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:  # noqa: PTH123 — procfs read
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return None


def _no_tuning(miner: Any) -> None:
    """Stand-in for pyasic_tuning.tune in the agent_untuned mode."""


class _Poller:
    """Polls ``addresses`` in one of the MODES; ``cycle()`` returns (ok, failed)."""

    def __init__(self, mode: str, addresses: list[str], concurrency: int, timeout_s: float) -> None:
        self.mode = mode
        self.addresses = addresses
        self.semaphore = asyncio.Semaphore(concurrency)
        self.timeout_s = timeout_s
        self.miners: dict[str, Any] = {}
        self.errors: dict[str, int] = {}
        self.source: Any = None
        if mode != "baseline":
            from collectors import pyasic_source, pyasic_tuning  # noqa: PLC0415 — per mode

            if mode == "agent_untuned":
                pyasic_tuning.uninstall()
                # pyasic_source calls pyasic_tuning.tune() through the module: make it a no-op.
                pyasic_tuning.tune = _no_tuning
            self.source = pyasic_source.PyasicSource(timeout_s=timeout_s)

    async def detect(self) -> None:
        """Baseline only: detect every miner once, as hass-miner does at setup."""
        import pyasic  # noqa: PLC0415 — imported in the measured process only

        async def one(address: str) -> None:
            async with self.semaphore:
                miner = await pyasic.get_miner(address)
            if miner is not None:
                self.miners[address] = miner

        await asyncio.gather(*(one(a) for a in self.addresses))

    async def _poll(self, address: str) -> bool:
        async with self.semaphore:
            try:
                async with asyncio.timeout(self.timeout_s):
                    if self.mode == "baseline":
                        miner = self.miners.get(address)
                        if miner is None:
                            return False
                        await miner.get_data()
                    else:
                        from collectors.snapshot import Tier  # noqa: PLC0415
                        from collectors.source import MinerTarget  # noqa: PLC0415

                        await self.source.fetch(MinerTarget(address=address), Tier.FAST)
            except Exception as exc:  # noqa: BLE001 — a benchmark counts failures, any kind
                name = getattr(getattr(exc, "reason", None), "value", type(exc).__name__)
                self.errors[name] = self.errors.get(name, 0) + 1
                return False
            return True

    async def cycle(self, addresses: list[str]) -> tuple[int, int]:
        results = await asyncio.gather(*(self._poll(a) for a in addresses))
        ok = sum(results)
        return ok, len(results) - ok


async def measure_group(poller: _Poller, addresses: list[str], cycles: int) -> dict[str, Any]:
    """Warm ``addresses`` up with one cycle, then measure ``cycles`` cycles of them."""
    warm_cpu = cpu_seconds()
    warm_ok, _ = await poller.cycle(addresses)
    warm_cpu = cpu_seconds() - warm_cpu
    poller.errors.clear()
    ok = failed = 0
    cycle_walls: list[float] = []
    cpu0 = cpu_seconds()
    wall0 = time.perf_counter()
    for _ in range(cycles):
        start = time.perf_counter()
        c_ok, c_failed = await poller.cycle(addresses)
        cycle_walls.append(time.perf_counter() - start)
        ok += c_ok
        failed += c_failed
    cpu = cpu_seconds() - cpu0
    wall = time.perf_counter() - wall0
    polls = ok + failed
    return {
        "mode": poller.mode,
        "miners": len(addresses),
        "detected": sum(a in poller.miners for a in addresses)
        if poller.mode == "baseline"
        else None,
        "warmup_ok": warm_ok,
        "warmup_cpu_s": round(warm_cpu, 4),
        "cycles": cycles,
        "polls": polls,
        "ok": ok,
        "failed": failed,
        "errors": dict(poller.errors),
        "cpu_s": round(cpu, 4),
        "wall_s": round(wall, 4),
        "cpu_ms_per_poll": round(1000 * cpu / polls, 3) if polls else None,
        "polls_per_cpu_s": round(polls / cpu, 1) if cpu > 0 else None,
        "cycle_wall_s": [round(w, 3) for w in cycle_walls],
        "rss_bytes": rss_bytes(),
    }


async def run(
    mode: str, groups: dict[str, list[str]], cycles: int, concurrency: int, timeout_s: float
) -> dict[str, Any]:
    """Measure each group in turn (detection of all of them first in the baseline)."""
    everything = [a for addresses in groups.values() for a in addresses]
    poller = _Poller(mode, everything, concurrency, timeout_s)
    if mode == "baseline":
        await poller.detect()
    results = {}
    for label, addresses in groups.items():
        results[label] = await measure_group(poller, addresses, cycles)
    return {"mode": mode, "groups": results}


def parse_group(text: str) -> tuple[str, list[str]]:
    """``LABEL=ADDR,ADDR`` -> (label, addresses)."""
    label, _, addresses = text.partition("=")
    return label, [a for a in addresses.split(",") if a]


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print one JSON object."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.poll_worker", fromfile_prefix_chars="@"
    )
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument(
        "--group",
        action="append",
        required=True,
        type=parse_group,
        help="LABEL=ADDR,ADDR,... (repeatable; groups are measured one after another)",
    )
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args(argv)
    groups = dict(args.group)
    if args.mode == "baseline":
        # The baseline is pyasic as pip installs it: without the optional Rust protobuf
        # codec that altiwatch depends on (betterproto falls back to pure Python).
        sys.modules["betterproto_rust_codec"] = None  # type: ignore[assignment]
    coro = run(args.mode, groups, args.cycles, args.concurrency, args.timeout)
    result = event_loop.run(coro, args.loop)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
