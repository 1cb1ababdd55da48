"""Scale: one emulator process serves 2,000 miners on their own loopback addresses."""

from __future__ import annotations

import pyasic


async def test_emulator_serves_two_thousand_miners(emulator_factory):
    """2,000 miners start in one process; first, middle and last are detected by pyasic."""
    handle = emulator_factory("golmud-2800", base_address="127.20.16.1", miners=2000)
    inventory = handle.miners()
    assert handle.count == 2000
    assert len(inventory) == 2000
    assert len({m["address"] for m in inventory}) == 2000
    assert len({m["mac"] for m in inventory}) == 2000
    for entry in (inventory[0], inventory[999], inventory[-1]):
        miner = await pyasic.get_miner(entry["address"])
        assert type(miner).__name__ == entry["pyasic_class"]
        data = await miner.get_data(include=["hashrate", "uptime"])
        assert data.hashrate is not None
