"""Rules R1–R10 of altitude-thermal.md §5 and the pool rules R12–R14: memory and verdicts.

Liquid-cooled miners (§7: R2 liquid, R11, R8 freeze, R9 coolant INFO) are judged by
:mod:`agent.alarms.liquid`; this module dispatches to it where a miner's ``cooling`` says so.

Each ``r*`` function reads one snapshot (plus the miner's bounded history) and returns a
:class:`~agent.alarms.state.Verdict`, or None when the snapshot lacks the data the rule needs
(the rule's state is then held, neither advanced nor reset). Durations that belong to a
*condition* rather than to a severity (R3's 5 min of saturated fans, R7's 5 min offline, R8's
30 min running cold) are tracked here; the rest is timing in :data:`SPECS`.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from agent.alarms import liquid
from agent.alarms.history import Series
from agent.alarms.model import Severity
from agent.alarms.state import Level, RuleSpec, Verdict, verdict_levels
from collectors import air
from collectors.snapshot import Cooling, Family

if TYPE_CHECKING:
    from collections.abc import Mapping

    from agent.alarms.air import SiteAir
    from agent.alarms.config import PoolAlarmSettings, PoolAllow, SiteThermal, ThermalSettings
    from agent.alarms.presets import MinerThresholds
    from collectors.snapshot import ErrorCode, MinerSnapshot, PoolInfo

INFO, WARN, CRIT = Severity.INFO, Severity.WARNING, Severity.CRITICAL
NONE: frozenset[Severity] = frozenset()
ALL: frozenset[Severity] = frozenset((INFO, WARN, CRIT))

SPECS: dict[str, RuleSpec] = {
    s.rule: s
    for s in (
        RuleSpec(
            "R1",
            "chip/board temperature",
            {WARN: Level(for_s=120, clear_for_s=120), CRIT: Level(for_polls=2, clear_for_s=120)},
        ),
        RuleSpec(
            "R2",
            "inlet temperature",
            {WARN: Level(for_s=600, clear_for_s=300), CRIT: Level(for_s=300, clear_for_s=300)},
        ),
        RuleSpec(
            "R3",
            "fan saturation",
            {WARN: Level(clear_for_s=300), CRIT: Level(clear_for_s=300)},
        ),
        RuleSpec(
            "R4",
            "rate of rise",
            {WARN: Level(clear_for_s=300), CRIT: Level(clear_for_s=300)},
        ),
        RuleSpec(
            "R5",
            "hashrate below expected",
            {WARN: Level(for_s=1800, clear_for_s=300), CRIT: Level(for_s=900, clear_for_s=300)},
        ),
        RuleSpec(
            "R6",
            "hashboard missing",
            {WARN: Level(for_polls=2, clear_polls=2), CRIT: Level(for_polls=2)},
        ),
        RuleSpec("R7", "offline", {WARN: Level(), CRIT: Level()}),
        RuleSpec(
            "R8",
            "cold start / condensation",
            {
                WARN: Level(for_polls=2, clear_for_s=120),
                CRIT: Level(for_polls=2, clear_for_s=120),
            },
        ),
        RuleSpec("R9", "site sanity", {INFO: Level(), WARN: Level()}),
        RuleSpec(
            "R10",
            "firmware temperature protection",
            {WARN: Level(clear_for_s=60), CRIT: Level(clear_for_s=60)},
        ),
        RuleSpec(
            "R12",
            "pool share health",
            {WARN: Level(clear_polls=2), CRIT: Level(clear_polls=2)},
        ),
        # WARN's for_s is pool_alarms.failover_for_s (the engine sets it from the config).
        RuleSpec("R13", "pool failover", {WARN: Level(for_s=600.0)}),
        RuleSpec("R14", "pool not allowed", {CRIT: Level()}),
        RuleSpec(
            "R11",
            "coolant ΔT, flow and boiling margin",
            {WARN: Level(for_s=120, clear_for_s=120), CRIT: Level(for_polls=2, clear_for_s=120)},
        ),
    )
}
LIQUID_SPECS: dict[str, RuleSpec] = {
    "R2": RuleSpec(
        "R2",
        "inlet temperature",
        {WARN: Level(for_s=300, clear_for_s=300), CRIT: Level(for_s=120, clear_for_s=300)},
    ),
}
"""Timing of a rule on a liquid-cooled miner where it differs (R2 liquid: 5 min / 2 min)."""
MINER_DATA_RULES = (
    "R1",
    "R2",
    "R3",
    "R4",
    "R6",
    "R8",
    "R10",
    "R11",
    "R9",
    "R5",
    "R12",
    "R13",
    "R14",
)
"""Evaluated on every successful poll, in this order (R5 reads R1/R3/R10 for its tag)."""
POOL_RULES = frozenset({"R12", "R13", "R14"})
R12_WARN_CLEAR = 2 / 3
"""R12 clears below this share of its thresholds (1.0 % for the 1.5 % warning)."""
R12_CRIT_CLEAR = 0.8

R1_CLEAR_K = 3.0
R2_CLEAR_K = 2.0
SATURATED = 0.95
UNSATURATED = 0.90
SATURATION_HOLD_S = 300.0
RUNNING_COLD_S = 1800.0
WARM_UPTIME_S = 900.0
LEARN_MIN_SAMPLES = 20


@dataclass(slots=True)
class MinerTrack:
    """What the engine remembers about one miner between polls (bounded)."""

    miner: str
    site: str
    family: Family = Family.UNKNOWN
    model: str | None = None
    reports_chips: bool = False
    thresholds: MinerThresholds | None = None
    thresholds_key: tuple[object, ...] | None = None
    hot: Series | None = None
    inlet_short: Series | None = None
    inlet_long: Series | None = None
    hashrate: Series | None = None
    sat_since: float | None = None
    cold_running_since: float | None = None
    cold_last_t: float | None = None
    down_since: float | None = None
    failures: int = 0
    last_reason: str | None = None
    last_hot: bool = False
    temp_protect: bool = False
    rise_min: float | None = None
    rise_samples: int = 0
    last_at: float | None = None
    limits: object = None
    """The firmware limits of the last poll (FirmwareLimits or None)."""
    shares: deque[tuple[float, int, int]] | None = None
    """R12: (time, all shares, bad shares) whenever the counters moved, over the window."""
    allowed_pools: dict[int, tuple[str | None, str | None]] | None = None
    """R14: the last allowed (url, worker) seen at each pool index (the pool 'before')."""
    failing_over: bool = False
    """R13: the last poll showed a backup pool or a dead active pool."""
    cooling: Cooling | None = None
    """The cooling the miner's snapshots last said (None: never said: air)."""
    coolant: liquid.LiquidTrack | None = None
    """Liquid-cooled miners: flow history and the coolant-inlet flag of R11's site part."""

    def liquid_track(self) -> liquid.LiquidTrack:
        """The liquid-cooling memory, made on first use."""
        if self.coolant is None:
            self.coolant = liquid.LiquidTrack()
        return self.coolant

    def series(self) -> tuple[Series, Series, Series, Series]:
        """Histories made on first use: hot 10 min, inlet 3 min and 2 h, hashrate 15 min."""
        if self.hot is None or self.inlet_short is None or self.inlet_long is None:
            self.hot = Series(600, 30)
            self.inlet_short = Series(180, 15)
            self.inlet_long = Series(7200, 240)
        if self.hashrate is None:
            self.hashrate = Series(900, 30)
        return self.hot, self.inlet_short, self.inlet_long, self.hashrate

    @property
    def learned_rise_k(self) -> float | None:
        """ΔT_ci0 learned at full fan (sea-level equivalent), once enough samples agree."""
        if self.rise_min is None or self.rise_samples < LEARN_MIN_SAMPLES:
            return None
        return round(self.rise_min, 1)


