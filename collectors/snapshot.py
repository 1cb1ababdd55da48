"""Our own frozen view of one miner at one poll, decoupled from pyasic's MinerData.

Units are base units (hashes per second, °C, rpm, watts, seconds). Every value a miner did
not report is ``None``; nothing unknown is ever 0. The agent, the alarm engine, the metrics
renderer and the MQTT payloads read only these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum


class Family(StrEnum):
    """Firmware family, as detected by pyasic."""

    ANTMINER = "antminer"
    WHATSMINER = "whatsminer"
    AVALON = "avalon"
    BITAXE = "bitaxe"
    BRAIINS = "braiins"
    VNISH = "vnish"
    LUXOS = "luxos"
    UNKNOWN = "unknown"


class PowerSource(StrEnum):
    """Where a power figure came from."""

    MEASURED = "measured"
    ESTIMATED = "estimated"


class Cooling(StrEnum):
    """How a miner is cooled (altitude-thermal.md §7): from its model, fan mode or config."""

    AIR = "air"
    HYDRO = "hydro"
    IMMERSION = "immersion"

    @property
    def liquid(self) -> bool:
        """Hydro and immersion: no air on the miner side, no δ derating, no fan rule."""
        return self is not Cooling.AIR


class Tier(StrEnum):
    """Polling tier: fast = telemetry every interval, slow = identity/pools/errors."""

    FAST = "fast"
    SLOW = "slow"


@dataclass(frozen=True, slots=True)
class BoardReading:
    """One hashboard: index as the firmware numbers it, temperatures in °C."""

    index: int
    hashrate_hs: float | None = None
    board_temp_c: float | None = None
    chip_temp_c: float | None = None
    inlet_temp_c: float | None = None
    outlet_temp_c: float | None = None
    chips: int | None = None
    expected_chips: int | None = None
    missing: bool = False


@dataclass(frozen=True, slots=True)
class FanReading:
    """One fan's speed."""

    index: int
    rpm: int | None = None


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """A firmware error as reported (code may be absent; message always present)."""

    message: str
    code: int | None = None


@dataclass(frozen=True, slots=True)
class PoolInfo:
    """A configured pool and its share counters (slow tier). Never carries a password.

    ``index`` is the pool's position in the miner's list (0 = first priority). ``url`` has no
    user info, query or fragment (`collectors.pools.public_url`); None when the firmware gave
    none pyasic could read. ``user`` is the pool user (the worker name). Counters are the
    firmware's own since its last restart (a reboot resets them); any the firmware does not
    report are None, never 0: ``stale`` is read from the raw reply (pyasic does not parse it),
    Braiins OS+ has no get/remote failure counts.
    """

    url: str | None
    user: str | None = None
    alive: bool | None = None
    active: bool | None = None
    index: int = 0
    accepted: int | None = None
    rejected: int | None = None
    stale: int | None = None
    get_failures: int | None = None
    remote_failures: int | None = None


@dataclass(frozen=True, slots=True)
class WorkerReading:
    """What a pool's own API says about one worker (pool side), for a future `PoolSource`.

    Pool-side hashrate is what the site is paid for: compared with the miners' own hashrate it
    shows what share health alone cannot (a pool crediting less than the miners hash).
    """

    pool_url: str
    """The pool, as in `PoolInfo.url` (no credentials)."""
    worker: str
    collected_at: float
    hashrate_hs: float | None = None
    accepted: int | None = None
    rejected: int | None = None
    stale: int | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """Slow-tier identity of a miner; any field may be unknown."""

    family: Family = Family.UNKNOWN
    make: str | None = None
    model: str | None = None
    firmware: str | None = None
    firmware_version: str | None = None
    mac: str | None = None
    serial: str | None = None
    hostname: str | None = None


@dataclass(frozen=True, slots=True)
class MinerSnapshot:
    """Everything known about a miner after one successful poll.

    ``collected_at`` is a UNIX timestamp (seconds). Tier-specific data that a poll did not
    fetch stays ``None`` (telemetry) or empty (pools/errors) and is merged by the fleet state.
    """

    address: str
    collected_at: float
    tier: Tier = Tier.FAST
    identity: Identity = field(default_factory=Identity)
    hashrate_hs: float | None = None
    expected_hashrate_hs: float | None = None
    boards: tuple[BoardReading, ...] = ()
    expected_boards: int | None = None
    fans: tuple[FanReading, ...] = ()
    expected_fans: int | None = None
    inlet_temp_c: float | None = None
    """Air inlet from a real ambient (environment) sensor only; never coolant or chip."""
    cooling: Cooling | None = None
    """None: not known from this poll (the rules then treat the miner as air-cooled)."""
    coolant_inlet_c: float | None = None
    coolant_outlet_c: float | None = None
    power_w: float | None = None
    power_source: PowerSource | None = None
    power_limit_w: float | None = None
    uptime_s: int | None = None
    is_mining: bool | None = None
    fault_light: bool | None = None
    atm_enabled: bool | None = None
    """LuxOS Advanced Thermal Management on (slow tier); None for firmware without it."""
    errors: tuple[ErrorCode, ...] | None = None
    pools: tuple[PoolInfo, ...] | None = None

    @property
    def max_chip_temp_c(self) -> float | None:
        """Hottest chip temperature over all boards, or None if no board reports one."""
        temps = [b.chip_temp_c for b in self.boards if b.chip_temp_c is not None]
        return max(temps) if temps else None

    @property
    def max_board_temp_c(self) -> float | None:
        """Hottest board (PCB) temperature, or None."""
        temps = [b.board_temp_c for b in self.boards if b.board_temp_c is not None]
        return max(temps) if temps else None

    def with_identity(self, identity: Identity) -> MinerSnapshot:
        """Return a copy carrying ``identity`` (used to merge the slow tier into the fast)."""
        return replace(self, identity=identity)
