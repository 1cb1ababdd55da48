"""Operator settings for the thermal alarm engine: preset overrides per site, model and miner.

All temperatures an operator writes here are **sea-level** values; the engine derates them for
the site's air exactly as it derates the built-in presets (``altiwatch thresholds`` prints the
result). Example::

    thermal:
      sites:
        - {name: golmud, relative_humidity_pct: 35, hashrate_profile_factor: 0.95}
      overrides:
        - match: {model: S19jPro}            # every S19j Pro, any firmware spelling
          critical_c: 73
        - match: {site: golmud, model: whatsminer}   # a preset name matches its whole class
          inlet_max_c: 33
        - match: {miner: "aa:bb:cc:dd:ee:ff"} # one miner; the most specific match wins
          rpm_max: 6800
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OverrideMatch(_Strict):
    """Which miners an override applies to; an empty match applies to every miner.

    ``model`` matches the normalised model key (``S19K Pro`` == ``S19k Pro`` == ``s19kpro``)
    or a preset name (``s19``, ``s21``, ``whatsminer``, ``avalon``, ``bitaxe``).
    """

    site: str | None = Field(default=None, description="Site name.")
    model: str | None = Field(
        default=None,
        description="Model (`S19K Pro` == `S19k Pro` == `s19kpro`) or preset name (`s19`, "
        "`s21`, `whatsminer`, `avalon`, `bitaxe`).",
    )
    miner: str | None = Field(
        default=None, description="Stable miner id (MAC, else serial, name, address)."
    )

    @property
    def specificity(self) -> int:
        """Miner beats model beats site beats nothing."""
        return (4 if self.miner else 0) + (2 if self.model else 0) + (1 if self.site else 0)


class PresetValues(_Strict):
    """Preset fields an operator may override (None = keep the preset's value)."""

    preset: Literal["s19", "s19-die", "s21", "whatsminer", "avalon", "bitaxe", "generic"] | None = (
        Field(default=None, description="Force a preset instead of detecting it from the model.")
    )
    sensor: Literal["board", "die"] | None = Field(
        default=None, description="Sensor the temperature thresholds apply to."
    )
    critical_c: float | None = Field(
        default=None,
        ge=30,
        le=150,
        description="Sea-level critical temperature C0 of the preset's sensor.",
    )
    hysteresis_k: float | None = Field(
        default=None,
        gt=0,
        le=40,
        description="Sea-level warning headroom H0 below critical (scaled by M(δ) at altitude).",
    )
    inlet_max_c: float | None = Field(
        default=None,
        ge=5,
        le=60,
        description="Sea-level maximum inlet temperature (the vendor rule's base).",
    )
    inlet_derate_from_m: float | None = Field(
        default=None,
        ge=0,
        le=6000,
        description="Altitude above which the maximum inlet is derated.",
    )
    inlet_derate_m_per_k: float | None = Field(
        default=None,
        gt=0,
        le=10000,
        description="Metres of altitude per 1 K of inlet derating.",
    )
    t_min_c: float | None = Field(
        default=None, ge=-60, le=40, description="Minimum inlet for a cold start."
    )
    rpm_max: int | None = Field(
        default=None,
        gt=0,
        le=30000,
        description="Rated maximum fan speed (fan duty = fastest fan ÷ this; R3 needs it).",
    )
    expected_boards: int | None = Field(
        default=None, ge=1, le=16, description="Hashboards the miner should have (R6)."
    )
    expected_chips: int | None = Field(
        default=None,
        ge=1,
        le=10000,
        description="Expected chips per board (when the firmware does not say).",
    )
    pcb_critical_c: float | None = Field(
        default=None,
        ge=30,
        le=150,
        description="Enable the optional PCB rule for die presets: critical C, warning C − 5·M(δ).",
    )
    cooling: Literal["air", "hydro", "immersion"] | None = Field(
        default=None,
        description="How the matched miners are cooled (wins over the model, the fan mode and "
        "`miners[].cooling`). Liquid (hydro, immersion): no δ derating of R1, no fan rule R3, "
        "R2 on the coolant inlet, R11 and R8 freeze.",
    )
    coolant_inlet_max_c: float | None = Field(
        default=None,
        ge=0,
        le=90,
        description="Liquid: maximum coolant inlet from the vendor's spec sheet (R2 liquid: "
        "WARN 3 K below, CRIT at it). Unknown: R2 inactive and an R9 INFO.",
    )
    coolant_delta_max_k: float | None = Field(
        default=None,
        gt=0,
        le=60,
        description="Liquid: maximum coolant outlet − inlet from the vendor's spec sheet (R11: "
        "WARN at 0.8×, CRIT at it). Unknown: that part of R11 inactive and an R9 INFO.",
    )
    coolant_freeze_c: float | None = Field(
        default=None,
        ge=-60,
        le=10,
        description="Liquid: the coolant's freeze point (water 0 °C; glycol from its datasheet) "
        "for R8's freeze part.",
    )
    coolant_cp_j_per_kg_k: float | None = Field(
        default=None,
        gt=1000,
        le=5000,
        description="Liquid: coolant specific heat for the flow estimate (water 4,186; 30 % "
        "propylene glycol ≈ 3,900).",
    )
    coolant_density_kg_per_l: float | None = Field(
        default=None,
        gt=0.5,
        le=2,
        description="Liquid: coolant density for the flow estimate (water 0.99; 30 % propylene "
        "glycol ≈ 1.03).",
    )


class ThresholdOverride(PresetValues):
    """One override: a match and the values it sets."""

    match: OverrideMatch = Field(
        default_factory=OverrideMatch,
        description="Which miners the override applies to; empty: every miner. The most "
        "specific match wins (miner, then model, then site).",
    )


class SiteThermal(_Strict):
    """Per-site inputs the alarm engine needs beyond altitude and pressure."""

    name: str = Field(description="A site of `sites[]`.")
    relative_humidity_pct: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description="Inlet relative humidity for the condensation rule (R8); none disables it.",
    )
    hashrate_profile_factor: float = Field(
        default=1.0,
        gt=0,
        le=2,
        description="Expected share of nameplate hashrate at this site (R5), e.g. 0.9 when "
        "underclocked.",
    )


