"""CPU-saving adaptations of pyasic 0.79.0 for fleet polling, applied without forking pyasic.

pyasic is still what reads every miner: its classes pick the commands, parse the replies and
build ``MinerData``. What this module changes is the plumbing under them, where a poll of a
stock Antminer S19 spends most of its CPU (measured with cProfile, see tests/benchmarks/):

1. **HTTP transport** (`install`). pyasic builds a new ``httpx.AsyncClient`` with
   ``settings.transport()`` for almost every web request; the default transport is httpcore
   over anyio with the pure-Python h11 parser, about 1 ms of CPU per request on loopback.
   ``install()`` points pyasic's own hook, ``pyasic.settings.transport``, at
   `LeanHTTPTransport`: one asyncio connection per request (``Connection: close``, as
   pyasic already behaves: it never reuses a connection across polls), a minimal HTTP/1.1
   reader, about half the CPU. HTTPS requests (detection's probe of ``https://ip/``) are
   handed to httpx's default transport unchanged.
2. **Digest reuse, no httpx per read** (`tune`, Antminer stock web). pyasic creates a new
   ``httpx.DigestAuth`` for each request, so each of them is first answered 401 and then
   repeated, through a new ``httpx.AsyncClient``. A tuned miner keeps the server's Digest
   challenge (`DigestChallenge`: the nonce reused with an increasing ``nc``, RFC 7616, as
   lighttpd on stock firmware accepts; a new 401 brings a new nonce) and sends each read as
   one raw HTTP/1.1 GET (`exchange`), so the normal cost is one request on one connection
   with no httpx machinery.
3. **RPC plumbing** (`tune`, every family with a 4028 API):
   - ``get_commands`` is computed with ``dir()`` and ``getattr`` over the whole class on each
     ``multicommand``; it only depends on the class, so it is cached per class.
   - A firmware that rejects ``"a+b"`` joins (stock Antminer) costs one wasted connection
     per poll before pyasic falls back to one connection per command; a tuned miner
     remembers the rejection and goes straight to the split (re-probing the join every
     `JOIN_REPROBE_EVERY` polls in case the first rejection was a transient failure).
   - With exactly one command, pyasic sends it unjoined but tags the reply ``multicommand``
     without keying it by command, so every data function fetches it again (design note
     miner-protocols.md §1); a tuned miner keys the reply, so it is fetched once.

4. **Braiins OS+ gRPC** (`tune`): the concurrent calls of one poll share one grpclib channel
   instead of one channel (TCP + HTTP/2 handshake) each; nothing stays open between polls.
   (Decoding the protobuf replies is betterproto's; the ``betterproto-rust-codec`` package,
   a dependency of altiwatch, makes betterproto decode them in Rust.)

Everything else (which data, how it is parsed, errors raised) is pyasic's own code. Where a
pyasic method is replaced rather than configured, the replacement says why next to it.

Everything here is written against pyasic **0.79.0** (`WRITTEN_FOR`) and must never block a
pyasic upgrade: ``polling.pyasic_tuning`` (`select`) is ``auto`` by default, which applies the
module only to that release and otherwise leaves pyasic exactly as released (logged once as
``pyasic_tuning_disabled``); ``on`` forces it, ``off`` never applies it. Nothing is patched at
import: `install` (the process-wide parts) and `tune` (per miner) do it, `uninstall` undoes
the process-wide parts.

Usage (once per miner object; the first call also installs the transport)::

    miner = BMMinerS19jPro("10.0.0.5")
    pyasic_tuning.tune(miner)
    data = await miner.get_data(include=[...])
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import json
import secrets
import struct
import types  # reliability: detection read cap
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.request import parse_http_list, parse_keqv_list

import httpx
import structlog
from grpclib import GRPCError, Status
from grpclib.client import Channel, Handler
from grpclib.exceptions import StreamTerminatedError
from grpclib.protocol import H2Protocol
from pyasic import settings as pyasic_settings
from pyasic.errors import APIError
from pyasic.miners import factory as pyasic_factory  # reliability: detection read cap
from pyasic.rpc.base import BaseMinerRPCAPI
from pyasic.rpc.btminer import BTMinerV3RPCAPI
from pyasic.web.antminer import AntminerModernWebAPI
from pyasic.web.braiins_os import boser as pyasic_boser  # security: gRPC reply cap
from pyasic.web.braiins_os.boser import BOSerWebAPI, BOSMinerGRPCStub

from collectors.source import CollectorError, FailureReason  # reliability: RPC read cap

if TYPE_CHECKING:
    from asyncio import Transport
    from collections.abc import Callable
    from ssl import SSLContext

__all__ = [
    "JOIN_REPROBE_EVERY",
    "MAX_BODY_BYTES",
    "MAX_GRPC_BYTES",
    "MAX_RPC_BYTES",
    "TRANSPORT_STATS",
    "WRITTEN_FOR",
    "CappedChannel",
    "DigestChallenge",
    "LeanHTTPTransport",
    "TransportStats",
    "TuningMode",
    "TuningState",
    "decode_body_off_loop",
    "exchange",
    "install",
    "installed",
    "select",
    "tune",
    "tuning_of",
    "uninstall",
]

WRITTEN_FOR: Final = "0.79.0"
"""The pyasic release whose internals this module adapts; ``auto`` applies it to no other."""

TuningMode = Literal["auto", "on", "off"]
"""``polling.pyasic_tuning``: ``auto`` (only on `WRITTEN_FOR`), ``on`` (always), ``off``."""

log = structlog.get_logger("altiwatch.pyasic_tuning")
_disabled_logged = False


def select(mode: TuningMode, pyasic_version: str | None = None) -> bool:
    """Whether to apply the tuning under ``mode``; logs ``pyasic_tuning_disabled`` once if not.

    ``auto`` compares ``pyasic_version`` (the installed pyasic's by default) with
    `WRITTEN_FOR`. When the answer is no, pyasic runs exactly as released: none of the CPU
    savings, and none of the read caps of issue 8 (a miner's replies are then bounded by the
    poll deadline only), which the log line says so an operator knows what was given up.
    """
    global _disabled_logged  # noqa: PLW0603 — one line per process, like the decision itself
    version = pyasic_version or importlib.metadata.version("pyasic")
    apply = mode == "on" or (mode == "auto" and version == WRITTEN_FOR)
    if not apply and not _disabled_logged:
        _disabled_logged = True
        event = log.warning if mode == "auto" else log.info
        event(
            "pyasic_tuning_disabled",
            mode=mode,
            pyasic_version=version,
            written_for=WRITTEN_FOR,
            effect="pyasic as released: no CPU savings, no read caps on port 4028 or detection",
        )
    return apply


MAX_BODY_BYTES: Final = 8 * 1024 * 1024
"""A miner's web reply larger than this, on the wire or once decoded (``Content-Encoding``), is
a protocol error (pyasic would read and inflate it all: a 1 MB gzip reply can inflate to GBs)."""

MAX_HEADER_BYTES: Final = 64 * 1024
"""Status line plus headers larger than this are a protocol error."""

JOIN_REPROBE_EVERY: Final = 100
"""After a rejected ``a+b`` join, try the join again once every this many multicommands."""

_DEFAULT_TIMEOUT_S: Final = 5.0


# --------------------------------------------------------------------------------------
# 1. HTTP transport
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class TransportStats:
    """Process-wide counters of `LeanHTTPTransport` (for benchmarks and tests)."""

    connections: int = 0
    requests: int = 0
    unauthorized: int = 0

    def reset(self) -> None:
        """Set every counter to zero."""
        self.connections = self.requests = self.unauthorized = 0


TRANSPORT_STATS: Final = TransportStats()
"""Plain-HTTP connections opened, responses read and how many of them were 401."""


class LeanHTTPTransport(httpx.AsyncBaseTransport):
    """An httpx transport for plain-HTTP miner web APIs: one asyncio connection per request.

    Sends ``Connection: close`` and ``Accept-Encoding: identity`` and reads the reply by
    Content-Length, chunked encoding or end of stream. The body is handed to httpx already
    decoded (gzip and deflate inflated here, at most `MAX_BODY_BYTES`; other encodings refused),
    so httpx's own unbounded decoders never run; bodies over `MAX_BODY_BYTES` on the wire or
    decoded raise ``httpx.RemoteProtocolError``. Timeouts come from the request's httpx
    ``timeout`` extension: ``connect`` bounds the connection, ``read`` bounds the whole reply
    (stricter than httpcore's per-read timeout, so a miner dripping one byte a second or
    streaming without end cannot hold a poll). Errors are httpx's own exceptions, so pyasic's
    ``except httpx.HTTPError`` handlers keep working. ``https://`` URLs are sent through
    ``httpx.AsyncHTTPTransport`` (created on first use, closed with this transport), and their
    replies are read under the same byte caps and whole-reply deadline.
    """

    def __init__(self, *, verify: str | bool | SSLContext | None = None) -> None:
        """Remember ``verify`` for the HTTPS fallback; plain HTTP needs no state."""
        self._verify = pyasic_settings.ssl_cxt if verify is None else verify
        self._tls: httpx.AsyncHTTPTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` over a new connection and return the complete response."""
        timeouts = request.extensions.get("timeout", {})
        if request.url.scheme != "http":
            if self._tls is None:
                self._tls = httpx.AsyncHTTPTransport(verify=self._verify)
            return await _bounded_tls(self._tls, request, timeouts.get("read", _DEFAULT_TIMEOUT_S))
        status, headers, body = await exchange(
            request.url.host,
            request.url.port or 80,
            _encode_request(request, await request.aread()),
            method=request.method,
            connect_s=timeouts.get("connect", _DEFAULT_TIMEOUT_S),
            read_s=timeouts.get("read", _DEFAULT_TIMEOUT_S),
            request=request,
        )
        return httpx.Response(
            status, headers=headers, stream=httpx.ByteStream(body), request=request
        )

    async def aclose(self) -> None:
        """Close the HTTPS transport if one was made."""
        if self._tls is not None:
            await self._tls.aclose()
            self._tls = None


async def exchange(
    host: str,
    port: int,
    raw_request: bytes,
    *,
    method: str = "GET",
    connect_s: float | None = _DEFAULT_TIMEOUT_S,
    read_s: float | None = _DEFAULT_TIMEOUT_S,
    request: httpx.Request | None = None,
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Send one raw HTTP/1.1 request over a new connection; status, headers and decoded body.

    The body comes back decoded (`decode_body`: no ``Content-Encoding`` left, at most
    `MAX_BODY_BYTES`). Errors are httpx's (``ConnectError``, ``ConnectTimeout``,
    ``ReadTimeout``, ``ReadError``, ``RemoteProtocolError``), with ``request`` attached when
    given. ``read_s`` bounds the whole reply.
    """
    TRANSPORT_STATS.connections += 1
    try:
        async with asyncio.timeout(connect_s):
            reader, writer = await asyncio.open_connection(host, port, limit=MAX_HEADER_BYTES)
    except TimeoutError as exc:
        msg = f"connect to {host}:{port} timed out"
        raise httpx.ConnectTimeout(msg, request=request) from exc
    except OSError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    try:
        writer.write(raw_request)
        async with asyncio.timeout(read_s):
            status, headers, body = await _read_response(reader, method)
    except TimeoutError as exc:
        msg = f"reply from {host}:{port} timed out"
        raise httpx.ReadTimeout(msg, request=request) from exc
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        msg = f"bad reply from {host}:{port}: {exc}"
        raise httpx.RemoteProtocolError(msg, request=request) from exc
    except OSError as exc:
        raise httpx.ReadError(str(exc), request=request) from exc
    finally:
        writer.close()
    try:
        headers, body = await decode_body_off_loop(headers, body)
    except ValueError as exc:
        msg = f"bad reply from {host}:{port}: {exc}"
        raise httpx.RemoteProtocolError(msg, request=request) from exc
    TRANSPORT_STATS.requests += 1
    if status == 401:  # noqa: PLR2004
        TRANSPORT_STATS.unauthorized += 1
    return status, headers, body


def _encode_request(request: httpx.Request, body: bytes) -> bytes:
    """Serialise ``request`` as HTTP/1.1 with ``Connection: close``."""
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
    lines.extend(
        name + b": " + value
        for name, value in request.headers.raw
        if name.lower() not in {b"connection", b"keep-alive", b"accept-encoding"}
    )
    lines.append(b"Accept-Encoding: identity")  # nothing to inflate (a miner may still)
    if body and "content-length" not in request.headers:
        lines.append(b"Content-Length: %d" % len(body))
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def _read_response(
    reader: asyncio.StreamReader, method: str
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Read one HTTP/1.x response: status, raw headers and the (still encoded) body.

    Raises ValueError for malformed input and asyncio.IncompleteReadError on early EOF.
    """
    status, headers = await _read_head(reader)
    if method == "HEAD" or status in {204, 304} or 100 <= status < 200:  # noqa: PLR2004
        return status, headers, b""
    length: int | None = None
    chunked = False
    for name, value in headers:
        lname = name.lower()
        if lname == b"content-length":
            length = int(value)
        elif lname == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        body = await _read_chunked(reader)
        headers = [(n, v) for n, v in headers if n.lower() != b"transfer-encoding"]
    elif length is not None:
        if not 0 <= length <= MAX_BODY_BYTES:
            msg = f"Content-Length {length} out of range"
            raise ValueError(msg)
        body = await reader.readexactly(length)
    else:
        body = await _read_to_eof(reader)
    return status, headers, body


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, list[tuple[bytes, bytes]]]:
    """Read the status line and headers, skipping 1xx interim responses."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, _, header_block = head[:-4].partition(b"\r\n")
        version, _, rest = status_line.partition(b" ")
        if not version.startswith(b"HTTP/1."):
            msg = f"not an HTTP/1.x status line: {status_line[:40]!r}"
            raise ValueError(msg)
        status = int(rest[:3])
        if not 100 <= status < 200 or status == 101:  # noqa: PLR2004 — 1xx are interim
            return status, _parse_headers(header_block)


def _parse_headers(block: bytes) -> list[tuple[bytes, bytes]]:
    """Split a raw header block into (name, value) pairs; obsolete folding is rejected."""
    headers: list[tuple[bytes, bytes]] = []
    if not block:
        return headers
    for line in block.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep or not name or name[:1] in {b" ", b"\t"}:
            msg = f"malformed header line {line[:40]!r}"
            raise ValueError(msg)
        headers.append((name.strip(), value.strip()))
    return headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """Decode a chunked body (extensions and trailers are read and dropped)."""
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(parts)
        total += size
        if total > MAX_BODY_BYTES:
            msg = f"chunked body over {MAX_BODY_BYTES} bytes"
            raise ValueError(msg)
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            msg = "chunk not followed by CRLF"
            raise ValueError(msg)


def decode_body(
    headers: list[tuple[bytes, bytes]], body: bytes, limit: int = MAX_BODY_BYTES
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Undo ``Content-Encoding`` (gzip, deflate, identity) within ``limit`` decoded bytes.

    Returns the headers without Content-Encoding (Content-Length set to the decoded size) and
    the decoded body. Raises ValueError for a body that inflates beyond ``limit`` (inflation
    stops at ``limit + 1`` bytes: a gzip bomb costs no more than a large honest reply), for
    corrupt data and for any other encoding (we only ever ask for identity).
    """
    codings = [
        coding.strip().lower()
        for name, value in headers
        if name.lower() == b"content-encoding"
        for coding in value.split(b",")
    ]
    codings = [c for c in codings if c not in {b"", b"identity"}]
    if not codings:
        return headers, body
    for coding in reversed(codings):  # the last one applied is undone first
        body = _inflate(coding, body, limit)
    kept = [(n, v) for n, v in headers if n.lower() not in {b"content-encoding", b"content-length"}]
    kept.append((b"Content-Length", b"%d" % len(body)))
    return kept, body


