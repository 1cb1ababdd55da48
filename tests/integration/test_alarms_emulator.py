"""End to end: emulator → real pyasic (PyasicSource) → alarm engine, on the emulator's clock.

The emulator runs at ``--speedup 60`` and the engine is fed the emulator's simulated time, so
the rules' minutes pass in seconds. Addresses: 127.40.0.0/16 (reserved for the alarm tests).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from agent.alarms.config import ThermalSettings
from agent.alarms.engine import AlarmEngine, Observation
from agent.alarms.model import Severity, TransitionKind
from agent.alarms.testing import Site
from collectors.pyasic_source import PyasicSource
from collectors.snapshot import Tier
from collectors.source import CollectorError, MinerTarget

if TYPE_CHECKING:
    from collections.abc import Callable

    from agent.alarms.model import AlarmTransition

SPEEDUP = 60.0
REAL_DEADLINE_S = 150.0
POLL_PAUSE_S = 0.25  # ≈ 15 simulated seconds between poll rounds at 60×


def heatwave(altitude_m: float) -> dict[str, Any]:
    """One scenario, two altitudes: a 24 °C hall plus a 6 K heatwave (inlet 30 °C)."""
    return {
        "name": f"heatwave-{altitude_m:g}",
        "site": {
            "name": "site",
            "altitude_m": altitude_m,
            "inlet_override_c": 24.0,
            "heatwave_k": 6.0,
        },
        "miners": [{"model": "avalon-15-194"}, {"model": "whatsminer-m30s+ve40"}],
    }


class Loop:
    """Polls every emulated miner through pyasic and feeds the engine on the simulated clock."""

    def __init__(self, handle: Any, altitude_m: float) -> None:
        """An engine for one site at ``altitude_m`` over the emulator ``handle``."""
        self.handle = handle
        self.engine = AlarmEngine(ThermalSettings(), [Site("site", altitude_m)])
        self.source = PyasicSource(timeout_s=20.0)
        self.targets = [MinerTarget(address=m["address"]) for m in handle.miners()]
        self.transitions: list[AlarmTransition] = []
        self.start = handle.clock()

    async def round(self) -> None:
        """Poll every miner once and evaluate at the emulator's time."""
        now = self.handle.clock()
        obs = []
        for target in self.targets:
            try:
                snap = await self.source.fetch(target, Tier.FAST)
            except CollectorError as exc:
                obs.append(Observation(target.address, "site", now, None, exc.reason.value))
            else:
                obs.append(Observation(target.address, "site", now, snap))
        self.transitions += self.engine.evaluate(now, obs)

    async def run(self, *, sim_minutes: float, until: Callable[[], bool] | None = None) -> float:
        """Poll until ``until()`` holds or ``sim_minutes`` simulated minutes passed (real deadline)."""
        deadline = time.monotonic() + REAL_DEADLINE_S
        end = self.handle.clock() + sim_minutes * 60
        while time.monotonic() < deadline:
            await self.round()
            if until is not None and until():
                return float(self.handle.clock())
            if self.handle.clock() >= end:
                return float(self.handle.clock())
            await asyncio.sleep(POLL_PAUSE_S)
        msg = f"no result within {REAL_DEADLINE_S} s real time; active: {self.engine.active()}"
        raise AssertionError(msg)

    def firing(self, address: str, rule: str) -> Any:
        """The active alarm of (miner, rule), or None."""
        return next(
            (a for a in self.engine.active() if a.miner == address and a.rule == rule), None
        )


def address_of(handle: Any, profile: str) -> str:
    """Address of the first miner of an emulator profile."""
    return str(next(m["address"] for m in handle.miners() if m["profile"] == profile))


async def test_alarms_emulator_heatwave_r2_critical_at_3000_m_nothing_at_sea_level(
    emulator_factory,
):
    """Same 30 °C heatwave: R2 CRIT (T_in,max 28.0) on the Avalon at 3,000 m; no alarm at 0 m."""
    high = emulator_factory(heatwave(3000), base_address="127.40.1.1", speedup=SPEEDUP)
    sea = emulator_factory(heatwave(0), base_address="127.40.2.1", speedup=SPEEDUP)
    avalon = address_of(high, "avalon-15-194")
    loop = Loop(high, 3000)
    await loop.run(sim_minutes=15, until=lambda: loop.firing(avalon, "R2") is not None)
    alarm = loop.firing(avalon, "R2")
    assert alarm.severity is Severity.CRITICAL, alarm
    assert alarm.value == pytest.approx(30.0, abs=0.6)  # the inlet pyasic read (env temp)
    assert alarm.threshold == pytest.approx(28.0, abs=0.05)
    assert alarm.sea_level_threshold == 35.0
    raised = [t for t in loop.transitions if t.miner == avalon and t.rule == "R2"]
    assert raised[0].kind is TransitionKind.RAISED
    assert raised[-1].at - loop.start >= 5 * 60  # held its 5 min before raising

    calm = Loop(sea, 0)
    await calm.run(sim_minutes=12)
    assert calm.engine.active() == [], [a.summary for a in calm.engine.active()]
    assert calm.transitions == []
    th = calm.engine.thresholds(address_of(sea, "avalon-15-194"))
    assert th is not None
    assert th.inlet_max_c == 35.0


async def test_alarms_emulator_clogged_filter_fires_r3_degraded_airflow(emulator_factory):
    """A clogged filter at a mild 15 °C inlet saturates fans: R3 WARN tagged degraded_airflow."""
    scenario = {
        "name": "clog-3000",
        "site": {"name": "site", "altitude_m": 3000, "inlet_override_c": 15.0},
        "miners": [{"model": "whatsminer-m30s+ve40"}],
    }
    handle = emulator_factory(scenario, base_address="127.40.3.1", speedup=SPEEDUP)
    (address,) = [m["address"] for m in handle.miners()]
    loop = Loop(handle, 3000)
    await loop.run(sim_minutes=3)
    assert loop.firing(address, "R3") is None, "fans should not be saturated before the fault"
    handle.inject(address, "clogged_filter", factor=0.7)
    await loop.run(sim_minutes=20, until=lambda: loop.firing(address, "R3") is not None)
    alarm = loop.firing(address, "R3")
    assert alarm.severity >= Severity.WARNING
    assert "degraded_airflow" in alarm.tags
    assert loop.firing(address, "R2") is None  # the inlet is fine: this is not a hot-room alarm
