"""Alarm timing and boundaries, rule by rule and severity by severity, from the design note.

Every figure below is transcribed from /work/shared/design/altitude-thermal.md, never read from
the implementation's tables (``agent.alarms.rules.SPECS``, ``AlarmEngine.thresholds``): if the
code's durations or comparisons drift from the note, these tests fail.

For each rule and severity: not raised one poll before its ``for`` duration, raised at it; a value
exactly at the threshold raises (just under it does not); a firing alarm clears (or steps down)
only once the value has been below the clear threshold for the clear duration.
"""

from __future__ import annotations

import pytest

from agent.alarms.model import Severity
from agent.alarms.testing import Driver

W, C, INFO = Severity.WARNING, Severity.CRITICAL, Severity.INFO

# altitude-thermal.md §5 "Proposed rule set" (30 s poll), durations in seconds:
R1_WARN_FOR_S = 120  # R1: "WARN ≥ warn for 2 min"
R1_CRIT_FOR_POLLS = 2  # R1: "CRIT ≥ crit for 2 polls"
R1_CLEAR_K, R1_CLEAR_S = 3.0, 120  # R1: "clears 3 K below after 2 min"
R2_WARN_FOR_S = 600  # R2: "WARN ≥ T_in,max − 3 for 10 min"
R2_CRIT_FOR_S = 300  # R2: "CRIT ≥ T_in,max for 5 min"
R2_CLEAR_K, R2_CLEAR_S = 2.0, 300  # R2: "clears 2 K below (held 5 min)"
R3_SATURATED_FOR_S = 300  # R3: "duty ≥ 95 % or rpm ≥ 0.95·rpm_max for 5 min"
R5_WARN_BELOW, R5_WARN_FOR_S = 0.90, 1800  # R5: "WARN r < 0.90 for 30 min"
R5_CRIT_BELOW, R5_CRIT_FOR_S = 0.75, 900  # R5: "CRIT r < 0.75 for 15 min"
R6_CRIT_FOR_POLLS = 2  # R6: "fewer boards than expected for 2 polls → CRIT"
R7_WARN_FAILED_POLLS = 3  # R7: "3 failed polls WARN"
R7_CRIT_DOWN_S = 300  # R7: "5 min CRIT"
R8_RUNNING_COLD_S = 1800  # R8: "running below T_min for 30 min → WARN"
R9_INFO_ABOVE_M = 2000.0  # R9: "altitude > 2,000 m → INFO"

# §5 preset table at sea level (δ = 1, so M(δ) = 1 and c(δ) = 0): warn = C0 − H0;
# T_in,max at 0 m is the vendor rule's 40 °C (the derating starts above 900 m), warn 3 K below.
S21_SEA = {"warn": 95.0 - 10.0, "crit": 95.0, "inlet_warn": 40.0 - 3.0, "inlet_max": 40.0}
# §6 vector 2 and §2's table (A3 40 °C at 3,000 m): T_in,max 28.0 for S19/S21 at 3,000 m.
S19_3000_INLET_MAX = 28.0
# §5 preset table, Whatsminer: T_min −5 °C.
WHATSMINER_T_MIN = -5.0

STEP_S = 10.0
"""Polls 10 s apart: fine enough to tell a duration from one a poll shorter."""


def hold_s(drv: Driver, seconds: float, **fields: object) -> None:
    """Poll every ``drv.step_s`` from now to ``seconds`` later (both ends included)."""
    for _ in range(round(seconds / drv.step_s) + 1):
        drv.poll(**fields)


def sea_s21(step_s: float = STEP_S) -> Driver:
    """An S21 at sea level, where every threshold of the note is an exact decimal."""
    return Driver(0, preset="s21", step_s=step_s)


# ---- not raised just before `for`, raised at `for` --------------------------------------------


@pytest.mark.parametrize(
    ("rule", "severity", "fields", "for_s"),
    [
        ("R1", W, {"die": S21_SEA["warn"] + 1.0}, R1_WARN_FOR_S),
        ("R2", W, {"inlet": S21_SEA["inlet_warn"] + 1.0}, R2_WARN_FOR_S),
        ("R2", C, {"inlet": S21_SEA["inlet_max"] + 1.0}, R2_CRIT_FOR_S),
    ],
    ids=["R1-warn-2min", "R2-warn-10min", "R2-crit-5min"],
)
def test_alarm_timing_not_raised_one_poll_before_for_raised_at_for(rule, severity, fields, for_s):
    """Held one poll short of the note's ``for`` duration: nothing; at the duration: raised."""
    drv = sea_s21()
    hold_s(drv, for_s - STEP_S, **fields)
    assert drv.severity(rule) is None, f"{rule} raised before its {for_s} s"
    drv.poll(**fields)
    assert drv.severity(rule) is severity, f"{rule} not {severity.label} after {for_s} s"


