"""The demo's generated config (the rest of the demo runs in tests/integration/test_demo.py)."""

from agent import demo


def test_demo_location_fills_containers_rack_by_rack_and_leaves_bitaxes_unplaced():
    """Miners fill slot, shelf, rack, then the next container; a Bitaxe has no location."""
    places = [demo.demo_location(i, "antminer") for i in range(19)]
    assert places[0] == {"container": "C1", "rack": "1", "shelf": "1", "slot": "1"}
    assert places[1] == {"container": "C1", "rack": "1", "shelf": "1", "slot": "2"}
    assert places[2] == {"container": "C1", "rack": "1", "shelf": "2", "slot": "1"}
    assert places[6] == {"container": "C1", "rack": "2", "shelf": "1", "slot": "1"}
    assert places[17] == {"container": "C1", "rack": "3", "shelf": "3", "slot": "2"}
    assert places[18] == {"container": "C2", "rack": "1", "shelf": "1", "slot": "1"}
    assert len({tuple(p.values()) for p in places if p}) == 19
    assert demo.demo_location(3, "bitaxe") is None