@dataclass(frozen=True, slots=True)
class Context:
    """Everything besides the snapshot a rule may read."""

    t: float
    air: SiteAir
    site: SiteThermal
    settings: ThermalSettings
    firing: dict[str, Severity | None]
    """Current severity of this miner's other rules (R5 tags, R3 reads R1)."""


def sensor_value(snap: MinerSnapshot, th: MinerThresholds) -> float | None:
    """The hottest reading of the preset's sensor (board or die)."""
    return snap.max_board_temp_c if th.sensor == "board" else snap.max_chip_temp_c


def inlet_value(snap: MinerSnapshot) -> float | None:
    """Air inlet: only from a real ambient (environment) sensor, never from board inlets.

    Board "inlet" fields are not air on every firmware: coolant on a stock S21+ Hydro, the chip
    minimum on Whatsminer API v3 (altitude-thermal.md §7). Unknown stays unknown.
    """
    return snap.inlet_temp_c


def fan_rpm(snap: MinerSnapshot) -> float | None:
    """Fastest fan (the controller drives all fans from one duty; a dead fan reads 0)."""
    rpms = [f.rpm for f in snap.fans if f.rpm is not None]
    return float(max(rpms)) if rpms else None


def record(track: MinerTrack, snap: MinerSnapshot, th: MinerThresholds, t: float) -> None:
    """Update the histories and condition trackers with one successful poll."""
    hot, inlet_short, inlet_long, _ = track.series()
    v = sensor_value(snap, th)
    if v is not None:
        hot.add(t, v)
    inlet = inlet_value(snap)
    if inlet is not None:
        inlet_short.add(t, inlet)
        inlet_long.add(t, inlet)
    rpm = fan_rpm(snap)
    if rpm is not None and th.rpm_max is not None:
        if rpm >= SATURATED * th.rpm_max:
            if track.sat_since is None:
                track.sat_since = t
            steady = t - track.sat_since >= SATURATION_HOLD_S
            if steady and v is not None and inlet is not None:
                sample = (v - inlet) / th.cooling_multiplier
                track.rise_min = sample if track.rise_min is None else min(track.rise_min, sample)
                track.rise_samples += 1
        else:
            track.sat_since = None