def test_alarm_timing_r1_critical_needs_two_polls():
    """R1 CRIT: one poll at crit raises nothing; the second (30 s later) raises CRIT."""
    drv = sea_s21(step_s=30.0)
    for _ in range(R1_CRIT_FOR_POLLS - 1):
        drv.poll(die=S21_SEA["crit"] + 1.0)
        assert drv.severity("R1") is None
    drv.poll(die=S21_SEA["crit"] + 1.0)
    assert drv.severity("R1") is C


def test_alarm_timing_r2_critical_is_not_reached_by_the_warning_duration():
    """R2 at T_in,max: no WARN before 10 min, so at 4 min 50 s nothing fires; CRIT at 5 min."""
    drv = sea_s21()
    hold_s(drv, R2_CRIT_FOR_S - STEP_S, inlet=S21_SEA["inlet_max"])
    assert drv.severity("R2") is None
    drv.poll(inlet=S21_SEA["inlet_max"])
    assert drv.severity("R2") is C


def test_alarm_timing_r2_altitude_vector_2_crit_at_five_minutes_not_before():
    """§6 vector 2 (S19, 3,000 m, inlet 29): not CRIT one poll before 5 min, CRIT at 5 min."""
    drv = Driver(3000, preset="s19", step_s=STEP_S)
    hold_s(drv, R2_CRIT_FOR_S - STEP_S, inlet=29.0)
    assert drv.severity("R2") is None
    drv.poll(inlet=29.0)
    assert drv.severity("R2") is C


@pytest.mark.parametrize(
    ("severity", "ratio", "for_s"),
    [(W, 0.85, R5_WARN_FOR_S), (C, 0.70, R5_CRIT_FOR_S)],
    ids=["R5-warn-30min", "R5-crit-15min"],
)
def test_alarm_timing_r5_hashrate(severity, ratio, for_s):
    """R5: r below the level from the first poll: nothing one poll early, raised at ``for``."""
    drv = Driver(0, preset="s21", step_s=30.0)
    fields = {"die": 60.0, "inlet": 20.0, "hashrate_ratio": ratio}
    hold_s(drv, for_s - 30.0, **fields)
    assert drv.severity("R5") is None
    drv.poll(**fields)
    assert drv.severity("R5") is severity


def test_alarm_timing_r6_missing_board_needs_two_polls():
    """R6: one poll with a board missing raises nothing; the second raises CRIT."""
    drv = Driver(0, preset="s21", step_s=30.0)
    for _ in range(R6_CRIT_FOR_POLLS - 1):
        drv.poll(die=60.0, present=2)
        assert drv.severity("R6") is None
    drv.poll(die=60.0, present=2)
    assert drv.severity("R6") is C


def test_alarm_timing_r7_warn_at_the_third_failed_poll_crit_at_five_minutes():
    """R7: two failed polls nothing, the third WARN; CRIT once down 5 min, not a poll before."""
    drv = Driver(0, preset="s21", step_s=STEP_S)
    drv.poll(die=60.0)
    for _ in range(R7_WARN_FAILED_POLLS - 1):
        drv.poll(offline=True)
        assert drv.severity("R7") is None
    drv.poll(offline=True)
    assert drv.severity("R7") is W
    down_since = drv.t - (R7_WARN_FAILED_POLLS) * STEP_S
    while drv.t < down_since + R7_CRIT_DOWN_S:
        drv.poll(offline=True)
        assert drv.severity("R7") is W
    drv.poll(offline=True)
    assert drv.severity("R7") is C


def test_alarm_timing_r3_saturated_fans_five_minutes():
    """R3 WARN (fans maxed, R1 at WARN): not one poll before 5 min of saturation, at 5 min yes."""
    drv = Driver(0, preset="s21", step_s=STEP_S)
    # §6 vector 4's S21 at full fan speed: 6,600 rpm; die above R1's warn (85) so R1 fires.
    fields = {"die": S21_SEA["warn"] + 2.0, "inlet": 20.0, "rpm": 6600}
    hold_s(drv, R3_SATURATED_FOR_S - STEP_S, **fields)
    assert drv.severity("R1") is W
    assert drv.severity("R3") is None
    drv.poll(**fields)
    assert drv.severity("R3") is W


