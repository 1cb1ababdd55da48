"""Site air for the alarm engine: δ from ISA or a plausible station pressure, M(δ), h_p.

δ = p/p0 is taken from a measured station pressure (QFE) when it lies within ±5 % of the ISA
pressure at the configured altitude; otherwise from ISA δ(h), and the site gets an R9 warning
(a sea-level-reduced QNH or a wrong altitude is the usual cause). Vendor inlet rules are written
in altitude, so they are evaluated at the pressure altitude h_p = (1 − δ^(1/5.25588))/2.25577e-5.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from collectors import air

PLAUSIBLE_PRESSURE_RATIO = 0.05
"""A measured pressure more than 5 % away from ISA at the configured altitude is not used."""


class SiteSpec(Protocol):
    """What the engine needs from a configured site (``agent.config.SiteConfig`` fits)."""

    @property
    def name(self) -> str:
        """Site name."""
        ...

    @property
    def altitude_m(self) -> float:
        """Configured geometric altitude (m)."""
        ...

    @property
    def station_pressure_kpa(self) -> float | None:
        """Configured station pressure (kPa), if any."""
        ...


class PressureSource(StrEnum):
    """Where δ came from."""

    ISA = "isa"
    MEASURED = "measured"
    ISA_FALLBACK = "isa_fallback"
    """A pressure was given but implausible: ISA is used and R9 warns."""


@dataclass(frozen=True, slots=True)
class SiteAir:
    """The air a site's miners breathe, as the engine uses it."""

    site: str
    altitude_m: float
    delta: float
    """p/p0: at equal temperature also the density ratio ρ/ρ0."""
    cooling_multiplier: float
    """M(δ): chip-to-inlet rise relative to sea level."""
    pressure_altitude_m: float
    pressure_source: PressureSource
    measured_pressure_kpa: float | None
    isa_pressure_kpa: float

    @property
    def density_ratio(self) -> float:
        """ρ/ρ0 at equal temperature (= δ); the ``altiwatch_site_air_density_ratio`` value."""
        return self.delta

    @property
    def pressure_implausible(self) -> bool:
        """True when a measured pressure was rejected (R9 warning)."""
        return self.pressure_source is PressureSource.ISA_FALLBACK

    def as_dict(self) -> dict[str, float | str | None]:
        """JSON-ready view."""
        return {
            "site": self.site,
            "altitude_m": self.altitude_m,
            "delta": round(self.delta, 4),
            "density_ratio": round(self.density_ratio, 4),
            "cooling_multiplier": round(self.cooling_multiplier, 4),
            "pressure_altitude_m": round(self.pressure_altitude_m, 1),
            "pressure_source": self.pressure_source.value,
            "measured_pressure_kpa": self.measured_pressure_kpa,
            "isa_pressure_kpa": round(self.isa_pressure_kpa, 2),
        }


def site_air(site: str, altitude_m: float, pressure_kpa: float | None = None) -> SiteAir:
    """Resolve δ, M(δ) and h_p for a site, preferring a plausible measured pressure.

    >>> a = site_air("x", 3000, 101.0)
    >>> (a.pressure_source.value, round(a.delta, 3))
    ('isa_fallback', 0.692)
    """
    isa_delta = air.pressure_ratio_isa(altitude_m)
    isa_kpa = air.P0_PA * isa_delta / 1000.0
    delta = isa_delta
    source = PressureSource.ISA
    if pressure_kpa is not None:
        if abs(pressure_kpa / isa_kpa - 1.0) <= PLAUSIBLE_PRESSURE_RATIO:
            delta = pressure_kpa * 1000.0 / air.P0_PA
            source = PressureSource.MEASURED
        else:
            source = PressureSource.ISA_FALLBACK
    h_p = air.pressure_altitude_m(delta) if source is PressureSource.MEASURED else altitude_m
    return SiteAir(
        site=site,
        altitude_m=altitude_m,
        delta=delta,
        cooling_multiplier=air.cooling_multiplier(delta),
        pressure_altitude_m=h_p,
        pressure_source=source,
        measured_pressure_kpa=pressure_kpa,
        isa_pressure_kpa=isa_kpa,
    )


SEA_LEVEL = site_air("sea-level", 0.0)
"""Reference air for sea-level equivalents."""