def _pick(*verdicts: Verdict | None) -> Verdict | None:
    """Combine parts of one rule: raise on any part, clear only when every part clears."""
    parts = [v for v in verdicts if v is not None]
    if not parts:
        return None
    raising = frozenset().union(*(p.raising for p in parts))
    clearing = frozenset(ALL)
    for p in parts:
        clearing &= p.clearing
    lead = max(parts, key=lambda p: (max(p.raising, default=0), -len(p.clearing)))
    tags = tuple(dict.fromkeys(tag for p in parts if p.raising for tag in p.tags))
    return Verdict(
        raising=raising,
        clearing=clearing,
        value=lead.value,
        threshold=lead.threshold,
        sea_level_threshold=lead.sea_level_threshold,
        unit=lead.unit,
        what=lead.what,
        tags=tags or lead.tags,
        details={k: v for p in parts for k, v in p.details.items()},
        thresholds=lead.thresholds,
    )


def _explain(
    verdict: Verdict, thresholds: Mapping[Severity, tuple[float | None, float | None]]
) -> Verdict:
    """Fill value/threshold from the most severe raising level (else the lowest level)."""
    verdict.thresholds = dict(thresholds)
    sev = max(verdict.raising, default=min(thresholds))
    verdict.threshold, verdict.sea_level_threshold = thresholds.get(sev, (None, None))
    return verdict


def r1(snap: MinerSnapshot, th: MinerThresholds) -> Verdict | None:
    """R1: hottest sensor vs derated warn/crit; clears 3 K below (optional PCB part)."""
    parts: list[Verdict | None] = []
    v = sensor_value(snap, th)
    if v is not None:
        raising, clearing = verdict_levels(
            v,
            {WARN: th.warning_c, CRIT: th.critical_c},
            {WARN: th.warning_c - R1_CLEAR_K, CRIT: th.critical_c - R1_CLEAR_K, INFO: 1e9},
        )
        what = "hottest board" if th.sensor == "board" else "hottest die"
        thr = {
            WARN: (th.warning_c, th.warning_sea_level_c),
            CRIT: (th.critical_c, th.critical_sea_level_c),
        }
        parts.append(_explain(Verdict(raising, clearing, value=v, unit="°C", what=what), thr))
    pcb = snap.max_board_temp_c
    if th.pcb_critical_c is not None and th.pcb_warning_c is not None and pcb is not None:
        raising, clearing = verdict_levels(
            pcb,
            {WARN: th.pcb_warning_c, CRIT: th.pcb_critical_c},
            {WARN: th.pcb_warning_c - R1_CLEAR_K, CRIT: th.pcb_critical_c - R1_CLEAR_K, INFO: 1e9},
        )
        thr = {
            WARN: (th.pcb_warning_c, th.pcb_critical_c - 5.0),
            CRIT: (th.pcb_critical_c, th.pcb_critical_c),
        }
        parts.append(
            _explain(Verdict(raising, clearing, value=pcb, unit="°C", what="hottest PCB"), thr)
        )
    return _pick(*parts)


def r2(snap: MinerSnapshot, th: MinerThresholds, track: MinerTrack) -> Verdict | None:
    """R2: inlet vs derated T_in,max (warn 3 K below); clears 2 K below. Liquid: coolant inlet."""
    if th.liquid:
        return liquid.r2_liquid(snap, th, track.liquid_track())
    v = inlet_value(snap)
    if v is None:
        return None
    raising, clearing = verdict_levels(
        v,
        {WARN: th.inlet_warning_c, CRIT: th.inlet_max_c},
        {WARN: th.inlet_warning_c - R2_CLEAR_K, CRIT: th.inlet_max_c - R2_CLEAR_K, INFO: 1e9},
    )
    sea = th.inlet_max_sea_level_c
    thr = {WARN: (th.inlet_warning_c, sea - 3.0), CRIT: (th.inlet_max_c, sea)}
    verdict = Verdict(
        raising,
        clearing,
        value=v,
        unit="°C",
        what="inlet",
        details={
            "inlet_rule": th.inlet_rule,
            "vendor_inlet_max_c": round(th.vendor_inlet_max_c, 2),
        },
    )
    return _explain(verdict, thr)


