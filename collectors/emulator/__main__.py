"""``python -m collectors.emulator``: run an emulated mine site until SIGINT/SIGTERM.

When every miner listens it prints one JSON line on stdout::

    {"event": "emulator_ready", "control_url": "http://127.0.0.1:PORT", "miners": N}

Everything else is logged on stderr. With ``--stop-on-stdin-eof`` it also exits when its stdin
closes (the test fixture uses this so an emulator never outlives a killed test run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import stat
import sys
from pathlib import Path

import structlog

from collectors.emulator.scenario import load_scenario
from collectors.emulator.server import EmulatorServer

log = structlog.get_logger("collectors.emulator")


def raise_nofile_limit() -> int:
    """Raise RLIMIT_NOFILE to the hard limit (thousands of listeners); return the soft limit."""
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
    parser.add_argument(
        "--stop-on-stdin-eof", action="store_true", help="exit when stdin reaches end of file"
    )
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


async def _stdin_eof() -> None:
    """Return when stdin is closed (wait forever if stdin is not a pipe or socket)."""
    mode = os.fstat(sys.stdin.fileno()).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        log.warning("emulator_stdin_not_a_pipe")
        await asyncio.Event().wait()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def serve(args: argparse.Namespace) -> None:
    """Start the emulated site, print the ready line, run until cancelled (or stdin EOF)."""
    scenario = load_scenario(args.scenario)
    if args.miners is not None:
        scenario = scenario.scale(args.miners)
    server = EmulatorServer(
        scenario,
        base_address=args.base_address,
        control=args.control,
        speedup=args.speedup,
        seed=args.seed,
    )
    async with server:
        ready = {
            "event": "emulator_ready",
            "control_url": server.control_url,
            "miners": len(server.fleet.miners),
        }
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        log.info("emulator_ready", control_url=server.control_url, miners=ready["miners"])
        if args.stop_on_stdin_eof:
            await _stdin_eof()
            log.info("emulator_stdin_closed")
        else:
            await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    """Entry point; exits 0 on SIGINT/SIGTERM (or stdin EOF when asked)."""
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
