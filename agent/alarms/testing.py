"""Test helpers for the alarm engine: snapshot builders and a simulated-clock driver.

Shipped with the package (as ``structlog.testing`` is) so that other components' tests can feed
the engine realistic observations without a miner::

    drv = Driver(site_altitude_m=3000)
    drv.hold(3, board=62.0, inlet=25.0)       # 3 simulated minutes of 30-s polls
    assert drv.severity("R1") is Severity.WARNING
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.alarms.config import SiteThermal, ThermalSettings
from agent.alarms.engine import AlarmEngine, Observation
from collectors.snapshot import (
    BoardReading,
    Cooling,
    ErrorCode,
    Family,
    FanReading,
    Identity,
    MinerSnapshot,
    PowerSource,
)

if TYPE_CHECKING:
    from agent.alarms.model import AlarmTransition, Severity
    from agent.alarms.store import AlarmStore

MODELS = {
    "s19": (Family.ANTMINER, "S19j Pro"),
    "s21": (Family.ANTMINER, "S21"),
    "whatsminer": (Family.WHATSMINER, "M30S+ VE40"),
    "avalon": (Family.AVALON, "Avalon 1566"),
    "bitaxe": (Family.BITAXE, "Ultra"),
    "s21hydro": (Family.ANTMINER, "S21+ Hydro"),
    "bos-immersion": (Family.BRAIINS, "S19j Pro"),
}


@dataclass(frozen=True, slots=True)
class Site:
    """A site as the engine reads it (``agent.config.SiteConfig`` has the same fields)."""

    name: str
    altitude_m: float
    station_pressure_kpa: float | None = None


def make_snapshot(
    t: float,
    *,
    preset: str = "s21",
    board: float | None = None,
    die: float | None = None,
    inlet: float | None = None,
    rpm: int | None = None,
    fans: int = 4,
    hashrate_ratio: float | None = None,
    boards: int = 3,
    present: int | None = None,
    chips: int | None = None,
    is_mining: bool | None = True,
    uptime_s: int | None = 3600,
    errors: tuple[ErrorCode, ...] | None = None,
    cooling: Cooling | None = None,
    coolant_in: float | None = None,
    coolant_out: float | None = None,
    power: float | None = None,
    power_source: PowerSource = PowerSource.MEASURED,
) -> MinerSnapshot:
    """A snapshot with ``boards`` boards (the first ``present`` reporting) and equal fans."""
    family, model = MODELS[preset]
    present = boards if present is None else present
    expected = 100e12
    readings = tuple(
        BoardReading(
            index=i,
            hashrate_hs=None if i >= present else expected / boards,
            board_temp_c=None if i >= present else board,
            chip_temp_c=None if i >= present else die,
            chips=None if i >= present else chips,
            expected_chips=None if chips is None else 126,
            missing=i >= present,
        )
        for i in range(boards)
    )
    return MinerSnapshot(
        address="127.40.0.1",
        collected_at=t,
        identity=Identity(family=family, model=model),
        hashrate_hs=None if hashrate_ratio is None else expected * hashrate_ratio,
        expected_hashrate_hs=expected,
        boards=readings,
        expected_boards=boards,
        fans=tuple(FanReading(index=i, rpm=rpm) for i in range(fans if rpm is not None else 0)),
        inlet_temp_c=inlet,
        cooling=cooling,
        coolant_inlet_c=coolant_in,
        coolant_outlet_c=coolant_out,
        power_w=power,
        power_source=None if power is None else power_source,
        uptime_s=uptime_s,
        is_mining=is_mining,
        errors=errors,
    )


@dataclass
class Driver:
    """An engine for one miner on one site, fed 30-s polls on a simulated clock."""

    site_altitude_m: float = 0.0
    station_pressure_kpa: float | None = None
    preset: str = "s21"
    settings: ThermalSettings | None = None
    relative_humidity_pct: float | None = None
    store: AlarmStore | None = None
    step_s: float = 30.0
    miner: str = "m1"
    t: float = 1_000_000.0
    transitions: list[AlarmTransition] = field(default_factory=list)
    engine: AlarmEngine = field(init=False)

    def __post_init__(self) -> None:
        """Build the engine for one site named ``site``."""
        settings = self.settings or ThermalSettings(
            sites=(SiteThermal(name="site", relative_humidity_pct=self.relative_humidity_pct),)
        )
        sites = [Site("site", self.site_altitude_m, self.station_pressure_kpa)]
        self.engine = AlarmEngine(settings, sites, store=self.store)

    def poll(self, **fields: object) -> list[AlarmTransition]:
        """One poll at the current time (``offline=True`` for a failed poll), then step on."""
        offline = bool(fields.pop("offline", False))
        snap = None if offline else make_snapshot(self.t, preset=self.preset, **fields)  # type: ignore[arg-type]
        obs = Observation(
            self.miner, "site", self.t, snap, failure_reason="timeout" if offline else None
        )
        out = self.engine.evaluate(self.t, [obs])
        self.transitions.extend(out)
        self.t += self.step_s
        return out

    def hold(self, minutes: float, **fields: object) -> list[AlarmTransition]:
        """Poll with the same values for ``minutes`` (both ends included)."""
        out: list[AlarmTransition] = []
        n = round(minutes * 60 / self.step_s) + 1
        for _ in range(n):
            out.extend(self.poll(**fields))
        return out

    def severity(self, rule: str, miner: str | None = "m1") -> Severity | None:
        """The firing severity of ``rule`` (None when not firing)."""
        for alarm in self.engine.active():
            if alarm.rule == rule and alarm.miner == miner:
                return alarm.severity
        return None

    def tags(self, rule: str) -> tuple[str, ...]:
        """Tags of the firing alarm of ``rule``."""
        for alarm in self.engine.active():
            if alarm.rule == rule and alarm.miner == self.miner:
                return alarm.tags
        return ()
