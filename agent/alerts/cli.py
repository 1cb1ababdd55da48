"""``altiwatch notify``: run the alert subscriber, or check its config file.

Exit codes as the rest of the CLI: 0 stopped by SIGTERM/SIGINT, 78 configuration error (a bad
file or an unreadable secret; systemd does not restart on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.alerts.config import DEFAULT_CONFIG, load_notify_config
from agent.errors import ConfigError

if TYPE_CHECKING:
    import argparse

EX_OK = 0
EX_CONFIG = 78


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``notify`` to the ``altiwatch`` command line."""
    parser = subparsers.add_parser(
        "notify",
        help="deliver alarm events from MQTT to DingTalk, WeCom, Feishu, Telegram, Slack, "
        "webhooks and e-mail",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"notify config file (default {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--check", action="store_true", help="validate the config and its secrets, then exit"
    )
    parser.add_argument(
        "--log-format", choices=["auto", "json", "console"], default="auto", help="log format"
    )
    parser.set_defaults(handler=run_notify)


def run_notify(args: argparse.Namespace) -> int:
    """Load the config and run until signalled."""
    from agent.alerts.service import NotifyService  # noqa: PLC0415 - keep --help fast
    from agent.logging_setup import configure_logging  # noqa: PLC0415

    configure_logging(args.log_format, "info")
    env = dict(os.environ)
    try:
        config = load_notify_config(args.config)
        if args.check:
            from agent.alerts.channels import build_channel  # noqa: PLC0415 - only for --check

            for channel in config.channels:  # every secret must be readable
                build_channel(channel, config, env)
            if config.broker.password is not None:
                config.broker.password.read(env)
            sys.stdout.write(f"{args.config}: ok, {len(config.channels)} channel(s)\n")
            return EX_OK
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return EX_CONFIG

    async def main() -> int:
        try:
            service = NotifyService(config, env)
        except ConfigError as exc:
            sys.stderr.write(f"{exc}\n")
            return EX_CONFIG
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await service.run()
        return EX_OK

    return asyncio.run(main())
