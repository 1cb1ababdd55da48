"""The agent's HTTP surface (aiohttp): /metrics, /healthz, /readyz, /api/v1/fleet, /api/v1/alarms.

``/metrics`` serves the renderer's cached bytes as-is. ``/readyz`` answers 503 until the first
poll cycle completed. The JSON API is for ``altiwatch top`` and tooling: one object per miner
with its latest values, thresholds, active alarms and the site's air.

TLS and basic auth from an exporter-toolkit ``web_config_file`` plug in through the
``middlewares`` and ``ssl_context`` arguments of ``HttpApi`` (hook; not wired yet).
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agent.metrics import CONTENT_TYPE, fan_duty_ratio

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Sequence

    from agent.fleet_state import FleetState, MinerRecord
    from agent.metrics import AlarmView, MetricsRenderer

_JSON = "application/json"


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
    record: MinerRecord, alarms: AlarmView | None, firing: list[Any] | None = None
) -> dict[str, Any]:
    """One miner as the JSON API shows it; unknown values are null.

    ``fan_duty_ratio`` is the same estimate as the metric (fastest fan / rated max rpm).

    ``firing`` are the miner's active alarms (looked up from ``alarms`` when not given).
    """
    snap = record.snapshot
    ident = record.slow.identity if record.slow is not None else (snap.identity if snap else None)
    out: dict[str, Any] = {
        "miner": record.miner_id,
        "site": record.site,
        "address": record.address,
        "name": record.target.name,
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
        "power_w": None,
        "power_source": None,
        "power_limit_w": None,
        "uptime_s": None,
        "is_mining": None,
        "fault_light": None,
        "boards": [],
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
            power_w=snap.power_w,
            power_source=snap.power_source.value if snap.power_source else None,
            power_limit_w=snap.power_limit_w,
            uptime_s=snap.uptime_s,
            is_mining=snap.is_mining,
            fault_light=snap.fault_light,
            boards=[asdict(b) for b in snap.boards],
            fans=[asdict(f) for f in snap.fans],
            errors=[asdict(e) for e in snap.errors or ()],
            pools=[asdict(p) for p in snap.pools or ()],
        )
    out.update(telemetry)
    out["thresholds"] = None
    out["fan_duty_ratio"] = None
    out["alarms"] = []
    out["site_air"] = None
    if alarms is not None:
        if firing is None:
            firing = [a for a in alarms.active() if getattr(a, "miner", None) == record.miner_id]
        limits = alarms.thresholds(record.miner_id)
        if snap is not None and record.up:
            out["fan_duty_ratio"] = fan_duty_ratio(snap, getattr(limits, "rpm_max", None))
        out["thresholds"] = _plain(limits)
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


class HttpApi:
    """The aiohttp application and its runner bound to ``host:port``."""

    def __init__(
        self,
        *,
        fleet: FleetState,
        renderer: MetricsRenderer,
        ready: Callable[[], bool],
        alarms: AlarmView | None = None,
        middlewares: Sequence[Any] = (),
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Build the routes; nothing listens until ``start``."""
        self.fleet = fleet
        self.renderer = renderer
        self.alarms = alarms
        self._ready = ready
        self._ssl = ssl_context
        self.app = web.Application(middlewares=list(middlewares))
        self.app.add_routes(
            [
                web.get("/metrics", self.metrics),
                web.get("/healthz", self.healthz),
                web.get("/readyz", self.readyz),
                web.get("/api/v1/fleet", self.fleet_json),
                web.get("/api/v1/alarms", self.alarms_json),
            ]
        )
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (port 0 = a free port, see ``.port``)."""
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self._ssl, reuse_address=True)
        await site.start()
        server = site._server  # noqa: SLF001 - aiohttp exposes the bound port only here
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        """Stop listening and close connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        """The exposition: the cached per-miner bytes, then the agent's own, without a copy.

        gzip-compressed (``Content-Encoding: gzip``) when the client accepts it, from the
        renderer's cached compressed copy; plain otherwise.
        """
        headers = {"Content-Type": CONTENT_TYPE, "Vary": "Accept-Encoding"}
        chunks: tuple[bytes, ...]
        if accepts_gzip(request.headers.get("Accept-Encoding", "")):
            chunks = self.renderer.render_gzip_chunks()
            headers["Content-Encoding"] = "gzip"
        else:
            chunks = self.renderer.render_chunks()
        response = web.StreamResponse(headers=headers)
        response.content_length = sum(len(chunk) for chunk in chunks)
        await response.prepare(request)
        for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
        return response

    async def healthz(self, _request: web.Request) -> web.Response:
        """The event loop answers."""
        return web.Response(text="ok\n")

    async def readyz(self, _request: web.Request) -> web.Response:
        """200 once the first poll cycle completed, else 503."""
        if self._ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="first poll cycle not complete\n")

    async def fleet_json(self, _request: web.Request) -> web.Response:
        """Every visible miner with latest values, thresholds, alarms and site air."""
        by_miner: dict[str, list[Any]] = {}
        if self.alarms is not None:
            for alarm in self.alarms.active():
                by_miner.setdefault(getattr(alarm, "miner", None) or "", []).append(alarm)
        body = [
            miner_json(r, self.alarms, by_miner.get(r.miner_id, [])) for r in self.fleet.rendered()
        ]
        return web.Response(body=json.dumps(body, default=str).encode(), content_type=_JSON)

    async def alarms_json(self, _request: web.Request) -> web.Response:
        """Active alarms with their explanation."""
        active = [] if self.alarms is None else [_plain(a) for a in self.alarms.active()]
        return web.Response(body=json.dumps(active, default=str).encode(), content_type=_JSON)
