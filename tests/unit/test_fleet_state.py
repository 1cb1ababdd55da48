"""Fleet state: merging tiers, stable ids, up/down, staleness."""

from typing import Any

from agent.fleet_state import FleetState, stable_id
from collectors.snapshot import Identity, MinerSnapshot, PowerSource, Tier
from collectors.source import MinerTarget

MAC = "02:A1:00:00:00:01"


def fast(address: str = "10.0.0.1", hashrate: float = 100e12, **kw: Any) -> MinerSnapshot:
    """A fast-tier snapshot of an S19j Pro."""
    return MinerSnapshot(
        address=address,
        collected_at=1.0,
        tier=Tier.FAST,
        identity=Identity(model="S19j Pro"),
        hashrate_hs=hashrate,
        **kw,
    )


def slow(
    address: str = "10.0.0.1",
    mac: str | None = MAC,
    serial: str | None = "SN1",
    hostname: str | None = "h1",
    model: str = "S19j Pro",
) -> MinerSnapshot:
    """A slow-tier snapshot carrying identity."""
    return MinerSnapshot(
        address=address,
        collected_at=1.0,
        tier=Tier.SLOW,
        identity=Identity(model=model, mac=mac, serial=serial, hostname=hostname),
        errors=(),
        pools=(),
    )


def test_stable_id_prefers_mac_then_serial_then_name_then_address():
    """The id is MAC, else serial, else configured name, else address."""
    target = MinerTarget(address="10.0.0.1", name="rack1-a")
    assert stable_id(Identity(mac="aa:bb", serial="S"), target) == "AA:BB"
    assert stable_id(Identity(serial="S"), target) == "S"
    assert stable_id(Identity(), target) == "rack1-a"
    assert stable_id(None, MinerTarget(address="10.0.0.1")) == "10.0.0.1"


def test_fleet_state_merges_slow_identity_into_fast_snapshot():
    """A fast snapshot carries the slow tier's identity, pools and errors."""
    fleet = FleetState()
    fleet.add("s", MinerTarget(address="10.0.0.1"), now=0)
    fleet.record_success("10.0.0.1", slow(), 0.1, now=1)
    record = fleet.record_success("10.0.0.1", fast(), 0.1, now=2)
    assert record is not None
    assert record.snapshot is not None
    assert record.snapshot.identity.mac == MAC
    assert record.snapshot.pools == ()
    assert record.miner_id == MAC
    assert record.up is True


def test_fleet_state_estimates_power_when_firmware_reports_none():
    """No measured power: an estimate from nominal efficiency, marked estimated."""
    fleet = FleetState()
    fleet.add("s", MinerTarget(address="10.0.0.1"), now=0)
    record = fleet.record_success("10.0.0.1", fast(), 0.1, now=1)
    assert record is not None
    assert record.snapshot is not None
    assert record.snapshot.power_source is PowerSource.ESTIMATED
    assert record.snapshot.power_w is not None


def test_fleet_state_keeps_measured_power():
    """A measured power figure is never replaced by an estimate."""
    fleet = FleetState()
    fleet.add("s", MinerTarget(address="10.0.0.1"), now=0)
    snap = fast(power_w=3000.0, power_source=PowerSource.MEASURED)
    record = fleet.record_success("10.0.0.1", snap, 0.1, now=1)
    assert record is not None
    assert record.snapshot is not None
    assert record.snapshot.power_w == 3000.0
    assert record.snapshot.power_source is PowerSource.MEASURED


def test_fleet_state_fast_failure_marks_down_with_reason():
    """A failed fast poll marks the miner down with its reason; success clears it."""
    fleet = FleetState()
    fleet.add("s", MinerTarget(address="10.0.0.1"), now=0)
    fleet.record_success("10.0.0.1", fast(), 0.1, now=1)
    record = fleet.record_failure("10.0.0.1", "timeout", "x", 5.0, now=2, tier=Tier.FAST)
    assert record is not None
    assert (record.up, record.last_error, record.down_since) == (False, "timeout", 2)
    fleet.record_success("10.0.0.1", fast(), 0.1, now=3)
    assert (record.up, record.last_error, record.down_since) == (True, None, None)


