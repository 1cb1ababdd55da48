"""The public HTTP front: a child process that serves the agent's port (TLS, basic auth, /metrics).

Why a process: the polling loop is busy (2,000 miners at 15 s take ~75 % of a core) and the
threads of one CPython process share one GIL and one garbage collector, so scrapes served from a
thread of the agent delay polls, however little Python each one runs. The front answers an
allow-list of exact paths (``PATHS``: /metrics, /healthz, /readyz, /api/v1/fleet,
/api/v1/alarms, /api/v1/maintenance, the site page /; anything else is its own 404;
``WRITE_PATHS`` take a POST, passed to the agent uncached, with the basic-auth user as
``X-Altiwatch-User``, after which the cached reads are fetched anew), each from a copy fetched at
most ``MAX_AGE_S`` before, from the agent over a private Unix socket (concurrent requests share
one fetch), and gzips it itself; 100 clients scraping back to back cost the agent one answer a
second per path.
It runs at the lowest CPU priority (``FRONT_NICE``): when the cores are short, polls come first
and scrapes wait. Connections, header bytes and time per client are bounded by
`agent.http_guard`; bcrypt work by `agent.web_security`.

Parent side, :class:`HttpFront` (used by ``AgentService``): binds the public socket itself (so a
port in use fails start-up in the agent, as before), serves the agent's :class:`HttpApi` on a
Unix socket in a private 0700 directory, spawns ``python -m agent.http_front`` with the listening
socket inherited, its settings on stdin and a minimal environment (``front_environment``: no
``ALTIWATCH_*`` secrets), restarts it when it exits (``http_front_exited``), replaces it when the
web config changes (:meth:`HttpFront.reload`, on SIGHUP), and stops it by closing that stdin,
with SIGKILL after ``STOP_DEADLINE_S``. The listening socket stays open in the agent meanwhile,
so connections wait in its backlog rather than being refused.

Child side, :func:`main`: reads :class:`FrontSettings`, lowers its priority, builds the same
middlewares and TLS context from the exporter-toolkit web config (``agent.web_security``),
serves each allowed path from its cache (nothing is passed through), and exits when its
stdin reaches EOF: the agent stopped it, or is gone, even by SIGKILL. It ignores SIGTERM and
SIGINT, which systemd and a terminal send to every process of the agent: the agent stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import aiohttp
import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError
from zlib_ng import gzip_ng

from agent import event_loop
from agent.event_loop import EventLoop
from agent.http_api import (
    AUTH_USER_KEY,
    MAX_WRITE_BYTES,
    USER_HEADER,
    accepts_gzip,
    send_chunks,
)
from agent.http_guard import (
    HANDLER_ARGS,
    LOG_WINDOW_S,
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_CLIENT,
    ConnectionLimits,
    GuardedServer,
    ThrottledLog,
    phase_middleware,
)
from agent.logging_setup import LogFormat, LogLevel
from agent.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from aiohttp.typedefs import Middleware

    from agent.http_api import HttpApi

log = structlog.get_logger("agent.http_front")  # not "__main__" when run with -m

MAX_AGE_S = 1.0
"""A scrape gets a copy fetched at most this long ago (the agent keeps its own: 1 s too)."""
FRONT_NICE = 19
"""The front's niceness: scrapes get the CPU that polling leaves (nice 19 still never starves)."""
UPSTREAM_TIMEOUT_S = 10.0
"""The agent answers /metrics within 5 s even when its polling loop is stuck; margin on top."""
GZIP_LEVEL = 2
"""zlib-ng's level 2: a 27 MB exposition (10,000 miners) in 30 ms and 2.2 MB, where zlib's
fastest level takes 59 ms for 2.4 MB. Every Prometheus scrape (15-30 s apart) finds a copy older
than ``MAX_AGE_S``, so it waits for one fetch and one compression."""
STOP_DEADLINE_S = 5.0
RESTART_DELAYS_S = (0.2, 1.0, 5.0)
"""Delays before restarting an exited front: the first restart is quick, a crash loop is not."""
UPSTREAM_HOST = "http://altiwatch"
"""The host part of upstream URLs (the Unix socket decides where they go)."""
PATHS = (
    "/metrics",
    "/healthz",
    "/readyz",
    "/api/v1/fleet",
    "/api/v1/alarms",
    "/api/v1/maintenance",
    "/",
)
"""The only paths the front answers with GET (exactly; anything else is a 404 from the front)."""
WRITE_PATHS = ("/api/v1/maintenance",)
"""The only paths the front passes a POST on for (never cached)."""
_MUST_SUCCEED = frozenset({"/metrics"})  # another status is an agent failure: 503, logged
_GZIP_MIN_BYTES = 1024  # "ok\n" is not worth a gzip member