def r3(snap: MinerSnapshot, th: MinerThresholds, track: MinerTrack, ctx: Context) -> Verdict | None:
    """R3: fans saturated ≥ 5 min and heating (or R1 ≥ WARN); `degraded_airflow` at a mild inlet.

    Not for liquid-cooled miners: absent fans or 0 rpm are normal there (always clears).
    """
    if th.liquid:
        return Verdict(NONE, ALL, value=None, unit="rpm", what="fan speed (liquid-cooled)")
    rpm = fan_rpm(snap)
    if rpm is None or th.rpm_max is None:
        return None
    hot, _, _, _ = track.series()
    v = sensor_value(snap, th)
    slope = hot.slope_per_min(ctx.t, 600, 60)
    held = track.sat_since is not None and ctx.t - track.sat_since >= SATURATION_HOLD_S
    r1_sev = ctx.firing.get("R1")
    heating = slope is not None and slope > 0.2  # noqa: PLR2004 - K/min, the note's figure
    raising: set[Severity] = set()
    if held and (heating or (r1_sev is not None and r1_sev >= WARN)):
        raising.add(WARN)
    if held and v is not None and v >= th.critical_c - 3.0 and slope is not None and slope > 0:
        raising.add(CRIT)
    unsat = rpm < UNSATURATED * th.rpm_max
    clearing = {INFO}
    if unsat:
        clearing |= {WARN, CRIT}
    elif v is not None and v < th.critical_c - 5.0:
        clearing.add(CRIT)
    inlet = inlet_value(snap)
    tags = ("degraded_airflow",) if inlet is not None and inlet <= th.inlet_max_c - 5.0 else ()
    rpm_thr = SATURATED * th.rpm_max
    verdict = Verdict(
        frozenset(raising),
        frozenset(clearing),
        value=rpm,
        unit="rpm",
        what="fan speed",
        tags=tags,
        details={
            "slope_k_per_min": None if slope is None else round(slope, 3),
            "sensor_c": v,
            "inlet_c": inlet,
            "inlet_max_c": round(th.inlet_max_c, 2),
        },
    )
    return _explain(verdict, {WARN: (rpm_thr, rpm_thr), CRIT: (rpm_thr, rpm_thr)})


def r4(snap: MinerSnapshot, th: MinerThresholds, track: MinerTrack, ctx: Context) -> Verdict | None:
    """R4: 2-min slope of the hottest sensor ≥ 3/6 K/min; inlet > 5 K/15 min or 20 K/h."""
    if sensor_value(snap, th) is None and inlet_value(snap) is None:
        return None  # nothing new in this poll (e.g. slow tier): do not re-judge old history
    hot, inlet_short, inlet_long, _ = track.series()
    t = ctx.t
    warming_up = snap.uptime_s is not None and snap.uptime_s < ctx.settings.warm_up_s
    slope = None if warming_up else hot.slope_per_min(t, 120, 60)
    inlet_change = inlet_short.range(t, 120)
    steady = inlet_change is None or inlet_change < 1.0
    r15 = inlet_long.range(t, 900)
    r60 = inlet_long.range(t, 3600)
    if slope is None and r15 is None:
        return None
    parts: list[Verdict | None] = []
    if slope is not None:
        raising = set()
        if steady and slope >= 3.0:  # noqa: PLR2004 - K/min, the note's figure
            raising.add(WARN)
        if steady and slope >= 6.0:  # noqa: PLR2004 - K/min, the note's figure
            raising.add(CRIT)
        clearing = {INFO, WARN, CRIT} if slope < 1.0 else {INFO}
        parts.append(
            _explain(
                Verdict(
                    frozenset(raising),
                    frozenset(clearing),
                    value=round(slope, 3),
                    unit="K/min",
                    what="2-min temperature slope",
                    details={"inlet_change_2min_k": inlet_change},
                ),
                {WARN: (3.0, 3.0), CRIT: (6.0, 6.0)},
            )
        )
    if r15 is not None:
        fast = r15 > 5.0 or (r60 is not None and r60 > 20.0)  # noqa: PLR2004 - ASHRAE rates
        calm = r15 <= 5.0 and (r60 is None or r60 <= 20.0)  # noqa: PLR2004 - ASHRAE rates
        parts.append(
            _explain(
                Verdict(
                    frozenset({WARN}) if fast else NONE,
                    ALL if calm else frozenset({INFO, CRIT}),
                    value=round(r15, 2),
                    unit="K/15 min",
                    what="inlet change",
                    tags=("inlet_rate",),
                    details={"inlet_change_1h_k": r60},
                ),
                {WARN: (5.0, 5.0)},
            )
        )
    return _pick(*parts)


