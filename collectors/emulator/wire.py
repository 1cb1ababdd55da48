"""Wire level: the 4028 RPC and HTTP/1.1 server protocols, and how faults look on the wire.

Both protocols are plain ``asyncio.Protocol`` classes (no framework) so that one process can
serve thousands of miners cheaply and so that faults can be exact: ``hang`` accepts and never
answers, ``reset`` sends a TCP RST, ``drip`` sends one byte per second, ``truncated`` cuts the
reply and closes, ``garbage`` answers bytes that are not JSON, ``oversized`` pads the reply,
``slow`` delays the reply. Hostile ones (issue 15): ``gzip_bomb`` answers HTTP with a small
gzip body that inflates to ``bytes`` (`gzip_bomb`), ``endless`` streams bytes (after a 200
head without a length, on HTTP) until the peer hangs up. ``offline`` is not here: the fleet
closes the listeners, so a connect is refused.
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from collectors.emulator.scenario import FaultSpec

GARBAGE = b"\x8b\x1f<html>\xff\xfe not json \x00\x01{{{ ]]"
"""What a ``garbage`` fault answers (not UTF-8, not JSON)."""
MAX_REQUEST_BYTES = 65_536
CHUNK_BYTES = 65_536
DEFAULT_OVERSIZE_BYTES = 4_000_000
DEFAULT_BOMB_BYTES = 1 << 30
"""What a ``gzip_bomb`` body inflates to by default (1 GiB; about 1 MB on the wire)."""
ENDLESS = 1 << 62
"""Bytes an ``endless`` reply streams: more than any peer will read."""

REQUESTS: dict[str, int] = {"rpc": 0, "http": 0, "grpc": 0}
"""Requests answered per protocol since start (the benchmark divides CPU by these)."""

V3_HEADER = struct.Struct("<I")
"""Whatsminer API v3 frame header: the JSON body's length, little-endian."""

RpcHandler = Callable[[str, object], bytes]
"""(command, parameter) -> complete reply bytes."""


@dataclass(slots=True)
class HttpRequest:
    """A parsed HTTP request."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    tls: bool = False

    @property
    def path(self) -> str:
        """Target without the query string."""
        return self.target.split("?", 1)[0]


@dataclass(slots=True)
class HttpResponse:
    """An HTTP response to serialise."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


REASONS = {
    200: "OK",
    307: "Temporary Redirect",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
}

HttpHandler = Callable[[HttpRequest], HttpResponse]
FaultGetter = Callable[[], tuple[FaultSpec | None, float]]


