"""Rules R3–R10 beyond the design vectors: clear conditions, suppression, codes, explanations."""

from __future__ import annotations

import json

import pytest

from agent.alarms.config import ThermalSettings
from agent.alarms.engine import AlarmEngine, Observation
from agent.alarms.model import Severity, TransitionKind
from agent.alarms.rules import code_severity, error_text
from agent.alarms.testing import Driver, Site, make_snapshot
from collectors.snapshot import ErrorCode, Family, MinerSnapshot, Tier

W, C = Severity.WARNING, Severity.CRITICAL


def test_alarm_r3_clears_only_after_fans_below_90_percent_for_5_min():
    """R3 holds while fans stay maxed and clears after 5 min below 90 % of rpm_max."""
    drv = Driver(3000, preset="s21")
    for i in range(13):
        drv.poll(die=78.0 + 0.2 * i, inlet=20.0, rpm=6600)
    assert drv.severity("R3") is W
    drv.hold(6, die=80.0, inlet=20.0, rpm=6100)  # 92 %: neither saturated nor clearing
    assert drv.severity("R3") is W
    drv.hold(4.5, die=75.0, inlet=20.0, rpm=5000)
    assert drv.severity("R3") is W
    drv.hold(0.5, die=75.0, inlet=20.0, rpm=5000)
    assert drv.severity("R3") is None


def test_alarm_r3_without_degraded_airflow_at_a_hot_inlet():
    """Maxed fans with a hot inlet are not blamed on airflow: no `degraded_airflow` tag."""
    drv = Driver(3000, preset="s21")
    for i in range(13):
        drv.poll(die=78.0 + 0.2 * i, inlet=26.0, rpm=6600)
    assert drv.severity("R3") is W
    assert drv.tags("R3") == ()


def test_alarm_r3_needs_five_minutes_of_saturation():
    """Fans maxed for 4.5 min with a rising die are not yet R3."""
    drv = Driver(3000, preset="s21")
    for i in range(10):
        drv.poll(die=78.0 + 0.3 * i, inlet=20.0, rpm=6600)
    assert drv.severity("R3") is None


def test_alarm_r4_not_during_boot_warm_up():
    """A fast rise while uptime is under the warm-up is a boot, not a lost cooling."""
    drv = Driver(0, preset="s21")
    for i in range(5):
        drv.poll(die=40.0 + 4.0 * i, inlet=22.0, uptime_s=60 + 30 * i)
    assert drv.severity("R4") is None


def test_alarm_r4_inlet_swing_is_a_warning():
    """Inlet up 6 K within 15 min raises R4 WARN tagged `inlet_rate`."""
    drv = Driver(0, preset="s21")
    for i in range(25):
        drv.poll(die=60.0, inlet=15.0 + 0.25 * i)
    assert drv.severity("R4") is W
    assert drv.tags("R4") == ("inlet_rate",)


def test_alarm_r5_warning_needs_30_minutes():
    """R = 0.85 is a WARN after 30 min, not before; no tag without R1/R3/codes."""
    drv = Driver(0, preset="s21")
    drv.hold(29, die=70.0, hashrate_ratio=0.85)
    assert drv.severity("R5") is None
    drv.hold(1.5, die=70.0, hashrate_ratio=0.85)
    assert drv.severity("R5") is W
    assert drv.tags("R5") == ()


def test_alarm_r5_not_while_the_miner_sleeps():
    """A miner that is deliberately not mining is not under-hashing."""
    drv = Driver(0, preset="s21")
    drv.hold(40, die=30.0, hashrate_ratio=0.0, is_mining=False, inlet=20.0)
    assert drv.severity("R5") is None


def test_alarm_r6_missing_chips_warn():
    """Chips under 98 % of expected for 2 polls raise R6 WARN; a full count clears after 2."""
    drv = Driver(0, preset="s19")
    drv.poll(board=60.0, chips=120)
    assert drv.severity("R6") is None
    drv.poll(board=60.0, chips=120)
    assert drv.severity("R6") is W
    drv.hold(0.5, board=60.0, chips=126)
    assert drv.severity("R6") is None


def test_alarm_r6_board_back_clears():
    """A missing board coming back clears R6 on the next poll."""
    drv = Driver(0, preset="s19")
    drv.hold(0.5, board=60.0, present=2)
    assert drv.severity("R6") is C
    drv.poll(board=60.0)
    assert drv.severity("R6") is None