def test_alarm_timing_r8_running_cold_not_before_thirty_minutes():
    """R8 running cold: hashing below T_min one poll short of 30 min raises nothing."""
    drv = Driver(0, preset="whatsminer", step_s=30.0)
    fields = {"die": 50.0, "inlet": WHATSMINER_T_MIN - 1.0, "hashrate_ratio": 1.0}
    hold_s(drv, R8_RUNNING_COLD_S - 30.0, **fields)
    assert drv.severity("R8") is None


def test_alarm_timing_r8_running_cold_raised_at_thirty_minutes():
    """R8 WARN running cold: raised at 30 min below T_min while hashing."""
    drv = Driver(0, preset="whatsminer", step_s=30.0)
    fields = {"die": 50.0, "inlet": WHATSMINER_T_MIN - 1.0, "hashrate_ratio": 1.0}
    hold_s(drv, R8_RUNNING_COLD_S, **fields)
    assert drv.severity("R8") is W


# ---- a value exactly at the threshold raises ----------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "severity", "sensor", "threshold", "for_s"),
    [
        ("R1", W, "die", S21_SEA["warn"], R1_WARN_FOR_S),
        ("R1", C, "die", S21_SEA["crit"], 30.0),
        ("R2", W, "inlet", S21_SEA["inlet_warn"], R2_WARN_FOR_S),
        ("R2", C, "inlet", S21_SEA["inlet_max"], R2_CRIT_FOR_S),
    ],
    ids=["R1-warn-85", "R1-crit-95", "R2-warn-37", "R2-crit-40"],
)
def test_alarm_boundary_exactly_at_threshold_raises(rule, severity, sensor, threshold, for_s):
    """The note's ``≥``: a value equal to the threshold, held for ``for``, raises the severity."""
    drv = Driver(0, preset="s21", step_s=30.0)
    hold_s(drv, for_s, **{sensor: threshold})
    assert drv.severity(rule) is severity


@pytest.mark.parametrize(
    ("rule", "sensor", "threshold", "for_s"),
    [
        ("R1", "die", S21_SEA["warn"], R1_WARN_FOR_S),
        ("R2", "inlet", S21_SEA["inlet_warn"], R2_WARN_FOR_S),
    ],
    ids=["R1-84.95", "R2-36.95"],
)
def test_alarm_boundary_just_below_threshold_does_not_raise(rule, sensor, threshold, for_s):
    """0.05 K under the lowest threshold (the note's precision is 0.1 K), held long: nothing."""
    drv = Driver(0, preset="s21", step_s=30.0)
    hold_s(drv, 2 * for_s, **{sensor: threshold - 0.05})
    assert drv.severity(rule) is None


def test_alarm_boundary_r2_at_altitude_exactly_at_t_in_max():
    """S19 at 3,000 m: inlet exactly 28.0 (T_in,max, §6 vector 2) for 5 min is R2 CRIT."""
    drv = Driver(3000, preset="s19", step_s=30.0)
    hold_s(drv, R2_CRIT_FOR_S, inlet=S19_3000_INLET_MAX)
    assert drv.severity("R2") is C


def test_alarm_boundary_r1_crit_at_altitude_is_not_derated_for_a_die_sensor():
    """S21 die at 3,000 m: crit stays C0 = 95 (§2: silicon limits do not move); 95.0 raises."""
    drv = Driver(3000, preset="s21", step_s=30.0)
    hold_s(drv, 30.0, die=95.0)
    assert drv.severity("R1") is C


@pytest.mark.parametrize(
    ("inlet", "severity"),
    [
        (WHATSMINER_T_MIN - 0.1, C),
        (WHATSMINER_T_MIN, W),
        (WHATSMINER_T_MIN + 4.9, W),
        (WHATSMINER_T_MIN + 5.0, None),
    ],
)
def test_alarm_boundary_r8_cold_start(inlet, severity):
    """R8 not hashing: T_in < T_min → CRIT, < T_min + 5 → WARN (strict, as the note writes)."""
    drv = Driver(0, preset="whatsminer", step_s=30.0)
    fields = {"inlet": inlet, "board": 20.0, "is_mining": False, "uptime_s": 60}
    hold_s(drv, 60.0, **fields)
    assert drv.severity("R8") is severity


