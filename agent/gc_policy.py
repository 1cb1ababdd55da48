"""The garbage collector in a long-running agent: the settled heap frozen, every pause counted.

CPython's cyclic collector stops every thread of the process while it runs, and a full
(generation-2) collection walks every object it tracks. After its first poll cycle the agent holds
mostly objects that live as long as it does: imported modules, the config, one pyasic miner object
per miner with its API clients, the fleet and alarm state. At 2,000 miners that is about 260,000
objects, and a full collection took 160-310 ms on the 2-core bench machine, about every 10 s, with
the polling loop stopped meanwhile.

``freeze_settled_heap`` (called once the first poll cycle is done, and again after a reload) moves
everything alive into the collector's permanent generation (``gc.freeze``): later full collections
walk only what was made since (in the load benchmark's quiet windows none took over 100 ms).
Frozen objects are still freed by reference counting; only a reference cycle among them is never
collected, which is why the heap is frozen after a full collection and re-frozen
(``gc.unfreeze``, collect, freeze) when a reload replaces part of it.

``GcPauses`` times every collection (``gc.callbacks``) and exposes the pauses as the
``altiwatch_gc_pause_seconds`` histogram, by generation: the lateness of polls and scrapes can be
read against it. The callback touches only plain lists (it may run on any thread, inside any
allocation, so it takes no lock); a scrape copies each list in one step.
"""

from __future__ import annotations

import gc
import time
from bisect import bisect_left
from contextlib import contextmanager
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Upper bounds (s) of the pause histogram's buckets: a young collection is well under 1 ms, a
#: full one at thousands of miners 0.05-0.5 s.
PAUSE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
GENERATIONS = (0, 1, 2)


class GcPauses(Collector):
    """Times each collection, per generation; a collector for the agent's registry."""

    def __init__(self) -> None:
        """Nothing is timed until ``installed``."""
        # Per generation one list: [count, sum_s, bucket_0, ..., bucket_n]; bucket i counts the
        # pauses <= PAUSE_BUCKETS[i] (not cumulative; summed up when exposed).
        self._stats = [[0, 0.0] + [0] * len(PAUSE_BUCKETS) for _ in GENERATIONS]
        self._started: float | None = None

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        started, self._started = self._started, None
        if started is None:  # installed in the middle of a collection
            return
        pause = time.perf_counter() - started
        stats = self._stats[int(info["generation"])]
        stats[0] += 1
        stats[1] += pause
        bucket = bisect_left(PAUSE_BUCKETS, pause)  # the first bound >= pause
        if bucket < len(PAUSE_BUCKETS):  # longer pauses are only in +Inf (the count)
            stats[2 + bucket] += 1

    @contextmanager
    def installed(self) -> Iterator[GcPauses]:
        """Time collections while the block runs."""
        gc.callbacks.append(self._callback)
        try:
            yield self
        finally:
            gc.callbacks.remove(self._callback)

    def snapshot(self, generation: int) -> tuple[int, float, tuple[int, ...]]:
        """(count, sum of pauses in s, cumulative buckets ending with +Inf) of one generation."""
        stats = tuple(self._stats[generation])  # one copy: a consistent view
        count = int(stats[0])
        return count, float(stats[1]), (*accumulate(int(hits) for hits in stats[2:]), count)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """``altiwatch_gc_pause_seconds{generation}``."""
        family = HistogramMetricFamily(
            "altiwatch_gc_pause_seconds",
            "Time the process was stopped by CPython's cyclic garbage collector, by generation.",
            labels=["generation"],
        )
        bounds = [*(f"{b:g}" for b in PAUSE_BUCKETS), "+Inf"]
        for generation in GENERATIONS:
            _count, total, cumulative = self.snapshot(generation)
            family.add_metric([str(generation)], list(zip(bounds, cumulative, strict=True)), total)
        yield family


def freeze_settled_heap() -> int:
    """Collect fully, then move every live object out of future collections; the number moved.

    A heap frozen before is unfrozen first, so what was released since (a reload's old objects)
    is collected too.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
