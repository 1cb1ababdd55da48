"""Thermal physics of one emulated miner: airflow at altitude, fan control, throttle and trip.

Pure and deterministic (no I/O, no clock): the fleet calls :meth:`MinerPhysics.step` once per
tick with the simulated time step, the inlet temperature and the site's air. Formulas follow
altitude-thermal.md §1–§2: the controlled sensor's steady rise over the inlet is

    ΔT = ΔT_ci0 · load · (f_air/(δ·q) + f_conv·(δ·q)^-0.8 + f_cond)

where q is the volumetric airflow relative to all fans at full speed (a fan is a
constant-volume machine, so mass flow is δ·q). At q = 1 the bracket is exactly M(δ), so with
saturated fans the rise scales by M(δ). A firmware-like controller picks the fan duty that
holds the target temperature; past the throttle temperature hashrate is cut, past the trip
the miner stops until it has cooled below the resume temperature.

Liquid-cooled miners (§7) have no airflow term: the coolant supply is the site air plus the
dry cooler's approach × M(δ) (the cooler is air-cooled), the outlet is inlet + P/(ρ·c_p·V̇),
and the sensor sits ``chip_coolant_rise_k``·load above the mean coolant temperature, rising as
the flow falls (h ∝ V̇^0.8). A hydro firmware also stops when outlet − inlet reaches its trip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from collectors.air import (
    CONV_EXPONENT,
    F_AIR,
    F_COND,
    F_CONV,
    cooling_multiplier,
    pressure_ratio_isa,
)
from collectors.coolant import delta_t_k
from collectors.emulator.profiles import STOCK_CHIP_OFFSET_K, ModelProfile

FAN_TAU_S = 15.0
"""Time constant of the fan duty following the controller's demand (s)."""
THERMAL_TAU_S = 90.0
"""Time constant of the sensor temperature following its steady state (s)."""
THROTTLE_TAU_S = 60.0
"""Time constant of the throttle (s)."""
MIN_FLOW = 0.02
"""Floor on relative airflow (convection of a stopped fan) to keep the model finite."""
IDLE_LOAD = 0.03
"""Heat of a miner that is powered but not hashing, as a share of nominal."""
BOARD_OFFSETS_K = (-1.0, 0.0, 1.0, 0.5)
"""Fixed per-board offsets of the controlled sensor (boards are never identical)."""


@dataclass(frozen=True, slots=True)
class SiteAir:
    """Air at a site: altitude, pressure ratio δ and cooling multiplier M(δ)."""

    altitude_m: float
    delta: float
    multiplier: float

    @classmethod
    def at(cls, altitude_m: float, station_pressure_kpa: float | None = None) -> SiteAir:
        """Air at ``altitude_m``; a station pressure, when given, overrides the ISA δ."""
        delta = (
            station_pressure_kpa * 1000.0 / 101_325.0
            if station_pressure_kpa is not None
            else pressure_ratio_isa(altitude_m)
        )
        return cls(altitude_m=altitude_m, delta=delta, multiplier=cooling_multiplier(delta))


def rise_factor(delta: float, flow: float) -> float:
    """Rise over inlet relative to sea level at full fan, for pressure ratio δ and airflow q."""
    mass = delta * max(flow, MIN_FLOW)
    return F_AIR / mass + F_CONV * math.pow(mass, -CONV_EXPONENT) + F_COND


def flow_for_factor(delta: float, factor: float, max_flow: float) -> float:
    """Smallest airflow q ≤ max_flow whose rise factor is at most ``factor`` (bisection)."""
    if rise_factor(delta, max_flow) >= factor:
        return max_flow
    lo, hi = MIN_FLOW, max_flow
    for _ in range(40):
        mid = (lo + hi) / 2.0
        if rise_factor(delta, mid) > factor:
            lo = mid
        else:
            hi = mid
    return hi


def diurnal_inlet_c(
    sim_time: float, *, mean_c: float, amplitude_k: float, peak_hour: float, utc_offset_h: float
) -> float:
    """Inlet air following a daily cosine: ``mean ± amplitude``, warmest at ``peak_hour``."""
    hour = ((sim_time / 3600.0) + utc_offset_h) % 24.0
    return mean_c + amplitude_k * math.cos(2.0 * math.pi * (hour - peak_hour) / 24.0)


