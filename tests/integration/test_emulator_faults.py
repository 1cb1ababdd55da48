"""Faults: each one is seen by real pyasic (or a raw socket) the way real firmware causes it."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import TYPE_CHECKING

import pyasic
import pytest
from pyasic.errors import APIError

from tests.support.emulator import EmulatorError

if TYPE_CHECKING:
    from collections.abc import Callable

BASE = "127.20.2.1"
SPEEDUP = 20.0
SCENARIO = {
    "name": "faults",
    "site": {"name": "lab", "altitude_m": 2800, "ambient": {"mean_c": 15, "amplitude_k": 0}},
    "miners": [
        {"model": "antminer-s19jpro", "count": 15},
        {"model": "bitaxe-ultra", "count": 3},
        {"model": "whatsminer-m30s+ve40", "faults": [{"kind": "fan_failure", "fan": 1}]},
    ],
}


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll ``condition`` every 100 ms until true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


async def raw_rpc(
    address: str, command: bytes = b'{"command":"summary"}', read_s: float = 3.0
) -> bytes:
    """Send one 4028 command on a raw socket and read to EOF."""
    reader, writer = await asyncio.open_connection(address, 4028)
    try:
        writer.write(command)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), read_s)
    finally:
        writer.close()


@pytest.fixture(scope="module")
def site(module_emulator_factory):
    """One emulator for the module; every test uses its own miners."""
    return module_emulator_factory(SCENARIO, base_address=BASE, speedup=SPEEDUP)


@pytest.fixture(scope="module")
def s19s(site):
    """Addresses of the S19j Pro miners, one per test."""
    return iter(m["address"] for m in site.miners() if m["profile"] == "antminer-s19jpro")


@pytest.fixture(scope="module")
def bitaxes(site):
    """Addresses of the Bitaxe miners."""
    return iter(m["address"] for m in site.miners() if m["family"] == "bitaxe")


async def test_fault_offline_refuses_connections_until_cleared(site, s19s):
    """offline: connect is refused and pyasic finds no miner; cleared, it is detected again."""
    address = next(s19s)
    site.inject(address, "offline")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(address, 4028)
    assert await pyasic.get_miner(address) is None
    assert site.clear(address, "offline") == ["offline"]
    miner = await pyasic.get_miner(address)
    assert type(miner).__name__ == "BMMinerS19jPro"


# pyasic does not close its StreamWriter when its read is cancelled; collect that here.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_fault_hang_accepts_and_never_answers(site, s19s):
    """hang: the connection is accepted but no byte comes, so pyasic's get_data times out."""
    address = next(s19s)
    miner = await pyasic.get_miner(address)
    site.inject(address, "hang")
    try:
        reader, writer = await asyncio.open_connection(address, 4028)
        writer.write(b'{"command":"summary"}')
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 1.0)
        writer.close()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(miner.get_data(include=["hashrate"]), 2.0)
    finally:
        site.clear(address)
        gc.collect()
    data = await asyncio.wait_for(miner.get_data(include=["hashrate"]), 10.0)
    assert data.hashrate is not None


async def test_fault_slow_delays_every_reply(site, s19s):
    """slow: each reply comes delay_s late but is intact."""
    address = next(s19s)
    miner = await pyasic.get_miner(address)
    site.inject(address, "slow", delay_s=1.0)
    try:
        started = time.monotonic()
        reply = await miner.rpc.send_command("summary")
        assert time.monotonic() - started >= 0.95
        assert reply["SUMMARY"][0]["GHS 5s"] > 0
    finally:
        site.clear(address)


async def test_fault_garbage_is_a_parse_error(site, s19s, bitaxes):
    """garbage: pyasic's RPC layer raises a decode APIError; a Bitaxe's get_data fails."""
    address = next(s19s)
    miner = await pyasic.get_miner(address)
    axe_address = next(bitaxes)
    axe = await pyasic.get_miner(axe_address)
    site.inject(address, "garbage")
    site.inject(axe_address, "garbage")
    try:
        with pytest.raises(APIError, match="Decode"):
            await miner.rpc.send_command("summary")
        with pytest.raises(APIError):
            await axe.get_data(include=["hashrate"])
    finally:
        site.clear(address)
        site.clear(axe_address)


