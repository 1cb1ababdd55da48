"""A publisher process killed with SIGKILL: its committed backlog survives, its Last Will fires."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import jsonschema
import pytest

from agent.mqtt import schemas
from tests.support.mosquitto import Subscriber, wait_until

if TYPE_CHECKING:
    from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.broker

PREFIX = "altiwatch/v1"
REPO = Path(__file__).resolve().parents[2]


class Harness:
    """``python -m agent.mqtt.harness`` in a subprocess, driven over stdin."""

    def __init__(self, broker: Mosquitto, state_dir: Path, log: Path) -> None:
        """Start the harness against ``broker`` with its outbox in ``state_dir``."""
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent.mqtt.harness",
                "--host",
                broker.host,
                "--port",
                str(broker.port),
                "--state-dir",
                str(state_dir),
                "--agent-id",
                "crashy",
                "--site",
                "site-a",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def __enter__(self) -> Self:
        """Return self; the process is killed on exit if still alive."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Kill the process if it is still running."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self._log.close()

    async def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Send one command and return its JSON reply (skipping the start line)."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        while True:
            async with asyncio.timeout(30):
                line = await asyncio.to_thread(self.proc.stdout.readline)
            assert line, "harness exited"
            reply: dict[str, Any] = json.loads(line)
            if reply["event"] != "started":
                return reply

    def kill9(self) -> None:
        """SIGKILL, no goodbye."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def status_payloads(sub: Subscriber) -> list[dict[str, Any]]:
    """Status messages seen so far (JSON)."""
    return sub.payloads(f"{PREFIX}/site-a/agent/crashy/status")


async def test_harness_sigkill_while_broker_down_backlog_delivered_after_restart(
    mosquitto, tmp_path
):
    """1. online; 2. broker stopped; 3. 100 events committed; 4. SIGKILL; 5. broker back; 6. restart delivers all; 7. SIGKILL online → Will `offline`."""
    state = tmp_path / "state"
    log = tmp_path / "harness.log"
    topics = [f"{PREFIX}/+/events", f"{PREFIX}/+/agent/+/status"]
    async with Subscriber(mosquitto, topics, client_id="crash-sub", persistent=True) as sub:
        with Harness(mosquitto, state, log) as first:
            await wait_until(
                lambda: any(p["state"] == "online" for p in status_payloads(sub)),
                within=30,
                what="first harness online",
            )
            before = (await first.command({"storm": 20, "tag": "up"}))["tags"]
            await wait_until(
                lambda: {p.get("summary") for p in sub.payloads()} >= set(before),
                within=30,
                what="events before the outage",
            )
            await asyncio.to_thread(mosquitto.stop)
            during = (await first.command({"storm": 100, "tag": "down"}))["tags"]
            stats = await first.command({"stats": True})
            assert stats["outbox_depth"] >= 200, stats  # event + retained state per transition
            first.kill9()
        await asyncio.to_thread(mosquitto.start)
        # mosquitto 2.0.11 queues for a restored persistent session only once it reconnected.
        await wait_until(lambda: sub.connects == 2, within=30, what="subscriber reconnected")
        last_seq = max(p["seq"] for p in sub.payloads())
        with Harness(mosquitto, state, log) as second:
            await wait_until(
                lambda: {p.get("summary") for p in sub.payloads()} >= set(during),
                within=60,
                what="backlog committed before the SIGKILL",
            )
            alarms = [p for p in sub.payloads(f"{PREFIX}/+/events") if "rule" in p]
            for p in alarms:
                jsonschema.validate(p, schemas.load(p["schema"]))
            seqs = [p["seq"] for p in alarms if p["summary"].startswith("down-")]
            assert seqs == sorted(seqs)
            assert len({p["event_id"] for p in alarms}) == len(before) + len(during)
            await wait_until(
                lambda: any(
                    p["state"] == "online" and p["seq"] > last_seq for p in status_payloads(sub)
                ),
                within=30,
                what="second harness online",
            )
            second.kill9()
            await wait_until(
                lambda: any(
                    p["state"] == "offline" and p["seq"] > last_seq for p in status_payloads(sub)
                ),
                within=60,
                what="Last Will offline after SIGKILL",
            )
            will = next(
                p for p in status_payloads(sub) if p["state"] == "offline" and p["seq"] > last_seq
            )
            assert will["reason"] == "connection_lost"
            jsonschema.validate(will, schemas.load(will["schema"]))
            print(
                f"crash: before_outage={len(before)} committed_while_down={len(during)}"
                f" outbox_rows_at_kill={stats['outbox_depth']} delivered_unique="
                f"{len({p['event_id'] for p in alarms})} received={len(alarms)}"
            )
    # The Will is retained: a late subscriber sees the agent offline.
    async with Subscriber(mosquitto, [f"{PREFIX}/+/agent/+/status"]) as late:
        await wait_until(lambda: bool(late.messages), within=20, what="retained status")
        assert late.messages[-1].retain
        assert late.messages[-1].json()["state"] == "offline"
