"""Emulator physics: altitude raises fan duty and, with saturated fans, the rise by M(δ)."""

from __future__ import annotations

import pytest

from collectors.air import cooling_multiplier, pressure_ratio_isa
from collectors.emulator.fleet import Fleet
from collectors.emulator.physics import (
    AirflowFaults,
    MinerPhysics,
    SiteAir,
    diurnal_inlet_c,
    rise_factor,
)
from collectors.emulator.profiles import PROFILES
from collectors.emulator.scenario import Scenario

AIR_COOLED = sorted(k for k, p in PROFILES.items() if not p.liquid)
"""Profiles with airflow physics (liquid-cooled ones have no fans to drive)."""


def settled(key: str, altitude_m: float, inlet_c: float) -> MinerPhysics:
    """A miner of profile ``key`` at steady state."""
    phys = MinerPhysics(profile=PROFILES[key], inlet_c=inlet_c, boot_time=0.0)
    air = SiteAir.at(altitude_m)
    for _ in range(6):
        phys.step(3600.0, inlet_c, air, 0.0)
    return phys


def running(phys: MinerPhysics) -> bool:
    """Whether the miner hashes (a call, so the type checker does not narrow it)."""
    return phys.running


def test_rise_factor_at_full_flow_is_the_cooling_multiplier():
    """At full airflow the rise factor equals M(δ) of collectors.air."""
    for altitude in (0, 2275, 2800, 3000, 4500):
        delta = pressure_ratio_isa(altitude)
        assert rise_factor(delta, 1.0) == pytest.approx(cooling_multiplier(delta), rel=1e-12)


@pytest.mark.parametrize("key", AIR_COOLED)
def test_physics_fan_duty_higher_at_altitude(key):
    """At the same mild inlet the controller needs more fan at 3,000 m than at 0 m."""
    inlet = PROFILES[key].target_c - 1.5 * PROFILES[key].rise_full_fan_k
    sea = settled(key, 0, inlet)
    high = settled(key, 3000, inlet)
    print(f"{key}: inlet {inlet:.1f} °C duty 0 m {sea.duty:.3f} → 3000 m {high.duty:.3f}")
    assert high.duty > sea.duty + 0.02
    assert high.duty < 1.0
    assert sea.sensor_c == pytest.approx(PROFILES[key].target_c, abs=0.5)
    assert high.sensor_c == pytest.approx(PROFILES[key].target_c, abs=0.5)


def _throttles_at_3000_m(key: str, inlet_c: float) -> bool:
    """Whether the saturated rise at 3,000 m would pass the throttle temperature (then it is not M)."""
    prof = PROFILES[key]
    m = cooling_multiplier(pressure_ratio_isa(3000))
    return inlet_c + prof.rise_full_fan_k * m >= prof.throttle_c


@pytest.mark.parametrize(
    "key",
    # LuxOS' 85 °C hot limit is below a saturated S19 XP's rise at 3,000 m: it throttles there.
    [
        k
        for k in AIR_COOLED
        if not _throttles_at_3000_m(k, PROFILES[k].target_c - PROFILES[k].rise_full_fan_k)
    ],
)
def test_physics_saturated_rise_ratio_equals_multiplier(key):
    """With fans saturated at both sites the sensor-to-inlet rise ratio is M(δ) within 5 %."""
    prof = PROFILES[key]
    inlet = prof.target_c - prof.rise_full_fan_k  # fans just saturate at sea level
    sea = settled(key, 0, inlet)
    high = settled(key, 3000, inlet)
    assert sea.duty == pytest.approx(1.0)
    assert high.duty == pytest.approx(1.0)
    assert sea.running
    assert high.running
    assert high.load == pytest.approx(1.0)
    ratio = (high.sensor_c - inlet) / (sea.sensor_c - inlet)
    m = cooling_multiplier(pressure_ratio_isa(3000))
    print(
        f"{key}: inlet {inlet:.1f} rise 0 m {sea.sensor_c - inlet:.2f} K, "
        f"3000 m {high.sensor_c - inlet:.2f} K, ratio {ratio:.4f}, M {m:.4f}"
    )
    assert ratio == pytest.approx(m, rel=0.05)


def _scenario(altitude_m: float, inlet_c: float) -> Scenario:
    return Scenario.model_validate(
        {
            "name": "altitude",
            "site": {"name": "x", "altitude_m": altitude_m, "inlet_override_c": inlet_c},
            "miners": [{"model": key} for key in AIR_COOLED],
        }
    )


def test_fleet_same_scenario_at_altitude_runs_fans_harder_and_hotter():
    """The same scenario at 0 m and 3,000 m: higher duty at altitude; saturated chips hotter by M."""
    m = cooling_multiplier(pressure_ratio_isa(3000))
    mild = {alt: Fleet(_scenario(alt, 15.0)) for alt in (0, 3000)}
    for sea, high in zip(mild[0].miners.values(), mild[3000].miners.values(), strict=True):
        assert high.physics.duty > sea.physics.duty
    hot = {alt: Fleet(_scenario(alt, 34.0)) for alt in (0, 3000)}
    compared = 0
    for sea, high in zip(hot[0].miners.values(), hot[3000].miners.values(), strict=True):
        if not (sea.physics.duty > 0.999 and high.physics.duty > 0.999):
            continue
        if high.physics.load < 0.999 or not high.physics.running:
            continue
        if _throttles_at_3000_m(sea.profile.key, 34.0):
            continue
        ratio = (high.physics.sensor_c - 34.0) / (sea.physics.sensor_c - 34.0)
        print(f"{sea.profile.key}: saturated rise ratio {ratio:.4f} (M = {m:.4f})")
        assert ratio == pytest.approx(m, rel=0.05)
        compared += 1
    assert compared >= 3


