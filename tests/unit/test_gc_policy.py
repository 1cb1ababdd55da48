"""The garbage-collector policy: pauses timed per generation, the settled heap frozen."""

from __future__ import annotations

import gc
import weakref
from typing import TYPE_CHECKING

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.gc_policy import GcPauses, freeze_settled_heap

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Whatever a test froze is unfrozen again (the test process shares one collector)."""
    yield
    gc.unfreeze()


class _Node:
    """An object that can sit in a reference cycle."""

    def __init__(self) -> None:
        self.other: _Node | None = None


def test_gc_pauses_counts_each_collection_by_generation():
    """A full collection while installed is counted in generation 2, with its time."""
    pauses = GcPauses()
    gc.disable()  # no automatic collection in between
    try:
        with pauses.installed():
            before, _, _ = pauses.snapshot(2)
            gc.collect(2)
            count, total, cumulative = pauses.snapshot(2)
    finally:
        gc.enable()
    assert count == before + 1
    assert total > 0
    assert cumulative[-1] == count
    assert list(cumulative) == sorted(cumulative)


def test_gc_pauses_stop_counting_once_uninstalled():
    """After the block no collection is timed and the callback is gone."""
    pauses = GcPauses()
    with pauses.installed():
        gc.collect(2)
    counted = pauses.snapshot(2)
    gc.collect(2)
    assert pauses.snapshot(2) == counted
    assert all(getattr(cb, "__self__", None) is not pauses for cb in gc.callbacks)


def test_gc_pauses_exposed_as_a_histogram_per_generation():
    """altiwatch_gc_pause_seconds has buckets, sum and count for generations 0-2; +Inf = count."""
    registry = CollectorRegistry(auto_describe=False)
    pauses = GcPauses()
    registry.register(pauses)
    with pauses.installed():
        gc.collect(2)
        text = generate_latest(registry).decode()
    (family,) = text_string_to_metric_families(text)
    assert family.name == "altiwatch_gc_pause_seconds"
    assert family.type == "histogram"
    by_generation: dict[str, dict[str, float]] = {}
    for sample in family.samples:
        key = sample.name.removeprefix("altiwatch_gc_pause_seconds")
        if key == "_bucket":
            key = f"le={sample.labels['le']}"
        by_generation.setdefault(sample.labels["generation"], {})[key] = sample.value
    assert set(by_generation) == {"0", "1", "2"}
    full = by_generation["2"]
    assert full["_count"] >= 1
    assert full["le=+Inf"] == full["_count"]
    assert full["_sum"] > 0


def test_freeze_settled_heap_moves_live_objects_out_of_collections(unfrozen):
    """Every live object ends up frozen: the number is the collector's freeze count."""
    frozen = freeze_settled_heap()
    assert frozen == gc.get_freeze_count()
    assert frozen > 1000  # at least the imported modules' objects


def test_freeze_settled_heap_collects_a_cycle_released_since_the_last_freeze(unfrozen):
    """A cycle frozen while alive and released later is collected by the next freeze."""
    gc.disable()  # only the freezes collect in this test
    try:
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        collected = []
        ref = weakref.ref(a, lambda _ref: collected.append(True))
        freeze_settled_heap()
        del a, b
        gc.collect()
        assert ref() is not None  # frozen: a plain collection leaves the cycle alone
        freeze_settled_heap()
        assert ref() is None
        assert collected == [True]
    finally:
        gc.enable()
