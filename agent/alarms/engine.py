"""The alarm engine: observations in, AlarmTransitions out, with state that survives restarts.

Usage (the service calls ``evaluate`` every 1–5 s with the polls since the last call)::

    store = AlarmStore(state_dir / "alarms.sqlite3")
    engine = AlarmEngine(cfg.thermal, cfg.sites, store=store, autocommit=False)
    transitions = engine.evaluate(time.time(), observations)
    publisher.alarm_transitions(transitions)                   # committed to the MQTT outbox
    engine.commit()                                            # only then: alarm state saved
    engine.active()                                            # -> metrics, /api/v1/alarms

Order matters for "no event lost": if the state were saved first, a crash before the outbox
commit would leave an alarm the restarted engine believes was announced. With
``autocommit=False`` the caller saves with :meth:`AlarmEngine.commit` after delivering the
transitions (a crash in between re-announces at worst, it never loses); the default
``autocommit=True`` saves at the end of each ``evaluate``/``forget`` (callers with no outbox).

Per-miner rules run on each successful poll of that miner (at the poll's time); R7 (offline) and
the site rules (R7 outage, R9) run on every call. Memory per miner is a few bounded histories
(see :mod:`agent.alarms.history`); per-rule state exists only while a rule is pending or firing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import structlog

from agent.alarms import liquid, rules
from agent.alarms.air import SiteAir, site_air
from agent.alarms.config import PoolAlarmSettings
from agent.alarms.model import AlarmTransition, Severity, TransitionKind
from agent.alarms.presets import (
    PRESETS,
    MinerThresholds,
    apply_overrides,
    derate,
    normalise_model,
    select_preset,
)
from agent.alarms.rules import LIQUID_SPECS, SPECS, Context, MinerTrack
from agent.alarms.state import AlarmState, RuleSpec, Transition, Verdict
from agent.alarms.store import StoredAlarm
from collectors.snapshot import Cooling, Family

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from agent.alarms.air import SiteSpec
    from agent.alarms.config import PoolAllow, SiteThermal, ThermalSettings
    from agent.alarms.store import AlarmStore
    from collectors.snapshot import MinerSnapshot

log = structlog.get_logger(__name__)

Key = tuple[str, str | None, str]
"""(site, miner or None for site-level alarms, rule)."""

SITE_RULES = ("R7", "R9", "R11", "R13")
RESTORED_SITE_GRACE_S = 120.0
"""A restored site-level R7 waits this long after start before it may clear."""


@dataclass(frozen=True, slots=True)
class FirmwareLimits:
    """Thermal limits the firmware itself reports (they win over presets and overrides)."""

    critical_c: float | None = None
    inlet_max_c: float | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    """One poll outcome."""

    miner: str
    site: str
    at: float
    snapshot: MinerSnapshot | None
    failure_reason: str | None = None
    model: str | None = None
    limits: FirmwareLimits | None = None


@dataclass(frozen=True, slots=True)
class ActiveAlarm:
    """A firing alarm with the evidence an operator needs to trust it."""

    site: str
    miner: str | None
    rule: str
    title: str
    severity: Severity
    since: float
    updated_at: float
    value: float | None
    threshold: float | None
    sea_level_threshold: float | None
    unit: str
    what: str
    below: bool
    altitude_m: float
    delta: float
    cooling_multiplier: float
    tags: tuple[str, ...] = ()
    details: dict[str, float | str | None] = field(default_factory=dict)

    @property
    def altitude_shift(self) -> float | None:
        """How far altitude moved the threshold (threshold − sea-level threshold)."""
        if self.threshold is None or self.sea_level_threshold is None:
            return None
        return self.threshold - self.sea_level_threshold

    @property
    def summary(self) -> str:
        """One line: what, value, threshold, and how altitude moved it."""
        unit, threshold, sea = self.unit, self.threshold, self.sea_level_threshold
        text = f"{self.title} {self.severity.label}: {self.what}"
        if self.value is not None or unit:  # R10/R14 name what they found, with no value
            text += f" {_fmt(self.value, unit)}"
        if threshold is not None:
            beyond = self.value is None or (
                self.value < threshold if self.below else self.value >= threshold
            )
            symbol = ("<" if self.below else "≥") if beyond else ("≥" if self.below else "<")
            text += f" {symbol} {_fmt(threshold, unit)}"
            if sea is not None and unit == "°C" and abs(threshold - sea) >= 0.05:  # noqa: PLR2004
                m = self.cooling_multiplier
                text += (
                    f" (sea level {_fmt(sea, unit)}; {threshold - sea:+.1f} K at"
                    f" {self.altitude_m:,.0f} m, δ {self.delta:.3f}, M {m:.2f})"
                )
            if not beyond:
                text += ", within the hysteresis band: not cleared yet"
        return text

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view, including the ``explanation``."""
        shift = self.altitude_shift
        return {
            "site": self.site,
            "miner": self.miner,
            "rule": self.rule,
            "title": self.title,
            "severity": self.severity.label,
            "since": self.since,
            "updated_at": self.updated_at,
            "tags": list(self.tags),
            "summary": self.summary,
            "explanation": {
                "what": self.what,
                "value": _r(self.value),
                "unit": self.unit,
                "comparison": "<" if self.below else ">=",
                "threshold": _r(self.threshold),
                "sea_level_threshold": _r(self.sea_level_threshold),
                "altitude_shift": _r(shift),
                "altitude_m": self.altitude_m,
                "delta": round(self.delta, 4),
                "cooling_multiplier": round(self.cooling_multiplier, 4),
                "details": self.details,
            },
        }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "?"
    if unit in {"ratio", "K/min"}:
        return f"{value:.2f}" if unit == "ratio" else f"{value:.1f} {unit}"
    if unit in {"rpm", "m", "boards", "failed polls"}:
        return f"{value:,.0f} {unit}"
    return f"{value:.1f} {unit}".rstrip()


