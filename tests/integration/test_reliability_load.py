"""Scrape load: many concurrent scrapers on /metrics while the agent polls an emulated fleet.

Smoke size here (20 scrapers for 5 s, 200 miners): no scrape fails, every miner stays up. The
long version (100 scrapers for 30 s, 2,000 miners, lateness compared with an unloaded run) is
``tests/benchmarks/reliability_load.py`` and reuses :func:`run_scrapers` and :func:`lateness`.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from tests.integration.test_reliability_miners import parse_metrics, per_miner
from tests.support.agent import agent_config

if TYPE_CHECKING:
    from tests.support.agent import AgentProcess


@dataclass
class ScrapeStats:
    """Outcome of a scrape storm."""

    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    bytes_total: int = 0
    duration_s: float = 0.0

    def summary(self) -> str:
        """One line of figures."""
        lat = sorted(self.latencies_s) or [0.0]
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        return (
            f"scrapes ok={self.ok} failed={self.failed} in {self.duration_s:.1f} s "
            f"({self.ok / max(self.duration_s, 1e-9):.0f}/s), latency median "
            f"{statistics.median(lat) * 1000:.1f} ms p99 {p99 * 1000:.1f} ms, "
            f"{self.bytes_total / max(self.ok, 1) / 1024:.0f} KiB/scrape"
        )


def _complete(body: bytes) -> bool:
    return body.endswith(b"\n") and b"# TYPE asic_up gauge" in body


async def _scraper(
    url: str, stop_at: float, stats: ScrapeStats, pace_s: float | None, timeout_s: float
) -> None:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        while (now := time.monotonic()) < stop_at:
            began = now
            try:
                response = await client.get(url)
            except httpx.HTTPError as exc:
                stats.failed += 1
                stats.errors.append(f"{type(exc).__name__}: {exc}")
            else:
                if response.status_code == 200 and _complete(response.content):
                    stats.ok += 1
                    stats.latencies_s.append(time.monotonic() - began)
                    stats.bytes_total += len(response.content)
                else:
                    stats.failed += 1
                    stats.errors.append(f"status {response.status_code}, {len(response.content)} B")
            if pace_s is not None:
                await asyncio.sleep(max(0.0, began + pace_s - time.monotonic()))


def run_scrapers(
    url: str,
    *,
    scrapers: int,
    duration_s: float,
    pace_s: float | None = None,
    timeout_s: float = 10.0,
) -> ScrapeStats:
    """``scrapers`` concurrent clients GET ``url`` back to back (or every ``pace_s``)."""
    stats = ScrapeStats()

    async def storm() -> None:
        stop_at = time.monotonic() + duration_s
        async with asyncio.TaskGroup() as tg:
            for index in range(scrapers):
                tg.create_task(
                    _scraper(url, stop_at, stats, pace_s, timeout_s), name=f"scraper[{index}]"
                )

    began = time.monotonic()
    asyncio.run(storm())
    stats.duration_s = time.monotonic() - began
    return stats


def lateness(agent: AgentProcess) -> tuple[float, float]:
    """(sum, count) of the agent's altiwatch_poll_lateness_seconds histogram."""
    samples = parse_metrics(agent.metrics())
    total = sum(v for _l, v in samples.get("altiwatch_poll_lateness_seconds_sum", []))
    count = sum(v for _l, v in samples.get("altiwatch_poll_lateness_seconds_count", []))
    return total, count


def fleet_config(emulator: Any, interval_s: float, **sections: Any) -> dict[str, Any]:
    """Agent config for every emulated miner, with model hints (no detection at start)."""
    miners = [{"address": m["address"], "model": m["model"]} for m in emulator.miners()]
    return agent_config(miners, interval_s=interval_s, **sections)


def wait_all_up(agent: AgentProcess, count: int, timeout: float = 120.0) -> None:
    """Wait until ``count`` miners report asic_up 1."""

    def up() -> bool:
        values = per_miner(parse_metrics(agent.metrics()), "asic_up")
        return sum(1 for v in values.values() if v == 1) >= count

    agent.wait_for(up, f"{count} miners up", timeout=timeout)


def test_reliability_concurrent_scrapers_never_fail(emulator_factory, agent_factory):
    """20 scrapers back to back for 5 s against an agent polling 200 miners: no failed scrape."""
    emulator = emulator_factory(
        {
            "name": "load",
            "site": {"name": "golmud", "altitude_m": 2800},
            "miners": [
                {"model": "antminer-s19jpro", "count": 150},
                {"model": "bitaxe-ultra", "count": 50},
            ],
        },
        base_address="127.90.16.1",
    )
    agent = agent_factory(fleet_config(emulator, interval_s=5.0))
    wait_all_up(agent, 200)
    before = lateness(agent)
    stats = run_scrapers(agent.url + "/metrics", scrapers=20, duration_s=5.0)
    after = lateness(agent)
    mean_late = (after[0] - before[0]) / max(after[1] - before[1], 1)
    print(f"{stats.summary()}; mean poll lateness during the storm {mean_late * 1000:.1f} ms")
    assert stats.failed == 0, stats.errors[:5]
    assert stats.ok >= 20
    up = per_miner(parse_metrics(agent.metrics()), "asic_up")
    assert sum(1 for v in up.values() if v == 1) == 200
