"""The emulated site: simulated clock, site air, every miner's listeners and the physics tick.

``Fleet`` owns the listening sockets (one loopback address per miner, real ports), advances the
physics of every miner once per tick, and applies faults. Replies are rendered lazily and cached
per tick by each miner, so request cost does not depend on fleet size.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpclib.server
import structlog

from collectors.emulator.families.antminer import AntminerFirmware
from collectors.emulator.families.avalon import AvalonFirmware
from collectors.emulator.families.bitaxe import BitaxeFirmware
from collectors.emulator.families.braiins import BraiinsFirmware, GrpcHandlers
from collectors.emulator.families.luxos import LuxOSFirmware
from collectors.emulator.families.unsupported import UnsupportedFirmware
from collectors.emulator.families.vnish import VNishFirmware
from collectors.emulator.families.whatsminer import WhatsminerFirmware
from collectors.emulator.families.whatsminer_v3 import (
    WhatsminerV3Firmware,
    WhatsminerV3With4028Firmware,
)
from collectors.emulator.miner import EmulatedMiner, make_identity
from collectors.emulator.physics import SiteAir, diurnal_inlet_c
from collectors.emulator.profiles import PROFILES, FirmwareFamily
from collectors.emulator.tls import server_context
from collectors.emulator.wire import (
    ConnectionRegistry,
    FramedRpcProtocol,
    HttpProtocol,
    RpcProtocol,
)

if TYPE_CHECKING:
    from collectors.emulator.families.base import Firmware
    from collectors.emulator.scenario import FaultSpec, Scenario

log = structlog.get_logger("collectors.emulator")

TICK_S = 1.0
"""Real seconds between physics ticks."""
RPC_PORT = 4028
WEB_PORT = 80
TLS_PORT = 443
GRPC_PORT = 50051
V3_PORT = 4433
PERSISTENT_FAULTS = frozenset(
    {
        "fan_failure",
        "clogged_filter",
        "board_lost",
        "offline",
        "hang",
        "slow",
        "garbage",
        "truncated",
        "oversized",
        "heatwave",
        "drip",
        "reset",
        "model_change",
        "gzip_bomb",
        "endless",
        "identity",
        "pool_latency",
        "pool_down",
        "pool_hijack",
        "unsupported_firmware",
        "coolant_flow",
    }
)


def firmwares() -> dict[FirmwareFamily, Firmware]:
    """One stateless firmware renderer per family."""
    table: dict[FirmwareFamily, Firmware] = {
        FirmwareFamily.ANTMINER: AntminerFirmware(),
        FirmwareFamily.BITAXE: BitaxeFirmware(),
        FirmwareFamily.WHATSMINER: WhatsminerFirmware(),
        FirmwareFamily.AVALON: AvalonFirmware(),
        FirmwareFamily.VNISH: VNishFirmware(),
        FirmwareFamily.BRAIINS: BraiinsFirmware(),
        FirmwareFamily.LUXOS: LuxOSFirmware(),
        FirmwareFamily.WHATSMINER_V3: WhatsminerV3Firmware(),
        FirmwareFamily.WHATSMINER_V3_4028: WhatsminerV3With4028Firmware(),
    }
    return table


class SimClock:
    """Simulated wall clock: ``speedup`` × real time, can be paused."""

    def __init__(self, start: float, speedup: float) -> None:
        """Start at unix time ``start``, running ``speedup`` times faster than real time."""
        if speedup <= 0:
            msg = "speedup must be positive"
            raise ValueError(msg)
        self.speedup = speedup
        self.paused = False
        self._base_sim = start
        self._base_real = time.monotonic()

    def now(self) -> float:
        """Current simulated unix time."""
        if self.paused:
            return self._base_sim
        return self._base_sim + (time.monotonic() - self._base_real) * self.speedup

    def pause(self) -> None:
        """Freeze simulated time (and so physics)."""
        if not self.paused:
            self._base_sim = self.now()
            self.paused = True

    def resume(self) -> None:
        """Let simulated time run again from where it stopped."""
        if self.paused:
            self._base_real = time.monotonic()
            self.paused = False


@dataclass(slots=True)
class SiteState:
    """Mutable site conditions (the control API changes them)."""

    name: str
    altitude_m: float
    station_pressure_kpa: float | None
    mean_c: float
    amplitude_k: float
    peak_hour: float
    utc_offset_h: float
    heatwave_k: float
    inlet_override_c: float | None

    @property
    def air(self) -> SiteAir:
        """Air at the site."""
        return SiteAir.at(self.altitude_m, self.station_pressure_kpa)

    def ambient_c(self, now: float) -> float:
        """Inlet air of the site at simulated time ``now``."""
        if self.inlet_override_c is not None:
            return self.inlet_override_c + self.heatwave_k
        base = diurnal_inlet_c(
            now,
            mean_c=self.mean_c,
            amplitude_k=self.amplitude_k,
            peak_hour=self.peak_hour,
            utc_offset_h=self.utc_offset_h,
        )
        return base + self.heatwave_k

    def as_dict(self, now: float) -> dict[str, Any]:
        """JSON view for the control API."""
        air = self.air
        return {
            "name": self.name,
            "altitude_m": self.altitude_m,
            "station_pressure_kpa": self.station_pressure_kpa,
            "delta": round(air.delta, 5),
            "cooling_multiplier": round(air.multiplier, 5),
            "ambient_mean_c": self.mean_c,
            "ambient_amplitude_k": self.amplitude_k,
            "peak_hour": self.peak_hour,
            "utc_offset_h": self.utc_offset_h,
            "heatwave_k": self.heatwave_k,
            "inlet_override_c": self.inlet_override_c,
            "inlet_c": round(self.ambient_c(now), 2),
        }


def addresses(base: str, count: int) -> list[str]:
    """``count`` consecutive loopback addresses from ``base``, skipping .0 and .255."""
    start = ipaddress.IPv4Address(base)
    if not start.is_loopback:
        msg = f"{base} is not a loopback address"
        raise ValueError(msg)
    out: list[str] = []
    current = start
    while len(out) < count:
        if not current.is_loopback:
            msg = "ran out of loopback addresses"
            raise ValueError(msg)
        if current.packed[3] not in {0, 255}:
            out.append(str(current))
        current += 1
    return out


class _Listeners:
    """The listening sockets and open connections of one miner."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []
        self.grpc: list[grpclib.server.Server] = []
        self.registry = ConnectionRegistry()

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for grpc_server in self.grpc:
            grpc_server.close()
        self.registry.abort_all()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        for grpc_server in self.grpc:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(grpc_server.wait_closed(), timeout=5)
        self.servers.clear()
        self.grpc.clear()