def test_alarm_r6_missing_board_summary_says_it_is_beyond_the_threshold():
    """A firing R6 reads "2 boards < 3 boards", not as if it sat in the hysteresis band."""
    drv = Driver(0, preset="s19")
    drv.hold(0.5, board=60.0, present=2)
    (alarm,) = [a for a in drv.engine.active() if a.rule == "R6"]
    assert "2 boards < 3 boards" in alarm.summary
    assert "hysteresis" not in alarm.summary


def test_alarm_r7_warns_after_three_failed_polls_and_clears_on_answer():
    """3 failed polls: WARN (no thermal tag when it was cool); one answer clears it."""
    drv = Driver(0, preset="s21")
    drv.poll(die=60.0)
    drv.hold(0.5, offline=True)
    assert drv.severity("R7") is None
    drv.poll(offline=True)
    assert drv.severity("R7") is W
    assert drv.tags("R7") == ()
    drv.poll(die=60.0)
    assert drv.severity("R7") is None


def test_alarm_r7_escalates_on_ticks_without_polls():
    """CRIT after 5 min down even when polls back off: ticks re-check the timer."""
    drv = Driver(0, preset="s21")
    drv.poll(die=60.0)
    drv.hold(1, offline=True)
    assert drv.severity("R7") is W
    drv.engine.evaluate(drv.t + 300, [])
    assert drv.severity("R7") is C


def test_alarm_r7_site_outage_is_one_alarm():
    """4 of 10 miners dropping within 2 min: one site CRIT, no per-miner R7; recovery clears it."""
    engine = AlarmEngine(ThermalSettings(), [Site("site", 0)])
    miners = [f"m{i}" for i in range(10)]
    up = {m: make_snapshot(0, die=60.0) for m in miners}
    engine.evaluate(0, [Observation(m, "site", 0, s) for m, s in up.items()])
    transitions = []
    for step in range(1, 12):
        t = step * 30
        obs = [Observation(m, "site", t, None if m in miners[:4] else up[m]) for m in miners]
        transitions += engine.evaluate(t, obs)
    r7 = [(tr.miner, tr.kind) for tr in transitions if tr.rule == "R7"]
    assert r7 == [(None, TransitionKind.RAISED)]
    back = engine.evaluate(400, [Observation(m, "site", 400, up[m]) for m in miners])
    assert [(tr.miner, tr.kind) for tr in back if tr.rule == "R7"] == [
        (None, TransitionKind.CLEARED)
    ]


def test_alarm_r7_few_miners_down_alert_individually():
    """2 of 10 down is below the 30 % share: per-miner alarms, no site alarm."""
    engine = AlarmEngine(ThermalSettings(), [Site("site", 0)])
    miners = [f"m{i}" for i in range(10)]
    snap = make_snapshot(0, die=60.0)
    transitions = []
    for step in range(6):
        t = step * 30
        obs = [
            Observation(m, "site", t, None if m in miners[:2] and step else snap) for m in miners
        ]
        transitions += engine.evaluate(t, obs)
    raised = sorted((tr.miner or "site") for tr in transitions if tr.rule == "R7")
    assert raised == ["m0", "m1"]


def test_alarm_r8_running_cold_for_30_minutes_warns():
    """A hashing miner with the inlet below T_min for 30 min raises R8 WARN `running_cold`."""
    drv = Driver(3000, preset="s21")
    drv.hold(29, die=50.0, inlet=-3.0, hashrate_ratio=1.0)
    assert drv.severity("R8") is None
    drv.hold(1.5, die=50.0, inlet=-3.0, hashrate_ratio=1.0)
    assert drv.severity("R8") is W
    assert drv.tags("R8") == ("running_cold",)


@pytest.mark.parametrize(
    ("family", "code", "message", "severity"),
    [
        (Family.WHATSMINER, 352, "Slot 2 temperature protecting.", C),
        (Family.WHATSMINER, 361, "Hashboard high temperature error.", C),
        (Family.WHATSMINER, 233, "Power output high temperature protection error.", C),
        (Family.WHATSMINER, 600, "Environment temperature is too high.", C),
        (Family.WHATSMINER, 5052, "Slot 2 stopped hashing, chips temperature protecting.", C),
        (Family.WHATSMINER, 370, "The environment temperature fluctuates too much.", W),
        (Family.WHATSMINER, 110, "Intake fan speed error.", None),
        (Family.WHATSMINER, 312, "Slot 2 temperature reading error.", None),
        (Family.ANTMINER, None, "Temperature too high, protect", C),
        (Family.VNISH, None, "chain 1 overheat", C),
        (Family.ANTMINER, None, "fan lost", None),
    ],
)
def test_alarm_r10_code_severity(family, code, message, severity):
    """Thermal firmware errors map to CRIT (370 to WARN); other errors are not R10."""
    assert code_severity(family, ErrorCode(message=message, code=code)) is severity


