"""The front's exposition cache and settings (pure logic; the process itself: integration tests)."""

from __future__ import annotations

import asyncio
import gzip
from typing import TYPE_CHECKING

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pydantic import ValidationError
from structlog.testing import capture_logs

from agent.http_front import ExpositionCache, Front, FrontSettings, UpstreamError

if TYPE_CHECKING:
    from pathlib import Path


class FakeAgent:
    """Answers /metrics with a numbered body; can be made to fail or to wait."""

    def __init__(self) -> None:
        """No call yet; answering."""
        self.calls = 0
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def fetch(self) -> bytes:
        """The next body (after the gate opens), or UpstreamError when failing."""
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            msg = "agent not answering"
            raise UpstreamError(msg)
        return f"altiwatch_up {self.calls}\n".encode()


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        """Start at an arbitrary monotonic time."""
        self.now = 1000.0

    def __call__(self) -> float:
        """The current time."""
        return self.now


async def test_exposition_cache_concurrent_scrapes_share_one_fetch():
    """100 scrapes arriving while a fetch is under way all get that fetch's body."""
    agent = FakeAgent()
    agent.gate = asyncio.Event()
    cache = ExpositionCache(agent.fetch, clock=Clock())
    scrapes = [asyncio.ensure_future(cache.get()) for _ in range(100)]
    await asyncio.sleep(0)
    agent.gate.set()
    got = await asyncio.gather(*scrapes)
    assert agent.calls == 1
    assert {g.plain for g in got} == {b"altiwatch_up 1\n"}


async def test_exposition_cache_reuses_a_body_younger_than_max_age_then_refetches():
    """Within max_age_s the same body is served; after it, one new fetch."""
    agent, clock = FakeAgent(), Clock()
    cache = ExpositionCache(agent.fetch, max_age_s=1.0, clock=clock)
    first = await cache.get()
    clock.now += 0.99
    assert await cache.get() is first
    clock.now += 0.02
    second = await cache.get()
    assert (agent.calls, second.plain) == (2, b"altiwatch_up 2\n")


async def test_exposition_cache_failure_is_raised_and_the_next_scrape_tries_again():
    """A failed fetch fails the scrapes waiting on it (no stale body kept alive); the next one retries."""
    agent, clock = FakeAgent(), Clock()
    cache = ExpositionCache(agent.fetch, clock=clock)
    await cache.get()
    clock.now += 5
    agent.fail = True
    with pytest.raises(UpstreamError):
        await cache.get()
    agent.fail = False
    assert (await cache.get()).plain == b"altiwatch_up 3\n"


async def test_exposition_cache_gzips_once_whatever_the_number_of_gzip_scrapes():
    """The gzip form is made once per body and decompresses to it."""
    cache = ExpositionCache(FakeAgent().fetch, clock=Clock())
    exposition = await cache.get()
    packed = await asyncio.gather(*(exposition.gzipped() for _ in range(20)))
    assert len({id(p) for p in packed}) == 1
    assert gzip.decompress(packed[0]) == exposition.plain


def test_front_settings_reject_unknown_fields():
    """The settings line from the agent is strict: an unknown field is an error, not ignored."""
    with pytest.raises(ValidationError, match="extra"):
        FrontSettings.model_validate_json('{"listen_fd": 3, "upstream_socket": "/x", "port": 1}')


async def test_front_without_agent_answers_503_and_logs_once_per_fetch(tmp_path: Path):
    """With nothing on the agent's socket, scrapes and API calls get 503; one log line per fetch."""
    connector = aiohttp.UnixConnector(path=str(tmp_path / "absent.sock"))
    async with aiohttp.ClientSession(connector=connector) as upstream:
        front = Front(upstream)
        server = TestServer(front.app, host="127.0.0.1")
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as client:

                async def scrape(path: str) -> int:
                    async with client.get(server.make_url(path)) as resp:
                        return resp.status

                with capture_logs() as logs:
                    statuses = await asyncio.gather(*(scrape("/metrics") for _ in range(20)))
                    api = await scrape("/api/v1/fleet")
        finally:
            await server.close()
    assert set(statuses) == {503}
    assert api == 503
    failed = [e["path"] for e in logs if e["event"] == "http_front_upstream_failed"]
    assert 1 <= front.cache.fetches <= 20  # the 20 scrapes above
    assert failed == ["/metrics"] * front.cache.fetches + ["/api/v1/fleet"]
