"""Specification of agent/location.py: address patterns, inventory CSV, precedence, walking order."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import pytest

from agent.config import load_config_text
from agent.errors import ConfigError
from agent.fleet_state import FleetState
from agent.location import (
    AddressPattern,
    Location,
    Locator,
    describe,
    read_inventory,
    walk_key,
)
from collectors.source import MinerTarget

if TYPE_CHECKING:
    from pathlib import Path


def _locator(text: str) -> Locator:
    return Locator(load_config_text(textwrap.dedent(text), env={}))


def test_location_pattern_spells_rack_and_slot_from_the_address():
    """``10.28.{rack}.{slot}`` reads rack and slot from the last two octets."""
    pattern = AddressPattern("10.28.{rack}.{slot}")
    assert pattern.match("10.28.12.4") == Location(rack="12", slot="4")
    assert pattern.match("10.29.12.4") is None  # the literal part must match
    assert pattern.match("10.28.12") is None


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("10.28.1.1", "at least one placeholder"),
        ("10.{row}.1.{slot}", "unknown placeholder {row}"),
        ("10.{rack}.{rack}.1", "appears twice"),
    ],
)
def test_location_pattern_refuses_unusable_patterns(pattern, problem):
    """A pattern without placeholders, with an unknown or a repeated one is a config error."""
    with pytest.raises(ConfigError, match=problem):
        load_config_text(
            f"sites: [{{name: s, altitude_m: 0, location_pattern: '{pattern}'}}]\n", env={}
        )


def test_location_inventory_csv_matches_by_mac_then_address(tmp_path: Path):
    """A row matched by MAC (any spelling) wins over a row matched by the address."""
    csv = tmp_path / "inventory.csv"
    csv.write_text(
        "mac,address,name,container,rack,shelf,slot\n"
        "02-a1-55-77-8d-f5,,S19-0412,C3,12,2,4\n"
        ",10.0.0.9,by-address,C1,1,1,1\n"
        "\n",
        encoding="utf-8",
    )
    inventory = read_inventory(csv)
    assert inventory.by_mac["02:A1:55:77:8D:F5"].name == "S19-0412"
    locator = _locator(f"""
        sites: [{{name: s, altitude_m: 0, inventory_csv: {csv}}}]
        """)
    by_mac = locator.place("s", "10.0.0.9", "02:A1:55:77:8D:F5")
    assert by_mac.name == "S19-0412"
    assert by_mac.location == Location(container="C3", rack="12", shelf="2", slot="4")
    before_mac = locator.place("s", "10.0.0.9", None)
    assert (before_mac.name, before_mac.location) == (
        "by-address",
        Location(container="C1", rack="1", shelf="1", slot="1"),
    )


def test_location_inventory_csv_errors_name_the_line(tmp_path: Path):
    """A malformed row is refused with the file and its line."""
    csv = tmp_path / "inventory.csv"
    csv.write_text("mac,rack\n02:A1:55:77:8D:F5,1\nnot-a-mac,2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 3.*not a MAC"):
        read_inventory(csv)
    csv.write_text("address,row\n10.0.0.1,1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown: row"):
        read_inventory(csv)


def test_location_precedence_config_then_inventory_then_pattern(tmp_path: Path):
    """Field by field: ``miners[].location``, then the inventory row, then the pattern."""
    csv = tmp_path / "inventory.csv"
    csv.write_text("address,name,container,shelf\n10.28.12.4,inv-name,C9,5\n", encoding="utf-8")
    locator = _locator(f"""
        sites:
          - {{name: s, altitude_m: 0, location_pattern: "10.28.{{rack}}.{{slot}}",
              inventory_csv: {csv}}}
        miners:
          - {{address: 10.28.12.4, name: cfg-name, location: {{container: C3}}}}
          - {{address: 10.28.7.1}}
        """)
    placed = locator.place("s", "10.28.12.4")
    assert placed.name == "cfg-name"
    assert placed.location == Location(container="C3", rack="12", shelf="5", slot="4")
    only_pattern = locator.place("s", "10.28.7.1")
    assert (only_pattern.name, only_pattern.location) == (None, Location(rack="7", slot="1"))
    assert locator.place("s", "192.168.1.1").location is None  # unknown: absent, not guessed


def test_location_config_refuses_unknown_location_keys():
    """``miners[].location`` is strict: a misspelt key is an error, not ignored."""
    with pytest.raises(ConfigError, match=r"miners\.0\.location\.row.*unknown key"):
        load_config_text(
            "sites: [{name: s, altitude_m: 0}]\nminers: [{address: 10.0.0.1, location: {row: 1}}]\n",
            env={},
        )


def test_location_walk_key_orders_numbers_by_value_and_unknown_last():
    """Rack 2 comes before rack 10; a miner with no known place comes last."""
    places = [
        Location(container="C1", rack="10"),
        None,
        Location(container="C1", rack="2", shelf="3"),
        Location(container="C1", rack="2", shelf="1"),
        Location(container="B7"),
    ]
    ordered = sorted(places, key=walk_key)
    assert ordered == [places[4], places[3], places[2], places[0], None]


def test_location_describe_puts_the_name_before_the_mac():
    """People read ``name (MAC), container C3, rack 12, shelf 2``."""
    where = Location(container="C3", rack="12", shelf="2")
    assert (
        describe("S19-0412", "02:A1", where) == "S19-0412 (02:A1), container C3, rack 12, shelf 2"
    )
    assert describe(None, "02:A1", None) == "02:A1"


def test_location_fleet_state_places_records_and_replaces_placer():
    """Records are placed when added; a new placer (reload) places them again."""
    first = _locator("sites: [{name: s, altitude_m: 0, location_pattern: '127.1.{rack}.{slot}'}]")
    fleet = FleetState(placer=first.place)
    record = fleet.add("s", MinerTarget(address="127.1.3.4"), now=0.0)
    assert record.location == Location(rack="3", slot="4")
    fleet.drain_dirty()
    second = _locator("sites: [{name: s, altitude_m: 0, location_pattern: '127.1.{shelf}.{slot}'}]")
    fleet.replace_placer(second.place)
    assert record.location == Location(shelf="3", slot="4")
    assert fleet.drain_dirty() == {"127.1.3.4"}


def test_location_demo_inventory_places_36_miners_on_distinct_spots(tmp_path: Path):
    """The demo floor: 2 containers × 3 racks × 3 shelves × 2 slots, one miner per place."""
    from agent import demo  # noqa: PLC0415 - the demo module only for this test

    miners = [{"address": f"127.77.0.{i + 1}", "hostname": f"m-{i:04d}"} for i in range(36)]
    inventory = read_inventory(demo.write_inventory(tmp_path / "inventory.csv", miners))
    places = {p.location for p in inventory.by_address.values()}
    assert len(places) == 36
    assert inventory.by_address["127.77.0.1"].location == Location(
        container="C1", rack="1", shelf="1", slot="1"
    )
    assert inventory.by_address["127.77.0.36"].location == Location(
        container="C2", rack="3", shelf="3", slot="2"
    )
    assert inventory.by_address["127.77.0.36"].name == "m-0035"
