"""A stand-alone EventPublisher driven over stdin, for crash tests and manual broker experiments.

``python -m agent.mqtt.harness --host 127.0.0.1 --port 1883 --state-dir DIR --agent-id a1``
runs a real :class:`~agent.mqtt.publisher.EventPublisher` and reads one JSON command per stdin
line, answering with one JSON line on stdout once the effect is committed to the outbox:

- ``{"storm": N, "tag": "k", "miners": 5, "site": "s"}`` → N synthetic alarm transitions with
  summaries ``k-0000``… over ``miners`` miners (raised/escalated/cleared in turn), answered by
  ``{"event": "committed", "tags": [...]}``;
- ``{"stats": true}`` → ``{"event": "stats", ...}``.

SIGTERM/SIGINT stop it cleanly (retained ``offline`` published); SIGKILL leaves the Last Will.
Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import structlog

from agent.alarms.model import AlarmTransition, Severity, TransitionKind
from agent.mqtt.config import MqttSettings
from agent.mqtt.publisher import EventPublisher

_KINDS = (TransitionKind.RAISED, TransitionKind.ESCALATED, TransitionKind.CLEARED)


def _storm(cmd: dict[str, Any], counter: int) -> tuple[list[AlarmTransition], list[str]]:
    n, tag = int(cmd["storm"]), str(cmd.get("tag", "storm"))
    miners, site = int(cmd.get("miners", 5)), str(cmd.get("site", "site-a"))
    batch: list[AlarmTransition] = []
    tags: list[str] = []
    for i in range(n):
        k = counter + i
        kind = _KINDS[(k // miners) % 3]
        escalated = kind is TransitionKind.ESCALATED
        summary = f"{tag}-{k:04d}"
        batch.append(
            AlarmTransition(
                kind=kind,
                site=site,
                miner=f"miner-{k % miners:03d}",
                rule="chip_temp",
                severity=Severity.CRITICAL if escalated else Severity.WARNING,
                previous_severity=Severity.WARNING if escalated else None,
                at=time.time(),
                value=90.0,
                threshold=80.2,
                sea_level_threshold=85.0,
                altitude_m=2275.0,
                delta=0.7653,
                tags=("harness",),
                summary=summary,
            )
        )
        tags.append(summary)
    return batch, tags


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _commands(pub: EventPublisher) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    counter = 0
    while line := await reader.readline():
        if not line.strip():
            continue
        cmd = json.loads(line)
        if "storm" in cmd:
            batch, tags = _storm(cmd, counter)
            counter += len(batch)
            pub.alarm_transitions(batch)
            _emit({"event": "committed", "tags": tags})
        elif cmd.get("stats"):
            _emit({"event": "stats", **asdict(pub.stats())})
    await asyncio.Event().wait()  # stdin closed: keep publishing until signalled


async def _main(args: argparse.Namespace) -> int:
    settings = MqttSettings(
        enabled=True,
        host=args.host,
        port=args.port,
        protocol=args.protocol,
        reconnect_min_s=0.2,
        reconnect_max_s=args.reconnect_max_s,
        publish_timeout_s=5.0,
    )
    pub = EventPublisher(
        settings, agent_id=args.agent_id, state_dir=Path(args.state_dir), sites=[args.site]
    )
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, main.cancel)
    _emit({"event": "started", "status_topic": pub.status_topic})
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(pub.run(), name="harness.publisher")
            tg.create_task(_commands(pub), name="harness.commands")
    except asyncio.CancelledError:
        return 0
    finally:
        pub.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m agent.mqtt.harness", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--protocol", choices=["3.1.1", "5"], default="5")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--agent-id", default="harness")
    parser.add_argument("--site", default="site-a")
    parser.add_argument("--reconnect-max-s", type=float, default=1.0)
    args = parser.parse_args(argv)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
