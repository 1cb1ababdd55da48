"""Which tier reads pools: agent CPU per poll with pools on the fast tier vs on the slow tier.

``python -m tests.benchmarks.pool_tier [--per-family 20] [--cycles 5] [--repeats 3]`` starts the
emulator with every family (loopback 127.87.F.N, inside the benchmarks' 127.80-89 range), then
in this process polls every miner with ``PyasicSource.fetch`` (uvloop, pyasic_tuning as the
daemon applies it) for three variants, measured one after another, each after a warm-up cycle:

* ``fast``: the fast tier as shipped (no pools);
* ``fast+pools``: the fast tier with ``DataOptions.POOLS`` added (pools read every interval);
* ``slow``: the slow tier (identity, pools, errors, fault light, power limit).

CPU is ``getrusage(RUSAGE_SELF)`` of this process (the emulator runs in its own). It prints one
JSON object: CPU ms per poll by family and variant (median of the repeats).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from agent import event_loop
from tests.benchmarks.poll_worker import cpu_seconds
from tests.benchmarks.run import FAMILIES
from tests.support.emulator import start_emulator

BASE = "127.87"


async def _measure(addresses: dict[str, list[str]], cycles: int) -> dict[str, dict[str, float]]:
    from pyasic.miners.data import DataOptions  # noqa: PLC0415 - measured process only

    from collectors import pyasic_source, pyasic_tuning  # noqa: PLC0415
    from collectors.snapshot import Tier  # noqa: PLC0415
    from collectors.source import MinerTarget  # noqa: PLC0415

    source = pyasic_source.PyasicSource(timeout_s=20.0, tuning=pyasic_tuning.select("auto"))
    shipped = pyasic_source.FAST_OPTIONS
    variants = {
        "fast": (shipped, Tier.FAST),
        "fast+pools": ((*shipped, DataOptions.POOLS), Tier.FAST),
        "slow": (shipped, Tier.SLOW),
    }
    out: dict[str, dict[str, float]] = {}
    for label, group in addresses.items():
        targets = [MinerTarget(address=a) for a in group]
        for name, (options, tier) in variants.items():
            pyasic_source.FAST_OPTIONS = options

            async def cycle(tier: Tier = tier, targets: list[MinerTarget] = targets) -> int:
                results = await asyncio.gather(
                    *(source.fetch(t, tier) for t in targets), return_exceptions=True
                )
                return sum(not isinstance(r, BaseException) for r in results)

            await cycle()  # warm-up: detection, first challenges
            cpu0 = cpu_seconds()
            ok = 0
            for _ in range(cycles):
                ok += await cycle()
            cpu = cpu_seconds() - cpu0
            out.setdefault(label, {})[name] = round(1000 * cpu / max(ok, 1), 3)
        pyasic_source.FAST_OPTIONS = shipped
    return out


def main(argv: list[str] | None = None) -> int:
    """Start the emulator, measure, print JSON."""
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.pool_tier")
    parser.add_argument("--per-family", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    addresses = {
        label: [f"{BASE}.{f + 1}.{n + 1}" for n in range(args.per_family)]
        for f, (label, _) in enumerate(FAMILIES)
    }
    scenario = {
        "name": "pool-tier",
        "site": {"name": "bench", "altitude_m": 2800},
        "miners": [
            {"model": key, "count": args.per_family, "addresses": addresses[label]}
            for label, key in FAMILIES
        ],
    }
    with tempfile.TemporaryDirectory() as tmp:
        handle = start_emulator(scenario, base_address=f"{BASE}.1.1", tmp_dir=Path(tmp))
        try:
            runs = [
                event_loop.run(_measure(addresses, args.cycles), "uvloop")
                for _ in range(args.repeats)
            ]
        finally:
            handle.stop()
    result: dict[str, Any] = {"per_family": args.per_family, "cycles": args.cycles, "families": {}}
    for label in addresses:
        result["families"][label] = {
            name: statistics.median(run[label][name] for run in runs) for name in runs[0][label]
        }
    sys.stdout.write(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