@pytest.mark.parametrize(
    ("altitude_m", "severity"), [(R9_INFO_ABOVE_M, None), (R9_INFO_ABOVE_M + 1.0, INFO)]
)
def test_alarm_boundary_r9_psu_altitude(altitude_m, severity):
    """R9 INFO only above 2,000 m (the note's ">")."""
    drv = Driver(altitude_m, preset="s21")
    drv.poll(die=60.0)
    assert drv.severity("R9", miner=None) is severity


# ---- cleared only after the clear duration below the clear threshold ----------------------------


def test_alarm_clear_r1_warning():
    """R1 WARN: inside the 3 K band it holds; 3.5 K below it clears after 2 min, not a poll before."""
    drv = sea_s21()
    hold_s(drv, R1_WARN_FOR_S, die=S21_SEA["warn"] + 1.0)
    assert drv.severity("R1") is W
    hold_s(drv, 10 * 60, die=S21_SEA["warn"] - R1_CLEAR_K + 0.5)  # in the hysteresis band
    assert drv.severity("R1") is W
    below = S21_SEA["warn"] - R1_CLEAR_K - 0.5
    hold_s(drv, R1_CLEAR_S - STEP_S, die=below)
    assert drv.severity("R1") is W
    drv.poll(die=below)
    assert drv.severity("R1") is None


def test_alarm_clear_r1_critical_steps_down_to_warning():
    """R1 CRIT: 3.5 K under crit (still over warn) steps down to WARN after 2 min, not before."""
    drv = sea_s21(step_s=30.0)
    hold_s(drv, 30.0, die=S21_SEA["crit"] + 1.0)
    assert drv.severity("R1") is C
    drv.step_s = STEP_S
    hold_s(drv, 10 * 60, die=S21_SEA["crit"] - R1_CLEAR_K + 0.5)
    assert drv.severity("R1") is C
    below = S21_SEA["crit"] - R1_CLEAR_K - 0.5
    hold_s(drv, R1_CLEAR_S - STEP_S, die=below)
    assert drv.severity("R1") is C
    drv.poll(die=below)
    assert drv.severity("R1") is W


def test_alarm_clear_r2_warning():
    """R2 WARN: inside the 2 K band it holds; 2.5 K below it clears after 5 min, not before."""
    drv = sea_s21()
    hold_s(drv, R2_WARN_FOR_S, inlet=S21_SEA["inlet_warn"] + 1.0)
    assert drv.severity("R2") is W
    hold_s(drv, 20 * 60, inlet=S21_SEA["inlet_warn"] - R2_CLEAR_K + 0.5)
    assert drv.severity("R2") is W
    below = S21_SEA["inlet_warn"] - R2_CLEAR_K - 0.5
    hold_s(drv, R2_CLEAR_S - STEP_S, inlet=below)
    assert drv.severity("R2") is W
    drv.poll(inlet=below)
    assert drv.severity("R2") is None


def test_alarm_clear_r2_critical_steps_down_to_warning():
    """R2 CRIT: 2.5 K under T_in,max (still over warn) steps down to WARN after 5 min, not before."""
    drv = sea_s21()
    hold_s(drv, R2_CRIT_FOR_S, inlet=S21_SEA["inlet_max"] + 1.0)
    assert drv.severity("R2") is C
    hold_s(drv, 20 * 60, inlet=S21_SEA["inlet_max"] - R2_CLEAR_K + 0.5)
    assert drv.severity("R2") is C
    below = S21_SEA["inlet_max"] - R2_CLEAR_K - 0.5
    hold_s(drv, R2_CLEAR_S - STEP_S, inlet=below)
    assert drv.severity("R2") is C
    drv.poll(inlet=below)
    assert drv.severity("R2") is W


def test_alarm_clear_interrupted_clear_run_starts_over():
    """A clear run broken by one poll back in the band restarts: the clear needs 2 min unbroken."""
    drv = sea_s21()
    hold_s(drv, R1_WARN_FOR_S, die=S21_SEA["warn"] + 1.0)
    below = S21_SEA["warn"] - R1_CLEAR_K - 0.5
    hold_s(drv, R1_CLEAR_S - STEP_S, die=below)
    drv.poll(die=S21_SEA["warn"] - 1.0)  # back in the band for one poll
    hold_s(drv, R1_CLEAR_S - STEP_S, die=below)
    assert drv.severity("R1") is W
    drv.poll(die=below)
    assert drv.severity("R1") is None