def r5(snap: MinerSnapshot, track: MinerTrack, ctx: Context) -> Verdict | None:
    """R5: 15-min mean hashrate / (expected × site factor) < 0.90 WARN, < 0.75 CRIT."""
    if snap.is_mining is False or snap.hashrate_hs is None:
        return None
    expected = snap.expected_hashrate_hs
    if expected is None or expected <= 0:
        return None
    _, _, _, series = track.series()
    series.add(ctx.t, snap.hashrate_hs / (expected * ctx.site.hashrate_profile_factor))
    r = series.mean(ctx.t, 900)
    if r is None:
        return None
    raising = {s for s, thr in ((WARN, 0.90), (CRIT, 0.75)) if r < thr}
    clearing = {INFO} | {s for s, thr in ((WARN, 0.93), (CRIT, 0.78)) if r >= thr}
    throttle = (
        any((ctx.firing.get(rule) or 0) >= WARN for rule in ("R1", "R3")) or track.temp_protect
    )
    verdict = Verdict(
        frozenset(raising),
        frozenset(clearing),
        value=round(r, 4),
        unit="ratio",
        what="15-min hashrate / expected",
        below=True,
        tags=("thermal_throttle",) if throttle else (),
        details={"expected_hs": expected, "profile_factor": ctx.site.hashrate_profile_factor},
    )
    return _explain(verdict, {WARN: (0.90, 0.90), CRIT: (0.75, 0.75)})


def r6(snap: MinerSnapshot, th: MinerThresholds) -> Verdict | None:
    """R6: fewer boards than expected → CRIT; chips < 98 % of expected → WARN (each for 2 polls)."""
    if not snap.boards:
        return None
    present = sum(1 for b in snap.boards if not b.missing)
    expected = snap.expected_boards or th.expected_boards
    if expected is None and any(b.missing for b in snap.boards):
        expected = len(snap.boards)
    raising: set[Severity] = set()
    clearing: set[Severity] = {INFO}
    if expected is not None and present < expected:
        raising.add(CRIT)
    else:
        clearing.add(CRIT)
    chips = exp_chips = 0
    for b in snap.boards:
        exp = b.expected_chips or th.expected_chips
        if exp is None:
            continue
        exp_chips += exp
        chips += 0 if b.missing or b.chips is None else b.chips
    ratio = chips / exp_chips if exp_chips else None
    if ratio is not None and ratio < 0.98:  # noqa: PLR2004 - the note's figure
        raising.add(WARN)
    else:
        clearing.add(WARN)
    verdict = Verdict(
        frozenset(raising),
        frozenset(clearing),
        value=float(present),
        unit="boards",
        what="hashboards present",
        below=True,  # alarms when fewer boards than expected are present
        details={"expected_boards": expected, "chips": chips, "expected_chips": exp_chips or None},
    )
    if CRIT not in raising and WARN in raising:
        verdict.value, verdict.unit, verdict.what = ratio, "ratio", "chips / expected"
        verdict.below = True
        return _explain(verdict, {WARN: (0.98, 0.98)})
    exp_f = None if expected is None else float(expected)
    return _explain(verdict, {CRIT: (exp_f, exp_f), WARN: (0.98, 0.98)})


def r7(track: MinerTrack, t: float) -> Verdict:
    """R7: 3 failed polls WARN, down 5 min CRIT; `probable_thermal_shutdown` if it was hot."""
    if track.down_since is None:
        return Verdict(NONE, ALL, value=0.0, unit="failed polls", what="consecutive failed polls")
    raising = set()
    if track.failures >= 3:  # noqa: PLR2004 - the note's figure
        raising.add(WARN)
    if t - track.down_since >= 300.0:  # noqa: PLR2004 - the note's figure
        raising.add(CRIT)
    verdict = Verdict(
        frozenset(raising),
        frozenset({INFO}),
        value=float(track.failures),
        unit="failed polls",
        what="consecutive failed polls",
        tags=("probable_thermal_shutdown",) if track.last_hot else (),
        details={"down_for_s": round(t - track.down_since, 1), "reason": track.last_reason},
    )
    return _explain(verdict, {WARN: (3.0, 3.0), CRIT: (300.0, 300.0)})


def running(snap: MinerSnapshot) -> bool:
    """Hashing and warm: is_mining not false, uptime ≥ 15 min (when known), hashrate not 0."""
    if snap.is_mining is False or (snap.hashrate_hs is not None and snap.hashrate_hs <= 0):
        return False
    return snap.uptime_s is None or snap.uptime_s >= WARM_UPTIME_S


