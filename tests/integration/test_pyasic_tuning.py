"""pyasic_tuning against the emulator: same data as pyasic alone, fewer round trips, faults mapped."""

import asyncio
import dataclasses
import hashlib
import json
import re
import time
from typing import Any

import httpx
import pytest
from pyasic import get_miner
from pyasic import settings as pyasic_settings
from pyasic.miners.antminer import BMMinerS19jPro
from pyasic.miners.antminer.bosminer.X19.S19 import BOSMinerS19jPro
from pyasic.miners.bitaxe import BitAxeUltra
from pyasic.miners.data import DataOptions

from collectors import pyasic_tuning
from collectors.emulator.profiles import PROFILES
from collectors.pyasic_source import FAST_OPTIONS, PyasicSource
from collectors.snapshot import Tier
from collectors.source import MinerTarget
from tests.support.emulator import EmulatorError, start_emulator

S19 = "127.80.1.1"
BITAXE = "127.80.1.2"
FAULTY = ["127.80.1.3", "127.80.1.4", "127.80.1.5", "127.80.1.6", "127.80.1.7", "127.80.1.8"]
BOS = "127.80.1.9"
BOS_FAULTY = "127.80.1.10"
#: One miner of each other family, for detection through the lean transport.
OTHERS = {
    "antminer-s21": "127.80.1.11",
    "whatsminer-m30s+ve40": "127.80.1.12",
    "avalon-15-194": "127.80.1.13",
    "vnish-s19jpro": "127.80.1.14",
}

DETECT = {
    "antminer-s19jpro": S19,
    "bitaxe-ultra": BITAXE,
    "braiins-s19jpro": BOS,
    **OTHERS,
}

SCENARIO = {
    "name": "tuning",
    "site": {"name": "tuning", "altitude_m": 2800},
    "miners": [
        {"model": "antminer-s19jpro", "count": 1, "addresses": [S19]},
        {"model": "bitaxe-ultra", "count": 7, "addresses": [BITAXE, *FAULTY]},
        {"model": "braiins-s19jpro", "count": 2, "addresses": [BOS, BOS_FAULTY]},
        *({"model": key, "count": 1, "addresses": [address]} for key, address in OTHERS.items()),
    ],
}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """One emulator for the module, clock paused so two reads see the same truth."""
    tmp = tmp_path_factory.mktemp("emu")
    for attempt in range(3):
        try:
            handle = start_emulator(SCENARIO, base_address="127.80.1.1", tmp_dir=tmp)
            break
        except EmulatorError as exc:  # a previous run's sockets may still be closing
            if attempt == 2 or "address already in use" not in str(exc):
                raise
            time.sleep(2)
    handle.pause()
    yield handle
    handle.stop()


@pytest.fixture(autouse=True)
def untuned_transport():
    """Every test starts and ends with pyasic's own transport."""
    original = pyasic_settings.transport
    pyasic_tuning.uninstall()
    yield
    pyasic_tuning.uninstall()
    pyasic_settings.transport = original


def _summary(data: Any) -> dict[str, Any]:
    """The fields both reads must agree on (MinerData minus timestamps)."""
    out: dict[str, Any] = data.as_dict()
    for key in ("datetime", "timestamp"):
        out.pop(key, None)
    return out


@pytest.mark.parametrize(
    ("cls", "address"),
    [(BMMinerS19jPro, S19), (BitAxeUltra, BITAXE), (BOSMinerS19jPro, BOS)],
    ids=["s19", "bitaxe", "bos+"],
)
@pytest.mark.parametrize("include", [None, list(FAST_OPTIONS)], ids=["all", "fast"])
async def test_tuning_reads_same_data_as_pyasic(emulator, cls, address, include):
    """A tuned miner object returns exactly the MinerData that pyasic alone returns."""
    plain = await cls(address).get_data(include=include)
    tuned_miner = cls(address)
    pyasic_tuning.tune(tuned_miner)
    tuned = await tuned_miner.get_data(include=include)
    assert plain.hashrate is not None
    assert _summary(tuned) == _summary(plain)


async def test_tuned_antminer_reuses_digest_nonce(emulator):
    """After the first challenge, a tuned S19's web requests are answered without a 401."""
    miner = BMMinerS19jPro(S19)
    pyasic_tuning.tune(miner)
    await miner.get_data(include=list(FAST_OPTIONS))
    pyasic_tuning.TRANSPORT_STATS.reset()
    for _ in range(3):
        data = await miner.get_data(include=list(FAST_OPTIONS))
        assert all(board.chip_temp for board in data.hashboards)
    stats = pyasic_tuning.TRANSPORT_STATS
    assert stats.requests >= 3
    assert stats.unauthorized == 0
    assert stats.connections == stats.requests


def _record_rpc(miner: Any) -> list[bytes]:
    """Wrap the miner's RPC _send_bytes to record the commands sent (delegates to pyasic)."""
    sent: list[bytes] = []
    original = miner.rpc._send_bytes

    async def recording(data: bytes, **kwargs: Any) -> bytes:
        sent.append(data)
        result: bytes = await original(data, **kwargs)
        return result

    miner.rpc._send_bytes = recording
    return sent


