"""Poller schedule in real time: drift, hang isolation and first-cycle spread, as figures.

``python -m tests.benchmarks.poll_schedule [--seconds 10] [--interval 0.2] [--miners 200]``

tests/unit/test_poller.py checks the schedule exactly on a virtual clock; what only real time
shows (how late slots start under the event loop's own load, how far the grid drifts over a
run, how a fleet's first polls spread) is measured here and printed, not asserted: these were
the timing tolerances of the unit tests before issue 22.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics

from agent import event_loop
from agent.fleet_state import FleetState
from agent.poller import Poller, Schedule
from collectors.snapshot import Identity, MinerSnapshot, Tier
from collectors.source import CollectorError, FailureReason, MinerTarget


class _Source:
    """Answers after ``delay_s``; addresses in ``hang`` time out after ``hang_s``."""

    def __init__(self, delay_s: float, hang: set[str], hang_s: float) -> None:
        self.delay_s, self.hang, self.hang_s = delay_s, hang, hang_s
        self.calls: list[tuple[str, Tier, float]] = []

    async def fetch(self, target: MinerTarget, tier: Tier) -> MinerSnapshot:
        self.calls.append((target.address, tier, asyncio.get_running_loop().time()))
        if target.address in self.hang:
            await asyncio.sleep(self.hang_s)
            raise CollectorError(FailureReason.TIMEOUT, "timeout")
        await asyncio.sleep(self.delay_s)
        return MinerSnapshot(
            address=target.address,
            collected_at=0.0,
            tier=tier,
            identity=Identity(mac=f"mac-{target.address}"),
            hashrate_hs=1e12,
        )


async def _measure(seconds: float, interval: float, miners: int) -> dict[str, float]:
    addresses = [f"m{i}" for i in range(miners)]
    source = _Source(delay_s=interval * 0.3, hang={"m0"}, hang_s=interval * 2.5)
    fleet = FleetState()
    for a in addresses:
        fleet.add("s", MinerTarget(address=a), now=0)
    poller = Poller(
        source,
        fleet,
        schedule=Schedule(
            interval_s=interval,
            slow_interval_s=3600.0,
            jitter_ratio=0.0,
            spread_s=interval,
            backoff_max_s=interval,
        ),
        concurrency=miners,
        rng=random.Random(1),  # noqa: S311 - scheduling phases, not cryptography
    )
    t0 = asyncio.get_running_loop().time()
    tasks = [asyncio.create_task(poller.run_miner("s", MinerTarget(address=a))) for a in addresses]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    first: dict[str, float] = {}
    fast: dict[str, list[float]] = {}
    for address, tier, t in source.calls:
        first.setdefault(address, t)
        if tier is Tier.FAST:
            fast.setdefault(address, []).append(t)
    lateness: list[float] = []
    drift: list[float] = []
    for address, starts in fast.items():
        if address == "m0" or len(starts) < 3:
            continue
        phase = first[address]
        late = [(t - phase) - round((t - phase) / interval) * interval for t in starts[1:]]
        lateness.extend(late)
        drift.append(late[-1] - late[0])
    offsets = sorted(t - t0 for t in first.values())
    return {
        "fast_polls": float(sum(len(v) for v in fast.values())),
        "lateness_median_ms": 1000 * statistics.median(lateness),
        "lateness_max_ms": 1000 * max(lateness),
        "drift_max_ms": 1000 * max(drift),
        "first_poll_spread_s": offsets[-1] - offsets[0],
        "first_poll_in_first_half": float(sum(o < interval / 2 for o in offsets)),
    }


def main(argv: list[str] | None = None) -> int:
    """Run and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--miners", type=int, default=200)
    args = parser.parse_args(argv)
    figures = event_loop.run(_measure(args.seconds, args.interval, args.miners), "uvloop")
    print(f"poll schedule, {args.miners} miners, interval {args.interval} s, {args.seconds} s:")
    for name, value in figures.items():
        print(f"  {name:28s} {value:10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