def test_alarm_r10_fires_tags_r5_and_clears_when_gone():
    """A temperature-protect code raises R10 CRIT at once, tags R5 `thermal_throttle`, clears after 1 min."""
    drv = Driver(0, preset="whatsminer")
    errs = (ErrorCode(message="Slot 0 temperature protecting.", code=350),)
    drv.poll(die=80.0, hashrate_ratio=0.5, errors=errs)
    assert drv.severity("R10") is C
    drv.hold(15, die=80.0, hashrate_ratio=0.5, errors=errs)
    assert drv.severity("R5") is C
    assert drv.tags("R5") == ("thermal_throttle",)
    drv.hold(1, die=80.0, hashrate_ratio=1.0, errors=())
    assert drv.severity("R10") is None


def test_alarm_r10_unknown_errors_hold_state():
    """A poll that did not fetch errors (None) neither raises nor clears R10."""
    drv = Driver(0, preset="whatsminer")
    drv.poll(die=80.0, errors=(ErrorCode(message="x", code=600),))
    drv.hold(5, die=80.0, errors=None)
    assert drv.severity("R10") is C


def test_alarm_active_as_dict_explains_the_altitude_shift():
    """/api/v1/alarms entries are JSON with value, threshold, sea-level threshold and the shift."""
    drv = Driver(3000, preset="s19")
    drv.hold(3, board=62.0)
    alarm = next(a for a in drv.engine.active() if a.rule == "R1")
    d = json.loads(json.dumps(alarm.as_dict()))
    ex = d["explanation"]
    assert (d["severity"], d["miner"], d["rule"]) == ("warning", "m1", "R1")
    assert (ex["value"], ex["threshold"], ex["sea_level_threshold"]) == (
        62.0,
        pytest.approx(59.33, abs=0.01),
        65.0,
    )
    assert ex["altitude_shift"] == pytest.approx(-5.67, abs=0.01)
    assert "sea level 65.0 °C" in d["summary"]
    assert "-5.7 K at 3,000 m" in d["summary"]


def test_alarm_transition_carries_the_evidence():
    """A raised transition says value, derated and sea-level thresholds, altitude and δ."""
    drv = Driver(3000, preset="s19")
    out = drv.hold(6, inlet=29.0)
    tr = next(t for t in out if t.rule == "R2")
    assert (tr.kind, tr.severity, tr.value, tr.altitude_m) == (TransitionKind.RAISED, C, 29.0, 3000)
    assert tr.threshold == pytest.approx(28.0, abs=0.01)
    assert tr.sea_level_threshold == 40.0
    assert tr.delta == pytest.approx(0.692, abs=0.001)
    assert "28.0 °C" in tr.summary


def test_alarm_forget_clears_firing_alarms():
    """A miner removed from the inventory has its alarms cleared, once."""
    drv = Driver(3000, preset="s19")
    drv.hold(6, inlet=29.0)
    out = drv.engine.forget("m1")
    assert [(t.rule, t.kind) for t in out] == [("R2", TransitionKind.CLEARED)]
    assert drv.engine.forget("m1") == []
    assert drv.engine.thresholds("m1") is None


def test_alarm_retain_forgets_miners_not_in_inventory():
    """retain() forgets every miner not listed."""
    engine = AlarmEngine(ThermalSettings(), [Site("site", 0)])
    for m in ("a", "b"):
        engine.evaluate(0, [Observation(m, "site", 0, make_snapshot(0, die=60.0))])
    engine.retain(["a"])
    assert engine.thresholds("a") is not None
    assert engine.thresholds("b") is None


def test_alarm_disabled_engine_produces_nothing():
    """thermal.enabled: false turns every rule off."""
    drv = Driver(3000, preset="s19", settings=ThermalSettings(enabled=False))
    assert drv.hold(6, inlet=35.0, board=90.0) == []


