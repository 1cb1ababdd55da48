"""Air at altitude: pressure ratio, density, the cooling multiplier M(δ) and dew point.

Pure functions, shared by the emulator (to make miners run hotter in thin air) and by the
alarm engine (to derate thresholds). Formulas and constants follow the design note
``altitude-thermal.md`` §1–§2 (ISA troposphere, ASHRAE Fundamentals ch.1 eq.3).
"""

from __future__ import annotations

import math

P0_PA = 101_325.0
"""Sea-level standard pressure p0 (Pa)."""
T0_K = 288.15
"""Sea-level standard temperature T0 (K)."""
LAPSE_K_PER_M = 0.0065
"""Troposphere lapse rate L (K/m)."""
RD_J_PER_KG_K = 287.06
"""Specific gas constant of dry air Rd (J/(kg·K))."""
RHO0_KG_M3 = 1.2250
"""ISA sea-level density ρ0 (kg/m³)."""
_K_ALT = 2.25577e-5
_EXPONENT = 5.25588

F_AIR = 0.35
"""Share of the sea-level chip-to-inlet rise that is the air's own temperature rise."""
F_CONV = 0.45
"""Share that is convective (heat-sink to air) resistance."""
F_COND = 0.20
"""Share that is conduction (die → TIM → sink), unchanged by altitude."""
CONV_EXPONENT = 0.8
"""h ∝ ρ^n; n = 0.8 (turbulent) as in the design note."""
BOARD_CHIP_OFFSET_K = 15.0
"""Stock S19 firmware estimates chip temperature as board + ~15 K."""


def pressure_ratio_isa(altitude_m: float) -> float:
    """δ = p/p0 = (1 − 2.25577e-5·h)^5.25588 for geometric altitude h in metres.

    >>> round(pressure_ratio_isa(3000), 3)
    0.692
    """
    return math.pow(1.0 - _K_ALT * altitude_m, _EXPONENT)


def pressure_pa_isa(altitude_m: float) -> float:
    """ISA station pressure p = p0·δ(h) in pascals."""
    return P0_PA * pressure_ratio_isa(altitude_m)


def pressure_altitude_m(delta: float) -> float:
    """Pressure altitude h_p = (1 − δ^(1/5.25588)) / 2.25577e-5: the ISA altitude with ratio δ."""
    return (1.0 - math.pow(delta, 1.0 / _EXPONENT)) / _K_ALT


def isa_temperature_c(altitude_m: float) -> float:
    """ISA temperature T = T0 − L·h, in °C."""
    return T0_K - LAPSE_K_PER_M * altitude_m - 273.15


def isa_density(altitude_m: float) -> float:
    """ISA air density ρ = p/(Rd·T) at altitude h (kg/m³)."""
    return pressure_pa_isa(altitude_m) / (RD_J_PER_KG_K * (T0_K - LAPSE_K_PER_M * altitude_m))


def saturation_vapour_pressure_pa(temp_c: float) -> float:
    """Magnus form e_s = 610.94·exp(17.625·t/(t+243.04)) in Pa."""
    return 610.94 * math.exp(17.625 * temp_c / (temp_c + 243.04))


def air_density(pressure_pa: float, temp_c: float, rel_humidity_pct: float = 0.0) -> float:
    """Moist-air density ρ = (p − 0.378·e)/(Rd·T) with e = RH/100 · e_s(t) (kg/m³)."""
    e = rel_humidity_pct / 100.0 * saturation_vapour_pressure_pa(temp_c)
    return (pressure_pa - 0.378 * e) / (RD_J_PER_KG_K * (temp_c + 273.15))


def dew_point_c(temp_c: float, rel_humidity_pct: float) -> float:
    """Dew point (Magnus inverse) of air at ``temp_c`` and relative humidity; °C.

    >>> round(dew_point_c(10.0, 60.0), 1)
    2.6
    """
    if rel_humidity_pct <= 0:
        msg = "relative humidity must be positive"
        raise ValueError(msg)
    gamma = math.log(rel_humidity_pct / 100.0) + 17.625 * temp_c / (temp_c + 243.04)
    return 243.04 * gamma / (17.625 - gamma)


def cooling_multiplier(delta: float) -> float:
    """M(δ) = f_air/δ + f_conv·δ^-0.8 + f_cond: chip-to-inlet rise relative to sea level.

    >>> round(cooling_multiplier(pressure_ratio_isa(3000)), 2)
    1.31
    """
    return F_AIR / delta + F_CONV * math.pow(delta, -CONV_EXPONENT) + F_COND


def board_chip_underestimate_k(delta: float) -> float:
    """c(δ) = 15·0.5·(δ^-0.8 − 1): how low a board-estimated chip temperature reads (K)."""
    return BOARD_CHIP_OFFSET_K * 0.5 * (math.pow(delta, -CONV_EXPONENT) - 1.0)
