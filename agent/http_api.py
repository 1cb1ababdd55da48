"""The agent's HTTP surface (aiohttp): /metrics, /healthz, /readyz, the JSON API /api/v1/*, /.

``GET /api/v1/maintenance`` lists the open maintenance windows; ``POST /api/v1/maintenance``
(a JSON `agent.maintenance.MaintenanceRequest`, at most ``MAX_WRITE_BYTES``) starts or ends
them through the service (``maintain``), never cached. The front passes the basic-auth user
on as ``X-Altiwatch-User``; it becomes the window's ``by``.

The server runs on its own thread and event loop (``altiwatch-http``), as prometheus_client's
own exporter does, so scrapes never queue behind polls nor polls behind scrapes. Nothing shared
is read from that thread. ``/metrics`` sends the renderer's latest immutable `Exposition`,
asking the polling loop for a new one (coalesced, at most about once a second, see
``EXPOSITION_MAX_AGE_S``) when the per-miner render changed or the agent's own series are older
than that; gzip is deflated here, once per per-miner render (`GzipBody`). The JSON API builds
its objects on the polling loop and serialises them here. ``/healthz`` answers 200 only if the
polling loop answers within ``LOOP_ANSWER_S``; ``/readyz`` answers 503 until the first poll
cycle completed. ``/`` is the site page (`agent.site_page`), rendered here from the same
objects as the two JSON paths.

TLS and basic auth from an exporter-toolkit ``web_config_file`` plug in through the
``middlewares`` and ``ssl_context`` arguments of ``HttpApi`` (see `agent.web_security`).

The daemon does not expose this server: it serves a private Unix socket (``start_unix``) to the
HTTP front process (`agent.http_front`), which owns the public port, TLS and basic auth.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from agent import site_page
from agent.metrics import CONTENT_TYPE, GzipBody, fan_duty_ratio

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Coroutine, Sequence

    from aiohttp.typedefs import Handler

    from agent.fleet_state import FleetState, MinerRecord
    from agent.maintenance import MaintenanceBook, Window
    from agent.metrics import AlarmView, Exposition, MetricsRenderer

_JSON = "application/json"
_T = TypeVar("_T")

EXPOSITION_MAX_AGE_S = 1.0
"""A scrape gets the agent's own series at most this old (the per-miner part: see the renderer)."""
WRITE_SLICE = 256 * 1024
"""/metrics bodies are written in slices this big (bounds memory per slow scraper)."""
LOOP_ANSWER_S = 5.0
MAX_WRITE_BYTES = 64 * 1024
"""Largest body of a write (``POST /api/v1/maintenance``)."""
AUTH_USER_KEY = web.RequestKey("altiwatch.auth_user", str)
"""Request key holding the user basic auth let through (absent without basic auth)."""
USER_HEADER = "X-Altiwatch-User"
"""The basic-auth user the front authenticated (it drops any such header from clients)."""
"""/healthz fails, and /metrics sends its last exposition, if the polling loop is slower."""