async def test_fault_truncated_reply_does_not_parse(site, s19s):
    """truncated: the reply stops half way and the connection closes; pyasic cannot decode it."""
    address = next(s19s)
    miner = await pyasic.get_miner(address)
    healthy = await raw_rpc(address)
    site.inject(address, "truncated")
    try:
        cut = await raw_rpc(address)
        assert 0 < len(cut) < len(healthy)
        assert healthy.startswith(cut[:20])
        with pytest.raises(APIError, match="Decode"):
            await miner.rpc.send_command("summary")
    finally:
        site.clear(address)


async def test_fault_oversized_reply_is_padded_valid_json(site, s19s, bitaxes):
    """oversized: the reply is at least ``bytes`` long and still valid for pyasic."""
    address = next(s19s)
    miner = await pyasic.get_miner(address)
    axe_address = next(bitaxes)
    axe = await pyasic.get_miner(axe_address)
    site.inject(address, "oversized", bytes=3_000_000)
    site.inject(axe_address, "oversized", bytes=3_000_000)
    try:
        big = await raw_rpc(address, read_s=10)
        assert len(big) >= 3_000_000
        assert big.endswith(b'"}\x00')
        reply = await miner.rpc.send_command("summary")
        assert reply["SUMMARY"][0]["GHS 5s"] > 0
        data = await axe.get_data(include=["hashrate"])
        assert data.hashrate is not None
    finally:
        site.clear(address)
        site.clear(axe_address)


async def test_fault_reset_sends_rst(site, s19s):
    """reset: the connection is reset (RST) before any byte, as pyasic then reports."""
    address = next(s19s)
    miner = await pyasic.get_miner(address)
    site.inject(address, "reset")
    try:
        with pytest.raises(ConnectionResetError):
            await raw_rpc(address)
        with pytest.raises(ConnectionResetError):
            await miner.rpc.send_command("summary")
    finally:
        site.clear(address)


async def test_fault_drip_sends_one_byte_per_second(site, s19s):
    """drip: bytes trickle in (1/s), so a reader with a deadline times out mid-reply."""
    address = next(s19s)
    site.inject(address, "drip")
    try:
        reader, writer = await asyncio.open_connection(address, 4028)
        writer.write(b'{"command":"summary"}')
        first = await asyncio.wait_for(reader.read(1), 5.0)
        assert first == b"{"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(), 2.5)
        writer.close()
    finally:
        site.clear(address)


async def test_fault_board_lost_shows_a_missing_board(site, s19s):
    """board_lost: pyasic reports that board missing and two boards' worth of hashrate."""
    address = next(s19s)
    miner = await pyasic.get_miner(address)
    site.inject(address, "board_lost", board=1)
    site.pause()
    try:
        data = await miner.get_data(include=["hashboards", "hashrate"])
        truth = site.truth(address)
    finally:
        site.resume()
        site.clear(address)
    assert [b.missing for b in data.hashboards] == [False, True, False]
    assert truth["boards"][1]["missing"] is True
    assert float(data.hashrate.rate) * data.hashrate.unit.value == pytest.approx(
        truth["hashrate_hs"], rel=1e-6
    )
    assert truth["hashrate_hs"] < truth["expected_hashrate_hs"] * 0.7


async def test_fault_reboot_resets_uptime(site, s19s):
    """reboot: the uptime pyasic reads starts again from zero."""
    address = next(s19s)
    miner = await pyasic.get_miner(address)
    before = (await miner.get_data(include=["uptime"])).uptime
    assert before > 3600
    site.inject(address, "reboot")
    after = (await miner.get_data(include=["uptime"])).uptime
    assert after < 60 * SPEEDUP


