"""Scrape load: many concurrent scrapers on /metrics while the agent polls an emulated fleet.

Smoke size here (20 scrapers for 5 s, 200 miners): no scrape fails, every miner stays up. The
long version (100 scrapers for 30 s, 2,000 miners, lateness compared with an unloaded run) is
``python -m tests.benchmarks.reliability_long load`` and reuses :func:`run_scrapers` and :func:`lateness`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import statistics
import time
import zlib
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tests.integration.test_reliability_miners import parse_metrics, per_miner
from tests.support.agent import agent_config

if TYPE_CHECKING:
    from tests.support.agent import AgentProcess


@dataclass
class ScrapeStats:
    """Outcome of a scrape storm."""

    ok: int = 0
    failed: int = 0
    verified: int = 0  # answers decompressed and checked whole (a sample of ``ok``)
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
            f"({self.ok / max(self.duration_s, 1e-9):.0f}/s, {self.verified} checked whole), "
            f"latency median "
            f"{statistics.median(lat) * 1000:.1f} ms p99 {p99 * 1000:.1f} ms, "
            f"{self.bytes_total / max(self.ok, 1) / 1024:.0f} KiB/scrape"
        )


def _complete(body: bytes) -> bool:
    return body.endswith(b"\n") and b"# TYPE asic_up gauge" in body


#: Every VERIFY_EVERY-th answer of each scraper (and its first) is decompressed and checked for a
#: complete exposition; every answer is checked for status and its full Content-Length.
VERIFY_EVERY = 10


class _Connection:
    """One keep-alive HTTP/1.1 connection, as lean as a load generator can be.

    The scrapers stand for Prometheus servers on other machines: on this machine their CPU is
    taken from the agent under test, so they parse no more than status line and headers, read
    each body in one ``readexactly`` and decompress only a sample (``VERIFY_EVERY``).
    """

    def __init__(self, url: str, accept_encoding: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.request = (
            f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Accept-Encoding: {accept_encoding}\r\n\r\n"
        ).encode()
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self) -> tuple[int, dict[str, str], bytes]:
        """(status, lower-cased headers, body); raises OSError/IncompleteReadError/ValueError."""
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        reader, writer = self.streams
        writer.write(self.request)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers = {}
        for line in head[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if "content-length" not in headers:
            msg = "no Content-Length"
            raise ValueError(msg)
        body = await reader.readexactly(int(headers["content-length"]))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, body

    async def close(self) -> None:
        """Close the connection (a new one is opened by the next ``get``)."""
        if self.streams is not None:
            writer = self.streams[1]
            self.streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _verify(headers: dict[str, str], body: bytes, accept_encoding: str) -> str | None:
    """Why ``body`` is not a complete exposition in the asked encoding (None if it is)."""
    gzipped = headers.get("content-encoding") == "gzip"
    if gzipped != (accept_encoding == "gzip"):
        return f"Content-Encoding {headers.get('content-encoding')!r} for {accept_encoding!r}"
    try:
        text = zlib.decompress(body, wbits=31) if gzipped else body
    except zlib.error as exc:
        return f"bad gzip: {exc}"
    return None if _complete(text) else f"incomplete exposition ({len(text)} B)"


async def _scraper(
    url: str,
    stop_at: float,
    stats: ScrapeStats,
    pace_s: float | None,
    timeout_s: float,
    accept_encoding: str,
) -> None:
    connection = _Connection(url, accept_encoding)
    answers = 0
    try:
        while (now := time.monotonic()) < stop_at:
            began = now
            try:
                async with asyncio.timeout(timeout_s):
                    status, headers, body = await connection.get()
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
                stats.failed += 1
                stats.errors.append(f"{type(exc).__name__}: {exc}")
                await connection.close()
            else:
                problem = None if status == HTTPStatus.OK else f"status {status}"
                if problem is None and answers % VERIFY_EVERY == 0:
                    problem = _verify(headers, body, accept_encoding)
                    stats.verified += problem is None
                answers += 1
                if problem is None:
                    stats.ok += 1
                    stats.latencies_s.append(time.monotonic() - began)
                    stats.bytes_total += len(body)
                else:
                    stats.failed += 1
                    stats.errors.append(f"{problem}, {len(body)} B")
            if pace_s is not None:
                await asyncio.sleep(max(0.0, began + pace_s - time.monotonic()))
    finally:
        await connection.close()


def run_scrapers(
    url: str,
    *,
    scrapers: int,
    duration_s: float,
    pace_s: float | None = None,
    timeout_s: float = 10.0,
    accept_encoding: str = "gzip",
) -> ScrapeStats:
    """``scrapers`` concurrent clients GET ``url`` back to back (or every ``pace_s``).

    ``accept_encoding``: ``gzip`` as Prometheus sends it, ``identity`` for plain text.
    """
    stats = ScrapeStats()

    async def storm() -> None:
        stop_at = time.monotonic() + duration_s
        async with asyncio.TaskGroup() as tg:
            for index in range(scrapers):
                tg.create_task(
                    _scraper(url, stop_at, stats, pace_s, timeout_s, accept_encoding),
                    name=f"scraper[{index}]",
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
    assert stats.verified >= 20  # each scraper's first answer decompressed and checked whole
    up = per_miner(parse_metrics(agent.metrics()), "asic_up")
    assert sum(1 for v in up.values() if v == 1) == 200


def test_reliability_scraper_check_rejects_cut_wrongly_encoded_or_incomplete_bodies():
    """The load generator's check: a cut gzip, a plain body for gzip, a cut text all fail it."""
    text = b'# TYPE asic_up gauge\nasic_up{miner="a"} 1\n'
    whole = gzip.compress(text)
    assert _verify({"content-encoding": "gzip"}, whole, "gzip") is None
    assert _verify({}, text, "identity") is None
    assert "bad gzip" in (_verify({"content-encoding": "gzip"}, whole[:-9], "gzip") or "")
    assert "Content-Encoding" in (_verify({}, text, "gzip") or "")
    assert "incomplete" in (_verify({}, text[:20], "identity") or "")
