"""PyasicSource against the emulator over real sockets: faults become reasons, never hangs."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest
from pydantic import SecretStr

from collectors.pyasic_source import _REDETECT_AFTER_EMPTY, PyasicSource
from collectors.snapshot import Family, Tier
from collectors.source import CollectorError, Credentials, FailureReason, MinerTarget

BASE = "127.30.3.1"
SCENARIO = {
    "name": "faults",
    "site": {"name": "golmud", "altitude_m": 2800},
    "miners": [
        {"model": "antminer-s19jpro", "count": 4},
        {"model": "vnish-s19jpro", "count": 1},
        {"model": "bitaxe-ultra", "count": 1},
        {"model": "whatsminer-m30s+ve40", "count": 1},
        {"model": "braiins-s19jpro", "count": 1},
        {"model": "luxos-s19xp", "count": 1},
    ],
}


# A poll cut by our deadline cancels pyasic inside ``_send_bytes``, which then never closes its
# StreamWriter: the socket is closed by the garbage collector, with a ResourceWarning (ignored by
# Python's default filters, so harmless in the agent). The hang tests collect garbage themselves
# so the warning surfaces, and is ignored, inside them rather than in a later test.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def emulator(module_emulator_factory: Any) -> Any:
    """Seven emulated miners shared by the module; every test clears its faults."""
    return module_emulator_factory(SCENARIO, base_address=BASE)


@pytest.fixture
def clean(emulator: Any) -> Any:
    """The emulator, with every fault cleared after the test."""
    yield emulator
    for miner in emulator.miners():
        emulator.clear(miner["address"])


def address(emulator: Any, family: str, index: int = 0) -> str:
    """The index-th emulated miner of ``family``."""
    return str([m["address"] for m in emulator.miners() if m["family"] == family][index])


async def poll(source: PyasicSource, addr: str, tier: Tier = Tier.FAST) -> Any:
    """One fetch; the snapshot or the CollectorError."""
    try:
        return await source.fetch(MinerTarget(address=addr), tier)
    except CollectorError as exc:
        return exc


async def test_source_hanging_miner_is_cut_at_the_deadline(clean):
    """A miner that accepts and never answers fails with TIMEOUT at the poll deadline, not 100 s."""
    addr = address(clean, "antminer", 0)
    source = PyasicSource(timeout_s=1.5)
    assert not isinstance(await poll(source, addr), CollectorError)
    clean.inject(addr, "hang")
    started = time.monotonic()
    result = await poll(source, addr)
    assert isinstance(result, CollectorError)
    assert result.reason is FailureReason.TIMEOUT
    assert time.monotonic() - started < 5
    gc.collect()


async def test_source_offline_miner_is_refused(clean):
    """A miner whose ports are closed fails with REFUSED (pyasic swallows it; the probe tells)."""
    addr = address(clean, "antminer", 1)
    source = PyasicSource(timeout_s=5)
    assert not isinstance(await poll(source, addr, Tier.SLOW), CollectorError)
    assert not isinstance(await poll(source, addr), CollectorError)
    clean.inject(addr, "offline")
    result = await poll(source, addr)
    assert isinstance(result, CollectorError)
    assert result.reason is FailureReason.REFUSED
    # pyasic keeps the firmware version on the miner object: that alone is not an answer
    slow = await poll(source, addr, Tier.SLOW)
    assert isinstance(slow, CollectorError), slow


@pytest.mark.parametrize("kind", ["garbage", "truncated", "reset"])
async def test_source_bad_protocol_is_a_reason_not_an_exception(clean, kind):
    """Garbage, truncated replies and resets on every port become a CollectorError."""
    addr = address(clean, "vnish")
    source = PyasicSource(timeout_s=5)
    assert not isinstance(await poll(source, addr), CollectorError)
    clean.inject(addr, kind)
    result = await poll(source, addr)
    assert isinstance(result, CollectorError), result
    assert result.reason in {
        FailureReason.PARSE_ERROR,
        FailureReason.PROTOCOL_ERROR,
        FailureReason.RESET,
    }


@pytest.mark.parametrize(
    ("kind", "reasons"),
    [
        ("hang", {FailureReason.TIMEOUT}),
        ("drip", {FailureReason.TIMEOUT}),
        ("garbage", {FailureReason.PARSE_ERROR, FailureReason.PROTOCOL_ERROR}),
        ("truncated", {FailureReason.PARSE_ERROR, FailureReason.PROTOCOL_ERROR}),
        ("reset", {FailureReason.RESET, FailureReason.PROTOCOL_ERROR}),
    ],
)
@pytest.mark.parametrize("family", ["antminer", "bitaxe"])
async def test_source_bad_miner_keeps_its_reason_after_redetection(clean, kind, reasons, family):
    """A misbehaving miner keeps a wire reason when re-detected, never "unsupported_firmware".

    After ``_REDETECT_AFTER_EMPTY`` failed polls the detection cache is dropped and pyasic's
    detection runs again; it finds nothing on a miner that hangs, drips, resets or sends
    garbage, and the source asks the API port it last knew itself (RPC ``version``, or an HTTP
    GET on a web-only Bitaxe: never "refused" from port 4028, where a Bitaxe has nothing).
    """
    addr = address(clean, "antminer", 2) if family == "antminer" else address(clean, "bitaxe")
    source = PyasicSource(timeout_s=4.0)  # the detection gives up before this deadline
    assert not isinstance(await poll(source, addr), CollectorError)
    clean.inject(addr, kind)
    seen = []
    for _ in range(_REDETECT_AFTER_EMPTY + 1):  # the last one detects again
        result = await poll(source, addr)
        assert isinstance(result, CollectorError), result
        seen.append(result.reason)
    assert source.cached_class(addr) is None, "the source never detected the miner again"
    assert set(seen) <= reasons, f"reasons poll after poll: {[r.value for r in seen]}"
    gc.collect()


async def test_source_detection_ping_on_garbage_returns_nothing_instead_of_raising(clean):
    """The detection ping of pyasic gets None from a garbage-sending miner, no exception.

    Unwrapped, it raises UnicodeDecodeError in a task pyasic never awaits, which asyncio logs
    as "Task exception was never retrieved" at every re-detection.
    """
    from pyasic.miners.factory import MinerFactory  # noqa: PLC0415 - wrapped by pyasic_tuning

    addr = address(clean, "antminer", 3)
    clean.inject(addr, "garbage")
    assert await MinerFactory._socket_ping(addr, "version") is None


async def test_source_hanging_miner_does_not_delay_others(clean):
    """Polls of healthy miners finish quickly while a hanging miner is polled concurrently."""
    bad = address(clean, "antminer", 2)
    good = [address(clean, "antminer", 3), address(clean, "bitaxe"), address(clean, "whatsminer")]
    source = PyasicSource(timeout_s=3)
    clean.inject(bad, "hang")

    async def timed(addr: str) -> tuple[Any, float]:
        started = time.monotonic()
        result = await poll(source, addr)
        return result, time.monotonic() - started

    results = await asyncio.gather(timed(bad), *(timed(a) for a in good))
    assert isinstance(results[0][0], CollectorError)
    for result, elapsed in results[1:]:
        assert not isinstance(result, CollectorError), result
        assert elapsed < 2.5
    gc.collect()


async def test_source_recovers_after_offline(clean):
    """A miner that comes back is read again (detection redone after it was away)."""
    addr = address(clean, "bitaxe")
    source = PyasicSource(timeout_s=5)
    clean.inject(addr, "offline")
    assert isinstance(await poll(source, addr), CollectorError)
    clean.clear(addr, "offline")
    result = await poll(source, addr)
    assert not isinstance(result, CollectorError), result
    assert result.identity.family is Family.BITAXE


async def test_source_board_lost_and_fan_failure_are_readings(clean):
    """A lost board is marked missing without temperatures; a failed fan reads 0 rpm."""
    addr = address(clean, "antminer", 3)
    source = PyasicSource(timeout_s=5)
    clean.inject(addr, "board_lost", board=1)
    clean.inject(addr, "fan_failure", fan=0)
    result = await poll(source, addr)
    assert not isinstance(result, CollectorError), result
    truth = clean.truth(addr)
    lost = next(b for b in result.boards if b.index == 1)
    assert lost.hashrate_hs in {None, 0.0}
    assert truth["fans"][0]["rpm"] == 0
    assert result.fans[0].rpm == 0


async def test_source_model_hint_skips_detection(clean):
    """With a model hint the first poll needs no detection and yields the hinted model."""
    addr = address(clean, "antminer", 0)
    calls: list[str] = []

    async def detector(ip: str) -> None:
        calls.append(ip)

    source = PyasicSource(timeout_s=5, detector=detector)
    result = await source.fetch(
        MinerTarget(address=addr, model_hint="Antminer S19j Pro"), Tier.FAST
    )
    assert result.identity.model == "S19j Pro"
    assert calls == []


async def test_source_notices_model_swapped_in_place(clean):
    """Hardware swapped at the same address and MAC is re-detected on a later slow poll."""
    addr = address(clean, "antminer", 1)
    source = PyasicSource(timeout_s=5, verify_model_every=0)
    first = await poll(source, addr, Tier.SLOW)
    assert first.identity.model == "S19j Pro"
    clean.inject(addr, "model_change", model="antminer-s21")
    second = await poll(source, addr, Tier.SLOW)
    assert not isinstance(second, CollectorError), second
    assert second.identity.model == "S21"
    assert source.cached_class(addr) == "BMMinerS21"


def with_password(addr: str, password: str) -> MinerTarget:
    """A target with a configured web password (user name: the firmware's default)."""
    return MinerTarget(address=addr, credentials=Credentials(password=SecretStr(password)))


@pytest.mark.parametrize("tier", [Tier.FAST, Tier.SLOW])
async def test_source_antminer_wrong_password_is_auth_not_missing_boards(clean, tier):
    """A stock Antminer whose web API answers 401 is a failed poll (auth), not lost boards."""
    addr = address(clean, "antminer", 2)
    source = PyasicSource(timeout_s=5)
    wrong = await poll_target(source, with_password(addr, "not-root"), tier)
    assert isinstance(wrong, CollectorError), wrong
    assert wrong.reason is FailureReason.AUTH
    assert "not-root" not in str(wrong)
    source.forget(addr)
    right = await poll_target(source, with_password(addr, "root"), tier)
    assert not isinstance(right, CollectorError), right
    if tier is Tier.FAST:
        assert right.boards
        assert not any(b.missing for b in right.boards)
    else:
        assert right.identity.mac is not None


@pytest.mark.parametrize("kind", ["reset", "garbage"])
async def test_source_antminer_silent_web_api_is_unknown_boards_not_missing(clean, kind):
    """RPC answers, web API does not: boards and identity unknown (absent), never "missing"."""
    addr = address(clean, "antminer", 3)
    source = PyasicSource(timeout_s=5)
    before = await poll(source, addr, Tier.SLOW)
    assert not isinstance(before, CollectorError), before
    clean.inject(addr, kind, port="web")
    fast = await poll(source, addr, Tier.FAST)
    assert not isinstance(fast, CollectorError), fast
    assert fast.hashrate_hs, "the RPC port's hashrate is still read"
    assert fast.boards == ()
    assert fast.expected_boards is None
    slow = await poll(source, addr, Tier.SLOW)
    assert not isinstance(slow, CollectorError), slow
    assert (slow.identity.mac, slow.identity.serial) == (None, None)
    assert slow.pools, "the RPC port's pools are still read"
    clean.clear(addr)
    back = await poll(source, addr, Tier.FAST)
    assert not isinstance(back, CollectorError), back
    assert back.boards
    assert not any(b.missing for b in back.boards)


async def test_source_braiins_wrong_password_is_auth(clean):
    """Braiins OS+ refusing the gRPC login (UNAUTHENTICATED) is reason auth."""
    addr = address(clean, "braiins")
    result = await poll_target(PyasicSource(timeout_s=5), with_password(addr, "not-root"))
    assert isinstance(result, CollectorError), result
    assert result.reason is FailureReason.AUTH


@pytest.mark.filterwarnings("ignore:Could not authenticate web token:UserWarning")
async def test_source_vnish_wrong_password_is_auth(clean):
    """VNish refusing the unlock password is reason auth; the right one reads the miner."""
    addr = address(clean, "vnish")
    source = PyasicSource(timeout_s=5)
    wrong = await poll_target(source, with_password(addr, "not-admin"))
    assert isinstance(wrong, CollectorError), wrong
    assert wrong.reason is FailureReason.AUTH
    source.forget(addr)
    right = await poll_target(source, with_password(addr, "admin"))
    assert not isinstance(right, CollectorError), right
    clean.inject(addr, "offline")
    gone = await poll_target(source, with_password(addr, "not-admin"))
    assert isinstance(gone, CollectorError), gone
    assert gone.reason is not FailureReason.AUTH  # no answer is not a refused password


async def poll_target(source: PyasicSource, target: MinerTarget, tier: Tier = Tier.FAST) -> Any:
    """One fetch of ``target``; the snapshot or the CollectorError."""
    try:
        return await source.fetch(target, tier)
    except CollectorError as exc:
        return exc


async def test_source_luxos_reads_mac_hashrate_and_atm_state(clean):
    """LuxOS S19 XP: MAC and summary hashrate pyasic 0.79 drops are read, ATM is on."""
    addr = address(clean, "luxos")
    source = PyasicSource(timeout_s=5.0)
    clean.pause()
    try:
        fast = await poll(source, addr, Tier.FAST)
        slow = await poll(source, addr, Tier.SLOW)
        truth = clean.truth(addr)
    finally:
        clean.resume()
    assert source.cached_class(addr) == "LUXMinerS19XP"
    assert fast.identity.family is Family.LUXOS
    assert fast.hashrate_hs == pytest.approx(truth["hashrate_hs"], rel=1e-6)
    assert fast.power_w == pytest.approx(truth["power_w"], abs=1)
    assert [b.chips for b in fast.boards] == [b["chips"] for b in truth["boards"]]
    assert [f.rpm for f in fast.fans] == [f["rpm"] for f in truth["fans"]]
    assert slow.identity.mac == truth["mac"].upper()
    assert slow.identity.firmware == "LuxOS"
    assert slow.atm_enabled is True
    assert slow.power_limit_w == pytest.approx(3010)
    assert fast.atm_enabled is None  # a slow-tier reading
    assert fast.is_mining is None  # pyasic reads no mining state from LuxOS (not its default True)


async def test_source_unsupported_firmware_is_a_named_failure(clean):
    """A miner answering cgminer JSON that pyasic cannot identify fails as unsupported_firmware."""
    addr = address(clean, "antminer", 1)
    clean.inject(addr, "unsupported_firmware")
    result = await poll(PyasicSource(timeout_s=5.0), addr)
    assert isinstance(result, CollectorError), result
    assert result.reason is FailureReason.UNSUPPORTED_FIRMWARE
    assert "port 4028" in result.detail