async def test_fault_reboot_with_down_time_refuses_then_comes_back(site, s19s):
    """Reboot with down_s: ports refuse while it boots, then it answers with a fresh uptime."""
    address = next(s19s)
    miner = await pyasic.get_miner(address)
    site.inject(address, "reboot", down_s=2.0 * SPEEDUP)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(address, 4028)
    deadline = time.monotonic() + 20
    while True:
        try:
            _, writer = await asyncio.open_connection(address, 4028)
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "miner did not come back after its reboot"
            await asyncio.sleep(0.1)
        else:
            writer.close()
            await writer.wait_closed()
            break
    uptime = (await miner.get_data(include=["uptime"])).uptime
    assert uptime < 60 * SPEEDUP


async def test_fault_fan_failure_reads_zero_rpm(site, s19s):
    """fan_failure: that fan reads 0 rpm; a scenario can start with it (Whatsminer fan 1)."""
    address = next(s19s)
    miner = await pyasic.get_miner(address)
    site.inject(address, "fan_failure", fan=2)
    try:
        data = await miner.get_data(include=["fans"])
        speeds = [f.speed for f in data.fans]
        assert speeds[2] == 0
        assert all(s > 0 for i, s in enumerate(speeds) if i != 2)
    finally:
        site.clear(address)
    wm = next(m["address"] for m in site.miners() if m["family"] == "whatsminer")
    wm_data = await (await pyasic.get_miner(wm)).get_data(include=["fans"])
    assert wm_data.fans[1].speed == 0
    assert wm_data.fans[0].speed > 0


def test_fault_clogged_filter_raises_fan_duty(site, s19s):
    """clogged_filter: less airflow, so the controller spins the fans up."""
    address = next(s19s)
    before = site.truth(address)["fan_duty_ratio"]
    site.inject(address, "clogged_filter", factor=0.5)
    try:
        wait_until(
            lambda: site.truth(address)["fan_duty_ratio"] > min(1.0, before + 0.1) - 1e-3,
            "fan duty to rise after a clogged filter",
        )
    finally:
        site.clear(address)


def test_fault_heatwave_raises_inlet_and_chip(site, s19s):
    """heatwave: the miner's inlet rises by k and its chips follow."""
    address = next(s19s)
    before = site.truth(address)
    site.inject(address, "heatwave", k=12.0)
    try:
        wait_until(
            lambda: site.truth(address)["inlet_temp_c"] >= before["inlet_temp_c"] + 11.5,
            "inlet to rise by the heatwave",
        )
        wait_until(
            lambda: (
                site.truth(address)["boards"][0]["chip_temp_c"]
                > before["boards"][0]["chip_temp_c"] + 2
            ),
            "chip temperature to follow the inlet",
            timeout=40,
        )
    finally:
        site.clear(address)


async def test_fault_model_change_is_detected_as_the_new_model(site, s19s):
    """model_change: the same address now answers as an S21; cleared, as an S19j Pro again."""
    address = next(s19s)
    site.inject(address, "model_change", model="antminer-s21")
    try:
        assert type(await pyasic.get_miner(address)).__name__ == "BMMinerS21"
    finally:
        site.clear(address)
    assert type(await pyasic.get_miner(address)).__name__ == "BMMinerS19jPro"


def test_control_api_rejects_unknown_miner_and_bad_fault(site):
    """The control API answers 404 for an unknown address and 422 for an invalid fault."""
    with pytest.raises(EmulatorError, match="404"):
        site.truth("127.20.250.250")
    address = site.miners()[0]["address"]
    with pytest.raises(EmulatorError, match="422"):
        site.inject(address, "meteor_strike")
    with pytest.raises(EmulatorError, match="422"):
        site.inject(address, "clogged_filter", factor=3)


def test_site_heatwave_and_override_move_every_inlet(site):
    """POST /site: an inlet override plus a heatwave set every miner's inlet."""
    try:
        site.set_site(inlet_override_c=20.0, heatwave_k=5.0)
        wait_until(
            lambda: all(
                site.truth(a["address"])["inlet_temp_c"] == pytest.approx(25.0, abs=0.01)
                for a in site.miners()[-3:]
            ),
            "inlets to follow the site override",
        )
    finally:
        site.set_site(inlet_override_c=None, heatwave_k=0.0)