def serialise(
    response: HttpResponse, *, keep_alive: bool, declared_length: int | None = None
) -> bytes:
    """HTTP/1.1 response bytes; ``declared_length`` lies about Content-Length (truncation)."""
    length = len(response.body) if declared_length is None else declared_length
    lines = [
        f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Status')}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {length}",
        "Connection: keep-alive" if keep_alive else "Connection: close",
    ]
    lines.extend(f"{k}: {v}" for k, v in response.headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body


class ConnectionRegistry:
    """Open transports of one listener, so stopping a miner closes its connections too."""

    def __init__(self) -> None:
        """Start empty."""
        self.transports: set[asyncio.Transport] = set()
        self.timers: set[asyncio.TimerHandle] = set()

    def abort_all(self) -> None:
        """Abort every open connection and cancel pending deliveries."""
        for timer in list(self.timers):
            timer.cancel()
        self.timers.clear()
        for transport in list(self.transports):
            transport.abort()
        self.transports.clear()


def _reset(transport: asyncio.Transport) -> None:
    """Close with a TCP RST (SO_LINGER 0)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Deliverer:
    """Writes a reply, honouring a wire fault; shared by the RPC and HTTP protocols."""

    def __init__(self, registry: ConnectionRegistry) -> None:
        self.registry = registry
        self.loop = asyncio.get_running_loop()

    def later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` after ``delay`` seconds unless the listener is stopped first."""
        holder: list[asyncio.TimerHandle] = []

        def run() -> None:
            self.registry.timers.discard(holder[0])
            callback()

        handle = self.loop.call_later(delay, run)
        holder.append(handle)
        self.registry.timers.add(handle)

    def drip(self, transport: asyncio.Transport, data: bytes, *, close: bool) -> None:
        """Send one byte per second."""
        if transport.is_closing():
            return
        if not data:
            if close:
                transport.close()
            return
        transport.write(data[:1])
        self.later(1.0, lambda: self.drip(transport, data[1:], close=close))

    def stream(
        self, transport: asyncio.Transport, flow: FlowControl, reply: OversizedReply
    ) -> None:
        """Write ``reply`` in 64 KiB chunks as the peer reads, then close."""
        chunk = b"x" * CHUNK_BYTES
        remaining = [reply.pad]
        transport.write(reply.prefix)

        def pump() -> None:
            while not transport.is_closing() and not flow.writing_paused:
                if remaining[0] <= 0:
                    flow.resume_callback = None
                    transport.write(reply.suffix)
                    transport.close()
                    return
                n = min(CHUNK_BYTES, remaining[0])
                transport.write(chunk if n == CHUNK_BYTES else chunk[:n])
                remaining[0] -= n

        flow.resume_callback = pump
        pump()

    def deliver(
        self,
        transport: asyncio.Transport,
        payload: bytes,
        fault: FaultSpec | None,
        delay: float,
        *,
        close: bool,
        truncated_payload: bytes | None = None,
        garbage_payload: bytes = GARBAGE,
        oversized_payload: OversizedReply | None = None,
        flow: FlowControl | None = None,
    ) -> None:
        """Send ``payload`` (after ``delay``) as ``fault`` dictates."""
        kind = fault.kind if fault is not None else None
        if kind == "hang":
            return
        if kind == "reset":
            _reset(transport)
            return
        payload = _faulty_payload(kind, payload, truncated_payload, garbage_payload)

        def send() -> None:
            if transport.is_closing():
                return
            if kind == "drip":
                self.drip(transport, payload, close=True)
            elif (
                kind in {"oversized", "endless"}
                and oversized_payload is not None
                and flow is not None
            ):
                self.stream(transport, flow, oversized_payload)
            else:
                transport.write(payload)
                if close or kind is not None:
                    transport.close()

        if delay > 0:
            self.later(delay, send)
        else:
            send()


def _faulty_payload(
    kind: str | None, payload: bytes, truncated: bytes | None, garbage: bytes
) -> bytes:
    """The bytes a truncated or garbage reply sends instead of ``payload``."""
    if kind == "truncated":
        return truncated or payload[: len(payload) // 2]
    if kind == "garbage":
        return garbage
    return payload


@functools.lru_cache(maxsize=4)
def gzip_bomb(size: int) -> bytes:
    """A gzip member inflating to the JSON ``{"_pad":"xxx…"}`` with ``size`` x's.

    Built without compressing ``size`` bytes: after a full flush, deflate restarts from an empty
    window, so each 1 MiB block of x's compresses to the same bytes, which are repeated; the
    CRC is computed over the blocks (1 GiB: 0.2 s, 1.06 MB).
    """
    prefix, suffix, block = b'{"_pad":"', b'"}', b"x" * (1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = deflate.compress(prefix) + deflate.flush(zlib.Z_FULL_FLUSH)
    segment = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    blocks, rest = divmod(size, len(block))
    tail = b"x" * rest + suffix
    crc = zlib.crc32(prefix)
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(tail, crc)
    body = head + segment * blocks + deflate.compress(tail) + deflate.flush(zlib.Z_FINISH)
    total = (len(prefix) + size + len(suffix)) & 0xFFFFFFFF
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # gzip, deflate, no name, mtime 0
    return header + body + struct.pack("<II", crc, total)


@dataclass(frozen=True, slots=True)
class OversizedReply:
    """A valid JSON reply padded to ``size`` bytes, streamed in chunks (memory stays bounded)."""

    prefix: bytes
    pad: int
    suffix: bytes

    @property
    def size(self) -> int:
        """Total bytes on the wire."""
        return len(self.prefix) + self.pad + len(self.suffix)


def oversize_json(payload: bytes, size: int, *, terminator: bytes = b"") -> OversizedReply:
    """``payload`` (a JSON object) with a ``_pad`` string member, about ``size`` bytes long."""
    body = payload.rstrip(b"\x00")
    pad = max(0, size - len(body))
    if body.endswith(b"}"):
        return OversizedReply(body[:-1] + b',"_pad":"', pad, b'"}' + terminator)
    return OversizedReply(body, pad, terminator)


class FlowControl(asyncio.Protocol):
    """What the server protocols share: connection tracking and write-side flow control."""

    registry: ConnectionRegistry
    transport: asyncio.Transport | None = None
    resume_callback: Callable[[], None] | None = None
    writing_paused: bool = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Track the connection."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.registry.transports.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - asyncio API
        """Forget the connection."""
        if self.transport is not None:
            self.registry.transports.discard(self.transport)

    def pause_writing(self) -> None:
        """The transport buffer is full."""
        self.writing_paused = True

    def resume_writing(self) -> None:
        """The transport buffer drained: continue a streamed reply."""
        self.writing_paused = False
        if self.resume_callback is not None:
            self.resume_callback()


class RpcProtocol(FlowControl):
    """4028: read one bare JSON command, answer once, close (EOF ends the message)."""

    def __init__(
        self,
        handler: RpcHandler,
        faults: FaultGetter,
        registry: ConnectionRegistry,
        *,
        terminator: bytes,
    ) -> None:
        """Serve ``handler`` with wire ``faults``; replies end with ``terminator``."""
        self.handler = handler
        self.faults = faults
        self.registry = registry
        self.terminator = terminator
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.answered = False

    def data_received(self, data: bytes) -> None:
        """Accumulate until the buffer is one JSON document, then answer."""
        if self.answered or self.transport is None:
            return
        self.buffer += data
        try:
            request = json.loads(self.buffer.rstrip(b"\x00\r\n "))
        except (json.JSONDecodeError, UnicodeDecodeError):
            if len(self.buffer) > MAX_REQUEST_BYTES:
                self.transport.close()
            return
        self.answered = True
        REQUESTS["rpc"] += 1
        command = request.get("command", "") if isinstance(request, dict) else ""
        parameter = request.get("parameter") if isinstance(request, dict) else None
        fault, delay = self.faults()
        payload = self.handler(str(command), parameter)
        oversized = None
        if fault is not None and fault.kind == "oversized":
            size = fault.bytes or DEFAULT_OVERSIZE_BYTES
            oversized = oversize_json(payload, size, terminator=self.terminator)
        elif fault is not None and fault.kind == "endless":
            oversized = OversizedReply(payload.rstrip(self.terminator)[:-1], ENDLESS, b"")
        _Deliverer(self.registry).deliver(
            self.transport,
            payload,
            fault,
            delay,
            close=True,
            oversized_payload=oversized,
            flow=self,
        )


class FramedRpcProtocol(FlowControl):
    """4433 (Whatsminer API v3): 4-byte little-endian length + JSON ``{"cmd","param"}``.

    The reply is framed the same way; one command per connection, then the server closes
    (pyasic opens a connection per command and reads exactly the announced length).
    """

    def __init__(
        self, handler: Callable[[object], bytes], faults: FaultGetter, registry: ConnectionRegistry
    ) -> None:
        """Serve ``handler`` (parsed request -> JSON body bytes) with wire ``faults``."""
        self.handler = handler
        self.faults = faults
        self.registry = registry
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.answered = False

    def data_received(self, data: bytes) -> None:
        """Accumulate one frame, then answer it."""
        if self.answered or self.transport is None:
            return
        self.buffer += data
        if len(self.buffer) < V3_HEADER.size:
            return
        (length,) = V3_HEADER.unpack_from(self.buffer)
        if length > MAX_REQUEST_BYTES:
            self.transport.close()
            return
        body = self.buffer[V3_HEADER.size : V3_HEADER.size + length]
        if len(body) < length:
            return
        self.answered = True
        REQUESTS["rpc"] += 1
        try:
            request = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            request = None
        fault, delay = self.faults()
        payload = self.handler(request)
        framed = V3_HEADER.pack(len(payload)) + payload
        _Deliverer(self.registry).deliver(self.transport, framed, fault, delay, close=True)


class HttpProtocol(FlowControl):
    """A minimal HTTP/1.1 server with keep-alive (what httpx needs, nothing more)."""

    def __init__(
        self,
        handler: HttpHandler,
        faults: FaultGetter,
        registry: ConnectionRegistry,
        *,
        tls: bool = False,
    ) -> None:
        """Serve ``handler`` with wire ``faults`` (``tls``: this listener is HTTPS)."""
        self.tls = tls
        self.handler = handler
        self.faults = faults
        self.registry = registry
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def data_received(self, data: bytes) -> None:
        """Parse complete requests and answer them in order."""
        self.buffer += data
        while not self.busy and self.transport is not None and not self.transport.is_closing():
            request = self._parse()
            if request is None:
                return
            self._answer(request)

    def _parse(self) -> HttpRequest | None:
        assert self.transport is not None
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_REQUEST_BYTES:
                self.transport.close()
            return None
        head = self.buffer[:end].decode("latin-1").split("\r\n")
        try:
            method, target, _version = head[0].split(" ", 2)
        except ValueError:
            self.transport.close()
            return None
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or "0")
        if len(self.buffer) < end + 4 + length:
            return None
        body = self.buffer[end + 4 : end + 4 + length]
        self.buffer = self.buffer[end + 4 + length :]
        return HttpRequest(method=method, target=target, headers=headers, body=body, tls=self.tls)

    def _answer(self, request: HttpRequest) -> None:
        assert self.transport is not None
        REQUESTS["http"] += 1
        keep_alive = request.headers.get("connection", "").lower() != "close"
        fault, delay = self.faults()
        response = self.handler(request)
        payload = serialise(response, keep_alive=keep_alive and fault is None)
        truncated = None
        oversized = None
        garbage = serialise(
            HttpResponse(status=200, body=b"<html>\xff" + b"\x00" * 64), keep_alive=False
        )
        if fault is not None and fault.kind == "truncated":
            truncated = serialise(
                HttpResponse(
                    status=response.status,
                    body=response.body[: len(response.body) // 2],
                    content_type=response.content_type,
                    headers=response.headers,
                ),
                keep_alive=False,
                declared_length=len(response.body),
            )
        if fault is not None and fault.kind == "oversized":
            padded = oversize_json(response.body, fault.bytes or DEFAULT_OVERSIZE_BYTES)
            head = serialise(
                HttpResponse(
                    status=response.status,
                    content_type=response.content_type,
                    headers=response.headers,
                ),
                keep_alive=False,
                declared_length=padded.size,
            )
            oversized = OversizedReply(head + padded.prefix, padded.pad, padded.suffix)
        elif fault is not None and fault.kind == "endless":
            head = (
                f"HTTP/1.1 200 OK\r\nContent-Type: {response.content_type}\r\n"
                "Connection: close\r\n\r\n"
            ).encode("latin-1")
            oversized = OversizedReply(head + response.body[:-1], ENDLESS, b"")
        elif fault is not None and fault.kind == "gzip_bomb":
            payload = serialise(
                HttpResponse(
                    status=200,
                    body=gzip_bomb(fault.bytes or DEFAULT_BOMB_BYTES),
                    headers=[("Content-Encoding", "gzip")],
                ),
                keep_alive=False,
            )
        _Deliverer(self.registry).deliver(
            self.transport,
            payload,
            fault,
            delay,
            close=not keep_alive,
            truncated_payload=truncated,
            garbage_payload=garbage,
            oversized_payload=oversized,
            flow=self,
        )
        if fault is not None and fault.kind in {"hang", "drip", "oversized", "endless"}:
            # This connection answers nothing more (the reply never completes).
            self.busy = True