async def test_tuned_rpc_remembers_rejected_join(emulator):
    """Once the S19 rejected "a+b", a tuned miner sends each command once, with no join."""
    miner = BMMinerS19jPro(S19)
    pyasic_tuning.tune(miner)
    sent = _record_rpc(miner)
    await miner.get_data(include=list(FAST_OPTIONS))
    assert any(b"+" in s for s in sent), "the first poll tries the join"
    sent.clear()
    await miner.get_data(include=list(FAST_OPTIONS))
    assert sent
    assert not any(b"+" in s for s in sent)
    assert len(sent) == len(set(sent)), f"a command was sent twice: {sent}"


async def test_tuned_rpc_fetches_single_command_once(emulator):
    """include=[HASHRATE] needs only summary: pyasic sends it twice, a tuned miner once."""
    plain = BMMinerS19jPro(S19)
    plain_sent = _record_rpc(plain)
    plain_data = await plain.get_data(include=[DataOptions.HASHRATE])
    tuned = BMMinerS19jPro(S19)
    pyasic_tuning.tune(tuned)
    tuned_sent = _record_rpc(tuned)
    tuned_data = await tuned.get_data(include=[DataOptions.HASHRATE])
    assert len(plain_sent) == 2
    assert len(tuned_sent) == 1
    assert tuned_data.hashrate == plain_data.hashrate


async def _get(url: str, timeout_s: float) -> httpx.Response:
    pyasic_tuning.install()
    async with httpx.AsyncClient(transport=pyasic_settings.transport()) as client:
        return await client.get(url, timeout=timeout_s)


@pytest.mark.parametrize(
    ("address", "kind", "params", "error"),
    [
        (FAULTY[0], "hang", {"port": "web"}, httpx.ReadTimeout),
        (FAULTY[1], "drip", {"port": "web"}, httpx.ReadTimeout),
        (FAULTY[3], "truncated", {"port": "web"}, httpx.RemoteProtocolError),
        (FAULTY[4], "reset", {"port": "web"}, (httpx.ReadError, httpx.RemoteProtocolError)),
        (FAULTY[5], "offline", {}, httpx.ConnectError),
    ],
)
async def test_lean_transport_maps_faults_to_httpx_errors(emulator, address, kind, params, error):
    """Web faults surface as httpx errors (what pyasic catches), bounded by the read timeout."""
    url = f"http://{address}/api/system/info"
    assert (await _get(url, 5.0)).status_code == 200
    emulator.inject(address, kind, **params)
    try:
        started = time.monotonic()
        with pytest.raises(error):
            await _get(url, 1.5)
        assert time.monotonic() - started < 10, "the read timeout bounds the whole reply"
    finally:
        emulator.clear(address)
    # the miner answers again once the fault is gone (offline: the listener comes back)
    deadline = time.monotonic() + 15
    while True:
        try:
            if (await _get(url, 5.0)).status_code == 200:
                break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


async def test_lean_transport_passes_garbage_body_to_pyasic(emulator):
    """A well-framed reply with a garbage body is returned as is: pyasic's JSON check fails."""
    address = FAULTY[2]
    emulator.inject(address, "garbage", port="web")
    try:
        response = await _get(f"http://{address}/api/system/info", 5.0)
        assert response.status_code == 200
        with pytest.raises(ValueError):
            response.json()
    finally:
        emulator.clear(address)


async def test_lean_transport_refuses_oversized_body(emulator):
    """A reply larger than MAX_BODY_BYTES is a protocol error, not memory growth."""
    address = FAULTY[0]
    emulator.inject(address, "oversized", port="web", bytes=pyasic_tuning.MAX_BODY_BYTES + 1024)
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            await _get(f"http://{address}/api/system/info", 10.0)
    finally:
        emulator.clear(address)


async def test_tuned_bos_calls_of_a_poll_share_one_channel(emulator):
    """A tuned BOS+ poll's gRPC calls share one channel, closed when the poll's calls are done."""
    miner = BOSMinerS19jPro(BOS)
    pyasic_tuning.tune(miner)
    channels: list[Any] = []
    original = miner.web._grpc_channel

    def recording() -> Any:
        channel = original()
        channels.append(channel)
        return channel

    miner.web._grpc_channel = recording
    data = await miner.get_data(include=list(FAST_OPTIONS))
    assert data.wattage
    assert all(board.chips for board in data.hashboards)
    assert len(channels) >= 3, "the fast tier needs several gRPC calls"
    assert len({id(c) for c in channels}) == 1
    assert miner.web._tuned_channel is None


async def test_tuned_bos_offline_miner_is_refused_like_pyasic(emulator):
    """No connection outlives a poll: an offline BOS+ miner gives no data, and data again after."""
    miner = BOSMinerS19jPro(BOS_FAULTY)
    pyasic_tuning.tune(miner)
    assert (await miner.get_data(include=list(FAST_OPTIONS))).wattage
    emulator.inject(BOS_FAULTY, "offline")
    try:
        offline = await miner.get_data(include=list(FAST_OPTIONS))
        assert offline.wattage is None
        assert offline.hashrate is None
    finally:
        emulator.clear(BOS_FAULTY)
    deadline = time.monotonic() + 15
    while not (await miner.get_data(include=list(FAST_OPTIONS))).wattage:
        assert time.monotonic() < deadline, "BOS+ miner did not answer again after the fault"
        await asyncio.sleep(0.2)


