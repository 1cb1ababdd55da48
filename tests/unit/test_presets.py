"""Presets: model normalisation, preset selection, operator overrides, firmware limits."""

from __future__ import annotations

import pytest

from agent.alarms.air import site_air
from agent.alarms.config import OverrideMatch, ThermalSettings, ThresholdOverride
from agent.alarms.engine import AlarmEngine, FirmwareLimits, Observation
from agent.alarms.presets import PRESETS, apply_overrides, derate, normalise_model, select_preset
from agent.alarms.testing import Site, make_snapshot
from collectors.snapshot import Family


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("S19K Pro", "S19k Pro"),
        ("Antminer S19j Pro (Vnish 1.2.6)", "S19jPro"),
        ("Bitmain Antminer S19j Pro", "s19j pro"),
        ("M30S+_VE40", "M30S+ VE40"),
        ("AvalonMiner 1566", "Avalon 1566"),
    ],
)
def test_presets_normalise_model_matches_spellings(a, b):
    """Model spellings of different firmwares normalise to the same key."""
    assert normalise_model(a) == normalise_model(b)


@pytest.mark.parametrize(
    ("family", "model", "chips", "preset"),
    [
        (Family.ANTMINER, "S19j Pro", True, "s19"),  # stock "chip" is board + 15 K: use the board
        (Family.VNISH, "S19k Pro", True, "s19-die"),
        (Family.BRAIINS, "Antminer S19j Pro", True, "s19-die"),
        (Family.VNISH, "S19k Pro", False, "s19"),
        (Family.BRAIINS, "Antminer S21", True, "s21"),
        (Family.ANTMINER, "S21 XP", True, "s21"),
        (Family.WHATSMINER, "M50 VH50", True, "whatsminer"),
        (Family.UNKNOWN, "M30S+ VE40", True, "whatsminer"),
        (Family.AVALON, "1566", True, "avalon"),
        (Family.BITAXE, "Ultra", True, "bitaxe"),
        (Family.UNKNOWN, None, True, "generic"),
    ],
)
def test_presets_select_by_family_and_model(family, model, chips, preset):
    """The preset follows the firmware family and the normalised model."""
    key = normalise_model(model) if model else None
    assert select_preset(family, key, reports_chips=chips) == preset


def test_presets_sea_level_values_match_the_note():
    """C0, H0, inlet rule and T_min are the note's §5 table."""
    s19, s21, wm, av, bx = (PRESETS[n] for n in ("s19", "s21", "whatsminer", "avalon", "bitaxe"))
    assert (s19.critical_c, s19.hysteresis_k, s19.sensor, s19.board_estimated_chip) == (
        75,
        10,
        "board",
        True,
    )
    assert (s21.critical_c, s21.sensor) == (95, "die")
    assert (
        wm.critical_c,
        wm.t_min_c,
        wm.vendor_inlet_max_c(2000),
        wm.vendor_inlet_max_c(2300),
    ) == (95, -5, 35, 34)
    assert (av.critical_c, av.vendor_inlet_max_c(1200)) == (100, 34)
    assert (bx.critical_c, bx.hysteresis_k) == (72, 6)
    assert s19.vendor_inlet_max_c(500) == 40  # no derating below 900 m


def test_presets_most_specific_override_wins():
    """Miner beats model beats site; values not set are inherited from less specific ones."""
    overrides = (
        ThresholdOverride(match=OverrideMatch(miner="m1"), critical_c=70),
        ThresholdOverride(match=OverrideMatch(site="a"), critical_c=80, t_min_c=-10),
        ThresholdOverride(match=OverrideMatch(model="S19K Pro"), critical_c=74, rpm_max=6500),
    )
    p, applied = apply_overrides(
        PRESETS["s19"], overrides, site="a", miner="m1", model_key="s19kpro"
    )
    assert applied
    assert (p.critical_c, p.t_min_c, p.rpm_max) == (70, -10, 6500)
    p, _ = apply_overrides(PRESETS["s19"], overrides, site="a", miner="m2", model_key="s19kpro")
    assert p.critical_c == 74
    p, applied = apply_overrides(
        PRESETS["s19"], overrides, site="b", miner="m2", model_key="s19jpro"
    )
    assert (p.critical_c, applied) == (75, False)


