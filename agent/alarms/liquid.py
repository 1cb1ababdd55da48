"""Rules for liquid-cooled miners (altitude-thermal.md §7): R2 liquid, R11, R8 freeze, R9 INFO.

A hydro or immersion miner has no air on the miner side: R1 is not δ-derated (the thresholds
carry M = 1), R3 does not apply, and the coolant takes the air's place:

- **R2 (liquid)**: coolant inlet ≥ max − 3 K for 5 min → WARN, ≥ max for 2 min → CRIT; clears
  2 K below. The maximum is the vendor's (cited) or the operator's; unknown → inactive.
- **R11**: coolant ΔT ≥ 0.8·ΔT_max for 2 min → WARN, ≥ ΔT_max for 2 polls → CRIT; flow estimate
  below 0.7 × the miner's own 24-h median at similar power (±10 %) for 10 min → WARN
  ``low_flow``; outlet ≥ T_boil(p) − 15 K → CRIT ``near_boiling``.
- **R11 site**: ≥ 30 % of a site's liquid-cooled miners at coolant inlet ≥ max − 3 K → one site
  WARN ``cooler_capacity`` (the dry cooler is air-cooled and derates with δ).
- **R8 (liquid)**: not hashing and coolant inlet ≤ freeze + 5 K → WARN, ≤ freeze + 2 K → CRIT.
- **R9 INFO** ``coolant_limits_unknown`` while a liquid miner's coolant limits are not known.

The flow estimate is V̇ = 60·P/(ρ·c_p·ΔT) (:func:`collectors.coolant.flow_l_per_min`); with an
estimated power (stock Antminer) it is estimated too, and says so.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.alarms.model import Severity
from agent.alarms.state import Verdict, verdict_levels
from collectors.coolant import Coolant, flow_l_per_min
from collectors.snapshot import PowerSource

if TYPE_CHECKING:
    from agent.alarms.presets import MinerThresholds
    from collectors.snapshot import MinerSnapshot

INFO, WARN, CRIT = Severity.INFO, Severity.WARNING, Severity.CRITICAL
ALL: frozenset[Severity] = frozenset((INFO, WARN, CRIT))
NONE: frozenset[Severity] = frozenset()

COOLANT_WARNING_MARGIN_K = 3.0
COOLANT_CLEAR_K = 2.0
DELTA_WARNING_SHARE = 0.8
BOILING_MARGIN_K = 15.0
FREEZE_WARNING_K = 5.0
FREEZE_CRITICAL_K = 2.0
LOW_FLOW_RATIO = 0.7
LOW_FLOW_CLEAR_RATIO = 0.8
SIMILAR_POWER = 0.10
LOW_FLOW_HOLD_S = 480.0
"""Low flow held this long in the rule, plus R11 WARN's own 2 min: the note's 10 minutes."""
FLOW_WINDOW_S = 86_400.0
FLOW_SAMPLE_SPACING_S = 300.0
FLOW_MIN_SAMPLES = 6
"""Fewer samples at similar power than this in 24 h: no median yet, low flow not judged."""
SITE_COOLER_RATIO = 0.30
SITE_COOLER_MIN_MINERS = 2


@dataclass(slots=True)
class LiquidTrack:
    """What the engine remembers about a liquid-cooled miner (bounded: one sample per 5 min)."""

    flows: deque[tuple[float, float, float]] = field(default_factory=deque)
    """(time, power W, flow L/min) over the last 24 h."""
    low_since: float | None = None
    coolant_hot: bool = False
    """Coolant inlet at or above max − 3 K at the last poll (R11 site part)."""


def coolant_of(th: MinerThresholds) -> Coolant:
    """The coolant properties in force for a miner."""
    return Coolant(
        name="configured",
        cp_j_per_kg_k=th.coolant_cp_j_per_kg_k,
        density_kg_per_l=th.coolant_density_kg_per_l,
        freeze_c=th.coolant_freeze_c,
    )


def flow_estimate(snap: MinerSnapshot, th: MinerThresholds) -> tuple[float, bool] | None:
    """(coolant flow estimate in L/min, whether it is estimated) or None when unknown.

    Needs a power figure and both coolant temperatures; ``estimated`` when the power is.
    """
    if snap.power_w is None or snap.coolant_inlet_c is None or snap.coolant_outlet_c is None:
        return None
    flow = flow_l_per_min(
        snap.power_w, snap.coolant_outlet_c - snap.coolant_inlet_c, coolant_of(th)
    )
    if flow is None:
        return None
    return flow, snap.power_source is PowerSource.ESTIMATED


def r2_liquid(snap: MinerSnapshot, th: MinerThresholds, track: LiquidTrack) -> Verdict | None:
    """R2 (liquid): coolant inlet vs the model's maximum (WARN 3 K below); clears 2 K below."""
    v = snap.coolant_inlet_c
    limit, warn = th.coolant_inlet_max_c, th.coolant_inlet_warning_c
    if v is None or limit is None or warn is None:
        return None
    track.coolant_hot = v >= warn
    raising, clearing = verdict_levels(
        v,
        {WARN: warn, CRIT: limit},
        {WARN: warn - COOLANT_CLEAR_K, CRIT: limit - COOLANT_CLEAR_K, INFO: 1e9},
    )
    verdict = Verdict(
        raising,
        clearing,
        value=v,
        unit="°C",
        what="coolant inlet",
        details={"coolant_limits_source": th.coolant_limits_source},
    )
    verdict.thresholds = {WARN: (warn, warn), CRIT: (limit, limit)}
    sev = max(raising, default=WARN)
    verdict.threshold, verdict.sea_level_threshold = verdict.thresholds[sev]
    return verdict


