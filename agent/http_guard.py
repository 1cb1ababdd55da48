"""What the HTTP front bounds for every client: connections, header bytes, time, log lines.

The front accepts connections itself (:class:`GuardedServer`) rather than through an aiohttp
site, so every limit applies before aiohttp parses a byte, and to TLS handshakes too:

* connections: at most ``max_connections`` open at once, ``max_per_client`` of them from one
  client (an IPv4 address, or an IPv6 /64); one over the per-client limit is closed at once;
  when all are taken, a new one displaces the connection that has waited longest for a request
  (never one being answered), so many attackers cannot keep a scraper out;
* time: a TLS handshake gets ``HANDSHAKE_TIMEOUT_S``; a request's line and headers must arrive
  within ``HEADER_TIMEOUT_S`` of its first byte (of the connection's start for the first one),
  its answer within ``RESPONSE_TIMEOUT_S``, and an idle keep-alive connection is closed after
  ``IDLE_TIMEOUT_S``;
* bytes: at most ``MAX_HEADER_BYTES`` arrive before a request is handled (aiohttp itself caps
  one line and one header at ``MAX_LINE_BYTES``, and the count at ``MAX_HEADERS``).

Each deadline is one timer per connection, re-armed when the connection changes phase (the
:func:`phase_middleware` tells it when a request starts and ends). What a client is refused is
logged through :class:`ThrottledLog`: one line per event and client per minute, with the count of
the lines left out, so one client cannot flood the journal (and push the agent's alarm lines out
of journald's rate limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

    from aiohttp.typedefs import Handler, Middleware
    from aiohttp.web_protocol import RequestHandler

log = structlog.get_logger("agent.http_front")

MAX_CONNECTIONS = 256
"""Default ``http.max_connections``: open connections, all clients together."""
MAX_CONNECTIONS_PER_CLIENT = 32
"""Default ``http.max_connections_per_client`` (one IPv4 address, or one IPv6 /64)."""
HEADER_TIMEOUT_S = 10.0
"""A request line and its headers must arrive within this (Go's ReadHeaderTimeout)."""
RESPONSE_TIMEOUT_S = 60.0
"""A request must be answered (and its body taken by the client) within this."""
IDLE_TIMEOUT_S = 75.0
"""An idle keep-alive connection is closed after this (nginx's and Go's usual 75 s)."""
HANDSHAKE_TIMEOUT_S = 10.0
"""A TLS handshake must complete within this."""
MAX_HEADER_BYTES = 32 * 1024
"""Bytes a client may send before its request is handled (request line and headers)."""
MAX_LINE_BYTES = 8190
"""aiohttp's limit on the request line and on one header line."""
MAX_HEADERS = 64
"""aiohttp's limit on the number of header lines."""
LOG_WINDOW_S = 60.0
""":class:`ThrottledLog` writes one line per event and client per window."""
LOG_MAX_CLIENTS = 4096
"""Clients :class:`ThrottledLog` keeps counts for (the least recently seen go first)."""
LOG_MAX_LINES = 100
"""Lines :class:`ThrottledLog` writes per window, all clients together; the rest are counted."""

# aiohttp's RequestHandler settings: its own keep-alive timer only backs ours up.
HANDLER_ARGS: dict[str, Any] = {
    "keepalive_timeout": IDLE_TIMEOUT_S + HEADER_TIMEOUT_S,
    "max_line_size": MAX_LINE_BYTES,
    "max_field_size": MAX_LINE_BYTES,
    "max_headers": MAX_HEADERS,
    "handler_cancellation": True,  # a request whose client left stops (and leaves any queue)
}


def client_key(peer: Any) -> str:
    """Who a peer address counts as: its IPv4 address, its IPv6 /64, or ``local``."""
    if not isinstance(peer, tuple) or not peer:
        return "local"
    try:
        address = ipaddress.ip_address(str(peer[0]).split("%")[0])
    except ValueError:
        return str(peer[0])
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


# ---------------------------------------------------------------------------------- logging


@dataclass(slots=True)
class _Window:
    since: float
    left_out: int = 0


class ThrottledLog:
    """Log lines aggregated per (event, client): one per window, the rest counted.

    The first occurrence is logged at once; later ones within ``window_s`` are counted and
    reported as ``left_out=N`` on the next line for that client (or by :meth:`flush`, which the
    front calls every window). At most ``max_lines`` lines per window in all; beyond that, only
    counts (``http_log_lines_left_out``).
    """

    def __init__(
        self,
        *,
        window_s: float = LOG_WINDOW_S,
        max_clients: int = LOG_MAX_CLIENTS,
        max_lines: int = LOG_MAX_LINES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """An empty log; nothing is written until :meth:`note`."""
        self._window_s = window_s
        self._max_clients = max_clients
        self._max_lines = max_lines
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}
        self._lines = 0
        self._lines_since = clock()
        self._dropped = 0
        #: Lines written so far (for tests and benches).
        self.written = 0

    def note(self, event: str, client: str, *, level: str = "info", **fields: Any) -> None:
        """Record one occurrence of ``event`` for ``client``; log it unless throttled."""
        now = self._clock()
        key = (event, client)
        window = self._windows.pop(key, None)
        if window is not None and now - window.since < self._window_s:
            window.left_out += 1
            self._windows[key] = window  # most recently seen last
            return
        left_out = window.left_out if window is not None else 0
        self._windows[key] = _Window(now)
        while len(self._windows) > self._max_clients:
            (old_event, old_client), old = next(iter(self._windows.items()))
            del self._windows[old_event, old_client]
            if old.left_out:
                self._write(old_event, old_client, "info", {"left_out": old.left_out}, now)
        self._write(event, client, level, {**fields, "left_out": left_out}, now)

    def flush(self, *, everything: bool = False) -> None:
        """Report the counts of windows that ended (every window, or all of them at exit)."""
        now = self._clock()
        for (event, client), window in list(self._windows.items()):
            if not everything and now - window.since < self._window_s:
                continue
            del self._windows[event, client]
            if window.left_out:
                self._write(event, client, "info", {"left_out": window.left_out}, now)

    def _write(
        self, event: str, client: str, level: str, fields: dict[str, Any], now: float
    ) -> None:
        if now - self._lines_since >= self._window_s:
            if self._dropped:
                log.warning("http_log_lines_left_out", lines=self._dropped, window_s=self._window_s)
            self._lines, self._lines_since, self._dropped = 0, now, 0
        if self._lines >= self._max_lines:
            self._dropped += 1
            return
        self._lines += 1
        self.written += 1
        getattr(log, level)(event, client=client, **fields)


# ---------------------------------------------------------------------------------- connections


class ConnectionLimits:
    """Counts open connections, in all and per client."""

    def __init__(self, *, total: int, per_client: int) -> None:
        """Allow ``total`` connections, ``per_client`` of them from one client."""
        self.total = total
        self.per_client = per_client
        self.open = 0
        self._by_client: dict[str, int] = {}

    def admit(self, client: str) -> str | None:
        """Count a new connection from ``client``; or the limit it is over (not counted)."""
        if self.open >= self.total:
            return "max_connections"
        count = self._by_client.get(client, 0)
        if count >= self.per_client:
            return "max_connections_per_client"
        self.open += 1
        self._by_client[client] = count + 1
        return None

    def release(self, client: str) -> None:
        """A connection from ``client`` closed."""
        self.open -= 1
        count = self._by_client.pop(client, 0) - 1
        if count > 0:
            self._by_client[client] = count


class _Slot:
    """One admitted connection's place in the limits, given back exactly once."""

    __slots__ = ("_limits", "client", "released")

    def __init__(self, limits: ConnectionLimits, client: str) -> None:
        self._limits = limits
        self.client = client
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._limits.release(self.client)


class _GuardedProtocol(asyncio.Protocol):
    """aiohttp's RequestHandler behind a deadline timer and a header-byte budget."""

    def __init__(self, server: GuardedServer, handler: RequestHandler, slot: _Slot) -> None:
        self._server = server
        self._handler = handler
        self._slot = slot
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._phase = "headers"
        self._phase_since = time.monotonic()
        self._lost = False
        self._received = 0  # bytes since the current request was handled (or the idle phase)

    # -- deadlines

    def waiting_since(self) -> float | None:
        """When this connection began to wait for a request (headers or idle), else None."""
        return self._phase_since if self._phase in {"headers", "idle"} else None

    def evict(self) -> None:
        """Close this waiting connection now, to make room (its slot is free at once)."""
        self._server.log.note("http_connection_evicted", self._slot.client, phase=self._phase)
        self._slot.release()
        if self._transport is not None:
            self._transport.abort()

    def _arm(self, phase: str, timeout_s: float) -> None:
        if phase != self._phase or phase == "response":
            self._phase_since = time.monotonic()
        self._phase = phase
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lost:
            return
        self._timer = asyncio.get_running_loop().call_later(timeout_s, self._expired)

    def _expired(self) -> None:
        self._timer = None
        if self._phase != "idle":
            self._server.log.note(
                "http_connection_timed_out", self._slot.client, level="warning", phase=self._phase
            )
        self._close()

    def _close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def request_started(self) -> None:
        """The request's headers were read: it now has ``RESPONSE_TIMEOUT_S`` to be answered."""
        self._received = 0
        self._arm("response", self._server.response_timeout_s)

    def request_finished(self) -> None:
        """The answer was written: idle until the next request's first byte."""
        self._received = 0
        self._arm("idle", self._server.idle_timeout_s)

    # -- asyncio.Protocol, passed on to the handler

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a stream transport here
        self._server.connected(self._handler, self)
        self._arm("headers", self._server.header_timeout_s)
        self._handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._phase == "idle":
            self._arm("headers", self._server.header_timeout_s)
        self._received += len(data)
        if self._received > self._server.max_header_bytes:
            self._server.log.note(
                "http_headers_too_large", self._slot.client, level="warning", bytes=self._received
            )
            if self._transport is not None:
                self._transport.abort()
            return
        self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        self._handler.eof_received()
        return None  # the transport closes: aiohttp has no half-closed connections

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport = None
        self._slot.release()
        self._server.disconnected(self._handler)
        self._handler.connection_lost(exc)


class GuardedServer:
    """Accepts on ``listener`` within the limits; hands each connection to an aiohttp server."""

    def __init__(
        self,
        listener: socket.socket,
        *,
        ssl_context: ssl.SSLContext | None = None,
        limits: ConnectionLimits | None = None,
        throttled_log: ThrottledLog | None = None,
        header_timeout_s: float = HEADER_TIMEOUT_S,
        response_timeout_s: float = RESPONSE_TIMEOUT_S,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        max_header_bytes: int = MAX_HEADER_BYTES,
    ) -> None:
        """Nothing is accepted until :meth:`serve`."""
        self._server: web.Server | None = None
        self._listener = listener
        self._ssl = ssl_context
        self.limits = limits or ConnectionLimits(
            total=MAX_CONNECTIONS, per_client=MAX_CONNECTIONS_PER_CLIENT
        )
        self.log = throttled_log or ThrottledLog()
        self.header_timeout_s = header_timeout_s
        self.response_timeout_s = response_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.max_header_bytes = max_header_bytes
        self._connections: dict[RequestHandler, _GuardedProtocol] = {}
        self._opening: dict[asyncio.Task[None], tuple[float, _Slot]] = {}

    def connected(self, handler: RequestHandler, protocol: _GuardedProtocol) -> None:
        """``protocol`` guards ``handler`` (called on connection_made)."""
        self._connections[handler] = protocol

    def disconnected(self, handler: RequestHandler) -> None:
        """``handler``'s connection closed."""
        self._connections.pop(handler, None)

    def guard_of(self, request: web.BaseRequest) -> _GuardedProtocol | None:
        """The guard of ``request``'s connection (None for a request it did not accept)."""
        return self._connections.get(request.protocol)

    async def serve(self, server: web.Server) -> None:
        """Accept connections for aiohttp's ``server`` (``AppRunner.server``) until cancelled."""
        self._server = server
        loop = asyncio.get_running_loop()
        self._listener.setblocking(False)  # noqa: FBT003 - socket's own API
        try:
            while True:
                try:
                    sock, peer = await loop.sock_accept(self._listener)
                except OSError as exc:  # EMFILE, ENOBUFS: wait for connections to close
                    log.warning("http_accept_failed", error=str(exc))
                    await asyncio.sleep(0.1)
                    continue
                client = client_key(peer)
                refused = self.limits.admit(client)
                if refused == "max_connections" and self._evict_longest_waiting():
                    refused = self.limits.admit(client)
                if refused is not None:
                    sock.close()
                    self.log.note("http_connection_refused", client, level="warning", limit=refused)
                    continue
                slot = _Slot(self.limits, client)
                task = asyncio.create_task(self._open(sock, slot))
                self._opening[task] = (time.monotonic(), slot)
                task.add_done_callback(self._opened)
        finally:
            for task in list(self._opening):
                task.cancel()

    def _opened(self, task: asyncio.Task[None]) -> None:
        self._opening.pop(task, None)

    def _evict_longest_waiting(self) -> bool:
        """Close the connection that has waited longest for a request; False if none waits.

        With every slot taken, a new client displaces a connection sending nothing (a slow
        or half-sent request, an idle keep-alive), never one whose request is being answered:
        attackers holding slots from many addresses cannot keep a scraper out.
        """
        oldest: Callable[[], None] | None = None
        oldest_since = 0.0
        for protocol in self._connections.values():
            since = protocol.waiting_since()
            if since is not None and (oldest is None or since < oldest_since):
                oldest, oldest_since = protocol.evict, since
        for task, (since, slot) in self._opening.items():  # TLS handshakes under way
            if oldest is None or since < oldest_since:
                oldest, oldest_since = partial(self._evict_opening, task, slot), since
        if oldest is None:
            return False
        oldest()
        return True

    def _evict_opening(self, task: asyncio.Task[None], slot: _Slot) -> None:
        self.log.note("http_connection_evicted", slot.client, phase="handshake")
        slot.release()
        task.cancel()

    async def _open(self, sock: socket.socket, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()

        server = self._server
        assert server is not None

        def protocol() -> _GuardedProtocol:
            return _GuardedProtocol(self, server(), slot)

        try:
            await loop.connect_accepted_socket(
                protocol,
                sock,
                ssl=self._ssl,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S if self._ssl is not None else None,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            # A failed or too slow handshake: the handler never saw the connection.
            slot.release()
            with contextlib.suppress(OSError):
                sock.close()
            self.log.note("http_handshake_failed", slot.client, error=type(exc).__name__)
        except asyncio.CancelledError:
            slot.release()
            with contextlib.suppress(OSError):
                sock.close()
            raise


def phase_middleware(server: GuardedServer) -> Middleware:
    """The outermost middleware: tells the connection's guard when a request starts and ends."""

    @web.middleware
    async def phases(request: web.Request, handler: Handler) -> web.StreamResponse:
        guard = server.guard_of(request)
        if guard is None:
            return await handler(request)
        guard.request_started()
        try:
            return await handler(request)
        finally:
            guard.request_finished()

    return phases