def test_physics_throttles_then_trips_and_restarts_with_uptime_reset():
    """Past the throttle temperature hashrate drops; past the trip it stops; cooled, it restarts."""
    air = SiteAir.at(3500)
    phys = MinerPhysics(profile=PROFILES["antminer-s19jpro"], inlet_c=25.0, boot_time=0.0)
    for _ in range(6):
        phys.step(3600.0, 25.0, air, 0.0)
    assert running(phys)
    base = phys.hashrate_hs()
    phys.step(600.0, 45.0, air, 600.0)
    assert phys.sensor_c > PROFILES["antminer-s19jpro"].throttle_c
    assert phys.hashrate_hs() < base
    for i in range(10):
        phys.step(600.0, 60.0, air, 1200.0 + i)
    assert not running(phys)
    assert phys.hashrate_hs() == 0.0
    for i in range(10):
        phys.step(600.0, 10.0, air, 20_000.0 + i)
    assert running(phys)
    assert phys.uptime_s(25_000.0) < 10_000


def test_physics_fan_failure_reads_zero_rpm_and_other_fans_speed_up():
    """A failed fan reads 0 rpm; the controller raises the others to make up the airflow."""
    key = "antminer-s19jpro"
    healthy = settled(key, 0, 20.0)
    broken = MinerPhysics(profile=PROFILES[key], inlet_c=20.0, boot_time=0.0)
    broken.faults = AirflowFaults(failed_fans=frozenset({0}))
    for _ in range(6):
        broken.step(3600.0, 20.0, SiteAir.at(0), 0.0)
    assert broken.fan_rpms()[0] == 0
    assert broken.fan_rpms()[1] > healthy.fan_rpms()[1]


def test_physics_clogged_filter_and_lost_board():
    """A clogged filter raises duty; a lost board has no readings and no hashrate."""
    key = "whatsminer-m30s+ve40"
    healthy = settled(key, 2800, 15.0)
    clogged = MinerPhysics(profile=PROFILES[key], inlet_c=15.0, boot_time=0.0)
    clogged.faults = AirflowFaults(clog_factor=0.6, lost_boards=frozenset({2}))
    for _ in range(6):
        clogged.step(3600.0, 15.0, SiteAir.at(2800), 0.0)
    assert clogged.duty > healthy.duty
    assert clogged.board_temps()[2] is None
    assert clogged.board_hashrates_hs()[2] is None
    assert clogged.hashrate_hs() == pytest.approx(healthy.hashrate_hs() * 2 / 3, rel=1e-3)


def test_diurnal_inlet_peaks_at_peak_hour():
    """The ambient curve is warmest at the peak hour and coolest 12 h later."""
    kwargs = {"mean_c": 20.0, "amplitude_k": 6.0, "peak_hour": 15.0, "utc_offset_h": 8.0}
    peak = diurnal_inlet_c(7 * 3600.0, **kwargs)  # 07:00 UTC = 15:00 local
    trough = diurnal_inlet_c(19 * 3600.0, **kwargs)
    assert peak == pytest.approx(26.0)
    assert trough == pytest.approx(14.0)


def test_station_pressure_overrides_isa():
    """A measured station pressure sets δ directly."""
    air = SiteAir.at(3000, station_pressure_kpa=72.0)
    assert air.delta == pytest.approx(72.0 / 101.325)
    assert air.multiplier == pytest.approx(cooling_multiplier(72.0 / 101.325))


def test_physics_liquid_no_delta_dependence_and_flow_loss_raises_delta_t():
    """Liquid: the chip-to-coolant rise does not depend on δ; a falling flow raises ΔT and trips."""
    prof = PROFILES["antminer-s21plus-hydro"]
    chips = {}
    for altitude in (0, 4000):
        air = SiteAir.at(altitude)
        phys = MinerPhysics(profile=prof, inlet_c=10.0, boot_time=0.0)
        for _ in range(20):
            phys.step(60.0, 10.0, air, 0.0)
        assert phys.coolant_in_c is not None
        assert phys.fan_rpms() == []
        chips[altitude] = phys.sensor_c - phys.coolant_in_c
        assert phys.coolant_rise_k() == pytest.approx(4.95, abs=0.05)  # 60·4785/(0.99·4186·14)
    assert chips[4000] == pytest.approx(chips[0], abs=0.01)
    phys.faults = AirflowFaults(flow_factor=0.38)  # ΔT 13 K > the 12 K firmware trip
    phys.step(1.0, 10.0, SiteAir.at(4000), 0.0)
    assert phys.running is False
