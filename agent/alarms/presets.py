"""Thermal presets per model class, operator overrides, and the derated thresholds they give.

Sea-level values are those of altitude-thermal.md §5; everything altitude does to them is in
:func:`derate`:

- R1: crit = C0 − c(δ) (c only for stock S19 boards, whose "chip" is an estimate that reads low
  in thin air), warn = crit − H0·M(δ);
- R2: T_in,max = min(vendor rule at h_p, T_in,max0 − ΔT_ci0·(M − 1) once ΔT_ci0 is learned at full
  fan), warn 3 K below;
- live firmware limits, when an observation carries them, replace the preset's critical values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Literal

from collectors import air, coolant
from collectors.snapshot import Family

if TYPE_CHECKING:
    from collections.abc import Sequence

    from agent.alarms.air import SiteAir
    from agent.alarms.config import ThresholdOverride

Sensor = Literal["board", "die"]

INLET_WARNING_MARGIN_K = 3.0
"""R2 warns this far below T_in,max."""


@dataclass(frozen=True, slots=True)
class Preset:
    """Sea-level thermal limits of one model class."""

    name: str
    sensor: Sensor
    critical_c: float
    hysteresis_k: float
    inlet_max_c: float
    inlet_derate_from_m: float
    inlet_derate_m_per_k: float
    t_min_c: float
    rpm_max: int | None
    board_estimated_chip: bool = False
    expected_boards: int | None = None
    expected_chips: int | None = None
    pcb_critical_c: float | None = None
    cooling: str | None = None
    """Forced cooling (``air``/``hydro``/``immersion``, from an override); None: detected."""
    coolant_inlet_max_c: float | None = None
    coolant_delta_max_k: float | None = None
    coolant_freeze_c: float | None = None
    coolant_cp_j_per_kg_k: float | None = None
    coolant_density_kg_per_l: float | None = None

    def vendor_inlet_max_c(self, altitude_m: float) -> float:
        """Vendor inlet rule, e.g. 40 °C − (h − 900)/175 (no derating below the start)."""
        excess = max(0.0, altitude_m - self.inlet_derate_from_m)
        return self.inlet_max_c - excess / self.inlet_derate_m_per_k


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        # Stock S19 family: board sensor, "chip" = board + ~15 K estimate; C0 = LuxOS board max.
        Preset(
            "s19", "board", 75.0, 10.0, 40.0, 900.0, 175.0, 0.0, 6000, board_estimated_chip=True
        ),
        # S19 hardware on VNish / Braiins OS+ that report real die temperatures.
        Preset("s19-die", "die", 95.0, 10.0, 40.0, 900.0, 175.0, 0.0, 6000),
        Preset("s21", "die", 95.0, 10.0, 40.0, 900.0, 175.0, 0.0, 6600),
        Preset("whatsminer", "die", 95.0, 10.0, 35.0, 2000.0, 300.0, -5.0, 7000),
        Preset("avalon", "die", 100.0, 10.0, 35.0, 900.0, 300.0, 0.0, 6800),
        Preset("bitaxe", "die", 72.0, 6.0, 35.0, 900.0, 300.0, 0.0, 6000, expected_boards=1),
        # Unknown model: die sensor, S21 limits, no fan maximum (R3 needs one).
        Preset("generic", "die", 95.0, 10.0, 40.0, 900.0, 175.0, 0.0, None),
    )
}


@dataclass(frozen=True, slots=True)
class CoolantLimits:
    """A liquid-cooled model's coolant limits from its vendor's published spec sheet."""

    inlet_max_c: float | None
    delta_max_k: float | None
    source: str
    """The spec sheet (title, date, URL) the figures come from."""


VENDOR_COOLANT_LIMITS: dict[str, CoolantLimits] = {}
"""Per normalised model key (``s21plushyd``), coolant limits cited from the vendor's spec sheet.

