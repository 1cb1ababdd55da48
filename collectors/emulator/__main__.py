"""``python -m collectors.emulator``: run an emulated mine site until SIGINT/SIGTERM.

When every miner listens it prints one JSON line on stdout::

    {"event": "emulator_ready", "control_url": "http://127.0.0.1:PORT", "miners": N}

Everything else is logged on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import resource
import signal
import sys
from pathlib import Path

import structlog
from aiohttp import web

from collectors.emulator.control import build_app
from collectors.emulator.fleet import Fleet
from collectors.emulator.scenario import load_scenario

log = structlog.get_logger("collectors.emulator")


def raise_nofile_limit() -> int:
    """Raise RLIMIT_NOFILE to the hard limit (thousands of listeners); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the shared API contract)."""
    parser = argparse.ArgumentParser(prog="python -m collectors.emulator", description=__doc__)
    parser.add_argument("--scenario", type=Path, required=True, help="scenario YAML file")
    parser.add_argument("--base-address", default="127.20.0.1", help="first loopback address")
    parser.add_argument("--miners", type=int, default=None, help="scale the scenario's mix to N")
    parser.add_argument("--control", default="127.0.0.1:0", help="control API host:port")
    parser.add_argument("--speedup", type=float, default=1.0, help="simulated clock speed-up")
    parser.add_argument("--seed", type=int, default=0, help="seed for identities and noise")
    return parser.parse_args(argv)


def configure_logging() -> None:
    """JSON lines on stderr (stdout carries only the ready line)."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


async def serve(args: argparse.Namespace) -> None:
    """Start the fleet and the control API, print the ready line, run until cancelled."""
    scenario = load_scenario(args.scenario)
    if args.miners is not None:
        scenario = scenario.scale(args.miners)
    fleet = Fleet(scenario, base_address=args.base_address, speedup=args.speedup, seed=args.seed)
    host, _, port = args.control.rpartition(":")
    runner = web.AppRunner(build_app(fleet), access_log=None)
    await runner.setup()
    try:
        await fleet.start()
        site = web.TCPSite(runner, host or "127.0.0.1", int(port))
        await site.start()
        server = site._server  # noqa: SLF001 - aiohttp exposes the bound port only here
        assert isinstance(server, asyncio.Server)
        bound = server.sockets[0].getsockname()
        ready = {
            "event": "emulator_ready",
            "control_url": f"http://{bound[0]}:{bound[1]}",
            "miners": len(fleet.miners),
        }
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(fleet.run_ticks(), name="physics_tick")
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(fleet.stop(), timeout=10)
        await runner.cleanup()
        log.info("emulator_stopped")


def main(argv: list[str] | None = None) -> int:
    """Entry point; exits 0 on SIGINT/SIGTERM."""
    args = parse_args(argv)
    configure_logging()
    limit = raise_nofile_limit()
    log.info("emulator_starting", scenario=str(args.scenario), nofile=limit)

    async def runner() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await serve(args)

    asyncio.run(runner())
    return 0


if __name__ == "__main__":
    sys.exit(main())
