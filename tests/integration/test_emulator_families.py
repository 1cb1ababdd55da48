"""Each emulated firmware family is detected by real pyasic and read back as the emulator says."""

from __future__ import annotations

import pyasic
import pytest

from collectors.emulator.profiles import PROFILES, WHATSMINER_V3_FAMILIES

BASE = "127.20.1.1"
# Whatsminer API v3 differs in board temperatures: tests/integration/test_emulator_whatsminer_v3.py.
FAMILY_KEYS = sorted(k for k, p in PROFILES.items() if p.family not in WHATSMINER_V3_FAMILIES)
SCENARIO = {
    "name": "families",
    "site": {"name": "lab", "altitude_m": 2275, "ambient": {"mean_c": 18, "amplitude_k": 4}},
    "miners": [{"model": key} for key in FAMILY_KEYS],
}


def hs(rate) -> float | None:
    """A pyasic hashrate in H/s."""
    if rate is None:
        return None
    return float(rate.rate) * float(rate.unit.value)


@pytest.fixture(scope="module")
def site(module_emulator_factory):
    """One emulator with one miner per family for the whole module."""
    return module_emulator_factory(SCENARIO, base_address=BASE)


@pytest.fixture(scope="module")
def by_profile(site):
    """Profile key -> address."""
    return {m["profile"]: m["address"] for m in site.miners()}


@pytest.mark.parametrize("key", FAMILY_KEYS)
async def test_emulator_family_detected_and_read_back(site, by_profile, key):
    """pyasic.get_miner picks the right class and get_data matches the emulator's truth."""
    address = by_profile[key]
    miner = await pyasic.get_miner(address)
    assert type(miner).__name__ == PROFILES[key].pyasic_class
    site.pause()
    try:
        data = await miner.get_data()
        truth = site.truth(address)
    finally:
        site.resume()

    assert hs(data.hashrate) == pytest.approx(truth["hashrate_hs"], rel=1e-6)
    assert hs(data.expected_hashrate) == pytest.approx(truth["expected_hashrate_hs"], rel=1e-3)
    if truth["family"] == "luxos":
        # pyasic 0.79's LUXMiner._get_mac returns None before reading `config` (the agent
        # reads MACAddr itself: collectors/luxos.py); it reads no hostname from LuxOS.
        assert data.mac is None
        assert data.hostname is None
    else:
        assert data.mac.upper() == truth["mac"].upper()
        # Avalon's cgminer API has no hostname; pyasic leaves it empty.
        assert data.hostname == (None if truth["family"] == "avalon" else truth["hostname"])
    assert data.uptime == truth["uptime_s"]
    if truth["cooling"] == "immersion":
        # Braiins OS+ immersion mode: fans at 0 rpm, which protobuf leaves off the wire
        # (proto3 default), so pyasic reads no fan at all.
        assert all(f["rpm"] == 0 for f in truth["fans"])
        assert data.fans == []
    else:
        assert [f.speed for f in data.fans] == [f["rpm"] for f in truth["fans"]]
    assert len(data.hashboards) == len(truth["boards"])
    for board, expected in zip(data.hashboards, truth["boards"], strict=True):
        assert hs(board.hashrate) == pytest.approx(expected["hashrate_hs"], rel=1e-6)
        assert board.temp == pytest.approx(expected["board_temp_c"], abs=0.5)
        assert board.chip_temp == pytest.approx(expected["chip_temp_c"], abs=0.5)
        assert board.chips == expected["chips"]
        assert board.missing is False
        if truth["family"] == "antminer":
            # Stock S21+ Hydro: pyasic reports the coolant inlet/outlet as board inlet/outlet
            # (None on the other stock models).
            assert board.inlet_temp == expected["inlet_temp_c"]
            assert board.outlet_temp == expected["outlet_temp_c"]
    if truth["cooling"] == "hydro":
        assert data.fans == []  # hydro models have no fans
    if truth["family"] in {"bitaxe", "whatsminer", "avalon", "vnish", "braiins", "luxos"}:
        assert data.wattage == pytest.approx(truth["power_w"], abs=1)
    else:
        assert data.wattage is None