Deliberately empty: when this table was written no Bitmain (or MicroBT) hydro spec sheet was
reachable to cite, and a remembered or third-party figure is a guess (altitude-thermal.md §7:
"unknown → rule inactive and an R9 INFO"). Operators set ``coolant_inlet_max_c`` and
``coolant_delta_max_k`` from their own spec sheet in ``thermal.overrides``; an entry added here
must name its source.
"""

_BRANDS = ("antminer", "bitmain", "whatsminer", "microbt")


def normalise_model(model: str) -> str:
    """Normalise a model name across firmwares: ``S19K Pro`` == ``S19k Pro`` == ``s19kpro``.

    Lower case, firmware suffix ``(…)`` dropped, ``+`` spelled ``plus``, brand names and all
    non-alphanumerics removed, ``avalonminer`` shortened to ``avalon``.

    >>> normalise_model("Antminer S19K Pro (Vnish 1.2.6)"), normalise_model("M30S+_VE40")
    ('s19kpro', 'm30splusve40')
    """
    key = model.split("(", 1)[0].lower().replace("+", "plus")
    key = re.sub(r"[^a-z0-9]", "", key).replace("avalonminer", "avalon")
    stripped = True
    while stripped:
        stripped = False
        for brand in _BRANDS:
            if key.startswith(brand) and len(key) > len(brand):
                key, stripped = key[len(brand) :], True
    return key


_ANTMINER_FAMILIES = frozenset({Family.ANTMINER, Family.VNISH, Family.BRAIINS, Family.LUXOS})
_DIE_FIRMWARE = frozenset({Family.VNISH, Family.BRAIINS, Family.LUXOS})


def select_preset(family: Family, model_key: str | None, *, reports_chips: bool) -> str:
    """The preset name for a miner, from its firmware family and normalised model key.

    S21-class models use ``s21`` on any firmware. S19-class (and other Antminer) hardware uses
    ``s19``, or ``s19-die`` on VNish/Braiins OS+/LuxOS when the firmware reports chip temperatures.
    """
    key = model_key or ""
    if re.match(r"^[st]21", key):
        return "s21"
    if family is Family.WHATSMINER or re.match(r"^m\d", key):
        return "whatsminer"
    if family is Family.AVALON or key.startswith("avalon") or re.match(r"^a\d{3,4}", key):
        return "avalon"
    if family is Family.BITAXE or "bitaxe" in key or key.startswith("bm13"):
        return "bitaxe"
    if family in _ANTMINER_FAMILIES or re.match(r"^[st]\d", key):
        return "s19-die" if family in _DIE_FIRMWARE and reports_chips else "s19"
    return "generic"


def _matches(
    ov: ThresholdOverride, *, site: str, miner: str, model_key: str | None, preset: str
) -> bool:
    m = ov.match
    if m.site is not None and m.site != site:
        return False
    if m.miner is not None and m.miner != miner:
        return False
    if m.model is not None:
        wanted = normalise_model(m.model)
        if wanted not in {model_key, preset.replace("-", "")} and m.model.lower() != preset:
            return False
    return True


def apply_overrides(
    preset: Preset,
    overrides: Sequence[ThresholdOverride],
    *,
    site: str,
    miner: str,
    model_key: str | None,
) -> tuple[Preset, bool]:
    """Apply matching overrides, least specific first; return the preset and whether any applied.

    An override's ``preset`` field switches the base preset before its values are applied.
    """
    matching = sorted(
        (
            ov
            for ov in overrides
            if _matches(ov, site=site, miner=miner, model_key=model_key, preset=preset.name)
        ),
        key=lambda ov: ov.match.specificity,
    )
    if not matching:
        return preset, False
    forced = [ov.preset for ov in matching if ov.preset is not None]
    result = PRESETS[forced[-1]] if forced else preset
    names = {f.name for f in fields(Preset)}
    for ov in matching:
        changes = {
            name: value
            for name, value in ov.model_dump(exclude={"match", "preset"}).items()
            if value is not None and name in names
        }
        result = replace(result, **changes)
    return result, True


@dataclass(frozen=True, slots=True)
class MinerThresholds:
    """The thresholds in force for one miner, with their sea-level equivalents."""

    preset: str
    sensor: Sensor
    critical_c: float
    warning_c: float
    critical_sea_level_c: float
    warning_sea_level_c: float
    inlet_max_c: float
    inlet_warning_c: float
    inlet_max_sea_level_c: float
    vendor_inlet_max_c: float
    inlet_rule: Literal["vendor", "physics", "firmware"]
    t_min_c: float
    rpm_max: int | None
    hysteresis_k: float
    chip_underestimate_k: float
    pcb_critical_c: float | None
    pcb_warning_c: float | None
    expected_boards: int | None
    expected_chips: int | None
    altitude_m: float
    pressure_altitude_m: float
    delta: float
    cooling_multiplier: float
    learned_rise_k: float | None
    critical_source: Literal["preset", "override", "firmware"]
    cooling: str = "air"
    """``air``, ``hydro`` or ``immersion`` (liquid: R1 not derated, no R3, R2 on coolant)."""
    coolant_inlet_max_c: float | None = None
    coolant_inlet_warning_c: float | None = None
    coolant_delta_max_k: float | None = None
    coolant_limits_source: str | None = None
    """``vendor: <spec sheet>`` or ``override``; None while the limits are unknown."""
    coolant_freeze_c: float = 0.0
    coolant_cp_j_per_kg_k: float = 4186.0
    coolant_density_kg_per_l: float = 0.99
    boiling_point_c: float = 100.0
    """Water's boiling point at the site's pressure (Antoine)."""

    @property
    def liquid(self) -> bool:
        """Hydro or immersion."""
        return self.cooling != "air"

    def as_dict(self) -> dict[str, float | int | str | None]:
        """JSON-ready view (temperatures rounded to 0.1 K)."""
        out: dict[str, float | int | str | None] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = (
                round(value, 4 if f.name == "delta" else 2) if isinstance(value, float) else value
            )
        return out


def derate(
    preset: Preset,
    site_air: SiteAir,
    *,
    overridden: bool = False,
    firmware_critical_c: float | None = None,
    firmware_inlet_max_c: float | None = None,
    learned_rise_k: float | None = None,
    cooling: str = "air",
    model_key: str | None = None,
) -> MinerThresholds:
    """Compute the thresholds in force at ``site_air`` (altitude-thermal.md §5 R1/R2, §7).

    ``cooling`` is the detected one; a preset's forced ``cooling`` wins. Liquid-cooled miners
    get no δ derating (M = 1, no chip underestimate: there is no air on the miner side) and
    their coolant limits from the override, else the vendor table, else none.
    """
    cooling = preset.cooling or cooling
    liquid = cooling != "air"
    m = 1.0 if liquid else site_air.cooling_multiplier
    estimated = preset.board_estimated_chip and not liquid
    c_k = air.board_chip_underestimate_k(site_air.delta) if estimated else 0.0
    if firmware_critical_c is not None:
        crit, source = firmware_critical_c, "firmware"
    else:
        crit, source = preset.critical_c - c_k, "override" if overridden else "preset"
    vendor = preset.vendor_inlet_max_c(site_air.pressure_altitude_m)
    inlet_max, rule = vendor, "vendor"
    if learned_rise_k is not None:
        physics = preset.inlet_max_c - learned_rise_k * (m - 1.0)
        if physics < inlet_max:
            inlet_max, rule = physics, "physics"
    if firmware_inlet_max_c is not None:
        inlet_max, rule = firmware_inlet_max_c, "firmware"
    pcb_crit = preset.pcb_critical_c if preset.sensor == "die" else None
    return MinerThresholds(
        preset=preset.name,
        sensor=preset.sensor,
        critical_c=crit,
        warning_c=crit - preset.hysteresis_k * m,
        critical_sea_level_c=preset.critical_c,
        warning_sea_level_c=preset.critical_c - preset.hysteresis_k,
        inlet_max_c=inlet_max,
        inlet_warning_c=inlet_max - INLET_WARNING_MARGIN_K,
        inlet_max_sea_level_c=preset.inlet_max_c,
        vendor_inlet_max_c=vendor,
        inlet_rule=rule,  # type: ignore[arg-type]
        t_min_c=preset.t_min_c,
        rpm_max=preset.rpm_max,
        hysteresis_k=preset.hysteresis_k,
        chip_underestimate_k=c_k,
        pcb_critical_c=pcb_crit,
        pcb_warning_c=None if pcb_crit is None else pcb_crit - 5.0 * m,
        expected_boards=preset.expected_boards,
        expected_chips=preset.expected_chips,
        altitude_m=site_air.altitude_m,
        pressure_altitude_m=site_air.pressure_altitude_m,
        delta=site_air.delta,
        cooling_multiplier=m,
        learned_rise_k=learned_rise_k,
        critical_source=source,  # type: ignore[arg-type]
        **_coolant(preset, model_key, site_air, cooling),
    )


def _coolant(
    preset: Preset, model_key: str | None, site_air: SiteAir, cooling: str
) -> dict[str, Any]:
    """The coolant fields of MinerThresholds: limits (override > vendor > none), properties."""
    vendor = VENDOR_COOLANT_LIMITS.get(model_key or "")
    inlet_max, delta_max, source = preset.coolant_inlet_max_c, preset.coolant_delta_max_k, None
    if inlet_max is not None or delta_max is not None:
        source = "override"
    if vendor is not None:
        inlet_max = vendor.inlet_max_c if inlet_max is None else inlet_max
        delta_max = vendor.delta_max_k if delta_max is None else delta_max
        source = source or f"vendor: {vendor.source}"
    return {
        "cooling": cooling,
        "coolant_inlet_max_c": inlet_max,
        "coolant_inlet_warning_c": None if inlet_max is None else inlet_max - 3.0,
        "coolant_delta_max_k": delta_max,
        "coolant_limits_source": source,
        "coolant_freeze_c": 0.0 if preset.coolant_freeze_c is None else preset.coolant_freeze_c,
        "coolant_cp_j_per_kg_k": preset.coolant_cp_j_per_kg_k or 4186.0,
        "coolant_density_kg_per_l": preset.coolant_density_kg_per_l or 0.99,
        "boiling_point_c": coolant.boiling_point_c(site_air.delta * air.P0_PA),
    }