class FrontSettings(BaseModel):
    """What the agent tells the front on its stdin (one JSON line)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen_fd: int
    upstream_socket: str
    web_config_file: Path | None = None
    max_age_s: float = MAX_AGE_S
    nice: int = FRONT_NICE
    log_format: LogFormat = "auto"
    log_level: LogLevel = "info"
    event_loop: EventLoop = "uvloop"
    max_connections: int = MAX_CONNECTIONS
    max_connections_per_client: int = MAX_CONNECTIONS_PER_CLIENT


# ---------------------------------------------------------------------------------- the cache


class Reply(NamedTuple):
    """What the agent answered for one path."""

    status: int
    content_type: str
    body: bytes


@dataclass(slots=True)
class CachedExposition:
    """One fetched answer (an exposition, or JSON); its gzip form is made once, on demand."""

    plain: bytes
    fetched_at: float
    status: int = 200
    content_type: str = CONTENT_TYPE
    _gzipped: asyncio.Future[bytes] | None = field(default=None, repr=False)

    async def gzipped(self) -> bytes:
        """The body as one gzip member (deflated in a worker thread: zlib-ng drops the GIL)."""
        if self._gzipped is None:
            self._gzipped = asyncio.ensure_future(
                asyncio.to_thread(gzip_ng.compress, self.plain, GZIP_LEVEL, mtime=0)
            )
        return await asyncio.shield(self._gzipped)


class UpstreamError(Exception):
    """The agent did not answer usefully."""


class ExpositionCache:
    """The latest answer for one path, fetched anew when older than ``max_age_s``; one at a time."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[bytes | Reply]],
        *,
        max_age_s: float = MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``fetch`` returns the agent's answer (bytes: a 200 exposition), or UpstreamError."""
        self._fetch = fetch
        self._max_age_s = max_age_s
        self._clock = clock
        self._latest: CachedExposition | None = None
        self._pending: asyncio.Future[CachedExposition] | None = None
        #: Fetches made so far (concurrent requests share one).
        self.fetches = 0

    def invalidate(self) -> None:
        """Forget the latest answer: the next request fetches anew (after a write)."""
        self._latest = None

    async def get(self) -> CachedExposition:
        """An answer at most ``max_age_s`` old; :class:`UpstreamError` if none can be had."""
        latest = self._latest
        if latest is not None and self._clock() - latest.fetched_at < self._max_age_s:
            return latest
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._refresh())
        return await asyncio.shield(self._pending)

    async def _refresh(self) -> CachedExposition:
        try:
            self.fetches += 1
            started = self._clock()
            got = await self._fetch()
            if isinstance(got, Reply):
                self._latest = CachedExposition(got.body, started, got.status, got.content_type)
            else:
                self._latest = CachedExposition(got, started)
            return self._latest
        finally:
            self._pending = None


# ---------------------------------------------------------------------------------- the child