def _flow_part(
    snap: MinerSnapshot, th: MinerThresholds, track: LiquidTrack, t: float
) -> Verdict | None:
    """R11 low flow: below 0.7 × own 24-h median at similar power, held (see LOW_FLOW_HOLD_S)."""
    found = flow_estimate(snap, th)
    if found is None or snap.power_w is None or snap.is_mining is False:
        return None
    flow, estimated = found
    power = snap.power_w
    flows = track.flows
    while flows and flows[0][0] < t - FLOW_WINDOW_S:
        flows.popleft()
    similar = [f for (_, p, f) in flows if abs(p - power) <= SIMILAR_POWER * power]
    if not flows or t - flows[-1][0] >= FLOW_SAMPLE_SPACING_S:
        flows.append((t, power, flow))
    if len(similar) < FLOW_MIN_SAMPLES:
        return None
    median = statistics.median(similar)
    low = flow < LOW_FLOW_RATIO * median
    if low and track.low_since is None:
        track.low_since = t
    elif not low:
        track.low_since = None
    held = track.low_since is not None and t - track.low_since >= LOW_FLOW_HOLD_S
    clear = flow >= LOW_FLOW_CLEAR_RATIO * median
    threshold = LOW_FLOW_RATIO * median
    verdict = Verdict(
        frozenset({WARN}) if held else NONE,
        ALL if clear else frozenset({INFO, CRIT}),
        value=round(flow, 2),
        unit="L/min",
        what="coolant flow estimate (estimated power)" if estimated else "coolant flow estimate",
        below=True,
        tags=("low_flow",),
        details={"median_24h_l_per_min": round(median, 2), "samples": len(similar)},
    )
    verdict.thresholds = {WARN: (threshold, threshold)}
    verdict.threshold = verdict.sea_level_threshold = threshold
    return verdict


def r11(snap: MinerSnapshot, th: MinerThresholds, track: LiquidTrack, t: float) -> Verdict | None:
    """R11: coolant ΔT (0.8×/1× ΔT_max), low flow, outlet within 15 K of boiling."""
    parts: list[Verdict] = []
    inlet, outlet = snap.coolant_inlet_c, snap.coolant_outlet_c
    if inlet is not None and outlet is not None and th.coolant_delta_max_k is not None:
        dt_max = th.coolant_delta_max_k
        warn = DELTA_WARNING_SHARE * dt_max
        dt = outlet - inlet
        raising, clearing = verdict_levels(
            dt,
            {WARN: warn, CRIT: dt_max},
            {WARN: warn - 1.0, CRIT: dt_max - 1.0, INFO: 1e9},
        )
        v = Verdict(
            raising,
            clearing,
            value=round(dt, 2),
            unit="K",
            what="coolant outlet − inlet",
            details={"coolant_inlet_c": inlet, "coolant_outlet_c": outlet},
        )
        v.thresholds = {WARN: (warn, warn), CRIT: (dt_max, dt_max)}
        parts.append(v)
    if outlet is not None:
        boil = th.boiling_point_c
        limit = boil - BOILING_MARGIN_K
        near = outlet >= limit
        v = Verdict(
            frozenset({CRIT}) if near else NONE,
            ALL if outlet < limit - COOLANT_CLEAR_K else frozenset({INFO, WARN}),
            value=outlet,
            unit="°C",
            what="coolant outlet",
            tags=("near_boiling",),
            details={"boiling_point_c": round(boil, 2)},
        )
        v.thresholds = {CRIT: (limit, 100.0 - BOILING_MARGIN_K)}
        parts.append(v)
    flow = _flow_part(snap, th, track, t)
    if flow is not None:
        parts.append(flow)
    if not parts:
        return None
    return _combine(parts)


