"""The load benchmark's statistics (tests.benchmarks.reliability_long): windows and ratios."""

from __future__ import annotations

from typing import Any

from tests.benchmarks.reliability_long import _drift_summary, _load_windows, _storm_ratio


def _window(kind: str, mean_ms: float, polls: int = 1000) -> dict[str, Any]:
    lateness = {"sum_s": mean_ms / 1000 * polls, "count": polls}
    return {"kind": kind, "lateness": lateness, "scrapes": {"ok": 10, "failed": 0}}


def _cycle(quiet_ms: tuple[float, float], storm_ms: tuple[float, float]) -> list[dict[str, Any]]:
    return [
        _window("quiet", quiet_ms[0]),
        _window("gzip", storm_ms[0]),
        _window("gzip", storm_ms[1]),
        _window("quiet", quiet_ms[1]),
    ]


def test_load_bench_windows_come_in_quiet_storm_storm_quiet_cycles():
    """Each kind gets its cycles in order; quiet windows open and close every cycle."""
    assert _load_windows({"gzip": 2, "plain": 1}) == [
        *("quiet", "gzip", "gzip", "quiet") * 2,
        *("quiet", "plain", "plain", "quiet"),
    ]


def test_load_bench_storm_ratio_pools_polls_and_brackets_the_noise():
    """The ratio pools every poll of the storms against the quiet windows'; cycles that disagree widen the interval."""
    steady = _storm_ratio([_cycle((0.5, 0.5), (0.55, 0.55))] * 4)
    assert steady["ratio"] == 1.1
    assert steady["ratio_90pct_interval"] == [1.1, 1.1]
    assert steady["per_cycle"] == [1.1] * 4
    assert steady["scrapes_ok"] == 80

    noisy = _storm_ratio(
        [
            _cycle((0.5, 0.5), (0.5, 0.5)),
            _cycle((0.4, 0.6), (1.0, 1.0)),
            _cycle((0.5, 0.5), (0.5, 0.5)),
        ]
    )
    assert noisy["ratio"] == round(2.0 / 1.5, 3)  # polls pooled: (0.5+1.0+0.5)/(0.5+0.5+0.5)
    assert noisy["per_cycle"] == [1.0, 2.0, 1.0]
    low, high = noisy["ratio_90pct_interval"]
    assert low == 1.0
    assert high > 1.5


def test_drift_summary_compares_first_and_last_minutes():
    """The drift summary: mean CPU per poll of the first and last minutes, ranges, polls."""
    rows = [
        {"minute": i, "polls": 100, "cpu_ms_per_poll": cpu, "rss_mb": rss}
        for i, (cpu, rss) in enumerate([(1.0, 140), (2.0, 150), (None, None), (3.0, 160)], 1)
    ]
    summary = _drift_summary(rows, edge=1)
    assert summary["cpu_ms_per_poll_first"] == 1.0
    assert summary["cpu_ms_per_poll_last"] == 3.0
    assert summary["cpu_ms_per_poll_range"] == [1.0, 3.0]
    assert summary["rss_mb_range"] == [140, 160]
    assert summary["polls"] == 400
    assert _drift_summary(rows)["cpu_ms_per_poll_first"] == 1.0  # edge capped at half the minutes