def test_fleet_state_address_change_keeps_id_and_hides_old_record():
    """A miner seen at a new address with the same MAC keeps its id; the old record hides."""
    fleet = FleetState()
    fleet.add("s", MinerTarget(address="10.0.0.1"), now=0)
    fleet.add("s", MinerTarget(address="10.0.0.2"), now=0)
    fleet.record_success("10.0.0.1", slow(), 0.1, now=1)
    fleet.record_success("10.0.0.1", fast(), 0.1, now=1)
    fleet.record_failure("10.0.0.1", "refused", "x", 0.1, now=2, tier=Tier.FAST)
    fleet.record_success("10.0.0.2", slow(address="10.0.0.2"), 0.1, now=3)
    fleet.record_success("10.0.0.2", fast(address="10.0.0.2"), 0.1, now=3)
    rendered = fleet.rendered()
    assert [(r.address, r.miner_id) for r in rendered] == [("10.0.0.2", MAC)]
    assert fleet.by_id(MAC) is fleet.get("10.0.0.2")


def test_fleet_state_hides_miner_down_longer_than_stale_after():
    """A miner down for stale_after_s loses its series until it answers again."""
    fleet = FleetState()
    fleet.add("s", MinerTarget(address="10.0.0.1"), now=0)
    fleet.record_success("10.0.0.1", fast(), 0.1, now=1)
    fleet.record_failure("10.0.0.1", "timeout", "x", 5.0, now=10, tier=Tier.FAST)
    assert fleet.prune(now=100, stale_after_s=600) == []
    assert len(fleet.rendered()) == 1
    assert len(fleet.prune(now=611, stale_after_s=600)) == 1
    assert fleet.rendered() == []
    assert fleet.drain_removed() == []
    fleet.record_success("10.0.0.1", fast(), 0.1, now=620)
    assert len(fleet.rendered()) == 1


def test_fleet_state_deletes_removed_miner_after_stale_after():
    """A miner removed from inventory disappears immediately from series, and is deleted later."""
    fleet = FleetState()
    fleet.add("s", MinerTarget(address="10.0.0.1"), now=0)
    fleet.record_success("10.0.0.1", fast(), 0.1, now=1)
    fleet.remove("10.0.0.1", now=5)
    assert fleet.rendered() == []
    fleet.prune(now=700, stale_after_s=600)
    assert fleet.get("10.0.0.1") is None
    assert fleet.drain_removed() == [("s", "10.0.0.1")]


def test_fleet_state_generation_increases_on_every_change():
    """Every recorded poll bumps the generation and the record's version."""
    fleet = FleetState()
    fleet.add("s", MinerTarget(address="10.0.0.1"), now=0)
    before = fleet.generation
    record = fleet.record_success("10.0.0.1", fast(), 0.1, now=1)
    assert record is not None
    assert fleet.generation > before
    assert record.version == fleet.generation


def test_fleet_state_sites_counts_inventory_and_up():
    """Per-site counts of miners in inventory and miners up."""
    fleet = FleetState()
    fleet.add("a", MinerTarget(address="10.0.0.1"), now=0)
    fleet.add("a", MinerTarget(address="10.0.0.2"), now=0)
    fleet.record_success("10.0.0.1", fast(), 0.1, now=1)
    fleet.record_failure("10.0.0.2", "refused", "x", 0.1, now=1, tier=Tier.FAST)
    assert fleet.sites() == {"a": (2, 1)}


def test_fleet_state_slow_poll_that_lost_identity_keeps_the_miner_id():
    """A slow poll without MAC, serial and hostname keeps those read before while the miner was up."""
    fleet = FleetState()
    fleet.add("s", MinerTarget(address="10.0.0.1"), now=0)
    fleet.record_success("10.0.0.1", slow(), 0.1, now=1)
    fleet.record_success("10.0.0.1", fast(), 0.1, now=2)
    record = fleet.record_success(
        "10.0.0.1", slow(mac=None, serial=None, hostname=None), 0.1, now=3
    )
    assert record is not None
    assert record.miner_id == MAC
    assert record.slow is not None
    assert (record.slow.identity.serial, record.slow.identity.hostname) == ("SN1", "h1")
    assert fleet.by_id(MAC) is record