class Front:
    """The front's aiohttp application: an allow-list of paths, each served from its cache.

    ``PATHS`` are the only paths answered (GET and HEAD); anything else, ``/./metrics`` and
    ``/%2E/metrics`` included, is a 404 from the front itself, never seen by the agent. Each
    path's answer is fetched from the agent at most once per ``max_age_s`` whatever the number
    of clients, and shared by all of them (gzip made once per answer).
    """

    def __init__(
        self,
        upstream: aiohttp.ClientSession,
        *,
        max_age_s: float = MAX_AGE_S,
        middlewares: tuple[Middleware, ...] = (),
    ) -> None:
        """Serve through ``upstream`` (a session bound to the agent's Unix socket)."""
        self._upstream = upstream
        self.caches = {
            path: ExpositionCache(partial(self._fetch, path), max_age_s=max_age_s) for path in PATHS
        }
        self.cache = self.caches["/metrics"]
        self.app = web.Application(middlewares=list(middlewares))
        self.app.add_routes([web.get(path, self.cached) for path in PATHS])
        self.app.add_routes([web.post(path, self.write) for path in WRITE_PATHS])

    async def _fetch(self, path: str) -> Reply:
        """The agent's answer for ``path``; one log line per failed fetch, not per request."""
        headers = {"Accept-Encoding": "identity"}
        try:
            async with self._upstream.get(
                f"{UPSTREAM_HOST}{path}", headers=headers, allow_redirects=False
            ) as resp:
                if resp.status == 200 or path not in _MUST_SUCCEED:  # noqa: PLR2004 - HTTP OK
                    content_type = resp.headers.get("Content-Type", "text/plain")
                    return Reply(resp.status, content_type, await resp.read())
                error = f"agent answered {path} with {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"agent not answering: {exc!r}"
        log.warning("http_front_upstream_failed", path=path, error=error)
        raise UpstreamError(error)

    async def write(self, request: web.Request) -> web.StreamResponse:
        """Pass a POST (at most ``MAX_WRITE_BYTES``) to the agent; the reads are fetched anew."""
        if (request.content_length or 0) > MAX_WRITE_BYTES:
            return web.Response(status=413, text="body too large\n")
        body = await request.content.read(MAX_WRITE_BYTES + 1)
        if len(body) > MAX_WRITE_BYTES:
            return web.Response(status=413, text="body too large\n")
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        user = request.get(AUTH_USER_KEY)
        if isinstance(user, str):
            headers[USER_HEADER] = user
        try:
            async with self._upstream.post(
                f"{UPSTREAM_HOST}{request.path}",
                data=body,
                headers=headers,
                allow_redirects=False,
            ) as resp:
                reply = Reply(
                    resp.status, resp.headers.get("Content-Type", "text/plain"), await resp.read()
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("http_front_upstream_failed", path=request.path, error=repr(exc))
            return web.Response(status=503, text="agent not answering\n")
        finally:
            for cache in self.caches.values():
                cache.invalidate()
        return web.Response(
            status=reply.status, body=reply.body, headers={"Content-Type": reply.content_type}
        )

    async def cached(self, request: web.Request) -> web.StreamResponse:
        """The path's cached answer, gzip-compressed when the client accepts it; 503 without one."""
        try:
            reply = await self.caches[request.path].get()
        except UpstreamError:
            return web.Response(status=503, text="agent not answering\n")
        headers = {"Content-Type": reply.content_type, "Vary": "Accept-Encoding"}
        body = reply.plain
        if len(body) >= _GZIP_MIN_BYTES and accepts_gzip(
            request.headers.get("Accept-Encoding", "")
        ):
            body = await reply.gzipped()
            headers["Content-Encoding"] = "gzip"
        return await send_chunks(request, (body,), headers, status=reply.status)


async def _stdin_closed() -> None:
    """Return once stdin reaches EOF (the agent closed it, or died)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def serve(settings: FrontSettings) -> None:
    """Serve on the inherited socket, within `agent.http_guard`'s limits, until stdin closes."""
    from agent import web_security  # noqa: PLC0415 - bcrypt and TLS only in the front

    throttled = ThrottledLog()
    listener = socket.socket(fileno=settings.listen_fd)
    limits = ConnectionLimits(
        total=settings.max_connections, per_client=settings.max_connections_per_client
    )
    middlewares: tuple[Middleware, ...] = ()
    ssl_context = None
    if settings.web_config_file is not None:
        web_cfg = web_security.load_web_config(settings.web_config_file)
        middlewares = tuple(web_security.web_security_middlewares(web_cfg, throttled_log=throttled))
        ssl_context = web_security.ssl_context(web_cfg)
    guarded = GuardedServer(
        listener, ssl_context=ssl_context, limits=limits, throttled_log=throttled
    )
    connector = aiohttp.UnixConnector(path=settings.upstream_socket, limit=20)
    timeout = aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as upstream:
        front = Front(
            upstream,
            max_age_s=settings.max_age_s,
            middlewares=(phase_middleware(guarded), *middlewares),
        )
        runner = web.AppRunner(front.app, access_log=None, handle_signals=False, **HANDLER_ARGS)
        await runner.setup()
        assert runner.server is not None
        try:
            async with asyncio.TaskGroup() as tg:
                accepting = tg.create_task(guarded.serve(runner.server), name="http_accept")
                flushing = tg.create_task(_flush_every(throttled), name="http_log_flush")
                log.info(
                    "http_front_serving",
                    pid=os.getpid(),
                    nice=os.nice(0),
                    loop=event_loop.running(),
                    max_connections=limits.total,
                    max_connections_per_client=limits.per_client,
                )
                await _stdin_closed()
                accepting.cancel()
                flushing.cancel()
        finally:
            await runner.cleanup()
            throttled.flush(everything=True)


async def _flush_every(throttled: ThrottledLog) -> None:
    while True:
        await asyncio.sleep(LOG_WINDOW_S)
        throttled.flush()


def main() -> int:
    """Entry point of the child: settings from stdin's first line, then :func:`serve`."""
    from agent.logging_setup import configure_logging  # noqa: PLC0415 - child only

    line = sys.stdin.buffer.readline()
    try:
        settings = FrontSettings.model_validate_json(line)
    except ValidationError as exc:
        configure_logging()
        log.error("http_front_bad_settings", error=str(exc))  # noqa: TRY400 - no traceback needed
        return 78
    configure_logging(settings.log_format, settings.log_level)
    # The front lives exactly as long as the agent's pipe to it: systemd's SIGTERM to the whole
    # cgroup, or Ctrl-C to the terminal's process group, stops the agent, which then closes it.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    structlog.contextvars.bind_contextvars(component="http_front")
    try:
        os.nice(settings.nice)
    except OSError as exc:  # e.g. a seccomp filter without setpriority
        log.warning("http_front_nice_failed", nice=settings.nice, error=str(exc))
    event_loop.run(serve(settings), settings.event_loop)
    return 0


# ---------------------------------------------------------------------------------- the parent


def bind_listener(host: str, port: int) -> socket.socket:
    """The public listening socket (``port`` 0 = any free port); the front gets it by pass_fds."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024)


class HttpFront:
    """Runs the front for ``api``: public socket, private Unix socket, supervised child."""

    def __init__(
        self,
        api: HttpApi,
        *,
        host: str,
        port: int,
        web_config_file: Path | None,
        log_format: LogFormat = "auto",
        log_level: LogLevel = "info",
        event_loop: EventLoop = "uvloop",
        nice: int = FRONT_NICE,
        max_connections: int = MAX_CONNECTIONS,
        max_connections_per_client: int = MAX_CONNECTIONS_PER_CLIENT,
        on_restart: Callable[[], object] = lambda: None,
    ) -> None:
        """Nothing is bound or spawned until :meth:`start`; ``on_restart`` counts restarts."""
        self.api = api
        self._host, self._port = host, port
        self._web_config_file = web_config_file
        self._limits = (max_connections, max_connections_per_client)
        self._swap = asyncio.Lock()  # a reload's stop-then-spawn, against run()'s restarts
        self._log = (log_format, log_level)
        self._event_loop: EventLoop = event_loop
        self._nice = nice
        self._on_restart = on_restart
        self._listener: socket.socket | None = None
        self._dir: Path | None = None
        self._proc: asyncio.subprocess.Process | None = None
        #: Times the front exited and was started again.
        self.restarts = 0
        self.port: int | None = None

    @property
    def pid(self) -> int | None:
        """The running front's process id."""
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        """Bind the public port, serve the agent's API on the Unix socket, start the front."""
        self._listener = bind_listener(self._host, self._port)
        self.port = int(self._listener.getsockname()[1])
        self._dir = Path(tempfile.mkdtemp(prefix="altiwatch-http-", dir=_runtime_dir()))
        await self.api.start_unix(str(self._dir / "agent.sock"))
        await self._spawn()

    def _settings(self) -> FrontSettings:
        assert self._listener is not None
        assert self._dir is not None
        return FrontSettings(
            listen_fd=self._listener.fileno(),
            upstream_socket=str(self._dir / "agent.sock"),
            web_config_file=self._web_config_file,
            nice=self._nice,
            log_format=self._log[0],
            log_level=self._log[1],
            event_loop=self._event_loop,
            max_connections=self._limits[0],
            max_connections_per_client=self._limits[1],
        )

    async def _spawn(self) -> None:
        settings = self._settings()
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent.http_front",
            stdin=asyncio.subprocess.PIPE,
            pass_fds=(settings.listen_fd,),
            env=front_environment(os.environ),
        )
        assert self._proc.stdin is not None
        self._proc.stdin.write(settings.model_dump_json().encode() + b"\n")
        await self._proc.stdin.drain()

    async def run(self) -> None:
        """Restart the front whenever it exits, until cancelled (then :meth:`stop` it)."""
        while True:
            proc = self._proc
            assert proc is not None, "start() first"
            code = await proc.wait()
            async with self._swap:
                if self._proc is not proc:
                    continue  # replaced by reload()
                delay = RESTART_DELAYS_S[min(self.restarts, len(RESTART_DELAYS_S) - 1)]
                log.error("http_front_exited", code=code, restart_in_s=delay)
                await asyncio.sleep(delay)
                self.restarts += 1
                self._on_restart()
                await self._spawn()

    async def reload(
        self,
        *,
        web_config_file: Path | None,
        max_connections: int = MAX_CONNECTIONS,
        max_connections_per_client: int = MAX_CONNECTIONS_PER_CLIENT,
    ) -> None:
        """Replace the front by one with these settings (the web config read anew).

        The old front is stopped first (it finishes the requests under way), so once this
        returns no request is answered under the old web config; connections arriving in
        between wait in the listening socket's backlog.
        """
        async with self._swap:
            self._web_config_file = web_config_file
            self._limits = (max_connections, max_connections_per_client)
            await _stop_process(self._proc)
            await self._spawn()
        log.info("http_front_reloaded", front_pid=self.pid)

    async def stop(self) -> None:
        """Stop the front (close its stdin; SIGKILL after the deadline), the API, the sockets."""
        proc, self._proc = self._proc, None
        await _stop_process(proc)
        await self.api.stop()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


