"""The emulator's control API: HTTP JSON on loopback to read truth and inject faults.

Routes (all JSON):

- ``GET /healthz`` → ``{"ok": true, "miners": N}``
- ``GET /stats`` → ``{"requests": {"rpc": n, "http": n, "grpc": n}, "cpu_s": s, "miners": N}``
- ``GET /miners`` → ``[{address, family, model, profile, pyasic_class, mac, serial, hostname,
  site}]``
- ``GET /miners/{address}`` → the firmware's truth: hashrate_hs, expected_hashrate_hs,
  boards[{index, hashrate_hs, board_temp_c, chip_temp_c, chips, expected_chips, missing}],
  fans[{index, rpm}], fan_duty_ratio, inlet_temp_c, power_w, uptime_s, is_mining, faults, sim_time
- ``POST /miners/{address}/faults`` body ``{"kind": ..., ...params}`` → the miner's faults
- ``DELETE /miners/{address}/faults`` (all) or ``/miners/{address}/faults/{kind}``
- ``GET /site``; ``POST /site`` ``{"heatwave_k": 5, "inlet_override_c": 30 | null,
  "altitude_m": ..., "station_pressure_kpa": ..., "ambient_mean_c": ...,
  "ambient_amplitude_k": ...}``
- ``GET /clock``; ``POST /clock`` ``{"paused": true|false}`` (paused = physics frozen, so truth
  is stable while a test compares it with what pyasic read)
"""

from __future__ import annotations

import json
import resource
from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from collectors.emulator.scenario import FaultSpec
from collectors.emulator.wire import REQUESTS

if TYPE_CHECKING:
    from collectors.emulator.fleet import Fleet


class SiteUpdate(BaseModel):
    """Fields ``POST /site`` may change (absent = unchanged)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    heatwave_k: float | None = None
    inlet_override_c: float | None = None
    altitude_m: float | None = None
    station_pressure_kpa: float | None = None
    ambient_mean_c: float | None = None
    ambient_amplitude_k: float | None = None


class ClockUpdate(BaseModel):
    """Body of ``POST /clock``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    paused: bool


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class ControlApi:
    """Route handlers over one fleet."""

    def __init__(self, fleet: Fleet) -> None:
        """Serve ``fleet``."""
        self.fleet = fleet

    def _address(self, request: web.Request) -> str:
        address = request.match_info["address"]
        if address not in self.fleet.miners:
            raise web.HTTPNotFound(
                text=json.dumps({"error": f"no miner at {address}"}),
                content_type="application/json",
            )
        return address

    async def healthz(self, _: web.Request) -> web.Response:
        """GET /healthz."""
        return web.json_response({"ok": True, "miners": len(self.fleet.miners)})

    async def stats(self, _: web.Request) -> web.Response:
        """GET /stats: requests answered per protocol and this process's CPU seconds."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return web.json_response(
            {
                "requests": dict(REQUESTS),
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "miners": len(self.fleet.miners),
            }
        )

    async def miners(self, _: web.Request) -> web.Response:
        """GET /miners."""
        return web.json_response([self.fleet.summary(m) for m in self.fleet.miners.values()])

    async def truth(self, request: web.Request) -> web.Response:
        """GET /miners/{address}."""
        return web.json_response(self.fleet.miners[self._address(request)].truth())

    async def inject(self, request: web.Request) -> web.Response:
        """POST /miners/{address}/faults."""
        address = self._address(request)
        try:
            spec = FaultSpec.model_validate(await request.json())
        except (ValidationError, ValueError) as exc:
            return _error(422, str(exc))
        await self.fleet.inject(address, spec)
        return web.json_response(self.fleet.miners[address].truth()["faults"])

    async def clear(self, request: web.Request) -> web.Response:
        """DELETE /miners/{address}/faults[/{kind}]."""
        address = self._address(request)
        kind = request.match_info.get("kind")
        return web.json_response({"cleared": await self.fleet.clear(address, kind)})

    async def site(self, _: web.Request) -> web.Response:
        """GET /site."""
        return web.json_response(self.fleet.site.as_dict(self.fleet.clock.now()))

    async def set_site(self, request: web.Request) -> web.Response:
        """POST /site: only the fields present change."""
        try:
            update = SiteUpdate.model_validate(await request.json())
        except (ValidationError, ValueError) as exc:
            return _error(422, str(exc))
        s = self.fleet.site
        changes = update.model_dump(exclude_unset=True)
        nullable = {"inlet_override_c", "station_pressure_kpa"}
        renames = {"ambient_mean_c": "mean_c", "ambient_amplitude_k": "amplitude_k"}
        for name, value in changes.items():
            attr = renames.get(name, name)
            if value is None and name not in nullable:
                setattr(s, attr, 0.0 if name == "heatwave_k" else getattr(s, attr))
            else:
                setattr(s, attr, value)
        self.fleet.refresh()
        return web.json_response(s.as_dict(self.fleet.clock.now()))

    async def clock(self, _: web.Request) -> web.Response:
        """GET /clock."""
        return web.json_response(self.fleet.clock_view())

    async def set_clock(self, request: web.Request) -> web.Response:
        """POST /clock {"paused": bool}."""
        try:
            update = ClockUpdate.model_validate(await request.json())
        except (ValidationError, ValueError) as exc:
            return _error(422, str(exc))
        if update.paused:
            self.fleet.tick()
            self.fleet.clock.pause()
        else:
            self.fleet.clock.resume()
        return web.json_response(self.fleet.clock_view())


def build_app(fleet: Fleet) -> web.Application:
    """The aiohttp application serving the control API for ``fleet``."""
    api = ControlApi(fleet)
    app = web.Application()
    app.add_routes(
        [
            web.get("/healthz", api.healthz),
            web.get("/miners", api.miners),
            web.get("/stats", api.stats),
            web.get("/miners/{address}", api.truth),
            web.post("/miners/{address}/faults", api.inject),
            web.delete("/miners/{address}/faults", api.clear),
            web.delete("/miners/{address}/faults/{kind}", api.clear),
            web.get("/site", api.site),
            web.post("/site", api.set_site),
            web.get("/clock", api.clock),
            web.post("/clock", api.set_clock),
        ]
    )
    return app
