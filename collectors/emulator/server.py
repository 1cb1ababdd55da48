"""In-process entry point: start a scenario's miners and the control API, stop them again.

``python -m collectors.emulator`` uses this, and so can a demo that wants the emulated site in
its own event loop::

    async with EmulatorServer(load_scenario(path), base_address="127.30.0.1") as site:
        print(site.control_url, len(site.fleet.miners))
        await asyncio.Event().wait()
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Self

import structlog
from aiohttp import web

from collectors.emulator.control import build_app
from collectors.emulator.fleet import Fleet

if TYPE_CHECKING:
    from types import TracebackType

    from collectors.emulator.scenario import Scenario

log = structlog.get_logger("collectors.emulator")

STOP_DEADLINE_S = 10.0


class EmulatorServer:
    """The fleet's listeners, its physics tick and the control API, as one async resource."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        base_address: str = "127.20.0.1",
        control: str = "127.0.0.1:0",
        speedup: float = 1.0,
        seed: int = 0,
    ) -> None:
        """Build the fleet (no I/O until :meth:`start`)."""
        self.fleet = Fleet(scenario, base_address=base_address, speedup=speedup, seed=seed)
        self._control = control
        self._runner: web.AppRunner | None = None
        self._tick: asyncio.Task[None] | None = None
        self.control_url = ""

    async def start(self) -> None:
        """Open every listener, start ticking and serve the control API."""
        host, _, port = self._control.rpartition(":")
        self._runner = web.AppRunner(build_app(self.fleet), access_log=None)
        await self._runner.setup()
        await self.fleet.start()
        site = web.TCPSite(self._runner, host or "127.0.0.1", int(port))
        await site.start()
        server = site._server  # noqa: SLF001 - aiohttp exposes the bound port only here
        assert isinstance(server, asyncio.Server)
        bound = server.sockets[0].getsockname()
        self.control_url = f"http://{bound[0]}:{bound[1]}"
        self._tick = asyncio.create_task(self.fleet.run_ticks(), name="emulator_physics_tick")

    async def stop(self) -> None:
        """Stop ticking, close every listener and the control API (bounded by a deadline)."""
        if self._tick is not None:
            self._tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick
            self._tick = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.fleet.stop(), timeout=STOP_DEADLINE_S)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        log.info("emulator_stopped")

    async def __aenter__(self) -> Self:
        """Start; stop again if starting fails half way."""
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop."""
        await self.stop()
