"""Event consumers against a real mosquitto: `altiwatch events tail` (`altiwatch notify`: test_notify.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from agent.alarms.model import AlarmTransition, Severity, TransitionKind
from agent.mqtt.config import MqttSettings
from agent.mqtt.publisher import EventPublisher
from tests.support import events
from tests.support.mosquitto import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.broker

REPO = Path(__file__).resolve().parents[2]


def transition(n: int, severity: Severity, kind: TransitionKind) -> AlarmTransition:
    """A synthetic transition with a unique summary."""
    return events.transition(
        kind,
        site="golmud",
        miner=f"m{n % 4}",
        severity=severity,
        previous=Severity.CRITICAL if kind is TransitionKind.CLEARED else None,
        summary=f"event-{n:03d}",
        value=91.0,
        threshold=78.0,
        altitude_m=2800.0,
        delta=0.7138,
        tags=(),
    )


class Lines:
    """Collects a subprocess's output lines from a reader thread."""

    def __init__(self, proc: subprocess.Popen[str], stream: str) -> None:
        """Start reading ``proc.<stream>``."""
        self.lines: list[str] = []
        self._stream = getattr(proc, stream)
        # A daemon thread, not the loop's executor: the loop may close before the process ends.
        self._thread = threading.Thread(target=self._read, name=f"lines.{stream}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            self.lines.append(line.rstrip("\n"))


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Subprocesses started by a test, terminated at teardown."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()


def spawn(procs: list[subprocess.Popen[str]], argv: list[str]) -> subprocess.Popen[str]:
    """Start ``argv`` with text pipes and remember it for teardown."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    procs.append(proc)
    return proc


async def run_publisher(
    broker: Mosquitto, state: Path
) -> tuple[EventPublisher, asyncio.Task[None]]:
    """A connected EventPublisher running as a task."""
    settings = MqttSettings(enabled=True, host=broker.host, port=broker.port)
    pub = EventPublisher(settings, agent_id="consumer-test", state_dir=state, sites=["golmud"])
    task = asyncio.create_task(pub.run(), name="test.publisher")
    await wait_until(lambda: pub.stats().connected, within=20, what="publisher connected")
    return pub, task


async def stop_publisher(pub: EventPublisher, task: asyncio.Task[None]) -> None:
    """Cancel the publisher's run() and close its outbox."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    pub.close()


async def test_events_tail_filters_by_severity_and_prints_json(mosquitto, tmp_path, procs):
    """`events tail --severity warning --json` prints warning/critical alarms and their clears, not info."""
    tail = spawn(
        procs,
        [
            sys.executable, "-m", "agent", "events", "tail",
            "--host", mosquitto.host, "--port", str(mosquitto.port),
            "--site", "golmud", "--severity", "warning", "--alarms-only", "--json", "--count", "3",
        ],
    )  # fmt: skip
    out, err = Lines(tail, "stdout"), Lines(tail, "stderr")
    await wait_until(lambda: any("subscribed" in ln for ln in err.lines), within=30, what="tail up")
    pub, task = await run_publisher(mosquitto, tmp_path)
    try:
        pub.alarm_transitions(
            [
                transition(0, Severity.INFO, TransitionKind.RAISED),
                transition(1, Severity.WARNING, TransitionKind.RAISED),
                transition(2, Severity.CRITICAL, TransitionKind.ESCALATED),
                transition(3, Severity.WARNING, TransitionKind.CLEARED),
            ]
        )
        await wait_until(lambda: tail.poll() is not None, within=30, what="tail exits after 3")
    finally:
        await stop_publisher(pub, task)
    await wait_until(lambda: len(out.lines) >= 3, within=10, what="tail output")
    assert tail.returncode == 0
    printed = [json.loads(line)["summary"] for line in out.lines]
    assert printed == ["event-001", "event-002", "event-003"]


async def test_events_tail_renders_readable_lines(mosquitto, tmp_path, procs):
    """Without --json, tail prints one readable line per event with severity, miner and thresholds."""
    tail = spawn(
        procs,
        [
            sys.executable, "-m", "agent", "events", "tail",
            "--host", mosquitto.host, "--port", str(mosquitto.port), "--count", "1", "--alarms-only",
        ],
    )  # fmt: skip
    out, err = Lines(tail, "stdout"), Lines(tail, "stderr")
    await wait_until(lambda: any("subscribed" in ln for ln in err.lines), within=30, what="tail up")
    pub, task = await run_publisher(mosquitto, tmp_path)
    try:
        pub.alarm_transitions([transition(7, Severity.CRITICAL, TransitionKind.RAISED)])
        await wait_until(lambda: tail.poll() is not None, within=30, what="tail exits")
    finally:
        await stop_publisher(pub, task)
    await wait_until(lambda: bool(out.lines), within=10, what="tail output")
    line = out.lines[0]
    assert "CRITICAL" in line
    assert "golmud/m3 chip_temp" in line
    assert "91.0 vs 78.0 (sea level 85.0, 2800.0 m" in line
    assert "event-007" in line
