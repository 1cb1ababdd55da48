"""Scenario loading and scaling, address allocation and the simulated clock."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from collectors.emulator import fleet
from collectors.emulator.fleet import Fleet, SimClock, addresses
from collectors.emulator.profiles import PROFILES, WHATSMINER_V3_FAMILIES, FirmwareFamily
from collectors.emulator.scenario import FaultSpec, Scenario, load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "deploy" / "scenarios"


CLASSIC_FAMILIES = frozenset(FirmwareFamily) - WHATSMINER_V3_FAMILIES - {FirmwareFamily.LUXOS}
"""The six families of the 2025 scenarios; firmware added since has its own scenarios."""


@pytest.mark.parametrize("name", ["sea-level", "xining-2275", "golmud-2800", "heatwave-3500"])
def test_scenario_files_load_and_mix_all_families(name):
    """Every mixed-fleet scenario validates and holds all six classic firmware families."""
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    families = {PROFILES[g.model].family for g in scenario.miners}
    assert families == CLASSIC_FAMILIES


def test_scenario_mixed_2026_holds_every_family_and_cooling():
    """The mixed 2026 site validates and holds every emulated family and every cooling type."""
    scenario = load_scenario(SCENARIOS / "mixed-2026.yaml")
    assert {PROFILES[g.model].family for g in scenario.miners} == set(FirmwareFamily)
    assert {PROFILES[g.model].cooling for g in scenario.miners} == {"air", "hydro", "immersion"}


def test_scenario_files_cover_every_family():
    """Every emulated family appears in at least one shipped scenario."""
    families = {
        PROFILES[g.model].family
        for path in SCENARIOS.glob("*.yaml")
        for g in load_scenario(path).miners
    }
    assert families == set(FirmwareFamily)


def test_golmud_is_the_demo_site():
    """Golmud-like: 2,800 m, 30-40 miners."""
    scenario = load_scenario(SCENARIOS / "golmud-2800.yaml")
    assert scenario.site.altitude_m == 2800
    assert 30 <= sum(g.count for g in scenario.miners) <= 40


def test_scenario_scale_keeps_the_mix():
    """Scaling to N miners keeps each group's share (largest remainder) and sums to N."""
    scenario = load_scenario(SCENARIOS / "golmud-2800.yaml")
    for total in (1, 7, 36, 2000):
        scaled = scenario.scale(total)
        assert sum(g.count for g in scaled.miners) == total
    big = scenario.scale(3600)
    assert [g.count for g in big.miners] == [g.count * 100 for g in scenario.miners]


def test_scenario_rejects_unknown_fields_models_and_public_addresses():
    """Strict models: typos, unknown profiles and non-loopback addresses are errors."""
    base = {"name": "x", "site": {"name": "s", "altitude_m": 0}}
    with pytest.raises(ValidationError):
        Scenario.model_validate({**base, "miners": [{"model": "antminer-s9"}]})
    with pytest.raises(ValidationError):
        Scenario.model_validate({**base, "miners": [{"model": "bitaxe-ultra", "colour": "red"}]})
    with pytest.raises(ValidationError):
        Scenario.model_validate(
            {**base, "miners": [{"model": "bitaxe-ultra", "addresses": ["10.0.0.1"]}]}
        )
    with pytest.raises(ValidationError):
        FaultSpec.model_validate({"kind": "model_change", "model": "nope"})


def test_addresses_are_consecutive_loopback_skipping_network_and_broadcast():
    """Addresses run on from the base and skip .0 and .255."""
    assert addresses("127.20.0.254", 3) == ["127.20.0.254", "127.20.1.1", "127.20.1.2"]
    with pytest.raises(ValueError, match="loopback"):
        addresses("192.168.1.1", 1)


def test_fleet_identities_are_deterministic_per_seed():
    """The same seed gives the same MACs and serials; another seed gives others."""
    scenario = load_scenario(SCENARIOS / "sea-level.yaml")
    a = [m.identity.mac for m in Fleet(scenario, seed=1).miners.values()]
    b = [m.identity.mac for m in Fleet(scenario, seed=1).miners.values()]
    c = [m.identity.mac for m in Fleet(scenario, seed=2).miners.values()]
    assert a == b
    assert a != c
    assert len(set(a)) == len(a)


def test_sim_clock_speedup_and_pause(monkeypatch: pytest.MonkeyPatch):
    """The clock runs ``speedup`` times real time and stands still while paused (exactly)."""
    real = [500.0]
    monkeypatch.setattr(fleet, "time", SimpleNamespace(monotonic=lambda: real[0]))
    clock = SimClock(1_000.0, 3600.0)
    real[0] += 0.01
    assert clock.now() == pytest.approx(1_036.0)
    clock.pause()
    frozen = clock.now()
    real[0] += 60.0
    assert clock.now() == frozen
    clock.resume()
    real[0] += 0.5
    assert clock.now() == pytest.approx(frozen + 0.5 * 3600.0)


def test_scenario_hydro_site_is_all_liquid_cooled():
    """hydro-site: 4,000 m, every miner hydro or immersion, one with a failing coolant flow."""
    scenario = load_scenario(SCENARIOS / "hydro-site.yaml")
    assert scenario.site.altitude_m == 4000
    assert {PROFILES[g.model].cooling for g in scenario.miners} == {"hydro", "immersion"}
    faults = [f.kind for g in scenario.miners for f in g.faults]
    assert faults == ["coolant_flow"]