class AlarmEngine:
    """Evaluates rules R1–R10 and R12–R14 per miner and site and keeps their alarm state."""

    def __init__(
        self,
        settings: ThermalSettings,
        sites: Sequence[SiteSpec],
        *,
        store: AlarmStore | None = None,
        autocommit: bool = True,
        pool_settings: PoolAlarmSettings | None = None,
    ) -> None:
        """Resolve site air; load persisted firing alarms from ``store`` (if any).

        ``autocommit=False``: ``evaluate``/``forget`` leave the store alone until ``commit``.
        ``pool_settings``: R12/R13 timing and thresholds (defaults when None); each site's
        ``pools.allowed`` (when the site has one) is R14's allow-list.
        """
        self.settings = settings
        self.pool_settings = pool_settings or PoolAlarmSettings()
        self._specs = dict(SPECS)
        r13_warn = replace(
            SPECS["R13"].levels[Severity.WARNING], for_s=self.pool_settings.failover_for_s
        )
        self._specs["R13"] = replace(SPECS["R13"], levels={Severity.WARNING: r13_warn})
        self._allowed: dict[str, tuple[PoolAllow, ...] | None] = {
            s.name: getattr(getattr(s, "pools", None), "allowed", None) for s in sites
        }
        self._failover: dict[str, set[str]] = {}
        self._store = store
        self._autocommit = autocommit
        self._sites: dict[str, SiteAir] = {
            s.name: site_air(s.name, s.altitude_m, s.station_pressure_kpa) for s in sites
        }
        self._site_gen: dict[str, int] = dict.fromkeys(self._sites, 0)
        self._site_thermal: dict[str, SiteThermal] = {}
        self._tracks: dict[str, MinerTrack] = {}
        self._states: dict[Key, AlarmState] = {}
        self._down: dict[str, set[str]] = {}
        self._members: dict[str, set[str]] = {}
        self._dirty: set[Key] = set()
        self._started_at: float | None = None
        self._maintenance: frozenset[str] = frozenset()
        #: Bumped on every transition (and restore): the set of firing alarms and their
        #: severities can only have changed if this moved (the /metrics renderer relies on it).
        self.changes = 0
        if store is not None:
            self._restore(store.load())

    # ---- public API -------------------------------------------------------------------------

    def commit(self) -> bool:
        """Save the alarm state changed since the last save; False if the write failed.

        Call after the transitions of those changes were handed to (committed by) the event
        publisher. A failed write is retried by the next ``commit``.
        """
        self._flush()
        return not self._dirty

    @property
    def state_write_failures(self) -> int:
        """Failed writes of alarm state (``altiwatch_state_write_failures_total``)."""
        return 0 if self._store is None else self._store.write_failures

    def site_air(self, site: str) -> SiteAir:
        """The site's air (δ, M, h_p, pressure source). KeyError for an unknown site."""
        return self._sites[site]

    def set_site_pressure(self, site: str, pressure_kpa: float | None) -> None:
        """Feed a new station pressure reading (e.g. from the site's ``pressure_file``)."""
        current = self._sites[site]
        if pressure_kpa == current.measured_pressure_kpa:
            return
        self._sites[site] = site_air(site, current.altitude_m, pressure_kpa)
        self._site_gen[site] += 1

    def set_site_humidity(self, site: str, relative_humidity_pct: float | None) -> None:
        """Feed a live inlet humidity reading for R8's condensation check (None: unknown)."""
        current = self._thermal(site)
        self._site_thermal[site] = current.model_copy(
            update={"relative_humidity_pct": relative_humidity_pct}
        )

    def _thermal(self, site: str) -> SiteThermal:
        found = self._site_thermal.get(site)
        if found is None:
            found = self._site_thermal[site] = self.settings.site(site)
        return found

    def share_health(self, miner: str) -> dict[str, float] | None:
        """R12's current reading for ``miner``: bad-share ratio, shares and seconds it covers.

        None until two pool polls with counters are known (or when no share moved).
        """
        track = self._tracks.get(miner)
        hist = None if track is None else track.shares
        if not hist or len(hist) < 2:  # noqa: PLR2004 - a delta needs two samples
            return None
        t0, total0, bad0 = hist[0]
        t1, total1, bad1 = hist[-1]
        if total1 <= total0:
            return None
        shares = total1 - total0
        return {
            "bad_ratio": round((bad1 - bad0) / shares, 5),
            "shares": float(shares),
            "window_s": round(t1 - t0, 1),
        }

    def thresholds(self, miner: str) -> MinerThresholds | None:
        """The derated thresholds in force for ``miner`` (None until it has been observed)."""
        track = self._tracks.get(miner)
        return None if track is None else self._thresholds(track)

    def active(self) -> list[ActiveAlarm]:
        """Every firing alarm, with its explanation, most severe first."""
        out = []
        for (site, miner, rule), state in self._states.items():
            if state.severity is None:
                continue
            out.append(self._active(site, miner, rule, state, state.severity))
        out.sort(key=lambda a: (-a.severity, a.site, a.miner or "", a.rule))
        return out

    def forget(self, miner: str) -> list[AlarmTransition]:
        """Drop a miner removed from the inventory; clear its firing alarms."""
        track = self._tracks.pop(miner, None)
        out = []
        for key in [k for k in self._states if k[1] == miner]:
            state = self._states.pop(key)
            if state.severity is not None:
                out.append(
                    self._transition(
                        key,
                        state,
                        Transition(TransitionKind.CLEARED, state.severity, state.severity),
                        state.updated_at or 0.0,
                        removed=True,
                    )
                )
                self._dirty.add(key)
        if track is not None:
            self._down.get(track.site, set()).discard(miner)
            self._members.get(track.site, set()).discard(miner)
            self._failover.get(track.site, set()).discard(miner)
        if self._autocommit:
            self._flush()
        return out

    def set_maintenance(self, miners: Collection[str]) -> None:
        """Miners in maintenance: left out of the R7 site-outage ratio (their state is kept)."""
        self._maintenance = frozenset(miners)

    def firing(self, miner: str) -> list[AlarmTransition]:
        """The miner's firing alarms as RAISED transitions with their evidence (re-announcing)."""
        return [
            self._transition(
                key,
                state,
                Transition(TransitionKind.RAISED, state.severity, None),
                state.updated_at or 0.0,
            )
            for key, state in self._states.items()
            if key[1] == miner and state.severity is not None
        ]

    def retain(self, miners: Collection[str]) -> list[AlarmTransition]:
        """Forget every known or restored miner not in ``miners`` (call after config reload)."""
        known = set(self._tracks) | {k[1] for k in self._states if k[1] is not None}
        out: list[AlarmTransition] = []
        for miner in sorted(known - set(miners)):
            out.extend(self.forget(miner))
        return out

    def evaluate(self, now: float, observations: Sequence[Observation]) -> list[AlarmTransition]:
        """Process the polls since the last call, then the time-driven rules at ``now``."""
        if self._started_at is None:
            self._started_at = now
        out: list[AlarmTransition] = []
        if self.settings.enabled:
            for obs in sorted(observations, key=lambda o: o.at):
                out.extend(self._observe(obs))
            out.extend(self._site_rules(now))
            out.extend(self._offline_rules(now))
        if self._autocommit:
            self._flush()
        return out

    # ---- per-miner --------------------------------------------------------------------------

    def _air(self, site: str) -> SiteAir:
        air = self._sites.get(site)
        if air is None:  # not configured: sea-level air, but say so once
            log.warning("alarm_unknown_site", site=site)
            air = self._sites[site] = site_air(site, 0.0)
            self._site_gen[site] = 0
        return air

    def _track(self, obs: Observation) -> MinerTrack:
        track = self._tracks.get(obs.miner)
        if track is None:
            track = self._tracks[obs.miner] = MinerTrack(miner=obs.miner, site=obs.site)
            self._members.setdefault(obs.site, set()).add(obs.miner)
            self._air(obs.site)
        elif track.site != obs.site:
            self._down.get(track.site, set()).discard(obs.miner)
            self._members.get(track.site, set()).discard(obs.miner)
            self._failover.get(track.site, set()).discard(obs.miner)
            track.failing_over = False
            self._members.setdefault(obs.site, set()).add(obs.miner)
            track.site = obs.site
            track.thresholds_key = None
        snap = obs.snapshot
        if snap is not None:
            if snap.identity.family is not Family.UNKNOWN:
                track.family = snap.identity.family
            track.reports_chips = track.reports_chips or snap.max_chip_temp_c is not None
            if snap.cooling is not None:
                track.cooling = snap.cooling
        model = obs.model or (snap.identity.model if snap is not None else None)
        if model:
            track.model = model
        return track

    def _thresholds(self, track: MinerTrack) -> MinerThresholds:
        air = self._air(track.site)
        limits = track.limits if isinstance(track.limits, FirmwareLimits) else None
        key = (
            track.family,
            track.model,
            track.reports_chips,
            self._site_gen.get(track.site, 0),
            track.site,
            limits,
            track.cooling,
            track.learned_rise_k if self.settings.learn_chip_inlet_rise else None,
        )
        if track.thresholds is not None and track.thresholds_key == key:
            return track.thresholds
        model_key = normalise_model(track.model) if track.model else None
        name = select_preset(track.family, model_key, reports_chips=track.reports_chips)
        preset, overridden = apply_overrides(
            PRESETS[name],
            self.settings.overrides,
            site=track.site,
            miner=track.miner,
            model_key=model_key,
        )
        track.thresholds = derate(
            preset,
            air,
            overridden=overridden,
            firmware_critical_c=None if limits is None else limits.critical_c,
            firmware_inlet_max_c=None if limits is None else limits.inlet_max_c,
            learned_rise_k=key[-1],
            cooling=(track.cooling or Cooling.AIR).value,
            model_key=model_key,
        )
        track.thresholds_key = key
        return track.thresholds

    def _observe(self, obs: Observation) -> list[AlarmTransition]:
        track = self._track(obs)
        t = obs.at
        track.last_at = t
        snap = obs.snapshot
        if snap is None:
            if track.down_since is None:
                track.down_since = t
                self._down.setdefault(track.site, set()).add(track.miner)
            track.failures += 1
            track.last_reason = obs.failure_reason
            return []
        if track.down_since is not None:
            self._down.get(track.site, set()).discard(track.miner)
        track.down_since, track.failures, track.last_reason = None, 0, None
        track.limits = obs.limits
        th = self._thresholds(track)
        rules.record(track, snap, th, t)
        th = self._thresholds(track)  # a newly learned ΔT_ci0 may move T_in,max
        air = self._air(track.site)
        firing: dict[str, Severity | None] = {}
        ctx = Context(t, air, self._thermal(track.site), self.settings, firing)
        out: list[AlarmTransition] = []
        hot: bool | None = None  # None: this poll had no temperatures (e.g. a slow-tier poll)
        for rule in rules.MINER_DATA_RULES:
            key: Key = (track.site, track.miner, rule)
            verdict = (
                self._pool_verdict(rule, snap, track, t)
                if rule in rules.POOL_RULES
                else self._verdict(rule, snap, th, track, ctx)
            )
            if rule in {"R1", "R2"} and verdict is not None:
                hot = bool(hot) or bool(verdict.raising)
            state = self._states.get(key)
            if verdict is None:
                firing[rule] = None if state is None else state.severity
                continue
            if state is None:
                if not verdict.raising:
                    firing[rule] = None
                    continue
                state = self._states[key] = AlarmState()
            spec = LIQUID_SPECS.get(rule) if th.liquid else None
            out.extend(
                self._step(key, state, t, verdict, allow_raise=self._may_raise(key), spec=spec)
            )
            firing[rule] = state.severity
        if hot is not None:
            track.last_hot = hot
        return out

    @staticmethod
    def _verdict(  # noqa: PLR0911, C901 - one return per rule: a dispatch table
        rule: str, snap: MinerSnapshot, th: MinerThresholds, track: MinerTrack, ctx: Context
    ) -> Verdict | None:
        match rule:
            case "R1":
                return rules.r1(snap, th)
            case "R2":
                return rules.r2(snap, th, track)
            case "R3":
                return rules.r3(snap, th, track, ctx)
            case "R4":
                return rules.r4(snap, th, track, ctx)
            case "R5":
                return rules.r5(snap, track, ctx)
            case "R6":
                return rules.r6(snap, th)
            case "R8":
                return rules.r8(snap, th, track, ctx)
            case "R10":
                return rules.r10(snap, track)
            case "R11":
                return liquid.r11(snap, th, track.liquid_track(), ctx.t) if th.liquid else None
            case "R9":
                return liquid.r9_limits(th)
        return None

    def _pool_verdict(
        self, rule: str, snap: MinerSnapshot, track: MinerTrack, t: float
    ) -> Verdict | None:
        match rule:
            case "R12":
                return rules.r12(snap, track, t, self.pool_settings)
            case "R13":
                verdict = rules.r13(snap, track)
                failing = self._failover.setdefault(track.site, set())
                if track.failing_over:
                    failing.add(track.miner)
                else:
                    failing.discard(track.miner)
                return verdict
            case "R14":
                return rules.r14(snap, track, self._allowed.get(track.site))
        return None

    def _may_raise(self, key: Key) -> bool:
        """R13 per miner is held while a large share of its site fails over (one site alarm)."""
        return key[2] != "R13" or not self._site_failover(key[0])[0]

    def _site_failover(self, site: str) -> tuple[bool, bool, int, int]:
        """R13 site part: (a large share failed over, calm again, failing, members)."""
        s = self.pool_settings
        members = len(self._members.get(site, ()))
        failing = len(self._failover.get(site, ()))
        if not members:
            return False, True, failing, members
        ratio = failing / members
        wide = failing >= s.site_failover_min_miners and ratio > s.site_failover_ratio
        return wide, ratio <= s.site_failover_ratio, failing, members

    def _step(
        self,
        key: Key,
        state: AlarmState,
        t: float,
        verdict: Verdict | None,
        *,
        allow_raise: bool = True,
        spec: RuleSpec | None = None,
    ) -> list[AlarmTransition]:
        change = state.step(spec or self._specs[key[2]], t, verdict, allow_raise=allow_raise)
        if state.idle:
            self._states.pop(key, None)
        if change is None:
            return []
        self._dirty.add(key)
        tr = self._transition(key, state, change, t)
        event = f"alarm_{change.kind.value}"
        log.debug(  # the service logs transitions at info with its own context
            event,
            site=key[0],
            miner=key[1],
            rule=key[2],
            severity=change.severity.label,
            summary=tr.summary,
        )
        return [tr]

    # ---- R7 offline and site rules -----------------------------------------------------------

    def _offline_rules(self, now: float) -> list[AlarmTransition]:
        out: list[AlarmTransition] = []
        candidates = {m for down in self._down.values() for m in down}
        candidates |= {k[1] for k, s in self._states.items() if k[2] == "R7" and k[1] is not None}
        for miner in sorted(candidates):
            track = self._tracks.get(miner)
            if track is None:
                continue  # restored alarm of a miner not polled yet: hold it
            key: Key = (track.site, miner, "R7")
            state = self._states.get(key)
            verdict = rules.r7(track, now)
            if state is None:
                if not verdict.raising:
                    continue
                state = self._states[key] = AlarmState()
            site_state = self._states.get((track.site, None, "R7"))
            suppressed = site_state is not None and site_state.severity is not None
            out.extend(self._step(key, state, now, verdict, allow_raise=not suppressed))
        return out

    def _site_rules(self, now: float) -> list[AlarmTransition]:
        out: list[AlarmTransition] = []
        s = self.settings
        for site, air in self._sites.items():
            key: Key = (site, None, "R9")
            verdict = rules.r9(air)
            state = self._states.get(key)
            if state is not None or verdict.raising:
                state = state or self._states.setdefault(key, AlarmState())
                out.extend(self._step(key, state, now, verdict))
            out.extend(self._site_pool_failover(site, now))
            out.extend(self._site_cooler(site, now))
            every = self._members.get(site, set())
            members = every - self._maintenance  # miners in maintenance do not count
            key = (site, None, "R7")
            state = self._states.get(key)
            if not every or (not members and state is None):
                continue
            down = [
                self._tracks[m]
                for m in self._down.get(site, ())
                if m in self._tracks and m not in self._maintenance
            ]
            recent = [
                t
                for t in down
                if t.down_since is not None and t.down_since >= now - s.site_outage_window_s
            ]
            counted = len(members) or 1  # all in maintenance: nothing down counts
            outage = (
                len(recent) >= s.site_outage_min_miners
                and len(recent) / counted > s.site_outage_ratio
            )
            calm = len(down) / counted <= s.site_outage_ratio
            if (
                state is not None
                and state.restored
                and now - (self._started_at or now) < RESTORED_SITE_GRACE_S
            ):
                continue
            if state is None and not outage:
                continue
            state = state or self._states.setdefault(key, AlarmState())
            verdict = Verdict(
                frozenset({Severity.CRITICAL}) if outage else frozenset(),
                frozenset({Severity.INFO, Severity.WARNING, Severity.CRITICAL})
                if calm
                else frozenset(),
                value=round(len(down) / counted, 3),
                unit="ratio",
                what="share of the site down",
                tags=("site_outage",),
                details={"down": len(down), "miners": len(members), "recent": len(recent)},
                thresholds={Severity.CRITICAL: (s.site_outage_ratio, s.site_outage_ratio)},
                threshold=s.site_outage_ratio,
                sea_level_threshold=s.site_outage_ratio,
            )
            out.extend(self._step(key, state, now, verdict))
        return out

    def _site_cooler(self, site: str, now: float) -> list[AlarmTransition]:
        """R11 site: ≥ 30 % of the site's liquid miners at coolant inlet ≥ max − 3 K (one WARN)."""
        key: Key = (site, None, "R11")
        state = self._states.get(key)
        tracks = [self._tracks[m] for m in self._members.get(site, ()) if m in self._tracks]
        cooled = [
            t for t in tracks if t.coolant is not None and t.cooling not in (None, Cooling.AIR)
        ]
        hot = sum(1 for t in cooled if t.coolant is not None and t.coolant.coolant_hot)
        wide, calm = liquid.site_cooler(hot, len(cooled))
        if state is None and not wide:
            return []
        state = state or self._states.setdefault(key, AlarmState())
        ratio = liquid.SITE_COOLER_RATIO
        verdict = Verdict(
            frozenset({Severity.WARNING}) if wide else frozenset(),
            frozenset({Severity.INFO, Severity.WARNING, Severity.CRITICAL})
            if calm
            else frozenset(),
            value=round(hot / len(cooled), 3) if cooled else None,
            unit="ratio",
            what="share of the site's liquid-cooled miners at coolant inlet ≥ max − 3 K",
            tags=("cooler_capacity",),
            details={"hot": hot, "liquid_miners": len(cooled)},
            thresholds={Severity.WARNING: (ratio, ratio)},
            threshold=ratio,
            sea_level_threshold=ratio,
        )
        return self._step(key, state, now, verdict)

    def _site_pool_failover(self, site: str, now: float) -> list[AlarmTransition]:
        """R13 site alarm: more than ``site_failover_ratio`` of the site's miners failed over."""
        key: Key = (site, None, "R13")
        state = self._states.get(key)
        wide, calm, failing, members = self._site_failover(site)
        if state is None and not wide:
            return []
        state = state or self._states.setdefault(key, AlarmState())
        ratio = self.pool_settings.site_failover_ratio
        verdict = Verdict(
            frozenset({Severity.WARNING}) if wide else frozenset(),
            frozenset({Severity.INFO, Severity.WARNING, Severity.CRITICAL})
            if calm
            else frozenset(),
            value=round(failing / members, 3) if members else None,
            unit="ratio",
            what="share of the site failed over",
            tags=("site_pool_failover",),
            details={"failed_over": failing, "miners": members},
            thresholds={Severity.WARNING: (ratio, ratio)},
            threshold=ratio,
            sea_level_threshold=ratio,
        )
        return self._step(key, state, now, verdict)

    # ---- explanation, persistence ------------------------------------------------------------

    def _active(
        self, site: str, miner: str | None, rule: str, state: AlarmState, severity: Severity
    ) -> ActiveAlarm:
        v = state.verdict
        air = self._sites.get(site) or site_air(site, 0.0)
        thr, sea = (None, None)
        if v is not None:
            thr, sea = v.thresholds.get(severity, (v.threshold, v.sea_level_threshold))
        return ActiveAlarm(
            site=site,
            miner=miner,
            rule=rule,
            title=f"{rule} {SPECS[rule].title}",
            severity=severity,
            since=state.raised_at or 0.0,
            updated_at=state.updated_at or 0.0,
            value=None if v is None else v.value,
            threshold=thr,
            sea_level_threshold=sea,
            unit="" if v is None else v.unit,
            what="" if v is None else v.what,
            below=False if v is None else v.below,
            altitude_m=air.altitude_m,
            delta=air.delta,
            cooling_multiplier=air.cooling_multiplier,
            tags=() if v is None else v.tags,
            details={} if v is None else dict(v.details),
        )

    def _transition(
        self, key: Key, state: AlarmState, change: Transition, t: float, *, removed: bool = False
    ) -> AlarmTransition:
        kind, severity, previous = change.kind, change.severity, change.previous
        site, miner, rule = key
        self.changes += 1
        a = self._active(site, miner, rule, state, severity)
        summary = a.summary
        if kind is TransitionKind.CLEARED:
            now = f": {a.what} {_fmt(a.value, a.unit)}" if a.what and a.value is not None else ""
            summary = f"{a.title} cleared{now}"
        if removed:
            summary = f"{a.title} cleared: miner removed from inventory"
        details = dict(a.details)
        details["cooling_multiplier"] = round(a.cooling_multiplier, 4)
        details["unit"] = a.unit
        return AlarmTransition(
            kind=kind,
            site=site,
            miner=miner,
            rule=rule,
            severity=severity,
            previous_severity=previous,
            at=t,
            value=a.value,
            threshold=a.threshold,
            sea_level_threshold=a.sea_level_threshold,
            altitude_m=a.altitude_m,
            delta=a.delta,
            tags=a.tags,
            summary=summary,
            details=details,
        )

    def _restore(self, stored: list[StoredAlarm]) -> None:
        for row in stored:
            if row.rule not in SPECS:
                continue
            try:
                severity = Severity(row.severity)
            except ValueError:
                continue
            state = AlarmState()
            state.severity = severity
            state.raised_at = row.raised_at
            state.updated_at = row.updated_at
            state.restored = True
            ev = row.evidence
            state.verdict = Verdict(
                frozenset(),
                frozenset(),
                value=_float(ev.get("value")),
                threshold=_float(ev.get("threshold")),
                sea_level_threshold=_float(ev.get("sea_level_threshold")),
                unit=str(ev.get("unit", "")),
                what=str(ev.get("what", "")),
                below=bool(ev.get("below", False)),
                tags=tuple(str(x) for x in ev.get("tags", ()) or ()),  # type: ignore[attr-defined]
            )
            self._states[(row.site, row.miner, row.rule)] = state
            self.changes += 1
        if stored:
            log.info("alarm_state_restored", firing=len(self._states))

    def _flush(self) -> None:
        if self._store is None or not self._dirty:
            return
        upserts, deletes = [], []
        for key in self._dirty:
            state = self._states.get(key)
            if state is None or state.severity is None:
                deletes.append(key)
                continue
            a = self._active(*key, state, state.severity)
            upserts.append(
                StoredAlarm(
                    key[0],
                    key[1],
                    key[2],
                    int(state.severity),
                    state.raised_at or 0.0,
                    state.updated_at or 0.0,
                    {
                        "value": a.value,
                        "threshold": a.threshold,
                        "sea_level_threshold": a.sea_level_threshold,
                        "unit": a.unit,
                        "what": a.what,
                        "below": a.below,
                        "tags": list(a.tags),
                    },
                )
            )
        if self._store.save(upserts, deletes):
            self._dirty.clear()


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