async def _stop_process(proc: asyncio.subprocess.Process | None) -> None:
    """Close the front's stdin and wait for it to exit; SIGKILL after ``STOP_DEADLINE_S``."""
    if proc is None or proc.returncode is not None:
        return
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        async with asyncio.timeout(STOP_DEADLINE_S):
            await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


_FRONT_ENV = frozenset({"PATH", "LANG", "LANGUAGE", "TZ", "JOURNAL_STREAM", "SYSTEMD_EXEC_PID"})
_FRONT_ENV_PREFIXES = ("LC_", "PYTHON", "COVERAGE_")


def front_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The front's environment: the locale, Python's and logging's variables, nothing else.

    In particular no ``ALTIWATCH_*`` override (``ALTIWATCH_MQTT__PASSWORD``), no
    ``CREDENTIALS_DIRECTORY`` and no ``NOTIFY_SOCKET``: the front needs none of them, and its
    ``/proc/<pid>/environ`` is then free of the agent's secrets.
    """
    return {
        name: value
        for name, value in environ.items()
        if name in _FRONT_ENV or name.startswith(_FRONT_ENV_PREFIXES)
    }


def _runtime_dir() -> str | None:
    """The unit's ``RuntimeDirectory`` when set, else the temp dir (PrivateTmp under the unit)."""
    return os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or None


if __name__ == "__main__":
    sys.exit(main())
