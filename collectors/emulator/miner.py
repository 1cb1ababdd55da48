"""One emulated miner: identity, physics state, active faults, render cache and its truth.

The render cache holds each reply rendered for the current state ``version``; the fleet bumps
the version once per physics tick (or fault change), so replies are rendered at most once per
tick however often they are requested.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from collectors.emulator.physics import AirflowFaults, MinerPhysics, SiteAir
from collectors.emulator.pools import PoolState
from collectors.emulator.profiles import (
    PROFILES,
    WHATSMINER_V3_FAMILIES,
    FirmwareFamily,
    ModelProfile,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from collectors.emulator.scenario import FaultSpec

T = TypeVar("T")

PROTOCOL_FAULTS = (
    "hang",
    "reset",
    "drip",
    "truncated",
    "garbage",
    "oversized",
    "endless",
    "gzip_bomb",
)
"""Faults on the wire, in order of precedence; ``slow`` delays any of them."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Stable identity of an emulated miner."""

    address: str
    mac: str
    serial: str
    hostname: str
    site: str


def make_identity(address: str, index: int, seed: int, hostname: str, site: str) -> Identity:
    """Deterministic MAC and serial for miner ``index`` under ``seed`` (locally administered)."""
    rng = random.Random(seed * 1_000_003 + index)
    tail = [rng.randrange(256) for _ in range(4)]
    mac = "02:A1:" + ":".join(f"{b:02X}" for b in tail)
    serial = "AW" + "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(14))
    return Identity(address=address, mac=mac, serial=serial, hostname=hostname, site=site)