def _plain(value: Any) -> Any:
    """A JSON-ready view of engine objects (dataclasses, pydantic models, objects with as_dict)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    as_dict = getattr(value, "as_dict", None)
    if callable(as_dict):
        return as_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    return str(value)


def miner_json(
    record: MinerRecord,
    alarms: AlarmView | None,
    firing: list[Any] | None = None,
    maintenance: Window | None = None,
) -> dict[str, Any]:
    """One miner as the JSON API shows it; unknown values are null.

    ``maintenance``: the miner's open maintenance window (null when it is in none).

    ``fan_duty_ratio`` is the same estimate as the metric (fastest fan / rated max rpm).

    ``firing`` are the miner's active alarms (looked up from ``alarms`` when not given).
    """
    snap = record.snapshot
    ident = record.slow.identity if record.slow is not None else (snap.identity if snap else None)
    out: dict[str, Any] = {
        "miner": record.miner_id,
        "site": record.site,
        "address": record.address,
        "name": record.name,
        "location": record.location.as_dict() if record.location is not None else None,
        "maintenance": maintenance.as_dict() if maintenance is not None else None,
        "up": record.up,
        "last_error": record.last_error,
        "last_error_detail": record.last_error_detail,
        "last_success_at": record.last_success_at,
        "last_poll_at": record.last_poll_at,
        "poll_duration_s": record.last_poll_duration_s,
        "family": ident.family.value if ident else None,
        "make": ident.make if ident else None,
        "model": ident.model if ident else None,
        "firmware": ident.firmware if ident else None,
        "firmware_version": ident.firmware_version if ident else None,
        "mac": ident.mac if ident else None,
        "serial": ident.serial if ident else None,
        "hostname": ident.hostname if ident else None,
    }
    telemetry: dict[str, Any] = {
        "hashrate_hs": None,
        "expected_hashrate_hs": None,
        "max_chip_temp_c": None,
        "max_board_temp_c": None,
        "inlet_temp_c": None,
        "cooling": None,
        "coolant_inlet_c": None,
        "coolant_outlet_c": None,
        "power_w": None,
        "power_source": None,
        "power_limit_w": None,
        "uptime_s": None,
        "is_mining": None,
        "fault_light": None,
        "boards": [],
        "expected_boards": None,
        "fans": [],
        "errors": [],
        "pools": [],
    }
    if snap is not None:
        telemetry.update(
            hashrate_hs=snap.hashrate_hs,
            expected_hashrate_hs=snap.expected_hashrate_hs,
            max_chip_temp_c=snap.max_chip_temp_c,
            max_board_temp_c=snap.max_board_temp_c,
            inlet_temp_c=snap.inlet_temp_c,
            cooling=snap.cooling.value if snap.cooling else None,
            coolant_inlet_c=snap.coolant_inlet_c,
            coolant_outlet_c=snap.coolant_outlet_c,
            power_w=snap.power_w,
            power_source=snap.power_source.value if snap.power_source else None,
            power_limit_w=snap.power_limit_w,
            uptime_s=snap.uptime_s,
            is_mining=snap.is_mining,
            fault_light=snap.fault_light,
            boards=[asdict(b) for b in snap.boards],
            expected_boards=snap.expected_boards,
            fans=[asdict(f) for f in snap.fans],
            errors=[asdict(e) for e in snap.errors or ()],
            pools=[asdict(p) for p in snap.pools or ()],
        )
    out.update(telemetry)
    out["thresholds"] = None
    out["fan_duty_ratio"] = None
    out["alarms"] = []
    out["site_air"] = None
    out["share_health"] = None
    if alarms is not None:
        if firing is None:
            firing = [a for a in alarms.active() if getattr(a, "miner", None) == record.miner_id]
        limits = alarms.thresholds(record.miner_id)
        if snap is not None and record.up:
            out["fan_duty_ratio"] = fan_duty_ratio(snap, getattr(limits, "rpm_max", None))
        out["thresholds"] = _plain(limits)
        share_health = getattr(alarms, "share_health", None)  # R12's window (pool counters)
        out["share_health"] = share_health(record.miner_id) if share_health else None
        out["alarms"] = [_plain(a) for a in firing]
        out["site_air"] = _plain(alarms.site_air(record.site))
    return out


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (``gzip`` or ``*``, q above 0)."""
    allowed: dict[str, bool] = {}
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        allowed[coding.strip().lower()] = q > 0
    return allowed.get("gzip", allowed.get("x-gzip", allowed.get("*", False)))


async def send_chunks(
    request: web.Request, chunks: Sequence[bytes], headers: dict[str, str], *, status: int = 200
) -> web.StreamResponse:
    """Send ``chunks`` back to back as one body, in slices, without a copy."""
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = sum(len(chunk) for chunk in chunks)
    await response.prepare(request)
    if request.method == "HEAD":  # the length of the body it would get, not the body
        chunks = ()
    for chunk in chunks:
        view = memoryview(chunk)
        for start in range(0, len(view), WRITE_SLICE):
            # write() waits for the socket to drain: a slow scraper holds one slice, not
            # a copy of the whole body in its transport buffer.
            await response.write(view[start : start + WRITE_SLICE])
    await response.write_eof()
    return response


