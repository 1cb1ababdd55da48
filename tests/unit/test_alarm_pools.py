"""Pool rules R12 share health, R13 failover (per miner and site), R14 pool not allowed."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from agent.alarms.config import PoolAlarmSettings, PoolAllow, SitePools, ThermalSettings
from agent.alarms.engine import AlarmEngine, Observation
from agent.alarms.model import AlarmTransition, Severity, TransitionKind
from collectors.snapshot import Family, Identity, MinerSnapshot, PoolInfo, Tier

W, C = Severity.WARNING, Severity.CRITICAL
URL = "stratum+tcp://btc.pool.example:3333"
BACKUP = "stratum+tcp://backup.pool.example:443"


@dataclass(frozen=True)
class PoolSite:
    """A site as the engine reads it (SiteConfig fits)."""

    name: str = "s"
    altitude_m: float = 0.0
    station_pressure_kpa: float | None = None
    pools: SitePools = field(default_factory=SitePools)


def snap(t: float, *pools: PoolInfo) -> MinerSnapshot:
    """A merged snapshot carrying ``pools``."""
    return MinerSnapshot(
        "10.0.0.1", t, Tier.FAST, Identity(family=Family.ANTMINER), hashrate_hs=1e14, pools=pools
    )


def pool(index: int = 0, **over: object) -> PoolInfo:
    """A healthy active primary pool by default."""
    fields: dict[str, object] = {
        "url": URL if index == 0 else BACKUP,
        "user": "acme.rig1",
        "alive": True,
        "active": index == 0,
        "index": index,
        "accepted": 0,
        "rejected": 0,
        "stale": 0,
    }
    fields.update(over)
    return PoolInfo(**fields)  # type: ignore[arg-type]


def engine(allowed: tuple[PoolAllow, ...] | None = None, **settings: float) -> AlarmEngine:
    """An engine with one site and pool settings."""
    site = PoolSite(pools=SitePools(allowed=allowed))
    pool_settings = PoolAlarmSettings.model_validate(settings)
    return AlarmEngine(ThermalSettings(), [site], pool_settings=pool_settings)


def observe(
    eng: AlarmEngine, t: float, s: MinerSnapshot, miner: str = "m1"
) -> list[AlarmTransition]:
    """One observation of ``miner`` at ``t``."""
    return eng.evaluate(t, [Observation(miner=miner, site="s", at=t, snapshot=s)])


def severity(eng: AlarmEngine, rule: str, miner: str | None = "m1") -> Severity | None:
    """Firing severity of ``rule``."""
    for a in eng.active():
        if a.rule == rule and a.miner == miner:
            return a.severity
    return None


def test_alarm_r12_warns_and_escalates_on_bad_shares_over_the_window():
    """2 % bad shares over the window is WARN, 6 % CRIT; the explanation names the ratio."""
    eng = engine(share_window_s=300)
    acc = bad = 0
    for minute in range(6):
        observe(
            eng,
            minute * 60.0,
            snap(minute * 60.0, pool(accepted=acc, rejected=bad // 2, stale=bad - bad // 2)),
        )
        acc += 980
        bad += 20
    assert severity(eng, "R12") is W
    for minute in range(6, 12):
        observe(
            eng,
            minute * 60.0,
            snap(minute * 60.0, pool(accepted=acc, rejected=bad // 2, stale=bad - bad // 2)),
        )
        acc += 940
        bad += 60
    assert severity(eng, "R12") is C
    alarm = next(a for a in eng.active() if a.rule == "R12")
    assert alarm.what == "(rejected + stale) / shares"
    assert alarm.value is not None
    assert alarm.value >= 0.05


def test_alarm_r12_clears_below_the_hysteresis_and_restarts_after_a_reboot():
    """Healthy shares clear R12 once the window rolled over; a counter reset starts afresh."""
    eng = engine(share_window_s=120)
    acc = bad = 0
    t = 0.0
    for _ in range(4):
        observe(eng, t, snap(t, pool(accepted=acc, rejected=bad)))
        acc, bad, t = acc + 900, bad + 100, t + 60
    assert severity(eng, "R12") is C
    for _ in range(5):
        observe(eng, t, snap(t, pool(accepted=acc, rejected=bad)))
        acc, t = acc + 1000, t + 60
    assert severity(eng, "R12") is None
    # Reboot: counters back to 0; no negative delta, no alarm from the reset.
    out = observe(eng, t, snap(t, pool(accepted=10, rejected=0)))
    assert not out
    assert severity(eng, "R12") is None


def test_alarm_r12_too_few_shares_and_unknown_counters_are_not_judged():
    """Under share_min_shares in the window, or no counters at all: no verdict, no alarm."""
    eng = engine(share_window_s=120, share_min_shares=100)
    observe(eng, 0.0, snap(0.0, pool(accepted=0, rejected=0)))
    observe(eng, 60.0, snap(60.0, pool(accepted=40, rejected=40)))
    assert severity(eng, "R12") is None
    observe(eng, 120.0, snap(120.0, pool(accepted=None, rejected=None, stale=None)))
    assert severity(eng, "R12") is None


def test_alarm_r13_warns_after_failover_for_and_clears_on_return():
    """A backup pool for failover_for_s raises WARN with the active pool named; back → cleared."""
    eng = engine(failover_for_s=600)
    down = (pool(0, alive=False, active=False), pool(1, active=True))
    for minute in range(10):
        observe(eng, minute * 60.0, snap(minute * 60.0, *down))
    assert severity(eng, "R13") is None
    observe(eng, 600.0, snap(600.0, *down))
    assert severity(eng, "R13") is W
    alarm = next(a for a in eng.active() if a.rule == "R13")
    assert alarm.tags == ("backup_pool",)
    assert BACKUP in str(alarm.details["active_pool"])
    out = observe(eng, 660.0, snap(660.0, pool(0), pool(1, active=False)))
    assert [(t.rule, t.kind) for t in out] == [("R13", TransitionKind.CLEARED)]


def test_alarm_r13_site_wide_failover_is_one_site_alarm():
    """Most of a site failing over at once raises one site R13 and no per-miner R13."""
    eng = engine(failover_for_s=60, site_failover_min_miners=3, site_failover_ratio=0.3)
    miners = [f"m{i}" for i in range(6)]
    healthy = snap(0.0, pool(0), pool(1, active=False))
    for m in miners:
        observe(eng, 0.0, healthy, miner=m)
    down = (pool(0, alive=False, active=False), pool(1, active=True))
    for t in (30.0, 60.0, 90.0, 120.0):
        for m in miners[:4]:
            observe(eng, t, snap(t, *down), miner=m)
        for m in miners[4:]:
            observe(eng, t, healthy, miner=m)
    assert severity(eng, "R13", miner=None) is W
    assert all(severity(eng, "R13", miner=m) is None for m in miners)
    for t in (150.0, 180.0):
        for m in miners:
            observe(eng, t, healthy, miner=m)
    assert severity(eng, "R13", miner=None) is None


def test_alarm_r14_names_the_pool_before_and_after_at_once():
    """A hijacked URL/worker outside the allow-list is CRIT at the first poll, before/after named."""
    allowed = (PoolAllow(url="stratum+tcp://*.pool.example:*", worker="acme.*"),)
    eng = engine(allowed=allowed)
    observe(eng, 0.0, snap(0.0, pool(0), pool(1, active=False)))
    assert severity(eng, "R14") is None
    hijacked = pool(0, url="stratum+tcp://evil.example:3333", user="thief.rig1")
    out = observe(eng, 300.0, snap(300.0, hijacked, pool(1, active=False)))
    raised = [t for t in out if t.rule == "R14"]
    assert [(t.kind, t.severity) for t in raised] == [(TransitionKind.RAISED, C)]
    details = raised[0].details
    assert (details["pool_before"], details["worker_before"]) == (URL, "acme.rig1")
    assert (details["pool_after"], details["worker_after"]) == (
        "stratum+tcp://evil.example:3333",
        "thief.rig1",
    )
    assert "evil.example" in raised[0].summary
    assert URL in raised[0].summary
    out = observe(eng, 600.0, snap(600.0, pool(0), pool(1, active=False)))
    assert [(t.rule, t.kind) for t in out] == [("R14", TransitionKind.CLEARED)]


def test_alarm_r14_off_without_an_allow_list_and_worker_outside_it():
    """No allow-list: R14 never fires. With one, a wrong worker alone is enough."""
    eng = engine()
    observe(eng, 0.0, snap(0.0, pool(0, url="stratum+tcp://evil.example:3333")))
    assert severity(eng, "R14") is None
    eng = engine(allowed=(PoolAllow(url=URL, worker="acme.*"),))
    observe(eng, 0.0, snap(0.0, pool(0, user="other.rig1")))
    assert severity(eng, "R14") is C


def test_pool_allow_rejects_patterns_with_credentials():
    """An allow-list entry may not embed user:password (patterns match stripped URLs)."""
    with pytest.raises(ValueError, match="credentials"):
        PoolAllow(url="stratum+tcp://u:p@pool.example:3333")


def test_alarm_r13_holds_for_a_miner_that_is_not_mining():
    """A sleeping miner has no active pool by design: R13 is not judged."""
    eng = engine(failover_for_s=60)
    idle = (pool(0, active=False), pool(1, active=False))
    for t in (0.0, 60.0, 120.0):
        observe(eng, t, replace(snap(t, *idle), is_mining=False))
    assert severity(eng, "R13") is None
