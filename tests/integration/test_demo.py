"""``make demo`` as a new user runs it: emulator + broker + agent, URLs printed, Ctrl-C stops all."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BASE = "127.60.9.1"
READY_DEADLINE_S = 240.0
EXIT_DEADLINE_S = 60.0


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _read_until_banner(process: subprocess.Popen[bytes]) -> str:
    """Collect stdout until the 'Press Ctrl-C' line, failing at the deadline or on early exit."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + READY_DEADLINE_S
    out = b""
    try:
        while b"Press Ctrl-C to stop." not in out:
            if time.monotonic() > deadline:
                pytest.fail(f"demo printed no banner within {READY_DEADLINE_S} s; got:\n{out!r}")
            if selector.select(timeout=0.1):
                chunk = os.read(fd, 65536)
                if not chunk:
                    process.wait(timeout=EXIT_DEADLINE_S)
                    pytest.fail(f"demo exited early ({process.returncode}); stdout:\n{out!r}")
                out += chunk
    finally:
        selector.close()
    return out.decode()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "extra"),
    [
        (signal.SIGINT, []),  # exactly `make demo`: the whole golmud-2800 fleet (36 miners)
        (signal.SIGTERM, ["--scenario", "deploy/scenarios/sea-level.yaml", "--miners", "4"]),
    ],
    ids=["SIGINT-golmud", "SIGTERM-sea-level"],
)
def test_demo_prints_urls_serves_metrics_and_stops_cleanly(tmp_path, sig, extra):
    """1. start the demo  2. wait for its banner  3. fetch /metrics  4. signal  5. exit 0, all stopped."""
    stderr_path = tmp_path / "demo.stderr"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "agent.demo", "--base-address", BASE, *extra],
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=REPO,
        )
    try:
        banner = _read_until_banner(process)
        metrics_url = re.search(r"Metrics:\s+(http://\S+/metrics)", banner)
        assert metrics_url, banner
        with urllib.request.urlopen(metrics_url.group(1), timeout=30) as response:  # noqa: S310 - http URL matched above
            body = response.read().decode()
        assert "asic_up{" in body
        assert "asic_hashrate_hashes_per_second{" in body
        mqtt = re.search(r"mosquitto_sub -h 127\.0\.0\.1 -p (\d+) -t 'altiwatch/v1/#' -v", banner)
        assert mqtt, banner
        assert "top --url http://127.0.0.1:" in banner
        control = re.search(r"Emulator:\s+(http://127\.0\.0\.1:\d+)", banner)
        assert control, banner
        assert f"{control.group(1)}/site" in banner  # the heatwave curl
        agent_port = int(metrics_url.group(1).split(":")[2].split("/")[0])

        process.send_signal(sig)
        code = process.wait(timeout=EXIT_DEADLINE_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=EXIT_DEADLINE_S)
        assert process.stdout is not None
        process.stdout.close()
    stderr_text = stderr_path.read_text()
    assert code == 0, stderr_text
    assert "stopped." in stderr_text
    assert "Traceback" not in stderr_text
    # Every child is gone: nothing listens any more on the agent, broker or miner ports.
    assert not _accepts("127.0.0.1", agent_port)
    assert not _accepts("127.0.0.1", int(mqtt.group(1)))
    assert not _accepts(BASE, 4028)


@pytest.mark.slow
def test_demo_amqtt_fallback_delivers_events(tmp_path):
    """With --broker amqtt the pure-Python broker carries the agent's MQTT messages."""
    stderr_path = tmp_path / "demo.stderr"
    argv = [
        sys.executable,
        "-m",
        "agent.demo",
        "--base-address",
        "127.60.13.1",
        "--broker",
        "amqtt",
    ]
    argv += ["--scenario", "deploy/scenarios/sea-level.yaml", "--miners", "2"]
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, cwd=REPO)
    try:
        banner = _read_until_banner(process)
        assert "an MQTT broker (amqtt)" in banner
        mqtt = re.search(r"mosquitto_sub -h 127\.0\.0\.1 -p (\d+) -t 'altiwatch/v1/#' -v", banner)
        assert mqtt, banner
        received = subprocess.run(
            [
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                mqtt.group(1),
                "-t",
                "altiwatch/v1/#",
                "-v",
                "-C",
                "1",
                "-W",
                "60",
                "-V",
                "mqttv311",
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert received.returncode == 0, received.stderr
        assert received.stdout.startswith("altiwatch/v1/"), received.stdout
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=EXIT_DEADLINE_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=EXIT_DEADLINE_S)
        assert process.stdout is not None
        process.stdout.close()
    assert code == 0, stderr_path.read_text()
    assert not _accepts("127.0.0.1", int(mqtt.group(1)))


def _central_sites(vm: str) -> set[str]:
    """Sites with at least one miner up in the central VictoriaMetrics (empty while none)."""
    url = f"{vm}/api/v1/query?query=sum+by+(site)+(altiwatch_miners_up)"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback URL from the banner
            body = json.loads(response.read())
    except OSError:
        return set()
    return {r["metric"]["site"] for r in body["data"]["result"] if float(r["value"][1]) > 0}


def _retained_sites(port: str) -> set[str]:
    """Sites whose retained agent status the central broker holds (bridged from each site)."""
    out = subprocess.run(
        [
            "mosquitto_sub",
            *("-h", "127.0.0.1", "-p", port, "-t", "altiwatch/v1/+/agent/+/status"),
            *("-v", "--retained-only", "-W", "3"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    return {line.split("/")[2] for line in out.splitlines() if line.startswith("altiwatch/v1/")}


@pytest.mark.slow
def test_demo_many_sites_feed_one_central_view_and_stop_cleanly(tmp_path):
    """``agent.demo --sites 3``: central VictoriaMetrics and broker see all three sites; SIGINT stops all."""
    stderr_path = tmp_path / "demo.stderr"
    argv = [sys.executable, "-m", "agent.demo", "--sites", "3"]
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, cwd=REPO)
    try:
        banner = _read_until_banner(process)
        vm = re.search(r"Central VictoriaMetrics:\s+(http://127\.0\.0\.1:\d+)/vmui", banner)
        broker = re.search(r"Central MQTT:\s+mosquitto_sub -h 127\.0\.0\.1 -p (\d+)", banner)
        assert vm, banner
        assert broker, banner
        sites = set(re.findall(r"^  (\S+) \([\d,]+ m\): agent http://", banner, re.MULTILINE))
        assert len(sites) == 3, banner
        deadline = time.monotonic() + READY_DEADLINE_S
        seen: set[str] = set()
        while (seen := _central_sites(vm.group(1))) != sites:
            if time.monotonic() > deadline:
                pytest.fail(f"central saw {sorted(seen)} of {sorted(sites)}")
            time.sleep(1)
        assert _retained_sites(broker.group(1)) == sites
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=EXIT_DEADLINE_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=EXIT_DEADLINE_S)
        assert process.stdout is not None
        process.stdout.close()
    stderr_text = stderr_path.read_text()
    assert code == 0, stderr_text
    assert "Traceback" not in stderr_text
    assert not _accepts("127.0.0.1", int(broker.group(1)))
    assert not _accepts("127.78.0.1", 4028)