async def decode_body_off_loop(
    headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """`decode_body`, in a worker thread when the body has a ``Content-Encoding``.

    Why: inflating a gzip bomb up to `MAX_BODY_BYTES` takes 5-20 ms of CPU; zlib releases the
    GIL meanwhile, so in a thread it no longer stalls every other poll on the event loop (six
    bombing miners made one fast poll in ten more than 10 ms late). Plain bodies, nearly all of
    them since we ask for ``identity``, are returned at once.
    """
    if not any(name.lower() == b"content-encoding" for name, _value in headers):
        return headers, body
    return await asyncio.to_thread(decode_body, headers, body)


def _inflate(coding: bytes, data: bytes, limit: int) -> bytes:
    if coding in {b"gzip", b"x-gzip"}:
        wbits = zlib.MAX_WBITS | 16
    elif coding == b"deflate":  # zlib-wrapped, or raw deflate as some servers send it
        wbits = zlib.MAX_WBITS if data[:1] == b"\x78" else -zlib.MAX_WBITS
    else:
        msg = f"unsupported Content-Encoding {coding[:20]!r}"
        raise ValueError(msg)
    decoder = zlib.decompressobj(wbits)
    try:
        out = decoder.decompress(data, limit + 1)
    except zlib.error as exc:
        msg = f"corrupt {coding.decode('latin-1')} body: {exc}"
        raise ValueError(msg) from exc
    if len(out) > limit:
        msg = f"body inflates beyond {limit} bytes ({coding.decode('latin-1')})"
        raise ValueError(msg)
    return out


async def _bounded_tls(
    tls: httpx.AsyncHTTPTransport, request: httpx.Request, read_s: float | None
) -> httpx.Response:
    """``request`` through httpx's transport, the reply read whole within ``read_s``, capped."""
    try:
        async with asyncio.timeout(read_s):
            response = await tls.handle_async_request(request)
            try:
                parts: list[bytes] = []
                total = 0
                async for chunk in response.stream:  # type: ignore[union-attr]
                    total += len(chunk)
                    if total > MAX_BODY_BYTES:
                        msg = f"body over {MAX_BODY_BYTES} bytes"
                        raise httpx.RemoteProtocolError(msg, request=request)
                    parts.append(chunk)
            finally:
                await response.aclose()
    except TimeoutError as exc:
        msg = f"reply from {request.url.host} timed out"
        raise httpx.ReadTimeout(msg, request=request) from exc
    try:
        headers, body = await decode_body_off_loop(list(response.headers.raw), b"".join(parts))
    except ValueError as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    return httpx.Response(
        response.status_code,
        headers=headers,
        stream=httpx.ByteStream(body),
        request=request,
        extensions=response.extensions,
    )


async def _read_to_eof(reader: asyncio.StreamReader) -> bytes:
    """Read a close-delimited body, refusing more than MAX_BODY_BYTES."""
    parts: list[bytes] = []
    total = 0
    while chunk := await reader.read(65536):
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            msg = f"body over {MAX_BODY_BYTES} bytes"
            raise ValueError(msg)
        parts.append(chunk)
    return b"".join(parts)


@dataclass(slots=True)
class TuningState:
    """What `install` replaced, so that `uninstall` can put it back."""

    original_transport: Callable[..., httpx.AsyncBaseTransport]
    original_factory_asyncio: types.ModuleType
    original_socket_ping: Any
    original_boser_channel: type[Channel]


_state: TuningState | None = None


def _lean_transport(*, verify: str | bool | SSLContext | None = None) -> httpx.AsyncBaseTransport:
    """Drop-in for ``pyasic.settings.transport``: a fresh, cheap `LeanHTTPTransport`."""
    return LeanHTTPTransport(verify=verify)


def install() -> None:
    """Point pyasic's ``settings.transport`` hook at `LeanHTTPTransport` (idempotent).

    Process-wide: every pyasic web request made afterwards, including detection, uses it.
    Also caps detection's reads and makes its ping survive a non-UTF-8 reply
    (`_cap_detection_reads`, `_detection_ping_survives_non_utf8`), and gives pyasic's BOSer
    module `CappedChannel` for its own gRPC channels (the Login).
    """
    global _state  # noqa: PLW0603 — one process-wide hook, like pyasic's own settings
    if _state is None:
        _state = TuningState(
            original_transport=pyasic_settings.transport,
            original_factory_asyncio=pyasic_factory.asyncio,
            original_socket_ping=vars(pyasic_factory.MinerFactory)["_socket_ping"],
            original_boser_channel=pyasic_boser.Channel,
        )
        pyasic_settings.transport = _lean_transport
        pyasic_boser.Channel = CappedChannel  # the Login and untuned calls: capped too
        _cap_detection_reads()
        _detection_ping_survives_non_utf8()


def uninstall() -> None:
    """Restore pyasic's own transport factory and detection (for benchmarks and tests)."""
    global _state  # noqa: PLW0603 — see install()
    if _state is not None:
        pyasic_settings.transport = _state.original_transport
        pyasic_factory.asyncio = _state.original_factory_asyncio
        pyasic_factory.MinerFactory._socket_ping = _state.original_socket_ping  # noqa: SLF001
        pyasic_boser.Channel = _state.original_boser_channel
        _state = None


def installed() -> bool:
    """Whether `install` is in effect."""
    return _state is not None


# --------------------------------------------------------------------------------------
# 2 + 3. Per-miner tuning: tuned subclasses of pyasic's RPC and web API classes
# --------------------------------------------------------------------------------------


_commands_by_class: dict[type, tuple[str, ...]] = {}


def _class_commands(cls: type) -> tuple[str, ...]:
    """The RPC command names of ``cls``, as pyasic's ``get_commands`` computes them (cached)."""
    cached = _commands_by_class.get(cls)
    if cached is not None:
        return cached
    base_callables = {f for f in dir(BaseMinerRPCAPI) if callable(getattr(BaseMinerRPCAPI, f))}
    cached = _commands_by_class[cls] = tuple(
        name
        for name in dir(cls)
        if name not in {"commands", "open_api"}
        and not name.startswith("_")
        and name not in base_callables
        and callable(getattr(cls, name, None))
    )
    return cached


# --- reliability (issue 8): RPC read cap. Added by "reliability"; begin ---------------------
MAX_RPC_BYTES: Final = 2 * 1024 * 1024
"""A miner's RPC (port 4028) reply larger than this is cut off (pyasic would read it to EOF)."""


async def _capped_read_bytes(
    self: Any,  # noqa: ARG001 — becomes a method of the tuned RPC classes
    reader: asyncio.StreamReader,
    timeout: int,  # noqa: ASYNC109 — pyasic's signature (seconds)
) -> bytes:
    """Pyasic's ``_read_bytes`` reads to EOF; this one stops after `MAX_RPC_BYTES`.

    Why: a miner answering 50 MB on 4028 is otherwise buffered, decoded and parsed whole
    (measured: +230 MB RSS and ~2.5 s of blocked event loop per poll). Over the cap the
    connection is aborted and ``CollectorError(OVERSIZED)`` raised: it is not an APIError,
    so pyasic's fallbacks don't retry it, and the agent reports ``reason="oversized"``.
    Timeouts and other errors behave as in pyasic 0.79.0 (TimeoutError propagates to
    ``_send_bytes``; anything else returns what was read). Installed as ``_read_bytes`` in
    `_TunedRPC` and `_TunedRPCCommandsOnly` (their attributes are copied, not inherited).
    """
    chunks: list[bytes] = []
    total = 0
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                total += len(chunk)
                if total > MAX_RPC_BYTES:
                    break
                chunks.append(chunk)
    except (asyncio.CancelledError, TimeoutError):
        raise
    except Exception:  # noqa: BLE001 — pyasic's _read_bytes swallows these too
        return b"".join(chunks)
    if total > MAX_RPC_BYTES:
        transport = getattr(reader, "_transport", None)  # asyncio's own field
        if transport is not None:
            transport.abort()
        msg = f"RPC reply over {MAX_RPC_BYTES} bytes, cut off"
        raise CollectorError(FailureReason.OVERSIZED, msg)
    return b"".join(chunks)


# --- reliability (issue 8): detection read cap. Added by "reliability" -----------------------


class _CappedStreamReader(asyncio.StreamReader):
    """A StreamReader that ends the stream after `MAX_RPC_BYTES` (and aborts the connection).

    Why: detection (``pyasic.miners.factory``) reads port 4028 with its own loops of
    ``data += await reader.read(4096)`` until EOF, unbounded and quadratic: re-detecting a
    Whatsminer that answers 50 MB cost ~3 s of CPU per poll (measured) until our deadline
    cut it. Past the cap the factory sees EOF, its JSON parse fails, detection finds nothing.
    """

    _capped_total = 0

    def _capped_overflow(self) -> bool:
        if self._capped_total <= MAX_RPC_BYTES:
            return False
        transport = getattr(self, "_transport", None)  # asyncio's own field
        if transport is not None:
            transport.abort()
        return True

    async def read(self, n: int = -1) -> bytes:
        """Like StreamReader.read, but EOF once more than MAX_RPC_BYTES were read."""
        if self._capped_overflow():
            return b""
        if n < 0:
            chunks = []
            while chunk := await self.read(65536):
                chunks.append(chunk)
            return b"".join(chunks)
        data = await super().read(n)
        self._capped_total += len(data)
        return b"" if self._capped_overflow() else data

    async def readexactly(self, n: int) -> bytes:
        """Refuse a length prefix over MAX_RPC_BYTES (BTMiner v3 frames) instead of buffering."""
        if n > MAX_RPC_BYTES:
            self._capped_total = n
            self._capped_overflow()
            raise asyncio.IncompleteReadError(b"", n)
        data = await super().readexactly(n)
        self._capped_total += len(data)
        return data


async def _capped_open_connection(
    host: Any = None, port: Any = None, *, limit: int = 2**16, **kwds: Any
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """CPython 3.11's asyncio.open_connection, with a `_CappedStreamReader`."""
    loop = asyncio.get_running_loop()
    reader = _CappedStreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await loop.create_connection(lambda: protocol, host, port, **kwds)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


def _cap_detection_reads() -> None:
    """Give ``pyasic.miners.factory`` an ``asyncio`` whose open_connection caps reads.

    Only the factory module's name ``asyncio`` is rebound (to a copy of the module with one
    function replaced); asyncio itself and every other module are untouched. Idempotent.
    """
    if getattr(pyasic_factory.asyncio, "_altiwatch_capped", False):
        return
    proxy = types.ModuleType("asyncio")
    proxy.__dict__.update(vars(asyncio))
    proxy.open_connection = _capped_open_connection  # type: ignore[attr-defined]
    proxy._altiwatch_capped = True  # type: ignore[attr-defined]  # noqa: SLF001
    pyasic_factory.asyncio = proxy


def _detection_ping_survives_non_utf8() -> None:
    """Make pyasic's detection ping return None on a reply that is not UTF-8, not raise.

    Why: ``MinerFactory._socket_ping`` ends with ``data.decode("utf-8")``. On a miner that sends
    garbage it raises UnicodeDecodeError inside a task that the factory never awaits, and
    asyncio logs "Task exception was never retrieved" at error level, with a traceback, at
    every re-detection: noise that looks like a crash. With None, detection finds nothing, as
    it does for any other unusable reply, and the source's own probe reports ``parse_error``.
    Idempotent.
    """
    factory = pyasic_factory.MinerFactory
    original = factory._socket_ping  # noqa: SLF001 - the method being wrapped
    if getattr(original, "_altiwatch_wrapped", False):
        return

    async def socket_ping(ip: str, cmd: str) -> str | None:
        try:
            result: str | None = await original(ip, cmd)
        except UnicodeDecodeError:
            return None
        return result

    socket_ping._altiwatch_wrapped = True  # type: ignore[attr-defined]  # noqa: SLF001
    factory._socket_ping = staticmethod(socket_ping)  # noqa: SLF001


# --- reliability (issue 8): RPC read cap; end --------------------------------------------------


class _TunedRPC:
    """Mixin put in front of a pyasic RPC API class by `tune`.

    Why a subclass: ``get_commands`` and ``multicommand`` are plain methods on pyasic's
    classes with no setting to change them; the overrides keep their signatures and results.
    """

    _tuned_join_rejected_at: int | None = None
    _tuned_calls: int = 0
    _read_bytes = _capped_read_bytes  # reliability (issue 8): RPC read cap

    def get_commands(self) -> list[str]:
        """Cached per class: pyasic recomputes it with dir() on every multicommand."""
        return list(_class_commands(type(self)))

    async def multicommand(self, *commands: str, allow_warning: bool = True) -> dict[str, Any]:
        """Pyasic's BaseMinerRPCAPI.multicommand, minus the repeated join and the refetch."""
        rpc: Any = self
        valid = rpc._check_commands(*commands)  # noqa: SLF001 — pyasic's own filter
        self._tuned_calls += 1
        if len(valid) == 1:
            # pyasic would return the bare reply tagged "multicommand", which no data
            # function can find under its command name, so each one re-fetches it.
            (only,) = valid
            try:
                reply = await rpc.send_command(only, allow_warning=allow_warning)
            except APIError:
                return {"multicommand": True}
            return {only: [reply], "multicommand": True}
        rejected_at = self._tuned_join_rejected_at
        if rejected_at is not None and self._tuned_calls - rejected_at < JOIN_REPROBE_EVERY:
            data: dict[str, Any] = await rpc._send_split_multicommand(*commands)  # noqa: SLF001
        else:
            try:
                data = await rpc.send_command("+".join(valid), allow_warning=allow_warning)
            except APIError:
                self._tuned_join_rejected_at = self._tuned_calls
                data = await rpc._send_split_multicommand(*commands)  # noqa: SLF001
            else:
                self._tuned_join_rejected_at = None
        data["multicommand"] = True
        return data


async def _capped_read_frame(
    self: Any,  # noqa: ARG001 — becomes a method of the tuned v3 RPC class
    reader: asyncio.StreamReader,
    timeout: int,  # noqa: ASYNC109 — pyasic's signature (seconds)
) -> bytes:
    """Whatsminer API v3 (4433) reply: a 4-byte little-endian length, then that many bytes.

    Why: pyasic's ``BTMinerV3RPCAPI._read_bytes`` trusts the length prefix (up to 4 GiB
    buffered) and has no deadline of its own; this one refuses a length over `MAX_RPC_BYTES`
    (``CollectorError(OVERSIZED)``, connection aborted) and keeps pyasic's behaviour otherwise
    (a short or broken frame gives the bytes read so far, which pyasic fails to parse).
    The 4028 read cap (`_capped_read_bytes`, read to EOF) cannot serve here: the frame has a
    binary header and the server need not close.
    """
    try:
        async with asyncio.timeout(timeout):
            (length,) = struct.unpack("<I", await reader.readexactly(4))
            if length <= MAX_RPC_BYTES:
                return await reader.readexactly(length)
    except (asyncio.CancelledError, TimeoutError):
        raise
    except Exception:  # noqa: BLE001 — pyasic's _read_bytes swallows these too
        return b""
    transport = getattr(reader, "_transport", None)  # asyncio's own field
    if transport is not None:
        transport.abort()
    msg = f"RPC frame of {length} bytes announced, over {MAX_RPC_BYTES}"
    raise CollectorError(FailureReason.OVERSIZED, msg)


class _TunedRPCV3:
    """Mixin for pyasic's Whatsminer API v3 client: command cache and the capped frame read."""

    _read_bytes = _capped_read_frame

    def get_commands(self) -> list[str]:
        """Cached per class: pyasic recomputes it with dir() on every multicommand."""
        return list(_class_commands(type(self)))


class _TunedRPCCommandsOnly:
    """Mixin for RPC classes with their own multicommand (Whatsminer): only the cache."""

    _read_bytes = _capped_read_bytes  # reliability (issue 8): RPC read cap

    def get_commands(self) -> list[str]:
        """Cached per class: pyasic recomputes it with dir() on every multicommand."""
        return list(_class_commands(type(self)))


@dataclass(slots=True)
class DigestChallenge:
    """A server's HTTP Digest challenge (MD5, qop=auth or none) and our count on its nonce.

    Reusing one challenge for several requests, with ``nc`` counting up, is what RFC 7616
    describes and what lighttpd (stock Antminer firmware) accepts; a server that wants a new
    nonce answers 401 again and the caller takes the new challenge.
    """

    realm: str
    nonce: str
    qop_auth: bool
    opaque: str | None = None
    algorithm: str | None = None
    nc: int = 0

    @classmethod
    def from_headers(cls, headers: list[tuple[bytes, bytes]]) -> DigestChallenge | None:
        """The first Digest challenge we can answer in ``WWW-Authenticate``, else None."""
        for name, value in headers:
            if name.lower() == b"www-authenticate":
                challenge = cls.parse(value.decode("latin-1"))
                if challenge is not None:
                    return challenge
        return None

    @classmethod
    def parse(cls, header: str) -> DigestChallenge | None:
        """Parse ``Digest realm="…", nonce="…", qop="auth", …``; None if not answerable."""
        scheme, _, rest = header.strip().partition(" ")
        if scheme.lower() != "digest":
            return None
        fields = parse_keqv_list([f.strip() for f in parse_http_list(rest) if "=" in f])
        algorithm = fields.get("algorithm")
        qop = fields.get("qop")
        qops = {q.strip().lower() for q in qop.split(",")} if qop is not None else set()
        realm, nonce = fields.get("realm"), fields.get("nonce")
        if (
            realm is None
            or nonce is None
            or (algorithm is not None and algorithm.upper() != "MD5")
            or (qop is not None and "auth" not in qops)
        ):
            return None
        return cls(
            realm=realm,
            nonce=nonce,
            qop_auth=qop is not None,
            opaque=fields.get("opaque"),
            algorithm=algorithm,
        )

    def authorization(
        self, username: str, password: str, method: str, uri: str, *, cnonce: str | None = None
    ) -> str:
        """The ``Authorization`` header value for one request (counts ``nc`` up)."""
        self.nc += 1
        ha1 = _md5_hex(f"{username}:{self.realm}:{password}")
        ha2 = _md5_hex(f"{method}:{uri}")
        parts = [
            f'username="{username}"',
            f'realm="{self.realm}"',
            f'nonce="{self.nonce}"',
            f'uri="{uri}"',
        ]
        if self.qop_auth:
            nc = f"{self.nc:08x}"
            cnonce = cnonce or secrets.token_hex(8)
            response = _md5_hex(f"{ha1}:{self.nonce}:{nc}:{cnonce}:auth:{ha2}")
            parts += [f'response="{response}"', "qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
        else:
            parts.append(f'response="{_md5_hex(f"{ha1}:{self.nonce}:{ha2}")}"')
        if self.opaque is not None:
            parts.append(f'opaque="{self.opaque}"')
        if self.algorithm is not None:
            parts.append(f"algorithm={self.algorithm}")
        return "Digest " + ", ".join(parts)


def _md5_hex(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _json_body(headers: list[tuple[bytes, bytes]], body: bytes) -> Any:
    """Parse a JSON reply read by `exchange` (already decoded, within MAX_BODY_BYTES)."""
    del headers  # `exchange` has undone any Content-Encoding
    return json.loads(body)


class _TunedAntminerWeb:
    """Mixin for ``AntminerModernWebAPI``: Digest answered once per nonce, no httpx per read.

    Why: pyasic's ``send_command`` and ``multicommand`` build a new ``httpx.DigestAuth`` and
    (nearly) a new ``httpx.AsyncClient`` per request, so every request is first answered 401
    and then repeated, and each costs httpx's client machinery (about 0.25 ms of CPU on top
    of the connection). A tuned miner keeps the server's challenge (`DigestChallenge`,
    nonce reused with ``nc`` counting up) and sends its GETs (all reads are GETs) as one raw
    HTTP/1.1 request each with `exchange`; ``multicommand`` also honours ``self.port``
    (pyasic's hard-codes port 80). Replies, error values and the JSON they carry are
    pyasic 0.79.0's. Writes (POST, with parameters) keep pyasic's httpx path with one
    reused ``DigestAuth``.
    """

    _tuned_auth: httpx.DigestAuth | None = None
    _tuned_auth_key: tuple[str, str] | None = None
    _tuned_challenge: DigestChallenge | None = None

    def _digest(self) -> httpx.DigestAuth:
        web: Any = self
        key = (str(web.username), str(web.pwd))
        if self._tuned_auth is None or self._tuned_auth_key != key:
            self._tuned_auth = httpx.DigestAuth(*key)
            self._tuned_auth_key = key
        return self._tuned_auth

    async def _digest_get(self, command: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """GET ``/cgi-bin/<command>.cgi`` answering the Digest challenge; raises httpx errors."""
        web: Any = self
        host, port = str(web.ip), int(web.port)
        uri = f"/cgi-bin/{command}.cgi"
        host_header = host if port == 80 else f"{host}:{port}"  # noqa: PLR2004
        for attempt in range(2):
            lines = [f"GET {uri} HTTP/1.1", f"Host: {host_header}", "Accept: */*"]
            challenge = self._tuned_challenge
            if challenge is not None:
                auth = challenge.authorization(str(web.username), str(web.pwd), "GET", uri)
                lines.append(f"Authorization: {auth}")
            lines.append("Connection: close")
            raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            status, headers, body = await exchange(host, port, raw)
            if status != 401 or attempt == 1:  # noqa: PLR2004
                break
            fresh = DigestChallenge.from_headers(headers)
            if fresh is None:
                break
            self._tuned_challenge = fresh
        return status, headers, body

    async def send_command(
        self,
        command: str,
        ignore_errors: bool = False,  # noqa: ARG002, FBT001, FBT002 — pyasic's signature
        allow_warning: bool = True,  # noqa: ARG002, FBT001, FBT002 — pyasic's signature
        privileged: bool = False,  # noqa: ARG002, FBT001, FBT002 — pyasic's signature
        **parameters: Any,
    ) -> dict[str, Any]:
        """Same results as pyasic's; reads via `_digest_get`, writes via httpx."""
        web: Any = self
        try:
            if parameters:
                url = f"http://{web.ip}:{web.port}/cgi-bin/{command}.cgi"
                async with httpx.AsyncClient(transport=pyasic_settings.transport()) as client:
                    response = await client.post(
                        url,
                        auth=self._digest(),
                        timeout=pyasic_settings.get("api_function_timeout", 3),
                        json=parameters,
                    )
                status, headers, body = response.status_code, response.headers.raw, response.content
            else:
                status, headers, body = await self._digest_get(command)
        except httpx.HTTPError as e:
            return {"success": False, "message": f"HTTP error occurred: {e!s}"}
        if status == 200:  # noqa: PLR2004
            try:
                result: dict[str, Any] = _json_body(headers, body)
            except ValueError:
                return {"success": False, "message": "Failed to decode JSON"}
            return result
        return {"success": False, "message": "Unknown error occurred"}

    async def multicommand(
        self,
        *commands: str,
        ignore_errors: bool = False,  # noqa: ARG002 — pyasic's signature
        allow_warning: bool = True,  # noqa: ARG002 — pyasic's signature
    ) -> dict[str, Any]:
        """Same as pyasic's: every command at once, ``{}`` for a failed one."""
        data: dict[str, Any] = {}
        for item in await asyncio.gather(*(self._tuned_get_one(c) for c in commands)):
            data.update(item)
        data["multicommand"] = True
        return data

    async def _tuned_get_one(self, command: str) -> dict[str, Any]:
        try:
            status, headers, body = await self._digest_get(command)
        except httpx.HTTPError:
            return {command: {}}
        if status == 200:  # noqa: PLR2004
            with contextlib.suppress(ValueError):
                return {command: _json_body(headers, body)}
        return {command: {}}


# --- security (issue 15): gRPC reply cap ----------------------------------------------------
MAX_GRPC_BYTES: Final = MAX_BODY_BYTES
"""Bytes one Braiins OS+ gRPC connection may receive (every reply of a poll's calls, HTTP/2
framing included); beyond it the connection is aborted."""


class _CappedH2Protocol(H2Protocol):  # type: ignore[misc]  # grpclib is untyped here
    """grpclib's HTTP/2 protocol, aborting the connection past `MAX_GRPC_BYTES` received.

    Why: grpclib reads a message whole, whatever length its 5-byte prefix declares (up to
    4 GiB), acknowledging each DATA frame as it buffers it, so HTTP/2 flow control never
    stops a miner that streams one endless message. Counting received bytes here bounds every
    call on the connection, the Login included. The abort makes grpclib end the calls in flight
    with ``StreamTerminatedError``.
    """

    received = 0
    overflowed = False
    _capped_transport: Transport | None = None

    def connection_made(self, transport: Transport) -> None:
        """Remember the transport (to abort it), then grpclib's own set-up."""
        self._capped_transport = transport
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        """Count, and past the cap abort instead of feeding HTTP/2."""
        if self.overflowed:
            return
        self.received += len(data)
        if self.received > MAX_GRPC_BYTES:
            self.overflowed = True
            if self._capped_transport is not None:
                self._capped_transport.abort()
            return
        super().data_received(data)


class CappedChannel(Channel):  # type: ignore[misc]  # grpclib is untyped here
    """A grpclib ``Channel`` whose connection receives at most `MAX_GRPC_BYTES`."""

    def _protocol_factory(self) -> H2Protocol:
        return _CappedH2Protocol(Handler(), self._config, self._h2_config)

    @property
    def overflowed(self) -> bool:
        """Whether the connection was aborted for receiving more than `MAX_GRPC_BYTES`."""
        protocol = self._protocol
        return isinstance(protocol, _CappedH2Protocol) and protocol.overflowed


class _TunedBOSerWeb:
    """Mixin for ``BOSerWebAPI`` (Braiins OS+ gRPC): concurrent calls share one channel.

    Why: pyasic's ``send_command`` opens a new grpclib ``Channel`` per call (a TCP connection,
    the HTTP/2 preface and SETTINGS exchange, then one stream), and a fast poll makes four
    such calls at once. gRPC is built for many streams on one HTTP/2 connection, so a tuned
    miner's concurrent calls share one channel, closed as soon as the last of them finishes
    (or fails, or is cancelled by a poll deadline). Nothing stays open between polls: no
    idle connection per miner, no half-open connection to reuse after a miner lost power,
    and an offline miner is refused exactly as with pyasic. The body is pyasic 0.79.0's with
    the channel handling changed.
    """

    _tuned_channel: Any = None
    _tuned_inflight: int = 0

    def _grpc_channel(self) -> Any:
        if self._tuned_channel is None:
            web: Any = self
            self._tuned_channel = CappedChannel(web.ip, web.port)
        return self._tuned_channel

    def _drop_grpc_channel(self) -> None:
        channel, self._tuned_channel = self._tuned_channel, None
        if channel is not None:
            _close_quietly(channel)

    async def send_command(
        self,
        command: str,
        ignore_errors: bool = False,  # noqa: FBT001, FBT002 — pyasic's signature
        allow_warning: bool = True,  # noqa: ARG002, FBT001, FBT002 — pyasic's signature
        privileged: bool = False,  # noqa: FBT001, FBT002 — pyasic's signature
        **parameters: Any,
    ) -> dict[str, Any]:
        """Same as pyasic's, over the channel shared by the calls in flight."""
        self._tuned_inflight += 1
        try:
            return await self._tuned_send(
                command, ignore_errors=ignore_errors, privileged=privileged, **parameters
            )
        finally:
            self._tuned_inflight -= 1
            if self._tuned_inflight == 0:
                self._drop_grpc_channel()

    async def _tuned_send(
        self, command: str, *, ignore_errors: bool, privileged: bool, **parameters: Any
    ) -> dict[str, Any]:
        web: Any = self
        message = parameters["message"]
        metadata = []
        channel = self._grpc_channel()  # taken before the first await: shared by this batch
        if privileged:
            metadata.append(("authorization", await web.auth()))
        endpoint = getattr(BOSMinerGRPCStub(channel), command)
        if endpoint is None:
            if not ignore_errors:
                msg = f"Command not found - {endpoint}"
                raise APIError(msg)
            return {}
        try:
            try:
                result: dict[str, Any] = (await endpoint(message, metadata=metadata)).to_pydict()
            except GRPCError as e:
                if e.status != Status.UNAUTHENTICATED:
                    raise
                await web._get_auth()  # noqa: SLF001 — pyasic's own re-login
                metadata = [("authorization", await web.auth())]
                result = (await endpoint(message, metadata=metadata)).to_pydict()
        except (GRPCError, ConnectionError, StreamTerminatedError) as e:
            if channel.overflowed:  # security (issue 15): not an APIError, so reported
                msg = f"gRPC replies over {MAX_GRPC_BYTES} bytes, cut off"
                raise CollectorError(FailureReason.OVERSIZED, msg) from e
            if isinstance(e, StreamTerminatedError):
                raise  # as with pyasic's own send_command
            msg = f"gRPC command failed - {endpoint}"
            raise APIError(msg) from e
        return result


def _close_quietly(channel: Any) -> None:
    """Close a grpclib channel; its event loop may already be gone."""
    with contextlib.suppress(Exception):
        channel.close()


_tuned_classes: dict[tuple[type, type], type] = {}


def _tuned_class(mixin: type, base: type) -> type:
    """A cached subclass ``Tuned<Base>`` of ``base`` carrying ``mixin``'s attributes.

    The attributes of ``mixin`` and of its own bases are copied into a single-base subclass
    (rather than using ``mixin`` as a second base) so that the instance layout stays the
    base's own, which ``__class__`` assignment requires. The mixins therefore never call
    ``super()``.
    """
    key = (mixin, base)
    cls = _tuned_classes.get(key)
    if cls is None:
        namespace: dict[str, Any] = {}
        for klass in reversed(mixin.__mro__[:-1]):  # the mixin's own bases too, not object
            namespace |= {k: v for k, v in vars(klass).items() if not k.startswith("__")}
        namespace |= {"__module__": __name__, "__doc__": mixin.__doc__, "_tuning": mixin}
        cls = type(f"Tuned{base.__name__}", (base,), namespace)
        _tuned_classes[key] = cls
    return cls


def tuning_of(obj: object) -> type | None:
    """The mixin `tune` applied to ``obj``'s class, or None if it is pyasic's own class."""
    mixin: type | None = getattr(type(obj), "_tuning", None)
    return mixin


def _retype(obj: Any, mixin: type) -> None:
    """Give ``obj`` the tuned subclass of its class (no-op if it is already tuned).

    Why swap the class of the existing object rather than build a new one: pyasic's miner
    classes create their API objects in ``__init__`` and callers may already have set
    credentials or ports on them; keeping the object keeps all of that.
    """
    if tuning_of(obj) is None:
        obj.__class__ = _tuned_class(mixin, type(obj))


def tune(miner: Any) -> None:
    """Apply the per-miner adaptations to a pyasic miner object (idempotent, no I/O).

    - RPC API (4028): per-class command cache; for classes using pyasic's generic
      ``multicommand``, remembered join rejection and the single-command fix.
    - Stock Antminer web API: Digest challenge reused (nc counting up), reads as raw GETs.
    - Braiins OS+ gRPC: the calls of one poll share one channel, closed after them.

    Other families are left as pyasic builds them (their web requests already go through
    `install`'s transport). The first call also runs `install` (process-wide, idempotent),
    so one call per miner object is all a caller needs. Safe to call again.
    """
    install()
    rpc = getattr(miner, "rpc", None)
    if isinstance(rpc, BaseMinerRPCAPI):
        if isinstance(rpc, BTMinerV3RPCAPI):  # framed replies on 4433, not read to EOF
            _retype(rpc, _TunedRPCV3)
        elif type(rpc).multicommand is BaseMinerRPCAPI.multicommand:
            _retype(rpc, _TunedRPC)
        else:
            _retype(rpc, _TunedRPCCommandsOnly)
    web = getattr(miner, "web", None)
    if isinstance(web, AntminerModernWebAPI):
        _retype(web, _TunedAntminerWeb)
    elif isinstance(web, BOSerWebAPI):
        _retype(web, _TunedBOSerWeb)
