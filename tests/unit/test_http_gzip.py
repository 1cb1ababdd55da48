"""/metrics with gzip: a cached compressed copy served to clients that ask, plain to others."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import subprocess
import urllib.request
import zlib

import pytest
from prometheus_client import CollectorRegistry

from agent.fleet_state import FleetState
from agent.http_api import HttpApi, accepts_gzip
from agent.metrics import AgentMetrics, GzipBody, MetricsRenderer
from collectors.snapshot import MinerSnapshot
from collectors.source import MinerTarget

MINERS = 50


async def start() -> tuple[HttpApi, FleetState, MetricsRenderer, str]:
    """An HttpApi over a 50-miner fleet, listening on a free loopback port."""
    fleet = FleetState()
    for i in range(MINERS):
        address = f"10.0.0.{i + 1}"
        fleet.add("golmud", MinerTarget(address=address, name=f"rack-{i}"), now=0)
        snap = MinerSnapshot(address=address, collected_at=1.0, hashrate_hs=1e14 + i)
        fleet.record_success(address, snap, 0.1, now=1)
    registry = CollectorRegistry(auto_describe=False)
    AgentMetrics(registry, version="test")
    renderer = MetricsRenderer(fleet, registry, sites=["golmud"])
    api = HttpApi(fleet=fleet, renderer=renderer, ready=lambda: True)
    await api.start("127.0.0.1", 0)
    return api, fleet, renderer, f"http://127.0.0.1:{api.port}/metrics"


def get(url: str, accept_encoding: str | None) -> tuple[dict[str, str], bytes]:
    """GET with urllib (which never decompresses): (headers, raw body)."""
    request = urllib.request.Request(url)  # noqa: S310 - loopback test URL
    if accept_encoding is not None:
        request.add_header("Accept-Encoding", accept_encoding)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return dict(response.headers), response.read()


async def fetch(url: str, accept_encoding: str | None) -> tuple[dict[str, str], bytes]:
    """``get`` in a thread (the server runs on this loop)."""
    return await asyncio.to_thread(get, url, accept_encoding)


def one_gzip_member(data: bytes) -> bytes:
    """Decompress ``data`` as exactly one gzip member (what strict single-member readers need)."""
    decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = decomp.decompress(data) + decomp.flush()
    assert decomp.eof, "gzip member not finished"
    assert decomp.unused_data == b"", "more than one gzip member"
    return out


async def test_http_gzip_served_when_asked_and_equal_to_plain():
    """Accept-Encoding gzip (as Prometheus sends it) gets gzip that inflates to the plain body."""
    api, _, _, url = await start()
    try:
        plain_headers, plain = await fetch(url, None)
        gz_headers, compressed = await fetch(url, "gzip")
    finally:
        await api.stop()
    assert "Content-Encoding" not in plain_headers
    assert plain.startswith(b"# HELP")
    assert gz_headers["Content-Encoding"] == "gzip"
    assert int(gz_headers["Content-Length"]) == len(compressed)
    assert compressed[:2] == b"\x1f\x8b"
    assert len(compressed) * 4 < len(plain)
    assert one_gzip_member(compressed) == plain
    assert gzip.decompress(compressed) == plain


async def test_http_gzip_not_served_when_refused():
    """gzip;q=0 or another coding only: the plain exposition."""
    api, _, _, url = await start()
    try:
        for value in ("gzip;q=0", "br", "identity"):
            headers, body = await fetch(url, value)
            assert "Content-Encoding" not in headers, value
            assert body.startswith(b"# HELP"), value
    finally:
        await api.stop()


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_http_gzip_decoded_by_curl():
    """Curl --compressed (libcurl's zlib decoder, a C client) reads the same exposition."""
    api, _, _, url = await start()
    try:
        _, plain = await fetch(url, None)
        result = await asyncio.to_thread(
            subprocess.run,
            ["curl", "-sS", "--compressed", "-D", "-", url],
            capture_output=True,
            timeout=30,
            check=True,
        )
    finally:
        await api.stop()
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert b"content-encoding: gzip" in head.lower()
    assert body == plain


async def test_http_gzip_compressed_once_per_render_not_per_scrape():
    """Scrapes between changes reuse the compressed copy; a new render is compressed once."""
    api, fleet, renderer, url = await start()
    try:
        for _ in range(3):
            await fetch(url, "gzip")
        assert api.gzip_renders == 1
        snap = MinerSnapshot(address="10.0.0.1", collected_at=2.0, hashrate_hs=2e14)
        fleet.record_success("10.0.0.1", snap, 0.1, now=2)
        renderer.miners_body()  # what the service's metrics_refresh task does
        _, compressed = await fetch(url, "gzip")
        _, again = await fetch(url, "gzip")
        assert api.gzip_renders == 2
        assert b"200000000000000" in one_gzip_member(compressed)
        assert b"200000000000000" in one_gzip_member(again)
    finally:
        await api.stop()


def test_gzip_body_joins_cached_part_and_tail_into_one_member():
    """GzipBody: cached deflate + tail deflate + trailer is one valid member of body + tail."""
    body, tail = b"a" * 10_000 + b"xyz", b"# tail\nagent 1\n"
    joined = b"".join(GzipBody.of(body).with_tail(tail))
    assert one_gzip_member(joined) == body + tail
    assert one_gzip_member(b"".join(GzipBody.of(b"").with_tail(b""))) == b""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gzip", True),
        ("deflate, gzip", True),
        ("gzip;q=0.5, identity", True),
        ("*", True),
        ("gzip;q=0", False),
        ("br;q=1, *;q=0", False),
        ("identity", False),
        ("", False),
    ],
)
def test_http_accepts_gzip_reads_accept_encoding(value, expected):
    """Accept-Encoding parsing: gzip or * with q > 0."""
    assert accepts_gzip(value) is expected