async def test_tuned_antminer_follows_nonce_renewal():
    """A server that retires each nonce after two uses gets a fresh challenge answered, no error.

    The emulator accepts any nonce; this small lighttpd-like server (loopback, free port)
    checks the Digest response and answers 401 with a new nonce once a nonce was used twice.
    """
    realm, password = "antMiner Configuration", "root"
    ha1 = hashlib.md5(f"root:{realm}:{password}".encode(), usedforsecurity=False).hexdigest()
    nonces: dict[str, int] = {}
    seen = {"requests": 0, "unauthorized": 0}

    def md5(text: str) -> str:
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

    def valid(head: str) -> bool:
        match = re.search(r"^Authorization: Digest (.*)$", head, re.MULTILINE | re.IGNORECASE)
        if match is None:
            return False
        f = dict(re.findall(r'(\w+)="?([^",]*)"?', match[1]))
        if f.get("nonce") not in nonces or nonces[f["nonce"]] >= 2:
            return False
        expected = md5(f"{ha1}:{f['nonce']}:{f['nc']}:{f['cnonce']}:auth:{md5('GET:' + f['uri'])}")
        if expected != f.get("response"):
            return False
        nonces[f["nonce"]] += 1
        return True

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        seen["requests"] += 1
        if valid(head):
            body = json.dumps({"STATS": [{"chain": []}]}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        else:
            seen["unauthorized"] += 1
            nonce = f"n{len(nonces)}"
            nonces[nonce] = 0
            challenge = f'Digest realm="{realm}", nonce="{nonce}", qop="auth", stale=true'
            writer.write(
                f"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {challenge}\r\nContent-Length: 0\r\n\r\n".encode()
            )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.80.3.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        miner = BMMinerS19jPro("127.80.3.1")
        miner.web.port = port
        pyasic_tuning.tune(miner)
        replies = [await miner.web.send_command("stats") for _ in range(6)]
    finally:
        server.close()
        await server.wait_closed()
    assert replies == [{"STATS": [{"chain": []}]}] * 6
    assert seen == {"requests": 9, "unauthorized": 3}


@pytest.mark.parametrize(("key", "address"), sorted(DETECT.items()))
async def test_detection_through_lean_transport_finds_the_class(emulator, key, address):
    """Pyasic's detection (HTTP and HTTPS probes, RPC) over the lean transport picks the right class."""
    pyasic_tuning.install()
    miner = await get_miner(address)
    assert type(miner).__name__ == PROFILES[key].pyasic_class
    pyasic_tuning.tune(miner)
    data = await miner.get_data(include=list(FAST_OPTIONS))
    assert data.hashrate is not None


#: One miner of every emulated family, for the tuning off/on comparison through PyasicSource.
EVERY_FAMILY = {key: f"127.80.2.{index}" for index, key in enumerate(PROFILES, start=1)}


@pytest.fixture(scope="module")
def every_family(tmp_path_factory):
    """One paused emulator with a miner of each profile: two reads see the same truth."""
    scenario = {
        "name": "tuning-families",
        "site": {"name": "tuning", "altitude_m": 2800},
        "miners": [
            {"model": key, "count": 1, "addresses": [address]}
            for key, address in EVERY_FAMILY.items()
        ],
    }
    handle = start_emulator(
        scenario, base_address="127.80.2.1", tmp_dir=tmp_path_factory.mktemp("emu")
    )
    handle.pause()
    yield handle
    handle.stop()


async def _read_all(source: PyasicSource) -> dict[tuple[str, Tier], Any]:
    """Both tiers of every miner, without ``collected_at`` (the only field allowed to differ)."""
    out: dict[tuple[str, Tier], Any] = {}
    for key, address in EVERY_FAMILY.items():
        for tier in (Tier.SLOW, Tier.FAST):
            snapshot = await source.fetch(MinerTarget(address=address), tier)
            out[key, tier] = dataclasses.replace(snapshot, collected_at=0.0)
    return out


async def test_tuning_off_and_on_read_identical_snapshots(every_family):
    """PyasicSource reads every family identically with pyasic as released and with the tuning."""
    assert not pyasic_tuning.installed()
    plain = await _read_all(PyasicSource(timeout_s=10.0, tuning=False))
    assert not pyasic_tuning.installed(), "tuning=False must patch nothing"
    tuned = await _read_all(PyasicSource(timeout_s=10.0, tuning=True))
    assert pyasic_tuning.installed()
    for key in EVERY_FAMILY:
        assert plain[key, Tier.FAST].hashrate_hs is not None, key
        assert tuned[key, Tier.FAST] == plain[key, Tier.FAST], key
        assert tuned[key, Tier.SLOW] == plain[key, Tier.SLOW], key