def test_presets_override_by_preset_name_and_forced_preset():
    """A preset name matches its whole class; ``preset:`` switches the base preset."""
    overrides = (
        ThresholdOverride(match=OverrideMatch(model="whatsminer"), inlet_max_c=33),
        ThresholdOverride(match=OverrideMatch(miner="odd"), preset="avalon"),
    )
    p, _ = apply_overrides(
        PRESETS["whatsminer"], overrides, site="a", miner="x", model_key="m50vh50"
    )
    assert p.inlet_max_c == 33
    p, _ = apply_overrides(PRESETS["generic"], overrides, site="a", miner="odd", model_key=None)
    assert p.name == "avalon"


def test_presets_override_is_a_sea_level_value_derated_at_altitude():
    """An operator's critical_c is C0: at 3,000 m an S19 board crit is C0 − c(δ)."""
    overrides = (ThresholdOverride(match=OverrideMatch(model="s19"), critical_c=70),)
    p, applied = apply_overrides(
        PRESETS["s19"], overrides, site="a", miner="m", model_key="s19jpro"
    )
    th = derate(p, site_air("a", 3000), overridden=applied)
    assert th.critical_c == pytest.approx(67.4, abs=0.05)
    assert th.critical_source == "override"


def test_presets_settings_reject_unknown_keys():
    """Thermal settings are strict: a typo is an error, not a silent default."""
    with pytest.raises(ValueError, match="critcal_c"):
        ThermalSettings.model_validate({"overrides": [{"critcal_c": 70}]})


def test_presets_firmware_limits_win_over_presets_and_overrides():
    """Live firmware limits replace the preset's critical and inlet maximum."""
    settings = ThermalSettings(
        overrides=(ThresholdOverride(match=OverrideMatch(model="s21"), critical_c=90),)
    )
    engine = AlarmEngine(settings, [Site("site", 3000)])
    snap = make_snapshot(0, preset="s21", die=70.0)
    limits = FirmwareLimits(critical_c=92.0, inlet_max_c=30.0)
    engine.evaluate(0, [Observation("m1", "site", 0, snap, limits=limits)])
    th = engine.thresholds("m1")
    assert th is not None
    assert (th.critical_c, th.critical_source, th.inlet_max_c, th.inlet_rule) == (
        92.0,
        "firmware",
        30.0,
        "firmware",
    )
    assert th.warning_c == pytest.approx(92.0 - 10 * th.cooling_multiplier)


def test_presets_learned_rise_lowers_inlet_max_when_physics_is_stricter():
    """Learning on: after 5 min + 20 full-fan samples, T_in,max = T_in,max0 − ΔT_ci0·(M − 1)."""
    engine = AlarmEngine(ThermalSettings(learn_chip_inlet_rise=True), [Site("site", 2275)])
    m = site_air("site", 2275).cooling_multiplier
    for i in range(35):
        snap = make_snapshot(i * 30, preset="s21", die=20.0 + 45.0 * m, inlet=20.0, rpm=6600)
        engine.evaluate(i * 30, [Observation("m1", "site", i * 30, snap)])
    th = engine.thresholds("m1")
    assert th is not None
    assert th.learned_rise_k == pytest.approx(45.0, abs=0.1)
    assert th.inlet_rule == "physics"
    assert th.inlet_max_c == pytest.approx(40.0 - 45.0 * (m - 1), abs=0.1)
    assert th.vendor_inlet_max_c == pytest.approx(40.0 - (2275 - 900) / 175, abs=0.05)


def test_presets_learning_is_off_by_default():
    """Without opting in, the vendor inlet rule is used however long fans run at full speed."""
    engine = AlarmEngine(ThermalSettings(), [Site("site", 2275)])
    for i in range(40):
        snap = make_snapshot(i * 30, preset="s21", die=90.0, inlet=20.0, rpm=6600)
        engine.evaluate(i * 30, [Observation("m1", "site", i * 30, snap)])
    th = engine.thresholds("m1")
    assert th is not None
    assert (th.learned_rise_k, th.inlet_rule) == (None, "vendor")
