"""The HTTP API on a real loopback socket: /metrics, /healthz, /readyz, /api/v1/fleet, /api/v1/alarms."""

import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import aiohttp
from prometheus_client import CollectorRegistry

from agent import http_api
from agent.fleet_state import FleetState
from agent.http_api import HttpApi
from agent.metrics import CONTENT_TYPE, AgentMetrics, MetricsRenderer
from collectors.snapshot import MinerSnapshot, Tier
from collectors.source import MinerTarget


async def start(ready: list[bool]) -> tuple[HttpApi, FleetState, str]:
    """An HttpApi over a one-miner fleet, listening on a free loopback port."""
    fleet = FleetState()
    fleet.add("golmud", MinerTarget(address="10.0.0.1", name="rack1-a"), now=0)
    registry = CollectorRegistry(auto_describe=False)
    AgentMetrics(registry, version="test")
    renderer = MetricsRenderer(fleet, registry, sites=["golmud"])
    api = HttpApi(fleet=fleet, renderer=renderer, ready=lambda: ready[0])
    await api.start("127.0.0.1", 0)
    return api, fleet, f"http://127.0.0.1:{api.port}"


def hashing(fleet: FleetState) -> None:
    """The one miner's poll succeeded: 1 TH/s."""
    snap = MinerSnapshot(address="10.0.0.1", collected_at=1.0, hashrate_hs=1e12)
    fleet.record_success("10.0.0.1", snap, 0.1, now=1)


async def test_http_readyz_is_503_until_first_cycle():
    """/readyz answers 503 before the first poll cycle and 200 after; /healthz always 200."""
    ready = [False]
    api, _, url = await start(ready)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/readyz") as resp:
                assert resp.status == 503
            async with session.get(url + "/healthz") as resp:
                assert resp.status == 200
            ready[0] = True
            async with session.get(url + "/readyz") as resp:
                assert resp.status == 200
    finally:
        await api.stop()


async def test_http_metrics_serves_text_format_0_0_4():
    """/metrics has the text-format content type and the rendered series."""
    api, fleet, url = await start([True])
    hashing(fleet)
    try:
        async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == CONTENT_TYPE
            body = await resp.text()
        assert (
            'asic_hashrate_hashes_per_second{site="golmud",miner="rack1-a"} 1000000000000' in body
        )
    finally:
        await api.stop()


async def test_http_fleet_json_has_nulls_for_unknown_values():
    """/api/v1/fleet lists miners; unknown values are JSON null, a down miner has its reason."""
    api, fleet, url = await start([True])
    fleet.record_failure("10.0.0.1", "timeout", "no answer", 5.0, now=1, tier=Tier.FAST)
    try:
        async with aiohttp.ClientSession() as session, session.get(url + "/api/v1/fleet") as resp:
            assert resp.status == 200
            miners = json.loads(await resp.text())
        assert miners[0]["miner"] == "rack1-a"
        assert miners[0]["up"] is False
        assert miners[0]["last_error"] == "timeout"
        assert miners[0]["hashrate_hs"] is None
        assert miners[0]["power_w"] is None
        async with aiohttp.ClientSession() as session, session.get(url + "/api/v1/alarms") as resp:
            assert json.loads(await resp.text()) == []
    finally:
        await api.stop()


async def test_http_fleet_json_has_the_fan_duty_estimate():
    """/api/v1/fleet gives fan_duty_ratio = fastest fan / the engine's rated max rpm."""
    from agent.alarms.testing import Driver  # noqa: PLC0415 - only this test needs the engine
    from collectors.snapshot import FanReading  # noqa: PLC0415

    driver = Driver(preset="s21", miner="rack1-a")
    driver.poll(die=70.0, inlet=20.0, rpm=3300)
    fleet = FleetState()
    fleet.add("site", MinerTarget(address="10.0.0.1", name="rack1-a"), now=0)
    registry = CollectorRegistry(auto_describe=False)
    renderer = MetricsRenderer(fleet, registry, sites=["site"], alarms=driver.engine)
    api = HttpApi(fleet=fleet, renderer=renderer, ready=lambda: True, alarms=driver.engine)
    await api.start("127.0.0.1", 0)
    fleet.record_success(
        "10.0.0.1",
        MinerSnapshot(
            address="10.0.0.1",
            collected_at=1.0,
            fans=(FanReading(index=0, rpm=3300), FanReading(index=1, rpm=3000)),
        ),
        0.1,
        now=1,
    )
    try:
        url = f"http://127.0.0.1:{api.port}/api/v1/fleet"
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            (miner,) = json.loads(await resp.text())
        assert miner["thresholds"]["rpm_max"] == 6600
        assert miner["fan_duty_ratio"] == 0.5
    finally:
        await api.stop()


def _get_when(url: str, blocked: threading.Event) -> tuple[int, bytes, float]:
    """Once ``blocked`` is set, GET ``url``: (status, body, monotonic time of the answer)."""
    blocked.wait(timeout=10)
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, response.read(), time.monotonic()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), time.monotonic()


async def _while_loop_blocked(url: str, seconds: float) -> tuple[int, bytes, float, float]:
    """GET ``url`` from a thread while this (the polling) loop is blocked for ``seconds``.

    Returns (status, body, when answered, when the loop was unblocked).
    """
    blocked = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(_get_when, url, blocked)
        blocked.set()
        time.sleep(seconds)  # noqa: ASYNC251 - the fault under test: a polling loop that blocks
        unblocked = time.monotonic()
        status, body, answered = answer.result(timeout=30)
    return status, body, answered, unblocked


async def test_http_metrics_answered_while_the_polling_loop_is_busy(monkeypatch):
    """/metrics is served by the HTTP thread: a blocked polling loop gets the last exposition sent."""
    monkeypatch.setattr(http_api, "LOOP_ANSWER_S", 0.2)
    monkeypatch.setattr(http_api, "EXPOSITION_MAX_AGE_S", 0.0)  # every scrape asks the loop
    api, fleet, url = await start([True])
    hashing(fleet)
    try:
        async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as resp:
            assert resp.status == 200
        status, body, answered, unblocked = await _while_loop_blocked(url + "/metrics", 2.0)
    finally:
        await api.stop()
    assert status == 200
    assert b'asic_hashrate_hashes_per_second{site="golmud",miner="rack1-a"} 1000000000000' in body
    assert answered < unblocked


async def test_http_healthz_is_503_when_the_polling_loop_does_not_answer(monkeypatch):
    """/healthz checks the polling loop: blocked longer than LOOP_ANSWER_S, it answers 503."""
    monkeypatch.setattr(http_api, "LOOP_ANSWER_S", 0.2)
    api, _, url = await start([True])
    try:
        status, body, answered, unblocked = await _while_loop_blocked(url + "/healthz", 2.0)
    finally:
        await api.stop()
    assert (status, body) == (503, b"event loop not answering\n")
    assert answered < unblocked
