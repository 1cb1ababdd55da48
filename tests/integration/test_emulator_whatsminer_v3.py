"""Whatsminer API v3 emulation: real pyasic detects each variant and reads back the truth."""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

import pyasic
import pytest
from pyasic.miners.backends.btminer import BTMinerV2, BTMinerV3

from collectors.emulator.families.whatsminer_v3 import FW_VERSION_V3

BASE = "127.163.0.1"
WITH_4028 = "whatsminer-m60s-v3"
NO_AMBIENT = "whatsminer-m60s-v3-noenv"
CLOSED_4028 = "whatsminer-m60s-v3-4433"
SCENARIO = {
    "name": "whatsminer-v3",
    "site": {"name": "lab", "altitude_m": 3000, "ambient": {"mean_c": 18, "amplitude_k": 4}},
    "miners": [{"model": key} for key in (WITH_4028, NO_AMBIENT, CLOSED_4028)],
}


def hs(rate) -> float | None:
    """A pyasic hashrate in H/s."""
    if rate is None:
        return None
    return float(rate.rate) * float(rate.unit.value)


@pytest.fixture(scope="module")
def site(module_emulator_factory):
    """One emulator with the three v3 variants."""
    return module_emulator_factory(SCENARIO, base_address=BASE)


@pytest.fixture(scope="module")
def by_profile(site):
    """Profile key -> address."""
    return {m["profile"]: m["address"] for m in site.miners()}


async def v3_request(address: str, request: dict[str, Any]) -> dict[str, Any]:
    """One framed request to 4433, as pyasic sends it; the decoded reply."""
    reader, writer = await asyncio.open_connection(address, 4433)
    try:
        body = json.dumps(request).encode()
        writer.write(struct.pack("<I", len(body)) + body)
        await writer.drain()
        async with asyncio.timeout(5):
            (length,) = struct.unpack("<I", await reader.readexactly(4))
            reply: dict[str, Any] = json.loads(await reader.readexactly(length))
    finally:
        writer.close()
    return reply


@pytest.mark.parametrize("key", [WITH_4028, NO_AMBIENT])
async def test_whatsminer_v3_detected_and_read_back(site, by_profile, key):
    """4028 answering with a 2025 firmware: pyasic picks BTMinerV3 and get_data is the truth."""
    address = by_profile[key]
    miner = await pyasic.get_miner(address)
    assert type(miner).__name__ == "BTMinerM60SVK30"
    assert isinstance(miner, BTMinerV3)
    site.pause()
    try:
        data = await miner.get_data()
        truth = site.truth(address)
    finally:
        site.resume()
    assert hs(data.hashrate) == pytest.approx(truth["hashrate_hs"], rel=1e-6)
    assert hs(data.expected_hashrate) == pytest.approx(truth["expected_hashrate_hs"], rel=1e-6)
    assert data.mac.upper() == truth["mac"].upper()
    assert (data.hostname, data.serial_number) == (truth["hostname"], truth["serial"])
    assert data.fw_ver == FW_VERSION_V3
    assert data.uptime == truth["uptime_s"]
    assert data.wattage == pytest.approx(truth["power_w"], abs=1)
    assert [f.speed for f in data.fans] == [f["rpm"] for f in truth["fans"]]
    if truth["ambient_sensor"]:
        assert data.env_temp == pytest.approx(truth["inlet_temp_c"], abs=0.01)
    else:
        assert data.env_temp is None
    assert len(data.hashboards) == len(truth["boards"])
    for board, expected in zip(data.hashboards, truth["boards"], strict=True):
        assert hs(board.hashrate) == pytest.approx(expected["hashrate_hs"], rel=1e-6)
        assert board.chips == expected["chips"]
        # pyasic 0.79 puts the hottest chip in outlet_temp and the coolest in temp/inlet_temp.
        assert board.outlet_temp == pytest.approx(expected["chip_temp_c"], abs=0.01)
        assert board.inlet_temp == pytest.approx(expected["chip_temp_c"] - 7.0, abs=0.01)
        assert board.chip_temp is None
        assert expected["board_temp_c"] is None


async def test_whatsminer_v3_4028_closed_pyasic_picks_v2_and_reads_nothing(site, by_profile):
    """4028 closed: pyasic finds the model on 4433 but its version check picks v2 (trap c)."""
    address = by_profile[CLOSED_4028]
    miner = await pyasic.get_miner(address)
    assert type(miner).__name__ == "BTMinerM60SVK30"
    assert isinstance(miner, BTMinerV2)
    data = await miner.get_data(include=["hashrate", "hashboards", "mac"])
    assert (data.hashrate, data.mac) == (None, None)
    # ... while 4433 itself answers everything pyasic's v3 client asks for.
    info = await v3_request(address, {"cmd": "get.device.info"})
    assert info["code"] == 0
    assert info["msg"]["system"]["fwversion"] == FW_VERSION_V3
    summary = await v3_request(address, {"cmd": "get.miner.status", "param": "summary"})
    assert summary["msg"]["summary"]["hash-realtime"] > 0


async def test_whatsminer_v3_write_needs_the_salted_token(site, by_profile):
    """The salted token pyasic computes turns the fault light on; a wrong token is refused."""
    address = by_profile[WITH_4028]
    miner = await pyasic.get_miner(address)
    assert await miner.fault_light_on() is True
    data = await miner.get_data(include=["fault_light"])
    assert data.fault_light is True
    refused = await v3_request(
        address,
        {"cmd": "set.system.led", "param": "auto", "ts": 1, "account": "super", "token": "x"},
    )
    assert (refused["code"], refused["msg"]) == (-4, "invalid token")
    assert await miner.fault_light_off() is True
    assert (await miner.get_data(include=["fault_light"])).fault_light is False