def test_alarm_slow_tier_poll_holds_every_data_rule():
    """A poll without telemetry (slow tier: identity/errors only) neither raises nor clears."""
    engine = AlarmEngine(ThermalSettings(), [Site("site", 3000)])
    transitions = []
    for i in range(12):
        snap = make_snapshot(i * 30, die=90.0, inlet=29.0)
        transitions += engine.evaluate(i * 30, [Observation("m1", "site", i * 30, snap)])
    firing = {a.rule for a in engine.active() if a.miner}
    assert {"R1", "R2"} <= firing
    bare = MinerSnapshot(address="127.40.0.1", collected_at=400, tier=Tier.SLOW, errors=())
    for i in range(20):
        t = 400 + i * 30
        assert engine.evaluate(t, [Observation("m1", "site", t, bare)]) == []
    assert {a.rule for a in engine.active() if a.miner} == firing


def test_alarm_r8_live_humidity_enables_condensation_check():
    """Without a humidity R8 judges only cold; a live 60 % RH reading adds the dew point check."""
    drv = Driver(3200, preset="whatsminer")
    fields = {
        "inlet": 10.0,
        "board": -15.0,
        "is_mining": False,
        "hashrate_ratio": 0.0,
        "uptime_s": 60,
    }
    drv.hold(1, **fields)
    assert drv.severity("R8") is None
    drv.engine.set_site_humidity("site", 60.0)
    drv.hold(1, **fields)
    assert drv.severity("R8") is C
    assert set(drv.tags("R8")) == {"condensation", "start_blocked"}


def test_alarm_cleared_transition_says_the_value_now():
    """A clear says what the value is now (vector 12's last phase: 22.5 °C)."""
    drv = Driver(3000, preset="s19")
    for value in (28.5, 27.0, 25.5, 22.5):
        drv.hold(5, inlet=value)
    cleared = [t for t in drv.transitions if t.rule == "R2" and t.kind is TransitionKind.CLEARED]
    assert [t.summary for t in cleared] == ["R2 inlet temperature cleared: inlet 22.5 °C"]


@pytest.mark.parametrize(
    ("preset", "error", "named"),
    [
        (
            "whatsminer",
            ErrorCode(message="Environment temperature is too high.", code=600),
            "Whatsminer error 600: Environment temperature is too high.",
        ),
        (
            "s19",
            ErrorCode(message="Temperature too high, protect"),
            "Antminer error: Temperature too high, protect",
        ),
        ("avalon", ErrorCode(message="chip overheat", code=7), "Avalon error 7: chip overheat"),
    ],
)
def test_alarm_r10_summary_names_the_code_and_its_text(preset, error, named):
    """R10's summary names each error by code and text (issue 16: not "firmware errors")."""
    drv = Driver(0, preset=preset)
    drv.poll(die=80.0, errors=(error,))
    alarm = next(a for a in drv.engine.active() if a.rule == "R10")
    assert alarm.summary == f"R10 firmware temperature protection critical: {named}"


@pytest.mark.parametrize(
    ("family", "named"),
    [
        (Family.VNISH, "VNish error: chain 1 overheat"),
        (Family.BRAIINS, "Braiins OS error: chain 1 overheat"),
        (Family.BITAXE, "Bitaxe error: chain 1 overheat"),
        (Family.UNKNOWN, "firmware error: chain 1 overheat"),
    ],
)
def test_alarm_r10_error_text_for_every_family(family, named):
    """Every family's errors are named by vendor, code (when given) and text."""
    assert error_text(family, ErrorCode(message="chain 1 overheat")) == named


def test_alarm_r7_site_ratio_leaves_out_miners_in_maintenance():
    """4 of 10 down is an outage, not when 3 of them are in maintenance; ending it counts them."""
    engine = AlarmEngine(ThermalSettings(), [Site("site", 0)])
    miners = [f"m{i}" for i in range(10)]
    up = make_snapshot(0, die=60.0)
    engine.evaluate(0, [Observation(m, "site", 0, up) for m in miners])
    engine.set_maintenance(miners[:3])
    transitions = []
    for step in range(1, 4):
        t = step * 30
        obs = [Observation(m, "site", t, None if m in miners[:4] else up) for m in miners]
        transitions += engine.evaluate(t, obs)
    assert [tr for tr in transitions if tr.rule == "R7" and tr.miner is None] == []
    engine.set_maintenance(())
    site = [tr for tr in engine.evaluate(100, []) if tr.rule == "R7" and tr.miner is None]
    assert [tr.kind for tr in site] == [TransitionKind.RAISED]
    engine.set_maintenance(miners)  # everyone on the bench: nothing down counts, it clears
    site = [tr for tr in engine.evaluate(130, []) if tr.rule == "R7" and tr.miner is None]
    assert [tr.kind for tr in site] == [TransitionKind.CLEARED]
