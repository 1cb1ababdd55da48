"""``altiwatch events audit``: gaps and duplicates in the event streams a (central) broker carries.

Every payload on ``<p>/<site>/events`` carries ``events_seq`` (1, 2, 3… per agent and events
topic, persisted by the agent's outbox). The audit subscribes to ``<p>/+/events`` (QoS1; with
``--client-id`` on a persistent session, so the broker queues events while it is away), and
keeps, per stream (agent_id, site), every ``events_seq`` it saw:

- a **gap** is a number between the first and the last seen that never arrived: an event lost
  on the way (a site broker killed before its autosave, a bridge queue that overflowed, an
  outbox dropped by the agent);
- a **duplicate** is an ``event_id`` received again (QoS1 is at-least-once: harmless, counted);
- a **conflict** is one ``events_seq`` carried by two different ``event_id``: the agent's
  counter went back (its state dir was lost) — also reported as a restart of the stream when
  the repeated number is 1.

It runs for ``--duration`` seconds, until ``--idle`` seconds pass without an event, or until
SIGTERM/SIGINT, then prints one line per stream (``--json``: one JSON object per stream) and
exits 1 when any stream has a gap or a conflict, else 0. ``--state FILE`` keeps the last
``events_seq`` per stream between runs, so a periodic audit on a persistent session sees a loss
that falls between two runs. Broker flags as ``events tail``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiomqtt

from agent.mqtt.events import Topics

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterable

    from agent.mqtt.config import MqttSettings

EX_OK = 0
EX_LOSS = 1
EX_CONFIG = 78

Stream = tuple[str, str]
"""(agent_id, site)."""


@dataclass
class StreamAudit:
    """What arrived on one stream (one agent on one site's events topic)."""

    agent_id: str
    site: str
    baseline: int = 0
    """The last ``events_seq`` audited before this run (from ``--state``); 0 when none."""
    seqs: dict[int, str] = field(default_factory=dict)
    """events_seq -> the first event_id seen with it."""
    received: int = 0
    duplicates: int = 0
    conflicts: list[int] = field(default_factory=list)
    restarts: int = 0
    event_ids: set[str] = field(default_factory=set)

    def add(self, events_seq: int, event_id: str) -> None:
        """Record one received event."""
        self.received += 1
        if event_id in self.event_ids:
            self.duplicates += 1
            return
        self.event_ids.add(event_id)
        known = self.seqs.get(events_seq)
        if known is None:
            self.seqs[events_seq] = event_id
            return
        if events_seq == 1:  # the agent started counting again: a new state dir
            self.restarts += 1
            self.seqs = {1: event_id}
            self.baseline = 0
            return
        self.conflicts.append(events_seq)

    @property
    def first(self) -> int | None:
        """The lowest events_seq received."""
        return min(self.seqs) if self.seqs else None

    @property
    def last(self) -> int | None:
        """The highest events_seq received (or the baseline when nothing new arrived)."""
        return max(self.seqs) if self.seqs else (self.baseline or None)

    def gaps(self) -> list[tuple[int, int]]:
        """Missing events_seq ranges (inclusive), from the baseline (or first seen) to the last."""
        if not self.seqs:
            return []
        start = self.baseline + 1 if self.baseline else min(self.seqs)
        out: list[tuple[int, int]] = []
        missing_from: int | None = None
        for n in range(start, max(self.seqs) + 1):
            if n not in self.seqs:
                if missing_from is None:
                    missing_from = n
            elif missing_from is not None:
                out.append((missing_from, n - 1))
                missing_from = None
        return out

    @property
    def missing(self) -> int:
        """How many events_seq numbers are missing."""
        return sum(b - a + 1 for a, b in self.gaps())

    @property
    def ok(self) -> bool:
        """No gap and no conflict."""
        return not self.gaps() and not self.conflicts

    def report(self) -> dict[str, Any]:
        """The stream's verdict as a JSON-ready dict."""
        return {
            "agent_id": self.agent_id,
            "site": self.site,
            "received": self.received,
            "unique": len(self.seqs),
            "first": self.first,
            "last": self.last,
            "missing": self.missing,
            "gaps": [list(g) for g in self.gaps()],
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "restarts": self.restarts,
            "ok": self.ok,
        }


class Audit:
    """Per-stream audits fed with event payloads."""

    def __init__(self, baselines: dict[Stream, int] | None = None) -> None:
        """Start from ``baselines`` (last events_seq audited per stream), if any."""
        self.streams: dict[Stream, StreamAudit] = {}
        self._baselines = baselines or {}
        self.ignored = 0

    def feed(self, payload: object) -> bool:
        """Record one payload; False (and counted as ignored) when it carries no events_seq."""
        if not isinstance(payload, dict):
            self.ignored += 1
            return False
        seq, event_id = payload.get("events_seq"), payload.get("event_id")
        agent_id, site = payload.get("agent_id"), payload.get("site")
        if not (
            isinstance(seq, int)
            and isinstance(event_id, str)
            and isinstance(agent_id, str)
            and isinstance(site, str)
        ):
            self.ignored += 1
            return False
        key = (agent_id, site)
        stream = self.streams.get(key)
        if stream is None:
            stream = StreamAudit(agent_id, site, baseline=self._baselines.get(key, 0))
            self.streams[key] = stream
        stream.add(seq, event_id)
        return True

    def reports(self) -> list[dict[str, Any]]:
        """Every stream's report, sorted by site then agent."""
        return [self.streams[k].report() for k in sorted(self.streams, key=lambda k: (k[1], k[0]))]

    @property
    def ok(self) -> bool:
        """No stream has a gap or a conflict."""
        return all(s.ok for s in self.streams.values())

    def baselines(self) -> dict[Stream, int]:
        """The last events_seq per stream, for the next run's ``--state``."""
        out = dict(self._baselines)
        for key, stream in self.streams.items():
            if stream.last is not None:
                out[key] = stream.last
        return out


def load_state(path: Path) -> dict[Stream, int]:
    """Baselines from a ``--state`` file (missing file: none)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return {(str(r["agent_id"]), str(r["site"])): int(r["last"]) for r in raw.get("streams", [])}


def save_state(path: Path, baselines: dict[Stream, int]) -> None:
    """Write the baselines atomically."""
    rows = [{"agent_id": a, "site": s, "last": n} for (a, s), n in sorted(baselines.items())]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"streams": rows}, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def format_line(report: dict[str, Any]) -> str:
    """One human-readable line per stream."""
    verdict = "ok" if report["ok"] else "LOSS"
    gaps = ",".join(f"{a}-{b}" if a != b else str(a) for a, b in report["gaps"]) or "-"
    return (
        f"{verdict:<4} site={report['site']} agent={report['agent_id']}"
        f" events_seq={report['first']}..{report['last']} received={report['received']}"
        f" missing={report['missing']} gaps={gaps} duplicates={report['duplicates']}"
        f" conflicts={len(report['conflicts'])} restarts={report['restarts']}"
    )


def register(events: argparse._SubParsersAction[Any]) -> None:
    """Add ``audit`` to the ``altiwatch events`` subcommands."""
    audit = events.add_parser(
        "audit", help="report gaps and duplicates per agent in the event streams"
    )
    audit.add_argument("--config", type=Path, help="agent config to take the mqtt: section from")
    audit.add_argument("--host", help="broker host (default from --config, else 127.0.0.1)")
    audit.add_argument("--port", type=int, help="broker port (default 1883)")
    audit.add_argument("--prefix", help="topic prefix (default altiwatch/v1)")
    audit.add_argument("--site", help="only this site (default: every site)")
    audit.add_argument("--username")
    audit.add_argument("--password-file", type=Path)
    audit.add_argument("--ca-file", type=Path, help="CA bundle: connect with TLS")
    audit.add_argument("--cert-file", type=Path, help="client certificate (mutual TLS)")
    audit.add_argument("--key-file", type=Path, help="client key (mutual TLS)")
    audit.add_argument(
        "--client-id",
        help="fixed client id on a persistent session: the broker queues events between runs",
    )
    audit.add_argument("--duration", type=float, help="stop after this many seconds")
    audit.add_argument(
        "--idle", type=float, help="stop once no event arrived for this many seconds"
    )
    audit.add_argument(
        "--state", type=Path, help="JSON file keeping the last events_seq per stream between runs"
    )
    audit.add_argument(
        "--input",
        type=Path,
        help="audit JSON lines from a file (e.g. `events tail --json` output) instead of a broker",
    )
    audit.add_argument("--json", action="store_true", help="one JSON object per stream")
    audit.set_defaults(handler=run_audit)


async def _session(
    settings: MqttSettings,
    topic: str,
    client_id: str | None,
    on_message: Callable[[aiomqtt.Message], None],
) -> None:
    """Stay subscribed to ``topic`` (reconnecting), handing each message to ``on_message``."""
    from agent.mqtt.tail import _tls_context  # noqa: PLC0415 - shared with tail, CLI-only

    password = settings.resolve_password()

    class Sink(asyncio.Queue[aiomqtt.Message]):
        """Record each message on arrival: aiomqtt 2.x drops queued ones when the link drops."""

        def put_nowait(self, item: aiomqtt.Message) -> None:
            on_message(item)

    while True:
        try:
            async with aiomqtt.Client(
                settings.host,
                settings.port,
                identifier=client_id,
                clean_session=client_id is None,
                username=settings.username,
                password=password.get_secret_value() if password is not None else None,
                tls_context=_tls_context(settings),
                queue_type=Sink,
            ) as client:
                await client.subscribe(topic, qos=1)
                sys.stderr.write(
                    f"altiwatch events audit: subscribed to {topic}"
                    f" on {settings.host}:{settings.port}\n"
                )
                sys.stderr.flush()
                async for _ in client.messages:  # returns only by raising on disconnect
                    pass
        except aiomqtt.MqttError as exc:
            sys.stderr.write(f"altiwatch events audit: {exc}; reconnecting\n")
            await asyncio.sleep(1.0)


async def listen(
    settings: MqttSettings,
    audit: Audit,
    *,
    site: str | None,
    client_id: str | None,
    duration: float | None,
    idle: float | None,
    stop: asyncio.Event,
) -> None:
    """Subscribe and feed ``audit`` until ``duration``, ``idle`` or ``stop``."""
    topic = Topics(settings.topic_prefix).all_events(site)
    started = last = time.monotonic()

    def on_message(message: aiomqtt.Message) -> None:
        nonlocal last
        if isinstance(message.payload, bytes | bytearray) and message.payload:
            with contextlib.suppress(ValueError):
                if audit.feed(json.loads(message.payload)):
                    last = time.monotonic()

    def done() -> bool:
        now = time.monotonic()
        return (
            stop.is_set()
            or (duration is not None and now - started >= duration)
            or (idle is not None and now - last >= idle)
        )

    runner = asyncio.create_task(
        _session(settings, topic, client_id, on_message), name="audit.session"
    )
    try:
        while not done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    await stop.wait()
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


def audit_lines(lines: Iterable[str], audit: Audit) -> None:
    """Feed JSON lines (one payload each; other lines ignored) to ``audit``."""
    for line in lines:
        with contextlib.suppress(ValueError):
            audit.feed(json.loads(line))


def run_audit(args: argparse.Namespace) -> int:
    """Entry point of ``altiwatch events audit``."""
    from agent.errors import ConfigError  # noqa: PLC0415 - CLI-only path
    from agent.mqtt.tail import _settings  # noqa: PLC0415 - same broker flags as tail

    baselines = load_state(args.state) if args.state is not None else {}
    audit = Audit(baselines)
    if args.input is not None:
        with args.input.open(encoding="utf-8") as lines:
            audit_lines(lines, audit)
    else:
        try:
            settings = _settings(args)
        except (ConfigError, ValueError) as exc:
            sys.stderr.write(f"altiwatch events audit: {exc}\n")
            return EX_CONFIG

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await listen(
                settings,
                audit,
                site=args.site,
                client_id=args.client_id,
                duration=args.duration,
                idle=args.idle,
                stop=stop,
            )

        asyncio.run(main())
    for report in audit.reports():
        sys.stdout.write((json.dumps(report) if args.json else format_line(report)) + "\n")
    sys.stdout.flush()
    if args.state is not None:
        save_state(args.state, audit.baselines())
    return EX_OK if audit.ok else EX_LOSS