def test_fleet_state_identity_is_not_carried_across_other_hardware_or_an_outage():
    """Another MAC, another model, or an outage since the last reading: the new identity stands."""
    other = "02:A1:00:00:00:02"
    fleet = FleetState()
    fleet.add("s", MinerTarget(address="10.0.0.1"), now=0)
    fleet.record_success("10.0.0.1", slow(), 0.1, now=1)
    fleet.record_success("10.0.0.1", fast(), 0.1, now=2)
    record = fleet.record_success("10.0.0.1", slow(mac=other, serial=None), 0.1, now=3)
    assert record is not None
    assert record.miner_id == other
    assert record.slow is not None
    assert record.slow.identity.serial is None
    record = fleet.record_success("10.0.0.1", slow(mac=None, model="M30S+"), 0.1, now=4)
    assert record is not None
    assert record.miner_id == "SN1"
    fleet.record_success("10.0.0.1", slow(), 0.1, now=5)
    fleet.record_failure("10.0.0.1", "timeout", "t", 1.0, now=6, tier=Tier.FAST)
    record = fleet.record_success("10.0.0.1", slow(mac=None, serial=None), 0.1, now=7)
    assert record is not None
    assert record.miner_id == "10.0.0.1"


def test_fleet_state_lists_the_old_id_of_an_exported_miner_renamed():
    """Exported under its address, then identified by MAC: the old id is listed once, for cleanup."""
    fleet = FleetState()
    fleet.add("s", MinerTarget(address="10.0.0.1"), now=0)
    fleet.add("s", MinerTarget(address="10.0.0.2"), now=0)
    fleet.record_success("10.0.0.2", slow(address="10.0.0.2", mac="02:A1:00:00:00:09"), 0.1, 1)
    assert fleet.drain_renamed() == []  # identified on its first poll: never exported before
    fleet.record_success("10.0.0.1", slow(mac=None, serial=None), 0.1, now=1)
    fleet.record_success("10.0.0.1", fast(), 0.1, now=2)
    assert fleet.drain_renamed() == []
    record = fleet.record_success("10.0.0.1", slow(), 0.1, now=3)
    assert record is not None
    assert record.miner_id == MAC
    assert fleet.drain_renamed() == [("s", "10.0.0.1")]
    assert fleet.drain_renamed() == []


def test_fleet_state_device_reporting_a_held_mac_does_not_take_it_over():
    """A second answering miner reporting the same MAC keeps its own id and is flagged once."""
    fleet = FleetState()
    fleet.add("s", MinerTarget(address="10.0.0.1"), now=0)
    fleet.add("s", MinerTarget(address="10.0.0.2", name="rack2-07"), now=0)
    fleet.record_success("10.0.0.1", slow(), 0.1, now=1)
    fleet.record_success("10.0.0.1", fast(), 0.1, now=1)
    fleet.record_success("10.0.0.2", slow(address="10.0.0.2", serial="SN2"), 0.1, now=2)
    fleet.record_success("10.0.0.2", fast(address="10.0.0.2"), 0.1, now=2)
    fleet.record_success("10.0.0.2", slow(address="10.0.0.2", serial="SN2"), 0.1, now=3)
    rendered = {r.address: r.miner_id for r in fleet.rendered()}
    assert rendered == {"10.0.0.1": MAC, "10.0.0.2": "rack2-07"}
    assert fleet.by_id(MAC) is fleet.get("10.0.0.1")
    clone = fleet.get("10.0.0.2")
    assert clone is not None
    assert (clone.duplicate_of, clone.duplicate_holder) == (MAC, "10.0.0.1")
    assert fleet.drain_duplicates() == [clone]
    assert fleet.drain_duplicates() == []


def test_fleet_state_held_mac_moves_once_its_holder_stops_answering():
    """When the holder of a MAC goes down, the other miner reporting it takes the id over."""
    fleet = FleetState()
    fleet.add("s", MinerTarget(address="10.0.0.1"), now=0)
    fleet.add("s", MinerTarget(address="10.0.0.2"), now=0)
    fleet.record_success("10.0.0.1", slow(), 0.1, now=1)
    fleet.record_success("10.0.0.1", fast(), 0.1, now=1)
    fleet.record_success("10.0.0.2", slow(address="10.0.0.2"), 0.1, now=2)
    fleet.record_success("10.0.0.2", fast(address="10.0.0.2"), 0.1, now=2)
    fleet.record_failure("10.0.0.1", "refused", "x", 0.1, now=3, tier=Tier.FAST)
    fleet.record_success("10.0.0.2", fast(address="10.0.0.2"), 0.1, now=4)
    record = fleet.get("10.0.0.2")
    assert record is not None
    assert (record.miner_id, record.duplicate_of) == (MAC, None)
    assert [r.address for r in fleet.rendered()] == ["10.0.0.2"]
    assert fleet.drain_renamed() == [("s", "10.0.0.2")]