class Fleet:
    """Every emulated miner of one scenario plus the simulated clock and site."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        base_address: str = "127.20.0.1",
        speedup: float = 1.0,
        seed: int = 0,
    ) -> None:
        """Build (but do not start) the miners of ``scenario``."""
        self.scenario = scenario
        start = scenario.start_time.timestamp() if scenario.start_time else time.time()
        self.clock = SimClock(start, speedup)
        s = scenario.site
        self.site = SiteState(
            name=s.name,
            altitude_m=s.altitude_m,
            station_pressure_kpa=s.station_pressure_kpa,
            mean_c=s.ambient.mean_c,
            amplitude_k=s.ambient.amplitude_k,
            peak_hour=s.ambient.peak_hour,
            utc_offset_h=s.ambient.utc_offset_h,
            heatwave_k=s.heatwave_k,
            inlet_override_c=s.inlet_override_c,
        )
        self.firmwares = firmwares()
        self.unsupported = UnsupportedFirmware()
        self.miners: dict[str, EmulatedMiner] = {}
        self.original_profile: dict[str, str] = {}
        self._listeners: dict[str, _Listeners] = {}
        self._rebooting: dict[str, asyncio.TimerHandle] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._rng = random.Random(seed)
        self._last_tick = self.clock.now()
        now = self._last_tick
        air = self.site.air
        total = sum(g.count for g in scenario.miners if g.addresses is None)
        auto = iter(addresses(base_address, total))
        index = 0
        for group in scenario.miners:
            profile = PROFILES[group.model]
            prefix = group.hostname_prefix or group.model.split("-")[0]
            for j in range(group.count):
                address = group.addresses[j] if group.addresses is not None else next(auto)
                ident = make_identity(address, index, seed, f"{prefix}-{index + 1:04d}", s.name)
                miner = EmulatedMiner(
                    ident,
                    profile,
                    inlet_c=self.site.ambient_c(now) + group.inlet_offset_k,
                    now=now - self._rng.uniform(3600, 10 * 86400),
                    inlet_offset_k=group.inlet_offset_k,
                    rng_seed=seed * 7919 + index,
                )
                miner.air = air
                miner.sim_time = now
                for fault in group.faults:
                    self._store_fault(miner, fault)
                miner.apply_faults()
                self._settle(miner, now)
                if address in self.miners:
                    msg = f"address {address} used twice"
                    raise ValueError(msg)
                self.miners[address] = miner
                self.original_profile[address] = profile.key
                index += 1

    # ---- physics ---------------------------------------------------------------------

    def inlet_for(self, miner: EmulatedMiner, now: float) -> float:
        """Inlet temperature of ``miner`` (site ambient + offsets + its own heatwave)."""
        heat = miner.faults.get("heatwave")
        extra = (heat.k or 0.0) if heat is not None else 0.0
        return self.site.ambient_c(now) + miner.inlet_offset_k + extra

    def _settle(self, miner: EmulatedMiner, now: float) -> None:
        """Bring a miner to its steady state (as if it had been running for hours)."""
        air = self.site.air
        inlet = self.inlet_for(miner, now)
        boot = miner.physics.boot_time
        for _ in range(4):
            miner.physics.step(3600.0, inlet, air, now)
        if miner.physics.running:
            miner.physics.boot_time = boot
        # Shares found since boot at the settled hashrate (the counters start where a miner
        # up that long would be).
        phys = miner.physics
        miner.pools.step(
            miner.uptime_s(), phys.hashrate_hs() if phys.running else 0.0, {}, phys.boot_time
        )

    def tick(self) -> None:
        """Advance every miner to the current simulated time (no-op while paused)."""
        if self.clock.paused:
            return
        now = self.clock.now()
        dt_sim = now - self._last_tick
        self._last_tick = now
        air = self.site.air
        for miner in self.miners.values():
            miner.air = air
            miner.physics.noise = self._rng.gauss(0.0, 0.004)
            miner.physics.step(dt_sim, self.inlet_for(miner, now), air, now)
            miner.sim_time = now
            phys = miner.physics
            rate = phys.hashrate_hs() if phys.running else 0.0
            miner.pools.step(dt_sim, rate, miner.faults, phys.boot_time)
            miner.bump()

    def refresh(self) -> None:
        """Re-render every miner at the current time (after a site change while paused)."""
        now = self._last_tick
        air = self.site.air
        for miner in self.miners.values():
            miner.air = air
            miner.physics.step(0.0, self.inlet_for(miner, now), air, now)
            miner.bump()

    async def run_ticks(self) -> None:
        """Tick forever (cancel to stop)."""
        while True:
            await asyncio.sleep(TICK_S)
            self.tick()

    # ---- listeners -------------------------------------------------------------------

    async def start(self) -> None:
        """Open every miner's listeners."""
        for address in self.miners:
            if "offline" not in self.miners[address].faults:
                await self._open(address)
        log.info("emulator_listening", miners=len(self.miners))

    async def stop(self) -> None:
        """Close every listener and connection."""
        for timer in self._rebooting.values():
            timer.cancel()
        self._rebooting.clear()
        for task in list(self._pending):
            task.cancel()
        for listeners in self._listeners.values():
            await listeners.close()
        self._listeners.clear()

    def firmware_of(self, miner: EmulatedMiner) -> Firmware:
        """The renderer answering for ``miner``: its family's, or the unknown firmware's."""
        if "unsupported_firmware" in miner.faults:
            return self.unsupported
        return self.firmwares[miner.family]

    async def _open(self, address: str) -> None:
        miner = self.miners[address]
        fw = self.firmwares[miner.family]
        listeners = _Listeners()
        self._listeners[address] = listeners
        loop = asyncio.get_running_loop()
        registry = listeners.registry
        try:
            if fw.rpc_port:
                server = await loop.create_server(
                    lambda: RpcProtocol(
                        lambda cmd, param: self.firmware_of(miner).rpc_reply(miner, cmd, param),
                        lambda: miner.wire_fault("rpc"),
                        registry,
                        terminator=fw.rpc_terminator,
                    ),
                    host=address,
                    port=RPC_PORT,
                    reuse_address=True,
                    backlog=256,
                )
                listeners.servers.append(server)
            if fw.web_port:
                server = await loop.create_server(
                    lambda: HttpProtocol(
                        lambda req: self.firmware_of(miner).http(miner, req),
                        lambda: miner.wire_fault("web"),
                        registry,
                    ),
                    host=address,
                    port=WEB_PORT,
                    reuse_address=True,
                    backlog=256,
                )
                listeners.servers.append(server)
            await self._open_extra(miner, fw, listeners)
        except OSError:
            await listeners.close()
            raise

    async def _open_extra(self, miner: EmulatedMiner, fw: Firmware, listeners: _Listeners) -> None:
        """TLS (Whatsminer's LuCI page), gRPC (BOSer) and 4433 (Whatsminer API v3) listeners."""
        address = miner.address
        if fw.v3_port:
            server = await asyncio.get_running_loop().create_server(
                lambda: FramedRpcProtocol(
                    lambda request: self.firmwares[miner.family].v3_request(miner, request),
                    lambda: miner.wire_fault("rpc"),
                    listeners.registry,
                ),
                host=address,
                port=V3_PORT,
                reuse_address=True,
                backlog=256,
            )
            listeners.servers.append(server)
        if fw.tls_port and self.scenario.whatsminer_https:
            server = await asyncio.get_running_loop().create_server(
                lambda: HttpProtocol(
                    lambda req: self.firmware_of(miner).http(miner, req),
                    lambda: miner.wire_fault("web"),
                    listeners.registry,
                    tls=True,
                ),
                host=address,
                port=TLS_PORT,
                ssl=server_context(),
                reuse_address=True,
                backlog=256,
            )
            listeners.servers.append(server)
        if fw.grpc_port:
            grpc_server = grpclib.server.Server([GrpcHandlers(miner)])
            await grpc_server.start(address, GRPC_PORT, reuse_address=True)
            listeners.grpc.append(grpc_server)

    async def _close(self, address: str) -> None:
        listeners = self._listeners.pop(address, None)
        if listeners is not None:
            await listeners.close()

    # ---- faults ----------------------------------------------------------------------

    def _store_fault(self, miner: EmulatedMiner, fault: FaultSpec) -> None:
        if fault.kind == "reboot":
            miner.physics.reboot(miner.sim_time)
        elif fault.kind == "model_change":
            assert fault.model is not None
            miner.set_profile(fault.model)
            miner.faults[fault.kind] = fault
        else:
            miner.faults[fault.kind] = fault

    async def inject(self, address: str, fault: FaultSpec) -> None:
        """Apply ``fault`` to the miner at ``address`` now."""
        miner = self.miners[address]
        old_family = miner.family
        was_offline = "offline" in miner.faults
        self._store_fault(miner, fault)
        miner.apply_faults()
        if fault.kind == "reboot" and fault.down_s:
            await self._reboot_offline(address, fault.down_s)
        elif fault.kind == "offline" and not was_offline:
            await self._close(address)
        elif fault.kind == "model_change" and miner.family != old_family and not was_offline:
            await self._close(address)
            await self._open(address)
        log.info("fault_injected", address=address, kind=fault.kind)

    async def _reboot_offline(self, address: str, down_s: float) -> None:
        """Close the miner's ports for ``down_s`` simulated seconds (booting), then reopen."""
        await self._close(address)
        previous = self._rebooting.pop(address, None)
        if previous is not None:
            previous.cancel()
        loop = asyncio.get_running_loop()

        def back_up() -> None:
            self._rebooting.pop(address, None)
            task = loop.create_task(self._back_up(address), name=f"reboot[{address}]")
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

        self._rebooting[address] = loop.call_later(down_s / self.clock.speedup, back_up)

    async def _back_up(self, address: str) -> None:
        miner = self.miners[address]
        if "offline" not in miner.faults and address not in self._listeners:
            miner.physics.reboot(self.clock.now())
            miner.bump()
            await self._open(address)
            log.info("miner_rebooted", address=address)

    async def clear(self, address: str, kind: str | None = None) -> list[str]:
        """Clear one fault kind (or all) on ``address``; returns the kinds cleared."""
        miner = self.miners[address]
        kinds = [kind] if kind is not None else list(miner.faults)
        cleared = [k for k in kinds if k in miner.faults]
        old_family = miner.family
        for k in cleared:
            del miner.faults[k]
        if "model_change" in cleared:
            miner.set_profile(self.original_profile[address])
        miner.apply_faults()
        offline_now = "offline" in miner.faults
        if "offline" in cleared and address not in self._rebooting:
            await self._open(address)
        elif miner.family != old_family and not offline_now:
            await self._close(address)
            await self._open(address)
        if {"hang", "drip", "endless"} & set(cleared) and address in self._listeners:
            self._listeners[address].registry.abort_all()
        if cleared:
            log.info("fault_cleared", address=address, kinds=cleared)
        return cleared

    # ---- views -----------------------------------------------------------------------

    def summary(self, miner: EmulatedMiner) -> dict[str, Any]:
        """Inventory entry for ``GET /miners``."""
        return {
            "address": miner.address,
            "family": miner.family.value,
            "model": miner.profile.model,
            "profile": miner.profile.key,
            "pyasic_class": miner.profile.pyasic_class,
            "mac": miner.identity.mac,
            "serial": miner.identity.serial,
            "hostname": miner.identity.hostname,
            "site": miner.identity.site,
        }

    def clock_view(self) -> dict[str, Any]:
        """JSON view of the simulated clock."""
        now = self.clock.now()
        return {
            "sim_time": now,
            "sim_time_iso": dt.datetime.fromtimestamp(now, tz=dt.UTC).isoformat(),
            "speedup": self.clock.speedup,
            "paused": self.clock.paused,
        }