def _combine(parts: list[Verdict]) -> Verdict:
    """Raise on any part, clear a level only when every part clears it; lead = most severe."""
    raising = frozenset().union(*(p.raising for p in parts))
    clearing = frozenset(ALL)
    for p in parts:
        clearing &= p.clearing
    lead = max(parts, key=lambda p: max(p.raising, default=0))
    sev = max(lead.raising, default=min(lead.thresholds, default=WARN))
    threshold, sea = lead.thresholds.get(sev, (None, None))
    return Verdict(
        raising,
        clearing,
        value=lead.value,
        threshold=threshold,
        sea_level_threshold=sea,
        unit=lead.unit,
        what=lead.what,
        below=lead.below,
        tags=tuple(dict.fromkeys(tag for p in parts if p.raising for tag in p.tags)),
        details={k: v for p in parts for k, v in p.details.items()},
        thresholds=dict(lead.thresholds),
    )


def r8_liquid(snap: MinerSnapshot, th: MinerThresholds, *, running: bool) -> Verdict | None:
    """R8 (liquid): a stopped loop freezes: coolant inlet ≤ freeze + 5 K WARN, + 2 K CRIT."""
    v = snap.coolant_inlet_c
    if v is None:
        return None
    freeze = th.coolant_freeze_c
    warn, crit = freeze + FREEZE_WARNING_K, freeze + FREEZE_CRITICAL_K
    raising: set[Severity] = set()
    if not running and v <= warn:
        raising.add(WARN)
    if not running and v <= crit:
        raising.add(CRIT)
    clearing = {INFO}
    if running or v > crit + COOLANT_CLEAR_K:
        clearing.add(CRIT)
    if running or v > warn + COOLANT_CLEAR_K:
        clearing.add(WARN)
    verdict = Verdict(
        frozenset(raising),
        frozenset(clearing),
        value=v,
        unit="°C",
        what="coolant inlet",
        below=True,
        tags=("freeze",) if raising else (),
        details={"freeze_c": freeze},
    )
    verdict.thresholds = {WARN: (warn, warn), CRIT: (crit, crit)}
    sev = max(raising, default=WARN)
    verdict.threshold, verdict.sea_level_threshold = verdict.thresholds[sev]
    return verdict


def r9_limits(th: MinerThresholds) -> Verdict:
    """R9 INFO while a liquid miner's coolant limits are unknown (R2 liquid / R11 ΔT inactive)."""
    unknown = [
        name
        for name, value in (
            ("coolant_inlet_max_c", th.coolant_inlet_max_c),
            ("coolant_delta_max_k", th.coolant_delta_max_k),
        )
        if value is None
    ]
    if not th.liquid or not unknown:
        return Verdict(NONE, ALL, value=None, unit="", what="coolant limits")
    return Verdict(
        frozenset({INFO}),
        NONE,
        value=None,
        unit="",
        what="coolant limits not configured: " + ", ".join(unknown),
        tags=("coolant_limits_unknown",),
        details={"cooling": th.cooling, "unknown": ", ".join(unknown)},
    )


def site_cooler(hot: int, members: int) -> tuple[bool, bool]:
    """R11 site part: (raise: ≥ 30 % of the liquid miners hot, calm: below 30 %)."""
    if members == 0:
        return False, True
    ratio = hot / members
    return hot >= SITE_COOLER_MIN_MINERS and ratio >= SITE_COOLER_RATIO, ratio < SITE_COOLER_RATIO
