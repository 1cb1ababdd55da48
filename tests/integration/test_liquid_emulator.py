"""End to end for liquid cooling: emulator → real pyasic (PyasicSource) → fleet state → alarms.

The emulator runs at ``--speedup 60`` and the engine is fed the emulator's simulated time, so
the rules' minutes pass in seconds. Addresses: 127.150.0.0/16 (this module only).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from agent.alarms.config import SiteThermal, ThermalSettings, ThresholdOverride
from agent.alarms.engine import AlarmEngine, Observation
from agent.alarms.model import Severity
from agent.alarms.testing import Site
from agent.fleet_state import FleetState
from collectors.pyasic_source import PyasicSource
from collectors.snapshot import Cooling, Tier
from collectors.source import CollectorError, MinerTarget

SPEEDUP = 60.0
REAL_DEADLINE_S = 60.0
POLL_PAUSE_S = 0.25  # ≈ 15 simulated seconds between poll rounds at 60×
#: Coolant limits as an operator copies them from a spec sheet (the agent ships none).
LIMITS = ThresholdOverride(coolant_inlet_max_c=50.0, coolant_delta_max_k=10.0)


def scenario(altitude_m: float, inlet_c: float, *models: str) -> dict[str, Any]:
    """One site at ``altitude_m`` with a fixed air temperature and one miner per model."""
    return {
        "name": f"liquid-{altitude_m:g}",
        "site": {"name": "site", "altitude_m": altitude_m, "inlet_override_c": inlet_c},
        "miners": [{"model": m} for m in models],
    }


class Loop:
    """Polls every miner (slow tier once, then fast) and feeds the engine on the sim clock."""

    def __init__(self, handle: Any, altitude_m: float) -> None:
        """An engine with coolant limits configured, over the emulator ``handle``."""
        self.handle = handle
        settings = ThermalSettings(sites=(SiteThermal(name="site"),), overrides=(LIMITS,))
        self.engine = AlarmEngine(settings, [Site("site", altitude_m)])
        self.source = PyasicSource(timeout_s=20.0)
        self.fleet = FleetState()
        self.targets = [MinerTarget(address=m["address"]) for m in handle.miners()]
        for target in self.targets:
            self.fleet.add("site", target, now=handle.clock())
        self.rounds = 0

    async def round(self) -> None:
        """Poll every miner once (the first round also on the slow tier) and evaluate."""
        now = self.handle.clock()
        tiers = (Tier.SLOW, Tier.FAST) if self.rounds == 0 else (Tier.FAST,)
        obs = []
        for target in self.targets:
            try:
                for tier in tiers:
                    snap = await self.source.fetch(target, tier)
                    self.fleet.record_success(target.address, snap, 0.1, now=now)
            except CollectorError as exc:
                obs.append(Observation(target.address, "site", now, None, exc.reason.value))
                continue
            record = self.fleet.get(target.address)
            assert record is not None
            obs.append(Observation(target.address, "site", now, record.snapshot))
        self.engine.evaluate(now, obs)
        self.rounds += 1

    async def run(self, *, sim_minutes: float, until: Any = None) -> None:
        """Poll until ``until()`` holds or ``sim_minutes`` simulated minutes passed."""
        deadline = time.monotonic() + REAL_DEADLINE_S
        end = self.handle.clock() + sim_minutes * 60
        while time.monotonic() < deadline:
            await self.round()
            if (until is not None and until()) or self.handle.clock() >= end:
                return
            await asyncio.sleep(POLL_PAUSE_S)
        msg = f"no result within {REAL_DEADLINE_S} s; active: {self.engine.active()}"
        raise AssertionError(msg)

    def miner_alarms(self, address: str) -> list[Any]:
        """The alarms firing for one miner."""
        return [a for a in self.engine.active() if a.miner == address]


def address_of(handle: Any, profile: str) -> str:
    """Address of the first miner of an emulator profile."""
    return str(next(m["address"] for m in handle.miners() if m["profile"] == profile))


async def test_liquid_emulator_hydro_at_4000_m_chip_84_and_immersion_raise_nothing(
    emulator_factory,
):
    """S21+ Hydro at 4,000 m, hottest chip 84 °C: no alarm; immersion BOS+ at 0 rpm: no R3."""
    handle = emulator_factory(
        scenario(4000, 30.5, "antminer-s21plus-hydro", "braiins-s19jpro-immersion"),
        base_address="127.150.1.1",
        speedup=SPEEDUP,
    )
    hydro = address_of(handle, "antminer-s21plus-hydro")
    tank = address_of(handle, "braiins-s19jpro-immersion")
    loop = Loop(handle, 4000)
    await loop.run(sim_minutes=6)

    truth = handle.truth(hydro)
    hottest = max(b["chip_temp_c"] for b in truth["boards"])
    assert 83.0 <= hottest <= 84.0, truth["boards"]  # air-cooled S21 here would warn (82.5)
    record = loop.fleet.get(hydro)
    assert record is not None
    assert record.snapshot is not None
    snap = record.snapshot
    assert snap.cooling is Cooling.HYDRO
    assert snap.inlet_temp_c is None  # coolant is never air (trap b)
    assert snap.coolant_inlet_c == truth["coolant_inlet_c"]
    assert snap.coolant_outlet_c == truth["coolant_outlet_c"]
    assert loop.miner_alarms(hydro) == [], [a.summary for a in loop.miner_alarms(hydro)]
    th = loop.engine.thresholds(hydro)
    assert th is not None
    assert th.warning_c == pytest.approx(85.0, abs=0.05)

    tank_record = loop.fleet.get(tank)
    assert tank_record is not None
    assert tank_record.snapshot is not None
    assert tank_record.snapshot.cooling is Cooling.IMMERSION  # from the BOS+ fan mode
    assert all(f["rpm"] == 0 for f in handle.truth(tank)["fans"])
    assert [a.rule for a in loop.miner_alarms(tank)] == []


async def test_liquid_emulator_rising_delta_t_fires_r11_before_firmware_trips(emulator_factory):
    """Coolant flow failing step by step: R11 CRIT (ΔT ≥ 10 K) while the firmware still hashes.

    The emulated S21+ Hydro firmware stops at ΔT 12 K; the agent's ΔT_max is 10 K.
    """
    handle = emulator_factory(
        scenario(4000, 5.0, "antminer-s21plus-hydro"), base_address="127.150.2.1", speedup=SPEEDUP
    )
    (address,) = handle.addresses()
    loop = Loop(handle, 4000)
    await loop.run(sim_minutes=2)
    assert loop.miner_alarms(address) == []

    def r11() -> Severity | None:
        found = [a for a in loop.miner_alarms(address) if a.rule == "R11"]
        return found[0].severity if found else None

    crit_while_mining = False
    for factor in (0.7, 0.55, 0.47, 0.43, 0.40, 0.37):  # ΔT ≈ 7.1, 9.0, 10.5, 11.5, 12.4 K
        handle.clear(address, "coolant_flow")
        handle.inject(address, "coolant_flow", factor=factor)
        await loop.run(sim_minutes=1.5, until=lambda: r11() is Severity.CRITICAL)
        if r11() is Severity.CRITICAL:
            crit_while_mining = handle.truth(address)["is_mining"]
            break
    assert crit_while_mining, f"R11 {r11()}; truth {handle.truth(address)['is_mining']}"
    alarm = next(a for a in loop.miner_alarms(address) if a.rule == "R11")
    assert alarm.value is not None
    assert 10.0 <= alarm.value < 12.0

    handle.clear(address, "coolant_flow")
    handle.inject(address, "coolant_flow", factor=0.37)  # now the firmware trips
    await loop.run(sim_minutes=2, until=lambda: not handle.truth(address)["is_mining"])
    assert handle.truth(address)["is_mining"] is False
