"""The ``thermal:`` section through the agent's real config loader."""

from __future__ import annotations

import pytest

from agent.alarms.engine import AlarmEngine, Observation
from agent.alarms.testing import make_snapshot
from agent.config import load_config_text
from agent.errors import ConfigError

BASE = """
sites:
  - {name: golmud, altitude_m: 2800, station_pressure_kpa: 72.1}
miners:
  - {address: 127.40.9.1}
"""


def test_presets_config_thermal_section_reaches_the_engine():
    """Overrides and site humidity written in YAML change the thresholds the engine uses."""
    text = (
        BASE
        + """
thermal:
  sites:
    - {name: golmud, relative_humidity_pct: 35}
  overrides:
    - match: {model: S19jPro}
      critical_c: 73
"""
    )
    cfg = load_config_text(text, env={})
    engine = AlarmEngine(cfg.thermal, cfg.sites)
    snap = make_snapshot(0, preset="s19", board=60.0)
    engine.evaluate(0, [Observation("m1", "golmud", 0, snap, model="Antminer S19j Pro")])
    th = engine.thresholds("m1")
    assert th is not None
    assert th.critical_source == "override"
    assert th.critical_sea_level_c == 73.0
    assert engine.site_air("golmud").pressure_source.value == "measured"
    assert cfg.thermal.site("golmud").relative_humidity_pct == 35


def test_presets_config_typo_names_the_field_and_line():
    """A misspelt override key is a ConfigError naming thermal.overrides.0 and its line."""
    text = (
        BASE
        + """
thermal:
  overrides:
    - match: {model: S19jPro}
      critcal_c: 73
"""
    )
    with pytest.raises(ConfigError) as err:
        load_config_text(text, env={})
    message = str(err.value)
    assert "thermal.overrides.0" in message
    assert "critcal_c" in message
