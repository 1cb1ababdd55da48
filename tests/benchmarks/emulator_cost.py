"""Benchmark: the emulator's CPU per request vs pyasic's CPU per get_data() against it.

Run: ``.venv/bin/python -m tests.benchmarks.emulator_cost [--per-family 40] [--concurrency 50]``
or ``... --sweep 2000 --concurrency 200`` (detect and poll a 2,000-miner Golmud-mix site once).

Starts one emulator subprocess with ``--per-family`` miners of every profile, detects them all
with ``pyasic.get_miner``, then per profile runs ``get_data()`` on all its miners (bounded
concurrency) ``--rounds`` times. Client CPU comes from ``getrusage`` of this process; emulator
CPU and request counts from the emulator's ``GET /stats``. Physics keeps ticking, so the
emulator figure includes re-rendering once per tick.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyasic

from collectors.emulator.profiles import PROFILES
from tests.support.emulator import EmulatorHandle, start_emulator

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine


def cpu_self() -> float:
    """CPU seconds (user + system) of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def bench_profile(
    handle: EmulatorHandle, miners: list[Any], concurrency: int, rounds: int
) -> dict[str, float]:
    """Run get_data on ``miners`` ``rounds`` times; return per-call and per-request costs."""
    sem = asyncio.Semaphore(concurrency)

    async def one(miner: Any) -> None:
        async with sem:
            await miner.get_data()

    before = handle.stats()
    client0 = cpu_self()
    wall0 = time.perf_counter()
    for _ in range(rounds):
        await asyncio.gather(*(one(m) for m in miners))
    wall = time.perf_counter() - wall0
    client = cpu_self() - client0
    after = handle.stats()
    requests = sum(after["requests"].values()) - sum(before["requests"].values())
    emulator = after["cpu_s"] - before["cpu_s"]
    calls = len(miners) * rounds
    return {
        "calls": calls,
        "requests_per_call": requests / calls,
        "client_ms_per_get_data": client / calls * 1000,
        "emulator_ms_per_get_data": emulator / calls * 1000,
        "emulator_us_per_request": emulator / max(requests, 1) * 1e6,
        "wall_s_per_round": wall / rounds,
    }


async def main(per_family: int, concurrency: int, rounds: int) -> None:
    """Start the emulator, detect every miner, benchmark each profile, print a table."""
    scenario = {
        "name": "bench",
        "site": {"name": "bench", "altitude_m": 2800, "ambient": {"mean_c": 15}},
        "miners": [{"model": key, "count": per_family} for key in sorted(PROFILES)],
    }
    with tempfile.TemporaryDirectory() as tmp:
        handle = start_emulator(scenario, base_address="127.20.200.1", tmp_dir=Path(tmp))
        try:
            inventory = handle.miners()
            print(f"emulator: {len(inventory)} miners; detecting...")
            by_profile: dict[str, list[Any]] = {}
            detect0 = cpu_self()
            for entry in inventory:
                miner = await pyasic.get_miner(entry["address"])
                assert type(miner).__name__ == entry["pyasic_class"], entry
                by_profile.setdefault(entry["profile"], []).append(miner)
            detect_ms = (cpu_self() - detect0) / len(inventory) * 1000
            print(f"detection: {detect_ms:.2f} ms client CPU per get_miner\n")
            header = (
                f"{'profile':24} {'req/call':>8} {'pyasic ms/get_data':>19} "
                f"{'emulator ms/get_data':>21} {'emulator us/req':>16} {'ratio':>6} {'wall s/round':>13}"
            )
            print(header)
            totals = {"client": 0.0, "emulator": 0.0, "requests": 0.0, "calls": 0.0}
            for key in sorted(by_profile):
                r = await bench_profile(handle, by_profile[key], concurrency, rounds)
                ratio = r["client_ms_per_get_data"] / max(r["emulator_ms_per_get_data"], 1e-9)
                print(
                    f"{key:24} {r['requests_per_call']:8.1f} {r['client_ms_per_get_data']:19.2f} "
                    f"{r['emulator_ms_per_get_data']:21.2f} {r['emulator_us_per_request']:16.0f} "
                    f"{ratio:6.1f} {r['wall_s_per_round']:13.2f}"
                )
                totals["client"] += r["client_ms_per_get_data"] * r["calls"]
                totals["emulator"] += r["emulator_ms_per_get_data"] * r["calls"]
                totals["requests"] += r["requests_per_call"] * r["calls"]
                totals["calls"] += r["calls"]
            print(
                f"{'ALL':24} {totals['requests'] / totals['calls']:8.1f} "
                f"{totals['client'] / totals['calls']:19.2f} "
                f"{totals['emulator'] / totals['calls']:21.2f} "
                f"{totals['emulator'] * 1000 / totals['requests']:16.0f} "
                f"{totals['client'] / totals['emulator']:6.1f}"
            )
        finally:
            handle.stop()


async def sweep(total: int, concurrency: int) -> None:
    """One emulator with ``total`` miners (Golmud mix): detect all, then poll all once."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        handle = start_emulator(
            "golmud-2800", base_address="127.20.200.1", tmp_dir=Path(tmp), miners=total
        )
        print(f"emulator: {handle.count} miners ready in {time.perf_counter() - started:.1f} s")
        try:
            inventory = {m["address"]: m for m in handle.miners()}
            sem = asyncio.Semaphore(concurrency)
            outcomes: dict[str, int] = {}
            miners: list[Any] = []

            async def detect(address: str) -> None:
                async with sem:
                    miner = await pyasic.get_miner(address)
                if miner is None:
                    outcomes["not_detected"] = outcomes.get("not_detected", 0) + 1
                elif type(miner).__name__ != inventory[address]["pyasic_class"]:
                    outcomes["wrong_class"] = outcomes.get("wrong_class", 0) + 1
                else:
                    miners.append(miner)

            async def poll(miner: Any) -> None:
                async with sem:
                    try:
                        data = await miner.get_data()
                    except Exception as exc:  # noqa: BLE001 - a benchmark tallies failures
                        key = f"get_data_{type(exc).__name__}"
                        outcomes[key] = outcomes.get(key, 0) + 1
                        return
                key = "ok" if data.hashrate is not None else "no_hashrate"
                outcomes[key] = outcomes.get(key, 0) + 1

            phases: list[tuple[str, Callable[[], list[Coroutine[Any, Any, None]]]]] = [
                ("detect", lambda: [detect(a) for a in inventory]),
                ("get_data", lambda: [poll(m) for m in miners]),
            ]
            for phase, jobs in phases:
                before = handle.stats()
                client0 = cpu_self()
                wall0 = time.perf_counter()
                await asyncio.gather(*jobs())
                wall = time.perf_counter() - wall0
                after = handle.stats()
                requests = sum(after["requests"].values()) - sum(before["requests"].values())
                emulator = after["cpu_s"] - before["cpu_s"]
                print(
                    f"{phase}: concurrency {concurrency}, wall {wall:.1f} s, "
                    f"pyasic CPU {cpu_self() - client0:.1f} s, emulator CPU {emulator:.1f} s "
                    f"for {requests} requests ({emulator / max(requests, 1) * 1e6:.0f} us/request)"
                )
            print(f"outcomes: {dict(sorted(outcomes.items()))}")
        finally:
            handle.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-family", type=int, default=40, help="miners per profile")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--sweep", type=int, default=0, help="instead: detect, then poll, N Golmud-mix miners"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.sweep:
        asyncio.run(sweep(args.sweep, args.concurrency))
    else:
        asyncio.run(main(args.per_family, args.concurrency, args.rounds))
