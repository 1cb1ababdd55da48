"""Bounded per-miner sample histories for slopes, averages and ranges (small at 10,000 miners).

A :class:`Series` keeps at most ``capacity`` (time, value) points in two ring buffers, times as
``array('d')`` and values as ``array('f')`` (12 bytes a point). Stored points are at least
``spacing_s`` apart except the newest, which is "live": a sample arriving sooner replaces it. So
a series covers its window at a fixed resolution whatever the poll interval; its memory is fixed.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from itertools import pairwise

_PAIR = 2


class Series:
    """A fixed-capacity time series of floats with window queries."""

    __slots__ = ("_n", "_start", "_t", "_v", "spacing_s")

    def __init__(self, window_s: float, spacing_s: float) -> None:
        """Hold about ``window_s`` of history at ``spacing_s`` resolution."""
        capacity = int(window_s // spacing_s) + 2
        self.spacing_s = spacing_s
        self._t = array("d", bytes(8 * capacity))
        self._v = array("f", bytes(4 * capacity))  # values need 7 digits, not 16
        self._start = 0
        self._n = 0

    def __len__(self) -> int:
        """Number of stored points."""
        return self._n

    def _idx(self, i: int) -> int:
        return (self._start + i) % len(self._t)

    def add(self, t: float, value: float) -> None:
        """Append a sample (or replace the live newest one if the one before is too recent)."""
        cap = len(self._t)
        if self._n and t < self._t[self._idx(self._n - 1)]:
            return  # out of order: ignore
        t_last = self._t[self._idx(self._n - 1)] if self._n else 0.0
        if self._n >= _PAIR and t_last - self._t[self._idx(self._n - 2)] < self.spacing_s:
            i = self._idx(self._n - 1)
        elif self._n < cap:
            i = self._idx(self._n)
            self._n += 1
        else:
            i = self._start
            self._start = (self._start + 1) % cap
        self._t[i] = t
        self._v[i] = value

    def clear(self) -> None:
        """Forget every point."""
        self._n = 0
        self._start = 0

    def _window(self, since: float) -> tuple[array[float], array[float]]:
        """Times and values at or after ``since``, oldest first (array slices, no loop)."""
        n, s, cap = self._n, self._start, len(self._t)
        if s + n <= cap:
            ts, vs = self._t[s : s + n], self._v[s : s + n]
        else:
            k = n - (cap - s)
            ts, vs = self._t[s:] + self._t[:k], self._v[s:] + self._v[:k]
        i = bisect_left(ts, since)
        return ts[i:], vs[i:]

    def points(self, since: float) -> list[tuple[float, float]]:
        """Points with time ≥ ``since``, oldest first."""
        ts, vs = self._window(since)
        return list(zip(ts, vs, strict=True))

    def slope_per_min(self, now: float, window_s: float, min_span_s: float) -> float | None:
        """Least-squares slope (units per minute) over the window; None if it spans too little."""
        ts, vs = self._window(now - window_s)
        n = len(ts)
        if n < _PAIR or ts[-1] - ts[0] < min_span_s:
            return None
        mt = sum(ts) / n
        mv = sum(vs) / n
        den = 0.0
        num = 0.0
        for t, v in zip(ts, vs, strict=True):
            dt = t - mt
            den += dt * dt
            num += dt * (v - mv)
        if den <= 0:
            return None
        return num / den * 60.0

    def mean(self, now: float, window_s: float) -> float | None:
        """Time-weighted mean over the window (each point holds until the next); None if empty."""
        pts = self.points(now - window_s)
        if not pts:
            return None
        if len(pts) == 1 or pts[-1][0] <= pts[0][0]:
            return sum(p[1] for p in pts) / len(pts)
        total = 0.0
        for (t0, v0), (t1, _) in pairwise(pts):
            total += v0 * (t1 - t0)
        # the newest point counts like an average interval
        step = (pts[-1][0] - pts[0][0]) / (len(pts) - 1)
        total += pts[-1][1] * step
        return total / (pts[-1][0] - pts[0][0] + step)

    def range(self, now: float, window_s: float) -> float | None:
        """Max − min over the window; None with fewer than two points."""
        pts = self.points(now - window_s)
        if len(pts) < _PAIR:
            return None
        values = [p[1] for p in pts]
        return max(values) - min(values)

    def minimum(self, now: float, window_s: float) -> float | None:
        """Smallest value over the window, or None."""
        pts = self.points(now - window_s)
        return min(p[1] for p in pts) if pts else None