class ThermalSettings(_Strict):
    """The ``thermal:`` section of the agent config."""

    enabled: bool = Field(default=True, description="Alarm engine on/off.")
    sites: tuple[SiteThermal, ...] = Field(
        default=(),
        description="Per-site humidity (condensation rule) and hashrate profile factor.",
    )
    overrides: tuple[ThresholdOverride, ...] = Field(
        default=(),
        description="Sea-level preset values per `match: {site, model, miner}` (most specific "
        "wins), derated like the presets.",
    )
    site_outage_ratio: float = Field(
        default=0.30,
        gt=0,
        lt=1,
        description="R7: more than this share of a site dropping within the window is one site "
        "alarm.",
    )
    site_outage_window_s: float = Field(
        default=120.0, gt=0, description="R7: the window of a site outage."
    )
    site_outage_min_miners: int = Field(
        default=3,
        ge=1,
        description="R7: a site outage needs at least this many miners down (tiny sites alert "
        "per miner).",
    )
    warm_up_s: float = Field(
        default=600.0,
        ge=0,
        description="R4: rate-of-rise on chips is not evaluated while uptime is below this "
        "(boot warm-up).",
    )
    learn_chip_inlet_rise: bool = Field(
        default=False,
        description="R2: learn ΔT_ci0 at full fan and use the physics bound when it is lower "
        "than the vendor's. Off by default: a miner whose airflow is already degraded (dust, a "
        "clogged filter) while it is learned teaches a too-large rise and so a too-low inlet "
        "maximum. The learned value is the *smallest* rise seen after 5 min at full fan "
        "(degradation only ever raises it).",
    )

    def site(self, name: str) -> SiteThermal:
        """The settings of ``name`` (defaults when the site is not listed)."""
        for site in self.sites:
            if site.name == name:
                return site
        return SiteThermal(name=name)


class PoolAllow(_Strict):
    """One allowed pool: glob patterns (``*``, ``?``, ``[…]``) over its URL and worker."""

    url: str = Field(
        min_length=1,
        max_length=512,
        description=(
            "Glob over the pool URL as reported, without credentials, scheme included and "
            "case-insensitive, e.g. 'stratum+tcp://*.braiins.com:3333' or '*://pool.example:*'."
        ),
    )
    worker: str = Field(
        default="*",
        min_length=1,
        max_length=256,
        description="Glob over the worker name (the pool user, case-sensitive), e.g. 'acme.*'.",
    )

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        netloc = value.partition("://")[2] or value
        if "@" in netloc.split("/", 1)[0]:
            msg = "must not contain credentials (user:password@): patterns match URLs without them"
            raise ValueError(msg)
        return value


class SitePools(_Strict):
    """``sites[].pools``: what the site's miners may mine on (rule R14)."""

    allowed: tuple[PoolAllow, ...] | None = Field(
        default=None,
        description=(
            "Allow-list of {url, worker} glob pairs; every pool a miner has configured must match "
            "one entry, else R14 fires CRIT at once. None (default): R14 is off for the site."
        ),
    )


class PoolAlarmSettings(_Strict):
    """``pool_alarms:`` — timing and thresholds of the pool rules R12 and R13."""

    share_window_s: float = Field(
        default=900.0,
        ge=10,
        le=86400,
        description="R12: window over which (rejected + stale) / all shares is computed.",
    )
    share_min_shares: int = Field(
        default=50,
        ge=1,
        description="R12: fewer shares than this in the window is not judged (too few to tell).",
    )
    share_warning_ratio: float = Field(
        default=0.015, gt=0, lt=1, description="R12: WARN at or above this bad-share ratio."
    )
    share_critical_ratio: float = Field(
        default=0.05, gt=0, lt=1, description="R12: CRIT at or above this bad-share ratio."
    )
    failover_for_s: float = Field(
        default=600.0,
        ge=0,
        le=86400,
        description="R13: a backup pool (or a dead active pool) this long raises WARN.",
    )
    site_failover_ratio: float = Field(
        default=0.30,
        gt=0,
        lt=1,
        description="R13: more than this share of a site failed over is one site alarm.",
    )
    site_failover_min_miners: int = Field(
        default=3, ge=1, description="R13: a site failover needs at least this many miners."
    )

    @model_validator(mode="after")
    def _critical_above_warning(self) -> PoolAlarmSettings:
        if self.share_critical_ratio <= self.share_warning_ratio:
            msg = "share_critical_ratio must be above share_warning_ratio"
            raise ValueError(msg)
        return self
