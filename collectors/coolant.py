"""Liquid-cooling physics (altitude-thermal.md §7): boiling point at altitude and flow estimate.

Shared by the emulator (its coolant loop) and the agent (the flow-estimate series, R11):

- Water's boiling point at the site's station pressure by the Antoine equation (NIST/Antoine
  constants for water, 1–100 °C): log10(p/mmHg) = A − B/(C + T). 100.0 °C at 101.325 kPa,
  90.0 °C at 3,000 m ISA, 85.0 °C at 4,500 m ISA (test vector L5).
- Energy balance Q = ṁ·c_p·ΔT: the coolant flow that carries power P at a rise ΔT is
  V̇ [L/min] = 60·P / (ρ·c_p·ΔT) (test vector L2: 5,400 W at 6 K → 13.0 L/min of water).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from collectors.air import pressure_pa_isa

ANTOINE_A = 8.07131
ANTOINE_B = 1730.63
ANTOINE_C = 233.426
PA_PER_MMHG = 133.322368
MIN_DELTA_T_K = 0.5
"""Below this coolant rise the flow estimate is not computed (sensor resolution is ~1 K)."""


@dataclass(frozen=True, slots=True)
class Coolant:
    """Properties of a loop's coolant (water at 30–40 °C by default)."""

    name: str = "water"
    cp_j_per_kg_k: float = 4186.0
    density_kg_per_l: float = 0.99
    freeze_c: float = 0.0


WATER = Coolant()


def boiling_point_c(pressure_pa: float) -> float:
    """Boiling point of water (°C) at ``pressure_pa`` (Antoine equation)."""
    mmhg = pressure_pa / PA_PER_MMHG
    return ANTOINE_B / (ANTOINE_A - math.log10(mmhg)) - ANTOINE_C


def boiling_point_at_altitude_c(altitude_m: float) -> float:
    """Boiling point of water at the ISA pressure of ``altitude_m``."""
    return boiling_point_c(pressure_pa_isa(altitude_m))


def flow_l_per_min(power_w: float, delta_t_k: float, coolant: Coolant = WATER) -> float | None:
    """Coolant flow (L/min) carrying ``power_w`` at a rise of ``delta_t_k``; None if ΔT is tiny."""
    if delta_t_k < MIN_DELTA_T_K or power_w <= 0:
        return None
    return 60.0 * power_w / (coolant.density_kg_per_l * coolant.cp_j_per_kg_k * delta_t_k)


def delta_t_k(power_w: float, flow_lpm: float, coolant: Coolant = WATER) -> float:
    """Coolant rise (K) when ``power_w`` is carried by ``flow_lpm`` L/min."""
    return 60.0 * power_w / (coolant.density_kg_per_l * coolant.cp_j_per_kg_k * max(flow_lpm, 0.01))
