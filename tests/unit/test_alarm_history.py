"""Bounded histories: fixed memory, live newest point, slope, mean and range over windows."""

from __future__ import annotations

from itertools import pairwise

import pytest

from agent.alarms.history import Series


def test_alarm_history_capacity_is_fixed_whatever_the_poll_rate():
    """Ten hours of 1-s samples keep at most window/spacing + 2 points."""
    s = Series(600, 30)
    for t in range(36_000):
        s.add(float(t), 1.0)
    assert len(s) <= 22
    pts = s.points(0)
    assert pts[-1] == (35_999.0, 1.0)
    assert all(b[0] - a[0] >= 30 for a, b in pairwise(pts[:-1]))


def test_alarm_history_newest_point_is_live():
    """A sample sooner than the spacing replaces the newest one instead of adding a point."""
    s = Series(600, 30)
    s.add(0.0, 1.0)
    s.add(30.0, 2.0)
    s.add(40.0, 3.0)
    assert s.points(0) == [(0.0, 1.0), (30.0, 2.0), (40.0, 3.0)]
    s.add(50.0, 4.0)
    assert s.points(0) == [(0.0, 1.0), (30.0, 2.0), (50.0, 4.0)]


def test_alarm_history_slope_mean_range():
    """A 0.5 K/min ramp has slope 0.5, its mean is the midpoint, its range the rise."""
    s = Series(900, 15)
    for i in range(31):
        s.add(i * 30.0, 60.0 + 0.25 * i)
    now = 900.0
    assert s.slope_per_min(now, 600, 60) == pytest.approx(0.5, abs=1e-6)
    assert s.mean(now, 900) == pytest.approx(63.75, abs=0.2)
    assert s.range(now, 300) == pytest.approx(2.5, abs=1e-6)
    assert s.minimum(now, 300) == pytest.approx(65.0, abs=1e-6)


def test_alarm_history_too_short_a_span_has_no_slope():
    """Slope needs the window's minimum span; out-of-order samples are ignored."""
    s = Series(120, 15)
    s.add(0.0, 50.0)
    s.add(30.0, 60.0)
    assert s.slope_per_min(30.0, 120, 60) is None
    s.add(10.0, 99.0)
    assert len(s) == 2