def _condensation(
    snap: MinerSnapshot, track: MinerTrack, ctx: Context, inlet: float, *, run: bool
) -> tuple[set[Severity], set[Severity], float, float] | None:
    """R8 condensation part: dew point of the inlet air vs the coldest surface (raise, clear)."""
    rh = ctx.site.relative_humidity_pct
    if rh is None:
        return None
    dew = air.dew_point_c(inlet, rh)
    surfaces = [b.board_temp_c for b in snap.boards if b.board_temp_c is not None] or [
        b.chip_temp_c for b in snap.boards if b.chip_temp_c is not None
    ]
    _, _, inlet_long, _ = track.series()
    surface = min(surfaces) if surfaces else (None if run else inlet_long.minimum(ctx.t, 7200))
    if surface is None:
        return None
    cond_raise = {s for s, off in ((WARN, -2.0), (CRIT, 0.0)) if dew >= surface + off}
    cond_clear = {INFO} | {s for s, off in ((WARN, -3.0), (CRIT, -1.0)) if dew < surface + off}
    return cond_raise, cond_clear, dew, surface


def _cold(
    track: MinerTrack, t: float, inlet: float, t_min: float, *, run: bool
) -> tuple[set[Severity], set[Severity], list[str]]:
    """R8 cold part: (raise, clear, tags) for a cold start or a miner running below T_min.

    Running cold raises from one poll before the 30 min, so that the spec's two-poll debounce
    ends exactly at 30 min (altitude-thermal.md §5: "running below T_min for 30 min → WARN").
    """
    step = 0.0 if track.cold_last_t is None else max(0.0, t - track.cold_last_t)
    track.cold_last_t = t
    if run and inlet < t_min:
        if track.cold_running_since is None:
            track.cold_running_since = t
    else:
        track.cold_running_since = None
    raising: set[Severity] = set()
    tags: list[str] = []
    if not run and inlet < t_min:
        raising |= {WARN, CRIT}
        tags.append("cold_start")
    elif not run and inlet < t_min + 5.0:
        raising.add(WARN)
        tags.append("cold_start")
    since = track.cold_running_since
    if since is not None and t - since > 0.0 and t - since >= RUNNING_COLD_S - step:
        raising.add(WARN)
        tags.append("running_cold")
    clearing: set[Severity] = {INFO}
    if run or inlet >= t_min + 2.0:
        clearing.add(CRIT)
    if (run and inlet >= t_min + 2.0) or (not run and inlet >= t_min + 7.0):
        clearing.add(WARN)
    return raising, clearing, tags


def r8(snap: MinerSnapshot, th: MinerThresholds, track: MinerTrack, ctx: Context) -> Verdict | None:
    """R8: cold start below T_min (+5 K warn), running cold 30 min, dew point near the surface.

    Liquid-cooled miners: the freeze part on the coolant inlet (:func:`liquid.r8_liquid`).
    """
    if th.liquid:
        return liquid.r8_liquid(snap, th, running=running(snap))
    inlet = inlet_value(snap)
    if inlet is None:
        return None
    t_min = th.t_min_c
    run = running(snap)
    raising, clearing, tags = _cold(track, ctx.t, inlet, t_min, run=run)
    thr: dict[Severity, tuple[float | None, float | None]] = {
        WARN: (t_min + 5.0, t_min + 5.0),
        CRIT: (t_min, t_min),
    }
    verdict = Verdict(
        frozenset(raising), frozenset(clearing), value=inlet, unit="°C", what="inlet", below=True
    )
    cond = _condensation(snap, track, ctx, inlet, run=run)
    if cond is not None:
        cond_raise, cond_clear, dew, surface = cond
        if cond_raise:
            tags.append("condensation")
            raising |= cond_raise
            verdict.value, verdict.what, verdict.below = round(dew, 2), "inlet dew point", False
            thr = {WARN: (surface - 2.0, None), CRIT: (surface, None)}
        clearing &= cond_clear
        verdict.details = {"dew_point_c": round(dew, 2), "surface_c": surface, "inlet_c": inlet}
    if CRIT in raising and not run:
        tags.append("start_blocked")
    verdict.raising, verdict.clearing, verdict.tags = (
        frozenset(raising),
        frozenset(clearing),
        tuple(tags),
    )
    return _explain(verdict, thr)


_TEMP_MESSAGE = re.compile(
    r"(high|over)[ -]?temp|temp\w*\W+(\w+\W+)?(too high|protect)|overheat|too hot", re.IGNORECASE
)
_WHATSMINER_PSU_HOT = frozenset({203, 204, 233, 234, 235, 243, 244, 245, 275})


