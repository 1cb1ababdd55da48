"""The end-to-end benchmark on a tiny fleet: every part runs and its figures are sane (not timed)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.e2e import process_tree

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Run ``python -m tests.benchmarks.e2e --smoke`` once; its JSON and printed tables."""
    out = tmp_path_factory.mktemp("bench-e2e") / "smoke.json"
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.e2e", "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text(encoding="utf-8")), done.stdout


def test_e2e_process_tree_includes_children():
    """process_tree finds a child of the root (as it finds the agent's HTTP front)."""
    with subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    ) as child:
        try:
            tree = process_tree(os.getpid())
        finally:
            assert child.stdin is not None
            child.stdin.close()
    assert tree[0] == os.getpid()
    assert child.pid in tree


@pytest.mark.timeout(300)
def test_e2e_smoke_fleet_agent_measured_with_mqtt_and_prometheus(smoke):
    """The fleet agent polled, published telemetry, was scraped by Prometheus and measured over its processes."""
    results, _ = smoke
    fleet = results["fleet"]
    agent = fleet["agent"]
    assert "error" not in agent, agent.get("error")
    assert fleet["emulators"] == 2
    assert agent["miners"] == fleet["miners"] == 7
    assert sorted(agent["pids"].values()) == ["agent", "child"]  # the agent and its HTTP front
    assert all(cpu >= 0 for cpu in agent["cpu_s_by_pid"].values())
    assert agent["polls"] >= agent["fast_polls"] > 0
    assert agent["cpu_ms_per_poll"] > 0
    assert agent["rss_bytes_max"] > max(agent["rss_bytes_max_by_pid"].values()) > 0
    assert agent["lateness_count"] > 0
    assert agent["lateness_p99_le_s"] is not None
    assert agent["mqtt_connected_end"] == 1
    assert agent["mqtt_published"] > 0
    assert agent["prometheus"]["up"] == 1
    assert agent["prometheus"]["scrape_samples_scraped"] > 0


@pytest.mark.timeout(300)
def test_e2e_smoke_naive_baseline_on_the_same_miners(smoke):
    """Naive get_data() polled the same miners without failures; the ratio is computed."""
    results, table = smoke
    for part in (results["fleet"], results["families"]["Bitaxe"]):
        naive = part["naive"]
        assert "error" not in naive, naive.get("error")
        assert naive["miners"] == part["miners"]
        assert naive["ok"] == naive["polls"] > 0, naive["errors"]
        assert part["agent_over_naive"] > 0
    assert results["prometheus_good_scrapes"] > 0
    assert "| agent / naive |" in table
    assert "| Bitaxe |" in table
