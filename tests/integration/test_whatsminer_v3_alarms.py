"""Whatsminer API v3 end to end: emulator → real pyasic (PyasicSource) → alarm engine.

At 3,000 m in a 40 °C hall: the v3 Whatsminer without an ambient sensor (hot chips, which
pyasic also reports as board inlet) raises no R2; the one with its 40 °C ambient sensor, and
4028 closed (the agent reads 4433 itself), is read in full and raises R2 CRIT. The emulator
runs at 60× and the engine is fed the emulator's clock. Addresses: 127.164.0.0/16.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from agent.alarms.config import ThermalSettings
from agent.alarms.engine import AlarmEngine, Observation
from agent.alarms.model import Severity
from agent.alarms.testing import Site
from collectors.emulator.families.whatsminer_v3 import FW_VERSION_V3
from collectors.pyasic_source import PyasicSource
from collectors.snapshot import Family, MinerSnapshot, Tier
from collectors.source import CollectorError, MinerTarget

SPEEDUP = 60.0
REAL_DEADLINE_S = 60.0
POLL_PAUSE_S = 0.25  # ≈ 15 simulated seconds between rounds
NO_AMBIENT = "whatsminer-m60s-v3-noenv"
CLOSED_4028 = "whatsminer-m60s-v3-4433"
SCENARIO = {
    "name": "v3-hot-hall",
    "site": {"name": "site", "altitude_m": 3000, "inlet_override_c": 40.0},
    "miners": [{"model": NO_AMBIENT}, {"model": CLOSED_4028}],
}


@pytest.fixture(scope="module")
def hall(module_emulator_factory):
    """The 40 °C hall at 3,000 m, at 60×."""
    return module_emulator_factory(SCENARIO, base_address="127.164.0.1", speedup=SPEEDUP)


def address_of(handle: Any, profile: str) -> str:
    """Address of the miner of an emulator profile."""
    return str(next(m["address"] for m in handle.miners() if m["profile"] == profile))


async def test_whatsminer_v3_no_ambient_no_r2_while_40_c_ambient_gets_r2_crit(hall):
    """No ambient sensor: hot chips never reach R2; 40 °C ambient, 4028 closed: R2 CRIT."""
    quiet, hot = address_of(hall, NO_AMBIENT), address_of(hall, CLOSED_4028)
    engine = AlarmEngine(ThermalSettings(), [Site("site", 3000.0)])
    source = PyasicSource(timeout_s=10.0)
    last: dict[str, MinerSnapshot] = {}
    r2: dict[str | None, Any] = {}
    deadline = time.monotonic() + REAL_DEADLINE_S
    while time.monotonic() < deadline:
        now = hall.clock()
        obs = []
        for address in (quiet, hot):
            try:
                snap = await source.fetch(MinerTarget(address=address), Tier.FAST)
            except CollectorError as exc:
                obs.append(Observation(address, "site", now, None, exc.reason.value))
            else:
                last[address] = snap
                obs.append(Observation(address, "site", now, snap))
        engine.evaluate(now, obs)
        r2 = {a.miner: a for a in engine.active() if a.rule == "R2"}
        if hot in r2:
            break
        await asyncio.sleep(POLL_PAUSE_S)
    assert hot in r2, f"no R2 on the 40 °C miner; active: {engine.active()}"
    assert r2[hot].severity is Severity.CRITICAL
    assert r2[hot].value == pytest.approx(40.0, abs=0.1)
    assert quiet not in r2
    chips = [b.chip_temp_c for b in last[quiet].boards]
    assert all(c is not None and c >= 70.0 for c in chips), chips
    assert last[quiet].inlet_temp_c is None
    assert all(b.inlet_temp_c is None and b.board_temp_c is None for b in last[quiet].boards)
    # The 4028-closed miner was read through 4433 in full.
    full = last[hot]
    assert full.hashrate_hs is not None
    assert full.hashrate_hs > 1e14
    assert full.power_w is not None
    assert [f.rpm is not None for f in full.fans] == [True, True]
    assert len(full.boards) == 3
    assert all(b.chip_temp_c is not None for b in full.boards)


async def test_whatsminer_v3_4028_closed_slow_tier_reads_identity_from_4433(hall):
    """4028 closed: the slow tier has MAC, serial, firmware 2025 and error 600 from 4433."""
    hot = address_of(hall, CLOSED_4028)
    source = PyasicSource(timeout_s=10.0)
    snap = await source.fetch(MinerTarget(address=hot), Tier.SLOW)
    truth = hall.truth(hot)
    assert snap.identity.family is Family.WHATSMINER
    assert snap.identity.mac == truth["mac"].upper()
    assert (snap.identity.serial, snap.identity.hostname) == (truth["serial"], truth["hostname"])
    assert snap.identity.firmware_version == FW_VERSION_V3
    assert snap.errors is not None
    assert [(e.code, e.message) for e in snap.errors] == [
        (600, "Environment temperature is too high.")
    ]
