"""The benchmark harness on a tiny fleet: every part runs and its figures are sane (not timed)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.run import FAMILIES

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Run ``python -m tests.benchmarks.run --smoke`` once; its JSON and printed table."""
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.run", "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text(encoding="utf-8")), done.stdout


@pytest.mark.timeout(300)
def test_bench_smoke_measures_every_family_in_both_modes(smoke):
    """Baseline and agent polled every family without failures and report CPU per poll."""
    results, _ = smoke
    families = results["cpu"]["families"]
    for label, _key in [*FAMILIES, ("Fleet mix", None)]:
        for mode in ("baseline", "agent"):
            figures = families[label][mode]
            assert "error" not in figures, f"{label} {mode}: {figures.get('error')}"
            assert figures["ok"] == figures["polls"] > 0, f"{label} {mode}: {figures['errors']}"
            assert 0 < figures["cpu_ms_per_poll"] < 10_000
            assert figures["polls_per_cpu_s"] > 0
        assert families[label]["agent_over_baseline"] > 0


@pytest.mark.timeout(300)
def test_bench_smoke_exposition_figures(smoke):
    """The synthetic /metrics run served every scrape and timed generate_latest on the same samples."""
    results, _ = smoke
    (expo,) = results["exposition"]
    assert "error" not in expo
    assert expo["synthetic"] is True
    assert expo["series"] == expo["generate_latest_samples"] > 0
    assert expo["serving"]["scrape"]["n"] == 5
    assert expo["serving"]["scrape_gzip"]["n"] == 5
    assert expo["serving"]["updates"] > 0
    assert expo["generate_latest"]["median_ms"] > 0
    assert expo["rss_bytes_with_state"] > expo["rss_bytes_baseline"] > 0


@pytest.mark.timeout(300)
def test_bench_smoke_sustained_agent_run(smoke):
    """The real agent polled the emulated fleet: polls counted, lateness observed, memory read."""
    results, table = smoke
    sustained = results["sustained"]
    assert "error" not in sustained, sustained.get("error")
    assert sustained["fast_polls"] > 0
    assert sustained["lateness"]["count"] > 0
    assert sustained["lateness"]["p99_le_s"] is not None
    assert sustained["rss_bytes_max"] > 0
    assert sustained["metrics_scrape"]["n"] > 0
    assert sustained["agent_cpu_ms_per_poll"] > 0
    assert "| S19 stock |" in table
    assert "Sustained real agent" in table