def code_severity(family: Family, error: ErrorCode) -> Severity | None:
    """R10: severity of a firmware error, or None when it is not a thermal one.

    Whatsminer codes (pyasic's table): 203/204 and 233–245, 275 PSU high temperature, 350–359
    slot temperature protect, 360–363 hashboard high temperature, 600/610 environment too hot,
    505n chips temperature protect → CRIT; 370 environment temperature fluctuates → WARN.
    Other firmwares: messages saying high temperature / temperature protect / overheat → CRIT.
    """
    code = error.code
    if code is not None and family in (Family.WHATSMINER, Family.UNKNOWN):
        if code == 370:  # noqa: PLR2004 - vendor code
            return WARN
        if (
            code in _WHATSMINER_PSU_HOT
            or 350 <= code <= 363  # noqa: PLR2004 - vendor codes
            or code in (600, 610)
            or 5050 <= code <= 5059  # noqa: PLR2004 - vendor codes
        ):
            return CRIT
    if _TEMP_MESSAGE.search(error.message):
        return CRIT
    return None


_VENDOR = {
    Family.ANTMINER: "Antminer",
    Family.WHATSMINER: "Whatsminer",
    Family.AVALON: "Avalon",
    Family.BITAXE: "Bitaxe",
    Family.BRAIINS: "Braiins OS",
    Family.VNISH: "VNish",
}


def error_text(family: Family, error: ErrorCode) -> str:
    """R10's name for one firmware error: its code and its text, for every family.

    ``Whatsminer error 600: Environment temperature is too high.``; without a code (Antminer
    status texts, VNish chain states): ``Antminer error: Temperature too high, protect``.
    """
    vendor = _VENDOR.get(family, "firmware")
    code = f" {error.code}" if error.code is not None else ""
    return f"{vendor} error{code}: {error.message}"


def r10(snap: MinerSnapshot, track: MinerTrack) -> Verdict | None:
    """R10: thermal firmware error codes → CRIT (370 → WARN); clears when the code is gone."""
    if snap.errors is None:
        return None
    found = [(s, e) for e in snap.errors if (s := code_severity(track.family, e)) is not None]
    track.temp_protect = any(s >= CRIT for s, _ in found)
    top = max((s for s, _ in found), default=None)
    raising = frozenset(s for s in (WARN, CRIT) if top is not None and s <= top)
    codes = ", ".join(str(e.code) if e.code is not None else e.message for _, e in found)
    named = "; ".join(error_text(track.family, e) for _, e in found)
    return Verdict(
        raising,
        ALL - raising,
        value=None,
        unit="",
        what=named or "no firmware temperature error",
        tags=("temperature_protect",) if track.temp_protect else (),
        details={"errors": codes or None},
    )


def r9(site_air: SiteAir) -> Verdict:
    """R9: implausible measured pressure → WARN; above 2,000 m / 3,050 m → INFO."""
    raising: set[Severity] = set()
    tags: list[str] = []
    if site_air.pressure_implausible:
        raising.add(WARN)
        tags.append("pressure_implausible")
    if site_air.altitude_m > 2000.0:  # noqa: PLR2004 - IEC 60664-1 / GB 4943.1 limit
        raising.add(INFO)
        tags.append("psu_altitude_rating")
    if site_air.altitude_m > 3050.0:  # noqa: PLR2004 - ASHRAE TC 9.9 maximum elevation
        tags.append("outside_ashrae_envelope")
    if WARN in raising:
        value, unit, what = site_air.measured_pressure_kpa, "kPa", "measured station pressure"
        thr = (round(site_air.isa_pressure_kpa * 1.05, 2), None)
    else:
        value, unit, what = site_air.altitude_m, "m", "site altitude"
        thr = (3050.0 if site_air.altitude_m > 3050.0 else 2000.0, None)  # noqa: PLR2004
    return Verdict(
        frozenset(raising),
        ALL - raising,
        value=value,
        unit=unit,
        what=what,
        tags=tuple(tags),
        threshold=thr[0],
        details={"isa_pressure_kpa": round(site_air.isa_pressure_kpa, 2)},
        thresholds={WARN: thr, INFO: thr},
    )


# ---- pool rules ---------------------------------------------------------------------------


def _share_totals(pools: tuple[PoolInfo, ...]) -> tuple[int, int] | None:
    """(all, bad) shares summed over the pools that report counters; None if none does."""
    total = bad = 0
    known = False
    for pool in pools:
        if pool.accepted is None:
            continue
        known = True
        rejected = pool.rejected or 0
        stale = pool.stale or 0
        total += pool.accepted + rejected + stale
        bad += rejected + stale
    return (total, bad) if known else None