def _lag(current: float, target: float, dt: float, tau: float) -> float:
    """First-order lag, exact for any step (stable at large speed-ups)."""
    if dt <= 0:
        return current
    return target + (current - target) * math.exp(-dt / tau)


@dataclass(slots=True)
class AirflowFaults:
    """Physical faults that change airflow or hashboards."""

    failed_fans: frozenset[int] = frozenset()
    clog_factor: float = 1.0
    lost_boards: frozenset[int] = frozenset()
    flow_factor: float = 1.0
    """Liquid: share of the nominal coolant flow (a failing pump, an air lock, a closed valve)."""


@dataclass(slots=True)
class MinerPhysics:
    """Mutable thermal state of one miner; advanced by :meth:`step`."""

    profile: ModelProfile
    inlet_c: float
    boot_time: float
    duty: float = 0.0
    sensor_c: float = 0.0
    load: float = 1.0
    running: bool = True
    noise: float = 0.0
    faults: AirflowFaults = field(default_factory=AirflowFaults)
    coolant_in_c: float | None = None
    """Liquid: coolant supply temperature at the last step (None on air-cooled miners)."""

    def __post_init__(self) -> None:
        """Start at the inlet temperature with fans at minimum duty."""
        if self.sensor_c == 0.0:
            self.sensor_c = self.inlet_c
        if self.duty == 0.0:
            self.duty = self.profile.min_duty

    @property
    def alive_fraction(self) -> float:
        """Share of hashboards still present."""
        p = self.profile
        return (p.boards - len(self.faults.lost_boards & set(range(p.boards)))) / p.boards

    @property
    def flow_capacity(self) -> float:
        """Relative airflow at full duty with the current fan and filter faults."""
        p = self.profile
        working = p.fans - len(self.faults.failed_fans & set(range(p.fans)))
        return max(working / p.fans, 0.0) * self.faults.clog_factor

    @property
    def heat(self) -> float:
        """Heat dissipated as a share of nominal."""
        if not self.running:
            return IDLE_LOAD
        return max(self.load * self.alive_fraction, IDLE_LOAD)

    def coolant_inlet_c(self, air: SiteAir) -> float:
        """Liquid: coolant supply temperature (site air + the dry cooler's approach × M(δ))."""
        return self.inlet_c + self.profile.coolant_approach_k * air.multiplier

    @property
    def coolant_flow_lpm(self) -> float:
        """Liquid: coolant flow through the miner now."""
        return self.profile.coolant_flow_lpm * self.faults.flow_factor

    def coolant_rise_k(self) -> float:
        """Liquid: coolant outlet − inlet carrying the miner's hashing power at the current flow."""
        return delta_t_k(self.hashing_power_w(), self.coolant_flow_lpm)

    def hashing_power_w(self) -> float:
        """Power of the hashboards (all of it ends up in the coolant on a liquid miner)."""
        p = self.profile
        return p.power_w * (self.load * self.alive_fraction if self.running else IDLE_LOAD)

    def steady_sensor_c(self, air: SiteAir, duty: float) -> float:
        """Steady temperature of the controlled sensor at ``duty``."""
        p = self.profile
        if p.liquid:
            flow = max(self.faults.flow_factor, MIN_FLOW)
            film = 0.5 + 0.5 * math.pow(flow, -CONV_EXPONENT)
            mean_coolant = self.coolant_inlet_c(air) + self.coolant_rise_k() / 2.0
            return mean_coolant + p.chip_coolant_rise_k * self.heat * film
        flow = duty * self.flow_capacity
        return self.inlet_c + p.rise_full_fan_k * self.heat * rise_factor(air.delta, flow)

    def demanded_duty(self, air: SiteAir) -> float:
        """Duty a firmware controller would choose to hold its target temperature."""
        p = self.profile
        if p.liquid:
            return 0.0  # hydro models have no fans; immersion runs them at 0 rpm
        if not self.running:
            return 1.0
        headroom = p.target_c - self.inlet_c
        capacity = self.flow_capacity
        if headroom <= 0 or capacity <= 0:
            return 1.0
        factor = headroom / (p.rise_full_fan_k * self.heat)
        flow = flow_for_factor(air.delta, factor, capacity)
        return min(1.0, max(p.min_duty, flow / capacity))

    def step(self, dt: float, inlet_c: float, air: SiteAir, now: float) -> None:
        """Advance ``dt`` simulated seconds with inlet ``inlet_c`` at time ``now``."""
        p = self.profile
        self.inlet_c = inlet_c
        if p.liquid:
            self.coolant_in_c = self.coolant_inlet_c(air)
        self.duty = _lag(self.duty, self.demanded_duty(air), dt, FAN_TAU_S)
        self.sensor_c = _lag(self.sensor_c, self.steady_sensor_c(air, self.duty), dt, THERMAL_TAU_S)
        dt_trip = p.coolant_dt_trip_k
        if self.running:
            if self.sensor_c >= p.trip_c or (
                dt_trip is not None and self.coolant_rise_k() >= dt_trip
            ):
                self.running = False
                self.load = 0.0
                return
            over = self.sensor_c - p.throttle_c
            if over > 0:
                target_load = max(0.5, 1.0 - 0.05 * over)
            elif self.sensor_c < p.throttle_c - 3.0:
                target_load = 1.0
            else:
                target_load = self.load
            self.load = _lag(self.load, target_load, dt, THROTTLE_TAU_S)
        elif self.sensor_c <= p.resume_c and (
            dt_trip is None or delta_t_k(p.power_w, self.coolant_flow_lpm) < dt_trip - 2.0
        ):
            self.running = True
            self.load = 1.0
            self.boot_time = now

    def reboot(self, now: float) -> None:
        """The firmware restarts: uptime counts from ``now``."""
        self.boot_time = now
        self.running = True
        self.load = 1.0

    # ---- derived readings -------------------------------------------------------------

    def fan_rpms(self) -> list[int]:
        """Rpm of every fan (0 for failed fans)."""
        p = self.profile
        rpm = round(self.duty * p.max_rpm)
        return [0 if i in self.faults.failed_fans else rpm for i in range(p.fans)]

    def board_temps(self) -> list[tuple[int, float, float] | None]:
        """Per board: (index, board °C, chip °C) as the firmware reports it; None if lost."""
        p = self.profile
        out: list[tuple[int, float, float] | None] = []
        for i in range(p.boards):
            if i in self.faults.lost_boards:
                out.append(None)
                continue
            offset = BOARD_OFFSETS_K[i % len(BOARD_OFFSETS_K)] if p.boards > 1 else 0.0
            sensor = self.sensor_c + offset * min(1.0, self.heat)
            if p.controlled_sensor == "board":
                board, chip = sensor, sensor + STOCK_CHIP_OFFSET_K * min(1.0, self.heat * 2)
            else:
                chip = sensor
                base = self.coolant_in_c if self.coolant_in_c is not None else self.inlet_c
                board = base + (sensor - base) * p.board_rise_ratio
            out.append((i, float(round(board)), float(round(chip))))
        return out

    def coolant_c(self) -> tuple[float, float] | None:
        """Liquid: (coolant inlet °C, outlet °C) as the firmware reports them; None on air."""
        if self.coolant_in_c is None:
            return None
        inlet = self.coolant_in_c
        return float(round(inlet)), float(round(inlet + self.coolant_rise_k()))

    def board_hashrates_hs(self) -> list[float | None]:
        """Per-board hashrate in H/s (None for a lost board)."""
        p = self.profile
        if not self.running:
            return [None if i in self.faults.lost_boards else 0.0 for i in range(p.boards)]
        per_board = p.hashrate_ths * 1e12 / p.boards * self.load * (1.0 + self.noise)
        return [
            None if i in self.faults.lost_boards else round(per_board / 1e9, 2) * 1e9
            for i in range(p.boards)
        ]

    def hashrate_hs(self) -> float:
        """Total hashrate in H/s."""
        return sum(h for h in self.board_hashrates_hs() if h is not None)

    def expected_hashrate_hs(self) -> float:
        """Nameplate hashrate in H/s."""
        return self.profile.hashrate_ths * 1e12

    def power_w(self, air: SiteAir) -> float:
        """Wall power: hashing power plus fan power (∝ ρ·N³)."""
        p = self.profile
        hashing = self.hashing_power_w()
        fans = p.fan_power_w * self.duty**3 * air.delta
        return float(round(hashing + fans))

    def uptime_s(self, now: float) -> int:
        """Seconds since the firmware (re)started."""
        return max(0, int(now - self.boot_time))
