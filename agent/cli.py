"""The ``altiwatch`` command line: subcommands and their exit codes.

Exit codes (sysexits.h): 0 ok, 1 runtime failure, 64 usage, 78 configuration error
(``check-config``, ``run`` with a bad config), 130 interrupted.

Subcommands owned by other modules register themselves: a module with
``register(subparsers: argparse._SubParsersAction) -> None`` that adds its parser and sets
``parser.set_defaults(handler=fn)`` (``func=`` works too) with ``fn(args) -> int``. Add one line
to ``EXTENSIONS`` below; a module that does not exist yet is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import inspect
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import ConfigError, DiscoveryError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from agent.discover import DiscoveredMiner

EX_OK = 0
EX_FAILURE = 1
EX_USAGE = 64
EX_SOFTWARE = 70
EX_CONFIG = 78
EX_INTERRUPTED = 130

DEFAULT_CONFIG = Path("/etc/altiwatch/altiwatch.yaml")

# ----------------------------------------------------------------------------------------------
# Subcommands owned by other modules: ONE line each (module path; it defines register()).
# Missing modules are skipped, so a line may land before its module does.
EXTENSIONS: tuple[str, ...] = (
    "agent.alarms.cli",  # altiwatch thresholds   (alarms)
    "agent.mqtt.tail",  # altiwatch events tail  (mqtt)
    "agent.top",  # altiwatch top          (dashboards)
    "agent.maintenance_cli",  # altiwatch maintenance  (field)
    "agent.dispatch",  # altiwatch dispatch     (field)
    "agent.alerts.cli",  # altiwatch notify       (alerts)
)
# ----------------------------------------------------------------------------------------------


def _version() -> str:
    try:
        return importlib.metadata.version("altiwatch")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="altiwatch",
        description="Fleet telemetry and altitude-aware ASIC monitoring agent.",
    )
    parser.add_argument("--version", action="version", version=f"altiwatch {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = subparsers.add_parser("run", help="run the agent (what the systemd unit starts)")
    run.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"config file (default {DEFAULT_CONFIG})",
    )
    run.set_defaults(handler=_cmd_run)

    check = subparsers.add_parser(
        "check-config",
        help="validate a config file and print the effective config (secrets masked)",
    )
    check.add_argument("path", type=Path, nargs="?", default=DEFAULT_CONFIG)
    check.set_defaults(handler=_cmd_check_config)

    discover = subparsers.add_parser("discover", help="scan a CIDR range for miners")
    discover.add_argument("cidr", help="range to scan, e.g. 10.28.1.0/24 (at most a /16)")
    discover.add_argument("--json", action="store_true", help="print a JSON array")
    discover.add_argument("--concurrency", type=int, default=256, help="addresses in flight")
    discover.add_argument("--timeout", type=float, default=10.0, help="seconds per address")
    discover.set_defaults(handler=_cmd_discover)

    for module_name in EXTENSIONS:
        _register_extension(subparsers, module_name)
    return parser


def _register_extension(subparsers: argparse._SubParsersAction[Any], module_name: str) -> None:
    """Import ``module_name`` and call its ``register``; a missing or broken module is skipped.

    A broken optional subcommand must not take ``altiwatch run`` down with it, so failures are
    reported on stderr and the other subcommands stay usable.
    """
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            return  # not written yet
        _err(f"altiwatch: subcommands from {module_name} unavailable: {exc}")
        return
    except Exception as exc:  # noqa: BLE001 - isolate other components' import-time failures
        _err(f"altiwatch: subcommands from {module_name} unavailable: {exc!r}")
        return
    register: Callable[[argparse._SubParsersAction[Any]], None] | None = getattr(
        module, "register", None
    )
    if register is not None:
        register(subparsers)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None) or getattr(args, "func", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EX_USAGE
    try:
        result = handler(args)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
    except KeyboardInterrupt:
        return EX_INTERRUPTED
    return EX_OK if result is None else int(result)


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _err(message: object) -> None:
    sys.stderr.write(f"{message}\n")


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        service = importlib.import_module("agent.service")  # the daemon's imports only for run
    except ModuleNotFoundError as exc:
        if exc.name != "agent.service":
            raise
        _err("altiwatch: the agent service is not available in this build")
        return EX_SOFTWARE
    run: Callable[[Path], int] = service.run
    try:
        return int(run(args.config))
    except ConfigError as exc:
        _err(exc)
        return EX_CONFIG


def _cmd_check_config(args: argparse.Namespace) -> int:
    from agent.config import dump_effective, load_config  # noqa: PLC0415 - keep --help fast

    try:
        config = load_config(args.path)
        if config.http.web_config_file is not None:
            # Validate it as `run` will, so a broken web config is caught before a restart.
            from agent import web_security  # noqa: PLC0415 - keep --help fast

            web_security.ssl_context(web_security.load_web_config(config.http.web_config_file))
    except ConfigError as exc:
        _err(exc)
        return EX_CONFIG
    sys.stdout.write(f"# effective config of {args.path} (secrets masked)\n")
    sys.stdout.write(dump_effective(config))
    return EX_OK


def _cmd_discover(args: argparse.Namespace) -> int:
    from agent import discover  # noqa: PLC0415 - pulls in pyasic

    try:
        total = len(discover.hosts_of(args.cidr))
    except DiscoveryError as exc:
        _err(f"altiwatch discover: {exc}")
        return EX_USAGE
    if args.concurrency < 1 or args.timeout <= 0:
        _err("altiwatch discover: --concurrency and --timeout must be positive")
        return EX_USAGE
    from agent.logging_setup import configure_logging  # noqa: PLC0415

    configure_logging("auto", "warning", stream=sys.stderr)  # stdout carries the results
    interactive = sys.stderr.isatty() and not args.json
    try:
        if interactive:
            found = _discover_with_progress(args, total)
        else:
            found = asyncio.run(
                discover.scan(args.cidr, concurrency=args.concurrency, timeout_s=args.timeout)
            )
    except DiscoveryError as exc:
        _err(f"altiwatch discover: {exc}")
        return EX_USAGE
    if args.json:
        json.dump([m.as_dict() for m in found], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_table(found, total)
    return EX_OK


def _discover_with_progress(args: argparse.Namespace, total: int) -> list[DiscoveredMiner]:
    from rich.progress import (  # noqa: PLC0415 - only on a terminal
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from agent import discover  # noqa: PLC0415 - pulls in pyasic

    with Progress(
        TextColumn(f"scanning {args.cidr}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as progress:
        task = progress.add_task("scan", total=total)
        return asyncio.run(
            discover.scan(
                args.cidr,
                concurrency=args.concurrency,
                timeout_s=args.timeout,
                on_progress=lambda n: progress.advance(task, n),
            )
        )


def _print_table(found: list[DiscoveredMiner], total: int) -> None:
    from rich.console import Console  # noqa: PLC0415 - only for the table
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"{len(found)} miners found ({total} addresses scanned)")
    for column in ("address", "make", "model", "firmware", "mac", "hostname"):
        table.add_column(column)
    for miner in found:
        table.add_row(*(value or "-" for value in miner.as_dict().values()))
    Console(width=None if sys.stdout.isatty() else 200).print(table)


if __name__ == "__main__":
    sys.exit(main())
