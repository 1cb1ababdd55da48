"""The agent as a service: sd_notify READY/WATCHDOG/STOPPING, SIGTERM, SIGHUP reload, bad config."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.support.agent import ALTIWATCH, agent_config

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

BASE = "127.30.2.1"
SCENARIO = {
    "name": "service",
    "site": {"name": "golmud", "altitude_m": 2800},
    "miners": [{"model": "antminer-s19jpro", "count": 2}, {"model": "bitaxe-ultra", "count": 1}],
}


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        """Bind ``path``."""
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[str] = []

    def wait_for(self, text: str, timeout: float = 60.0, *, count: int = 1) -> None:
        """Receive datagrams until ``count`` contain ``text``; fail at the deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(text) >= count:
                return
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        pytest.fail(
            f"{count} x {text!r} not on NOTIFY_SOCKET within {timeout:g} s: {self.messages}"
        )

    def count(self, text: str) -> int:
        """How many received datagrams contain ``text``."""
        return sum(1 for m in self.messages if text in m)


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    """A bound NOTIFY_SOCKET in the test's temp dir."""
    ns = NotifySocket(tmp_path / "notify.sock")
    yield ns
    ns.sock.close()


@pytest.fixture(scope="module")
def emulator(module_emulator_factory: Any) -> Any:
    """Three emulated miners shared by the module."""
    return module_emulator_factory(SCENARIO, base_address=BASE)


def sample(metrics: str, series: str) -> float:
    """The value of ``series`` (name and labels, as exposed) in ``metrics``; 0 if absent."""
    for line in metrics.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def fast_polls(metrics: str) -> float:
    """The value of altiwatch_polls_total{tier="fast"}."""
    return sample(metrics, 'altiwatch_polls_total{tier="fast"}')


def full_collections(metrics: str) -> float:
    """The value of altiwatch_gc_pause_seconds_count{generation="2"}."""
    return sample(metrics, 'altiwatch_gc_pause_seconds_count{generation="2"}')


def log_events(output: str, event: str) -> list[dict[str, Any]]:
    """The agent's JSON log lines whose event is ``event``."""
    lines = (line for line in output.splitlines() if line.startswith("{"))
    return [e for e in map(json.loads, lines) if e.get("event") == event]


def miners(emulator: Any) -> list[dict[str, str]]:
    """Config entries for every emulated miner."""
    return [{"address": m["address"]} for m in emulator.miners()]


def test_service_notifies_ready_watchdog_and_stopping(emulator, agent_factory, notify_socket):
    """1. READY after the first cycle 2. WATCHDOG pings 3. SIGTERM: STOPPING and exit 0."""
    env = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "1000000"}
    agent = agent_factory(agent_config(miners(emulator), interval_s=2.0), env=env)
    notify_socket.wait_for("READY=1")
    notify_socket.wait_for("WATCHDOG=1", timeout=20, count=3)
    assert agent.stop() == 0
    notify_socket.wait_for("STOPPING=1", timeout=5)
    assert "agent_stopped" in agent.output()


def test_service_ready_only_after_first_poll_cycle(emulator, agent_factory, notify_socket):
    """READY=1 comes after every miner was polled once: /metrics then has all of them."""
    env = {"NOTIFY_SOCKET": str(notify_socket.path)}
    agent = agent_factory(agent_config(miners(emulator), interval_s=2.0), env=env, wait_ready=False)
    notify_socket.wait_for("READY=1")
    text = agent.metrics()
    assert text.count("asic_up{") == 3


def test_service_sigint_exits_zero(emulator, agent_factory):
    """SIGINT (Ctrl-C) is a requested stop: exit 0."""
    agent = agent_factory(agent_config(miners(emulator), interval_s=2.0))
    agent.signal(signal.SIGINT)
    agent.proc.wait(timeout=30)
    assert agent.proc.returncode == 0


def test_service_sighup_reloads_inventory(emulator, agent_factory):
    """SIGHUP with a valid file adds miners; with an invalid file the running config stays."""
    all_miners = miners(emulator)
    config = agent_config(all_miners[:1], interval_s=2.0)
    agent = agent_factory(config)
    assert agent.metrics().count("asic_up{") == 1
    agent.rewrite_config({**agent.config, "miners": all_miners})
    agent.signal(signal.SIGHUP)
    agent.wait_for(lambda: agent.metrics().count("asic_up{") == 3, "three miners after reload")
    faster = {**agent.config, "miners": all_miners}
    faster["polling"] = {**faster["polling"], "interval_s": 1.5}
    agent.rewrite_config(faster)
    agent.signal(signal.SIGHUP)
    agent.wait_for(lambda: agent.output().count("config_reloaded") == 2, "second config_reloaded")
    before = fast_polls(agent.metrics())
    agent.wait_for(
        lambda: fast_polls(agent.metrics()) >= before + 6,
        "fast polls of every miner go on after the polling change",
    )
    assert agent.metrics().count("asic_up{") == 3
    agent.rewrite_config("sites: [{name: golmud, altitude_m: 2800}]\npolling: {interval_s: -1}\n")
    agent.signal(signal.SIGHUP)
    agent.wait_for(lambda: "config_reload_failed" in agent.output(), "config_reload_failed logged")
    assert "polling.interval_s" in agent.output()
    assert agent.proc.poll() is None
    assert agent.fetch("/readyz")[0] == 200
    assert agent.metrics().count("asic_up{") == 3


def test_service_bad_config_exits_78_naming_the_field(tmp_path):
    """``altiwatch run`` with an invalid config exits 78 and names the field."""
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump({"sites": [{"name": "x", "altitude_m": 100}], "polling": {"interval_s": 0}})
    )
    proc = subprocess.run(
        [str(ALTIWATCH), "run", "--config", str(path)], capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 78, proc.stdout + proc.stderr
    assert b"polling.interval_s" in proc.stdout + proc.stderr


def test_service_module_runs_without_cli(tmp_path):
    """The service module's run() is importable and returns 78 for a missing file."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from agent.service import run; sys.exit(run(Path(sys.argv[1])))",
            str(tmp_path / "missing.yaml"),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 78, proc.stdout + proc.stderr


def test_service_freezes_the_settled_heap_and_again_after_a_reload(emulator, agent_factory):
    """After the first cycle the heap is frozen (a counted full collection); a reload re-freezes."""
    all_miners = miners(emulator)
    agent = agent_factory(agent_config(all_miners[:1], interval_s=2.0))
    agent.wait_for(lambda: log_events(agent.output(), "gc_heap_frozen"), "gc_heap_frozen")
    (frozen,) = log_events(agent.output(), "gc_heap_frozen")
    assert frozen["objects"] > 10_000  # modules, pyasic, config: the settled heap
    full = full_collections(agent.metrics())
    assert full >= 1
    agent.rewrite_config({**agent.config, "miners": all_miners})
    agent.signal(signal.SIGHUP)
    agent.wait_for(
        lambda: len(log_events(agent.output(), "gc_heap_frozen")) == 2,
        "gc_heap_frozen again after the reload",
    )
    assert full_collections(agent.metrics()) > full
    assert agent.metrics().count("asic_up{") == 3
