"""LuxOS readings pyasic 0.79 drops: MAC and summary hashrate from replies already fetched."""

from __future__ import annotations

from pyasic.miners.antminer.bmminer.X19.S19 import BMMinerS19jPro
from pyasic.miners.antminer.luxos.X19.S19 import LUXMinerS19XP

from agent.alarms.presets import select_preset
from collectors import luxos
from collectors.pyasic_source import family_of, hashrate_hs, miner_from_hint
from collectors.snapshot import Family

CONFIG = {"CONFIG": [{"MACAddr": "02:a1:0b:1c:2d:3e", "Profile": "default", "RedLed": "off"}]}
SUMMARY = {"SUMMARY": [{"GHS 5s": 141234.56, "Elapsed": 7200}]}


async def test_luxos_adapt_reads_mac_and_hashrate_from_the_fetched_replies():
    """After adapt, pyasic's own data functions give the config MAC and summary GH/s."""
    miner = LUXMinerS19XP("10.0.0.1")
    assert await miner._get_mac(rpc_config=CONFIG) is None  # pyasic 0.79 as released
    luxos.adapt(miner)
    luxos.adapt(miner)  # idempotent: wrapped once
    assert await miner._get_mac(rpc_config=CONFIG) == "02:A1:0B:1C:2D:3E"
    rate = await miner._get_hashrate(rpc_summary=SUMMARY)
    assert hashrate_hs(rate) == 141234.56e9


async def test_luxos_adapt_leaves_unknown_values_absent():
    """No reply, or a reply without the field: None, never 0 or an exception."""
    miner = LUXMinerS19XP("10.0.0.1")
    luxos.adapt(miner)
    assert await miner._get_mac(rpc_config={"CONFIG": [{}]}) is None
    assert await miner._get_hashrate(rpc_summary={"SUMMARY": [{"GHS 5s": "n/a"}]}) is None
    assert luxos.mac_from_config(None) is None
    assert luxos.mac_from_config({"CONFIG": [{"MACAddr": "not a mac"}]}) is None
    assert luxos.ghs_from_summary({"SUMMARY": []}) is None


async def test_luxos_adapt_and_atm_touch_no_other_family():
    """A stock Antminer keeps pyasic's functions, and has no ATM state (no request sent)."""
    miner = BMMinerS19jPro("10.0.0.1")
    before = miner._get_mac
    luxos.adapt(miner)
    assert miner._get_mac == before
    assert not luxos.is_luxos(miner)
    assert await luxos.atm_enabled(miner) is None


def test_luxos_family_hint_and_preset():
    """LuxOS is its own family, hinted as `luxos:`, on the S19 die preset (real chip sensors)."""
    miner = miner_from_hint("10.0.0.1", "luxos:Antminer S19 XP")
    assert type(miner).__name__ == "LUXMinerS19XP"
    assert family_of(miner) is Family.LUXOS
    assert select_preset(Family.LUXOS, "s19xp", reports_chips=True) == "s19-die"
    assert select_preset(Family.LUXOS, "s19xp", reports_chips=False) == "s19"