class EmulatedMiner:
    """A miner: its profile, physics, faults and cached replies."""

    def __init__(
        self,
        identity: Identity,
        profile: ModelProfile,
        *,
        inlet_c: float,
        now: float,
        inlet_offset_k: float = 0.0,
        rng_seed: int = 0,
    ) -> None:
        """Create a miner that booted at ``now`` with the given inlet temperature."""
        self.identity = identity
        self.true_identity = identity  # what ``identity`` faults are cleared back to
        self.profile = profile
        self.inlet_offset_k = inlet_offset_k
        self.physics = MinerPhysics(profile=profile, inlet_c=inlet_c, boot_time=now)
        self.faults: dict[str, FaultSpec] = {}
        self.version = 0
        self.sim_time = now
        self.air: SiteAir | None = None
        self.rng = random.Random(rng_seed)
        self.pools = PoolState(f"altiwatch.{identity.hostname}", self.physics.boot_time)
        self._cache: dict[str, Any] = {}
        self._cache_version = -1

    @property
    def address(self) -> str:
        """Loopback address the miner listens on."""
        return self.identity.address

    @property
    def family(self) -> FirmwareFamily:
        """Firmware family of the current profile."""
        return self.profile.family

    def bump(self) -> None:
        """State changed: cached replies are stale."""
        self.version += 1

    def cached(self, key: str, render: Callable[[], T]) -> T:
        """Return ``render()`` cached for the current state version."""
        if self._cache_version != self.version:
            self._cache.clear()
            self._cache_version = self.version
        try:
            value: T = self._cache[key]
        except KeyError:
            value = render()
            self._cache[key] = value
        return value

    # ---- faults ----------------------------------------------------------------------

    def apply_faults(self) -> None:
        """Recompute the physical fault state from the active fault list."""
        failed = frozenset(
            f.fan if f.fan is not None else 0 for k, f in self.faults.items() if k == "fan_failure"
        )
        clog = self.faults.get("clogged_filter")
        lost = self.faults.get("board_lost")
        flow = self.faults.get("coolant_flow")
        planted = self.faults.get("identity")
        self.identity = self.true_identity
        if planted is not None:
            self.identity = replace(
                self.true_identity,
                **{
                    name: value
                    for name in ("mac", "serial", "hostname")
                    if (value := getattr(planted, name)) is not None
                },
            )
        self.physics.faults = AirflowFaults(
            failed_fans=failed,
            clog_factor=(clog.factor or 0.5) if clog is not None else 1.0,
            lost_boards=frozenset({lost.board or 0}) if lost is not None else frozenset(),
            flow_factor=(flow.factor or 0.5) if flow is not None else 1.0,
        )
        self.bump()

    def set_profile(self, key: str) -> None:
        """Replace the hardware/firmware (model_change): same address, new model."""
        profile = PROFILES[key]
        self.profile = profile
        self.physics = MinerPhysics(
            profile=profile, inlet_c=self.physics.inlet_c, boot_time=self.sim_time
        )
        self.apply_faults()

    def wire_fault(self, port: str) -> tuple[FaultSpec | None, float]:
        """The protocol fault for ``port`` ("rpc", "web", "grpc") and the extra delay (s)."""
        delay = 0.0
        slow = self.faults.get("slow")
        if slow is not None and slow.port in {"all", port}:
            delay = slow.delay_s if slow.delay_s is not None else 5.0
        for kind in PROTOCOL_FAULTS:
            fault = self.faults.get(kind)
            if fault is not None and fault.port in {"all", port}:
                return fault, delay
        return None, delay

    # ---- readings --------------------------------------------------------------------

    def uptime_s(self) -> int:
        """Seconds since boot at the current simulated time."""
        return self.physics.uptime_s(self.sim_time)

    def power_w(self) -> float:
        """Wall power in watts."""
        assert self.air is not None
        return self.physics.power_w(self.air)

    def truth(self) -> dict[str, Any]:
        """What the firmware reports right now, in base units (the control API's truth)."""
        phys = self.physics
        temps = phys.board_temps()
        rates = phys.board_hashrates_hs()
        coolant = phys.coolant_c()
        on_boards = coolant if self.profile.coolant_sensors else None
        boards = []
        for i in range(self.profile.boards):
            t = temps[i]
            if t is not None and self.family is FirmwareFamily.AVALON:
                # Avalon reports per-board chip max (MTmax) only; pyasic reads it as both.
                t = (t[0], t[2], t[2])
            v3 = self.family in WHATSMINER_V3_FAMILIES  # per board: chips only, no PCB sensor
            boards.append(
                {
                    "index": i,
                    "hashrate_hs": rates[i],
                    "board_temp_c": t[1] if t is not None and not v3 else None,
                    "chip_temp_c": t[2] if t is not None else None,
                    "chips": self.profile.chips_per_board if t is not None else None,
                    "expected_chips": self.profile.chips_per_board,
                    "missing": t is None,
                    # What the firmware reports as the board's inlet/outlet (coolant on hydro).
                    "inlet_temp_c": on_boards[0] if on_boards and t is not None else None,
                    "outlet_temp_c": on_boards[1] if on_boards and t is not None else None,
                }
            )
        return {
            "address": self.address,
            "family": self.family.value,
            "model": self.profile.model,
            "profile": self.profile.key,
            "pyasic_class": self.profile.pyasic_class,
            "mac": self.identity.mac,
            "serial": self.identity.serial,
            "hostname": self.identity.hostname,
            "site": self.identity.site,
            "hashrate_hs": phys.hashrate_hs(),
            "expected_hashrate_hs": phys.expected_hashrate_hs(),
            "boards": boards,
            "fans": [{"index": i, "rpm": r} for i, r in enumerate(phys.fan_rpms())],
            "fan_duty_ratio": round(phys.duty, 4),
            "inlet_temp_c": round(phys.inlet_c, 2),
            "ambient_sensor": self.profile.ambient_sensor,
            "cooling": self.profile.cooling,
            "coolant_inlet_c": None if coolant is None else coolant[0],
            "coolant_outlet_c": None if coolant is None else coolant[1],
            "coolant_flow_lpm": round(phys.coolant_flow_lpm, 3) if self.profile.liquid else None,
            "power_w": self.power_w(),
            "uptime_s": self.uptime_s(),
            "is_mining": phys.running,
            "throttle_ratio": round(phys.load, 4),
            "pools": self.pools.view(self.faults),
            "faults": [f.model_dump(exclude_none=True) for f in self.faults.values()],
            "sim_time": self.sim_time,
        }