class HttpApi:
    """The aiohttp application, served from its own thread and loop on ``host:port``."""

    def __init__(
        self,
        *,
        fleet: FleetState,
        renderer: MetricsRenderer,
        ready: Callable[[], bool],
        alarms: AlarmView | None = None,
        maintenance: MaintenanceBook | None = None,
        maintain: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]] | None = None,
        middlewares: Sequence[Any] = (),
        ssl_context: ssl.SSLContext | None = None,
        on_request: Callable[[str], object] = lambda _path: None,
    ) -> None:
        """Build the routes; nothing listens until ``start``.

        ``on_request(path)`` is called for every request answered (the agent counts them).
        ``maintain(body)`` applies a maintenance request on the polling loop: (status, JSON).
        """
        self.fleet = fleet
        self.renderer = renderer
        self.alarms = alarms
        self.maintenance = maintenance
        self._maintain = maintain
        self._ready = ready
        self._ssl = ssl_context
        self._on_request = on_request
        self.app = web.Application(middlewares=[*middlewares, self._count])
        self.app.add_routes(
            [
                web.get("/metrics", self.metrics),
                web.get("/healthz", self.healthz),
                web.get("/readyz", self.readyz),
                web.get("/api/v1/fleet", self.fleet_json),
                web.get("/api/v1/alarms", self.alarms_json),
                web.get("/api/v1/maintenance", self.maintenance_json),
                web.post("/api/v1/maintenance", self.maintenance_write),
                web.get("/", self.page),
            ]
        )
        self._runner: web.AppRunner | None = None
        self._main: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._publishing: asyncio.Future[Exposition] | None = None
        self._deflated: GzipBody | None = None
        self._gzipped: tuple[Exposition, tuple[bytes, ...]] | None = None
        #: Per-miner renders deflated so far (once each, however many gzip scrapes).
        self.gzip_renders = 0
        self.port: int | None = None

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count the request under its route (unrouted paths under one label)."""
        route = request.match_info.route.resource
        self._on_request(route.canonical if route is not None else "other")
        return await handler(request)

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (port 0 = a free port, see ``.port``) from the server thread."""
        await self._start(self._listen(host, port))

    async def start_unix(self, path: str) -> None:
        """Listen on the Unix socket ``path`` (for the front process, `agent.http_front`)."""
        await self._start(self._listen_unix(path))

    async def _start(self, listen: Coroutine[Any, Any, int | None]) -> None:
        self._main = asyncio.get_running_loop()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="altiwatch-http", daemon=True
        )
        self._thread.start()
        try:
            self.port = await self._on_server(listen)
        except BaseException:
            listen.close()
            await self._end_thread()
            raise

    async def _listen(self, host: str, port: int) -> int:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self._ssl, reuse_address=True)
        await site.start()
        server = site._server  # noqa: SLF001 - aiohttp exposes the bound port only here
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def _listen_unix(self, path: str) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.UnixSite(self._runner, path).start()

    async def stop(self) -> None:
        """Stop listening, close connections, end the server thread."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await self._on_server(runner.cleanup())
        await self._end_thread()

    async def _end_thread(self) -> None:
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join)
        loop.close()

    async def _on_server(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the server loop, from the polling loop."""
        assert self._loop is not None, "start() first"
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def _on_main(self, fn: Callable[[], _T]) -> _T:
        """Call ``fn`` on the polling loop, from a handler on the server loop."""
        assert self._main is not None, "start() first"

        async def call() -> _T:
            return fn()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call(), self._main))

    async def _exposition(self) -> Exposition:
        """The renderer's current exposition, published anew by the polling loop if stale.

        Stale: older than ``EXPOSITION_MAX_AGE_S`` or made from an older per-miner render.
        Concurrent scrapes share one request to the polling loop; if that loop does not answer
        within ``LOOP_ANSWER_S``, the last exposition is sent rather than nothing.
        """
        latest = self.renderer.exposition
        if latest is not None and self.renderer.is_current(latest, EXPOSITION_MAX_AGE_S):
            return latest
        publishing = self._publishing
        if publishing is None:
            publishing = asyncio.ensure_future(self._on_main(self.renderer.publish))
            publishing.add_done_callback(self._published)
            self._publishing = publishing
        done, _ = await asyncio.wait({publishing}, timeout=LOOP_ANSWER_S)
        if done or latest is None:
            return await asyncio.shield(publishing)
        return latest

    def _published(self, publishing: asyncio.Future[Exposition]) -> None:
        if self._publishing is publishing:
            self._publishing = None

    def _gzip(self, exposition: Exposition) -> tuple[bytes, ...]:
        """``exposition`` as one gzip member; the per-miner part deflated once per render."""
        if self._gzipped is None or self._gzipped[0] is not exposition:
            deflated = self._deflated
            if deflated is None or deflated.source is not exposition.body:
                deflated = self._deflated = GzipBody.of(exposition.body)
                self.gzip_renders += 1
            self._gzipped = (exposition, deflated.with_tail(exposition.tail))
        return self._gzipped[1]

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        """The exposition's cached chunks, sent back to back in slices, without a copy.

        gzip-compressed (``Content-Encoding: gzip``) when the client accepts it, plain otherwise.
        """
        headers = {"Content-Type": CONTENT_TYPE, "Vary": "Accept-Encoding"}
        exposition = await self._exposition()
        chunks: tuple[bytes, ...] = (exposition.body, exposition.tail)
        if accepts_gzip(request.headers.get("Accept-Encoding", "")):
            chunks = self._gzip(exposition)
            headers["Content-Encoding"] = "gzip"
        return await send_chunks(request, chunks, headers)

    async def healthz(self, _request: web.Request) -> web.Response:
        """200 if the polling loop answers within ``LOOP_ANSWER_S``, else 503."""
        try:
            async with asyncio.timeout(LOOP_ANSWER_S):
                await self._on_main(lambda: None)
        except TimeoutError:
            return web.Response(status=503, text="event loop not answering\n")
        return web.Response(text="ok\n")

    async def readyz(self, _request: web.Request) -> web.Response:
        """200 once the first poll cycle completed, else 503."""
        if self._ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="first poll cycle not complete\n")

    def _fleet_objects(self) -> list[dict[str, Any]]:
        by_miner: dict[str, list[Any]] = {}
        if self.alarms is not None:
            for alarm in self.alarms.active():
                by_miner.setdefault(getattr(alarm, "miner", None) or "", []).append(alarm)
        book = self.maintenance
        return [
            miner_json(
                r,
                self.alarms,
                by_miner.get(r.miner_id, []),
                book.get(r.miner_id) if book is not None else None,
            )
            for r in self.fleet.rendered()
        ]

    def _alarm_objects(self) -> list[Any]:
        return [] if self.alarms is None else [_plain(a) for a in self.alarms.active()]

    async def fleet_json(self, _request: web.Request) -> web.Response:
        """Every visible miner with latest values, thresholds, alarms and site air."""
        body = await self._on_main(self._fleet_objects)  # fresh objects: safe to encode here
        return web.Response(body=json.dumps(body, default=str).encode(), content_type=_JSON)

    async def alarms_json(self, _request: web.Request) -> web.Response:
        """Active alarms with their explanation."""
        active = await self._on_main(self._alarm_objects)
        return web.Response(body=json.dumps(active, default=str).encode(), content_type=_JSON)

    def _maintenance_objects(self) -> list[dict[str, Any]]:
        if self.maintenance is None:
            return []
        out = []
        for window in self.maintenance.windows():
            record = self.fleet.by_id(window.miner)
            location = record.location if record is not None else None
            out.append(
                {
                    "miner": window.miner,
                    "site": window.site,
                    "name": record.name if record is not None else None,
                    "address": record.address if record is not None else None,
                    "location": location.as_dict() if location is not None else None,
                    **window.as_dict(),
                }
            )
        return out

    async def maintenance_json(self, _request: web.Request) -> web.Response:
        """The open maintenance windows, oldest first."""
        body = await self._on_main(self._maintenance_objects)
        return web.Response(body=json.dumps(body).encode(), content_type=_JSON)

    async def maintenance_write(self, request: web.Request) -> web.Response:
        """Start or end maintenance (a JSON MaintenanceRequest); 400 on a bad body."""
        maintain = self._maintain
        if maintain is None:
            return _json_reply(503, {"error": "maintenance is not available"})
        if (request.content_length or 0) > MAX_WRITE_BYTES:
            return _json_reply(413, {"error": f"body larger than {MAX_WRITE_BYTES} bytes"})
        raw = await request.content.read(MAX_WRITE_BYTES + 1)
        if len(raw) > MAX_WRITE_BYTES:
            return _json_reply(413, {"error": f"body larger than {MAX_WRITE_BYTES} bytes"})
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _json_reply(400, {"error": f"not JSON: {exc}"})
        if not isinstance(body, dict):
            return _json_reply(400, {"error": "expected a JSON object"})
        user = request.get(AUTH_USER_KEY) or request.headers.get(USER_HEADER)
        if isinstance(user, str) and user:
            body["by"] = user[:128]
        status, answer = await self._on_main(lambda: maintain(body))
        return _json_reply(status, answer)

    def _page_objects(self) -> tuple[list[dict[str, Any]], list[Any]]:
        return self._fleet_objects(), self._alarm_objects()

    async def page(self, _request: web.Request) -> web.Response:
        """The site page: air, counts, open alarms and the rack map (`agent.site_page`)."""
        fleet, alarms = await self._on_main(self._page_objects)
        # Rendered here, on the server thread, from the fresh objects the polling loop made.
        body = site_page.render(fleet, alarms)
        return web.Response(
            text=body, content_type="text/html", headers={"Cache-Control": "no-store"}
        )


def _json_reply(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type=_JSON)
