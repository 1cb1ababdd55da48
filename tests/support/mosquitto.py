"""Fixtures for the mosquitto: Debian's broker on 127.0.0.1 and a free port, restartable.

``mosquitto`` yields a :class:`Mosquitto` already accepting connections. ``.stop()`` and
``.start()`` (same port, persistence kept in the temp dir) simulate broker outages. Extra
config lines can be passed through ``mosquitto_factory(extra=[...])``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import aiomqtt
import pytest

from tests.support.ports import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Mosquitto:
    """One broker process with its own temp config, persistence and log."""

    def __init__(self, workdir: Path, *, extra: Sequence[str] = ()) -> None:
        """Write the config; the broker starts with :meth:`start`."""
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        lines = [
            "per_listener_settings false",
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {workdir}/",
            "autosave_interval 1",
            "max_queued_messages 100000",
            "max_inflight_messages 100",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_timestamp true",
            *extra,
        ]
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> None:
        """Start the broker (on the same port) and wait until it accepts connections."""
        if self._proc is not None and self._proc.poll() is None:
            return
        deadline = time.monotonic() + timeout
        while True:
            with self.log.open("ab") as log:
                self._proc = subprocess.Popen(
                    [MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log, cwd=self.workdir
                )
            if self._wait_accepting(deadline):
                return
            # The port may still be held by the previous instance; retry until the deadline.
            self._terminate()
            if time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                msg = f"mosquitto did not accept connections on {self.port}: {tail}"
                raise RuntimeError(msg)

    def _wait_accepting(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop the broker (SIGTERM: persistence is saved) and wait for the port to close."""
        self._terminate()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    time.sleep(0.05)
            except OSError:
                return

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Freeze the broker (SIGSTOP) inside the block: it reads nothing and acknowledges nothing."""
        assert self._proc is not None, "start() the broker first"
        self._proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self._proc.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None


@pytest.fixture
def mosquitto_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Mosquitto]]:
    """Return ``start(extra=[...]) -> Mosquitto``; every broker is stopped at teardown."""
    if not (Path(MOSQUITTO).exists() and os.access(MOSQUITTO, os.X_OK)):
        pytest.fail(f"Debian's mosquitto is required at {MOSQUITTO} (make setup installs it)")
    brokers: list[Mosquitto] = []

    def start(*, extra: Sequence[str] = ()) -> Mosquitto:
        broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"), extra=extra)
        brokers.append(broker)
        broker.start()
        return broker

    yield start
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """A running Debian mosquitto on 127.0.0.1 and a free port (persistence on, in tmp)."""
    return mosquitto_factory()


@dataclass
class Received:
    """One message a :class:`Subscriber` received."""

    topic: str
    payload: bytes
    retain: bool
    qos: int
    properties: dict[str, object]

    def json(self) -> Any:
        """The payload decoded as JSON."""
        return json.loads(self.payload)


class Subscriber:
    """A test-side MQTT subscriber that reconnects (optionally with a persistent session).

    Use as ``async with Subscriber(broker, ["altiwatch/v1/#"]) as sub:``; ``sub.messages``
    grows as messages arrive; use :func:`wait_until` to wait for a condition.
    """

    def __init__(
        self,
        broker: Mosquitto,
        topics: Sequence[str],
        *,
        client_id: str | None = None,
        persistent: bool = False,
        qos: int = 1,
    ) -> None:
        """Subscribe to ``topics`` once entered (QoS ``qos``, MQTT 3.1.1)."""
        self.broker = broker
        self.topics = list(topics)
        self.client_id = client_id or f"test-sub-{uuid.uuid4().hex[:8]}"
        self.persistent = persistent
        self.qos = qos
        self.messages: list[Received] = []
        self.connects = 0
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def __aenter__(self) -> Self:
        """Start the subscriber task and wait until its first subscription is acknowledged."""
        self._task = asyncio.create_task(self._run(), name=f"subscriber[{self.client_id}]")
        async with asyncio.timeout(20):
            await self._subscribed.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Cancel the subscriber task."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        # aiomqtt 2.x drops messages still queued when the link drops (the iterator raises
        # first), although paho already acknowledged them; record each one on arrival instead.
        received = self.messages

        class Sink(asyncio.Queue[aiomqtt.Message]):
            def put_nowait(self, item: aiomqtt.Message) -> None:
                payload = item.payload if isinstance(item.payload, bytes) else b""
                props = vars(item.properties) if item.properties is not None else {}
                received.append(Received(str(item.topic), payload, item.retain, item.qos, props))

        while True:
            try:
                async with aiomqtt.Client(
                    self.broker.host,
                    self.broker.port,
                    identifier=self.client_id,
                    protocol=aiomqtt.ProtocolVersion.V311,
                    clean_session=not self.persistent,
                    max_inflight_messages=100,
                    queue_type=Sink,
                ) as client:
                    for topic in self.topics:
                        await client.subscribe(topic, qos=self.qos)
                    self.connects += 1
                    self._subscribed.set()
                    async for _ in client.messages:  # only returns by raising on disconnect
                        pass
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    def payloads(self, topic_filter: str = "#") -> list[Any]:
        """Decoded JSON payloads (non-empty) whose topic matches ``topic_filter``."""
        return [
            m.json()
            for m in self.messages
            if m.payload and aiomqtt.Topic(m.topic).matches(topic_filter)
        ]


async def wait_until(predicate: Callable[[], bool], *, within: float, what: str) -> None:
    """Poll ``predicate`` every 50 ms until true, or fail with ``what`` after ``within`` s."""
    timeout = within
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout} s waiting for {what}"
            raise AssertionError(msg)
        await asyncio.sleep(0.05)


async def publish_once(
    broker: Mosquitto, topic: str, payload: bytes = b"", *, retain: bool = False
) -> None:
    """Publish one QoS1 message with a throwaway client (e.g. a marker after retained messages)."""
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.publish(topic, payload, qos=1, retain=retain)


class MosquittoSub:
    """``mosquitto_sub -v -q 1`` on ``topic`` (default: every altiwatch topic), lines in a file.

    A separate process, so it keeps its own session across the broker restarts tests cause.
    """

    def __init__(self, host: str, port: int, path: Path, topic: str = "altiwatch/#") -> None:
        """Start the subscriber."""
        self.path = path
        self._file = path.open("wb")
        sub = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
        self.proc = subprocess.Popen(
            [sub, "-h", host, "-p", str(port), "-t", topic, "-v", "-q", "1"],
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    def messages(self) -> list[tuple[str, str]]:
        """(topic, payload) pairs received so far."""
        out = []
        for line in self.path.read_text(errors="replace").splitlines():
            topic, _, payload = line.partition(" ")
            out.append((topic, payload))
        return out

    def events(self) -> list[dict[str, Any]]:
        """JSON payloads received so far (unparseable lines skipped)."""
        out = []
        for _topic, payload in self.messages():
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(payload))
        return out

    def alarm_events(self) -> list[dict[str, Any]]:
        """Alarm transition events, deduplicated by event_id (QoS 1 is at-least-once)."""
        seen: dict[str, dict[str, Any]] = {}
        for event in self.events():
            if event.get("event") in {"raised", "escalated", "deescalated", "cleared"}:
                seen.setdefault(event["event_id"], event)
        return sorted(seen.values(), key=lambda e: e["seq"])

    def close(self) -> None:
        """Stop the subscriber."""
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._file.close()


class TcpGate:
    """A loopback TCP forwarder to a broker that the test can shut (connections refused).

    Used to order reconnections after a broker restart: mosquitto 2.0.11 does not queue
    messages for a persistent session restored from its persistence file until that client
    has reconnected, so a test subscriber must be back before the publisher is let through.
    """

    def __init__(self, broker: Mosquitto, *, host: str = "127.50.0.1") -> None:
        """Forward ``host:<free port>`` to the broker once :meth:`open` is called."""
        self.broker = broker
        self.host = host
        self.port = free_port(host)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        """Accept and forward connections."""
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)

    async def __aenter__(self) -> Self:
        """Open the gate."""
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Shut the gate and cut every forwarded connection."""
        await self.shut()

    async def shut(self) -> None:
        """Refuse new connections and cut the forwarded ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._pipes):
            task.cancel()
        for task in list(self._pipes):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection(self.broker.host, self.broker.port)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_pipe(reader, up_writer), name="gate.up")
                tg.create_task(_pipe(up_reader, writer), name="gate.down")
        except* OSError:
            pass
        finally:
            writer.close()
            if up_writer is not None:
                up_writer.close()
            self._pipes.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