def r12(snap: MinerSnapshot, track: MinerTrack, t: float, cfg: PoolAlarmSettings) -> Verdict | None:
    """R12: (rejected + stale) / all shares over the window ≥ 1.5 % WARN, ≥ 5 % CRIT.

    Counters are the firmware's since it started: a counter that went down is a restart, and
    the history starts again. Fewer than ``share_min_shares`` shares in the window is not judged.
    """
    totals = _share_totals(snap.pools or ())
    if totals is None:
        return None
    total, bad = totals
    hist = track.shares
    if hist is None:
        hist = track.shares = deque()
    if hist and (total < hist[-1][1] or bad < hist[-1][2]):
        hist.clear()  # the miner restarted: its counters were reset
    if not hist or (total, bad) != hist[-1][1:]:
        hist.append((t, total, bad))
    window = cfg.share_window_s
    while len(hist) > 1 and hist[1][0] <= t - window:
        hist.popleft()  # keep one sample at or before the window's start as the baseline
    t0, total0, bad0 = hist[0]
    shares = total - total0
    if shares < cfg.share_min_shares:
        return None
    ratio = (bad - bad0) / shares
    warn, crit = cfg.share_warning_ratio, cfg.share_critical_ratio
    raising, clearing = verdict_levels(
        ratio,
        {WARN: warn, CRIT: crit},
        {WARN: warn * R12_WARN_CLEAR, CRIT: crit * R12_CRIT_CLEAR, INFO: 1.0},
    )
    stale_known = any(p.stale is not None for p in snap.pools or ())
    verdict = Verdict(
        raising,
        clearing,
        value=round(ratio, 5),
        unit="ratio",
        what="(rejected + stale) / shares" if stale_known else "rejected / shares",
        tags=() if stale_known else ("stale_unknown",),
        details={"shares": shares, "bad_shares": bad - bad0, "window_s": round(t - t0, 1)},
    )
    return _explain(verdict, {WARN: (warn, warn), CRIT: (crit, crit)})


def _pool_label(pool: PoolInfo | None) -> str | None:
    if pool is None:
        return None
    return f"{pool.url or '?'} (pool {pool.index}, worker {pool.user or '?'})"


def r13(snap: MinerSnapshot, track: MinerTrack) -> Verdict | None:
    """R13: mining on a backup pool, on a pool not alive, or on none (timing in the spec).

    A miner that is not mining (asleep, curtailed) needs no pool: held, not judged.
    """
    pools = snap.pools
    if not pools or all(p.active is None for p in pools) or snap.is_mining is False:
        return None
    primary = min(p.index for p in pools)
    active = next((p for p in pools if p.active), None)
    reason = None
    if active is None:
        reason = "no_active_pool"
    elif active.alive is False:
        reason = "active_pool_dead"
    elif active.index != primary:
        reason = "backup_pool"
    track.failing_over = reason is not None
    return Verdict(
        frozenset({WARN}) if reason else NONE,
        NONE if reason else ALL,
        value=None if active is None else float(active.index),
        unit="pool index",
        what="active pool",
        tags=(reason,) if reason else (),
        details={
            "active_pool": _pool_label(active),
            "primary_pool": _pool_label(next((p for p in pools if p.index == primary), None)),
            "pools_alive": sum(1 for p in pools if p.alive),
        },
        thresholds={WARN: (float(primary), float(primary))},
        threshold=float(primary),
    )


def pool_allowed(pool: PoolInfo, allowed: tuple[PoolAllow, ...]) -> bool:
    """Whether ``pool`` matches an allow-list entry (URL case-insensitive, worker exact)."""
    url = (pool.url or "").lower()
    worker = pool.user or ""
    return any(
        fnmatchcase(url, entry.url.lower()) and fnmatchcase(worker, entry.worker)
        for entry in allowed
    )


def r14(
    snap: MinerSnapshot, track: MinerTrack, allowed: tuple[PoolAllow, ...] | None
) -> Verdict | None:
    """R14: a configured pool (URL or worker) outside the site's allow-list → CRIT at once.

    Names the pool before (the last allowed one seen at that index) and after. No allow-list:
    the rule is off.
    """
    if allowed is None or snap.pools is None:
        return None
    before = track.allowed_pools
    if before is None:
        before = track.allowed_pools = {}
    bad = [p for p in snap.pools if not pool_allowed(p, allowed)]
    for pool in snap.pools:
        if pool not in bad:
            before[pool.index] = (pool.url, pool.user)
    if not bad:
        return Verdict(NONE, ALL, value=None, unit="", what="pools allowed")
    first = bad[0]
    was_url, was_worker = before.get(first.index, (None, None))
    was = f" (was {was_url or '?'}, worker {was_worker or '?'})" if was_url or was_worker else ""
    return Verdict(
        frozenset({CRIT}),
        NONE,
        value=None,
        unit="",
        what=f"pool {first.index} {first.url or '?'} worker {first.user or '?'}{was}",
        tags=("pool_not_allowed",),
        details={
            "pool_index": first.index,
            "pool_after": first.url,
            "worker_after": first.user,
            "pool_before": was_url,
            "worker_before": was_worker,
            "pools_not_allowed": len(bad),
        },
    )
