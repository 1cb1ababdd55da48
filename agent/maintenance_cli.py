"""``altiwatch maintenance start|end|list``: put miners on the bench through the agent's API.

``start MINER… | --rack R | --container C [--for 4h] --reason "…"`` opens a maintenance window
(``POST /api/v1/maintenance``): the miners' alarms are held back until it ends or expires.
``end`` closes it; ``list`` shows the open windows (``GET /api/v1/maintenance``). Miners are
named by id (MAC), display name or address. Connection options as for ``altiwatch top``.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import time
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.maintenance import parse_duration
from agent.top import DEFAULT_URL, PASSWORD_ENV, Connection, FetchError

if TYPE_CHECKING:
    import argparse

EX_OK = 0
EX_USAGE = 64
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
TIMEOUT_S = 10.0


def connect(args: argparse.Namespace) -> Connection:
    """The agent's API from ``--url``, ``--user`` (password from the environment or a prompt)."""
    password = os.environ.get(PASSWORD_ENV)
    if args.user is not None and password is None and sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.user}: ")
    return Connection.parse(args.url, username=args.user, password=password, ca_file=args.ca_file)


def _stamp(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _where(location: Any) -> str:
    if not isinstance(location, dict):
        return ""
    names = ("container", "rack", "shelf", "slot")
    return ", ".join(f"{n} {location[n]}" for n in names if location.get(n))


def format_windows(windows: list[dict[str, Any]]) -> str:
    """One line per open window: who, where, why, since, until, by."""
    if not windows:
        return "no miner is in maintenance\n"
    lines = []
    for w in windows:
        who = f"{w.get('name')} ({w.get('miner')})" if w.get("name") else str(w.get("miner"))
        where = _where(w.get("location"))
        until = _stamp(w.get("until")) if w.get("until") is not None else "until ended"
        lines.append(
            f"{who}{', ' + where if where else ''}: {w.get('reason')} "
            f"(since {_stamp(w.get('since'))}, {until}, by {w.get('by') or '-'})"
        )
    return "\n".join(lines) + "\n"


def _local_user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (containers)
        return None


def _cmd(args: argparse.Namespace) -> int:
    try:
        conn = connect(args)
        if args.action == "list":
            return _list(conn, as_json=args.json)
        return _write(conn, args)
    except FetchError as exc:
        sys.stderr.write(f"altiwatch maintenance: {exc}\n")
        return EX_UNAVAILABLE


def _list(conn: Connection, *, as_json: bool) -> int:
    windows = conn.get_json("/api/v1/maintenance", TIMEOUT_S)
    if not isinstance(windows, list):
        sys.stderr.write("altiwatch maintenance: unexpected answer from the agent\n")
        return EX_UNAVAILABLE
    sys.stdout.write(json.dumps(windows, indent=2) + "\n" if as_json else format_windows(windows))
    return EX_OK


def _write(conn: Connection, args: argparse.Namespace) -> int:
    if not args.miners and args.rack is None and args.container is None:
        sys.stderr.write("altiwatch maintenance: name miners, --rack or --container\n")
        return EX_USAGE
    body: dict[str, Any] = {
        "action": args.action,
        "miners": args.miners,
        "rack": args.rack,
        "container": args.container,
        "site": args.site,
    }
    if args.action == "start":
        try:
            for_s = parse_duration(args.duration) if args.duration else None
        except ValueError as exc:
            sys.stderr.write(f"altiwatch maintenance: --for: {exc}\n")
            return EX_USAGE
        body |= {"for_s": for_s, "reason": args.reason, "by": args.by or _local_user()}
    status, answer = conn.post_json("/api/v1/maintenance", body, TIMEOUT_S)
    if status != HTTPStatus.OK or not isinstance(answer, dict):
        error = answer.get("error") if isinstance(answer, dict) else answer
        sys.stderr.write(f"altiwatch maintenance: {error}\n")
        return EX_NOINPUT if status == HTTPStatus.NOT_FOUND else EX_USAGE
    miners = answer.get("miners") or []
    verb = "in maintenance" if args.action == "start" else "out of maintenance"
    sys.stdout.write(f"{len(miners)} miner(s) {verb}\n")
    if args.action == "start":
        sys.stdout.write(format_windows(miners))
    return EX_OK


def _selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("miners", nargs="*", metavar="MINER", help="id (MAC), name or address")
    parser.add_argument("--rack", help="every miner of this rack (with --container: of that one)")
    parser.add_argument("--container", help="every miner of this container")
    parser.add_argument("--site", help="only miners of this site")


def connection_options(parser: argparse.ArgumentParser) -> None:
    """--url, --user, --ca-file, as for altiwatch top."""
    parser.add_argument(
        "--url", default=DEFAULT_URL, help=f"the agent's HTTP address (default {DEFAULT_URL})"
    )
    parser.add_argument(
        "--user",
        help=f"basic-auth user (http.web_config_file); password from ${PASSWORD_ENV} or a prompt",
    )
    parser.add_argument(
        "--ca-file", type=Path, help="CA bundle to verify an https:// agent (default: system CAs)"
    )


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``altiwatch maintenance`` to the CLI."""
    parser = subparsers.add_parser(
        "maintenance",
        help="put miners in or out of maintenance (alarms held back)",
        description="Maintenance windows through the agent's API: while a miner is in "
        "maintenance its alarms are held back, it leaves the R7 site ratio and "
        "asic_maintenance is 1.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = actions.add_parser("start", help="open a maintenance window")
    _selection(start)
    start.add_argument(
        "--for",
        dest="duration",
        help="length, e.g. 4h, 90m, 1h30m, 2d (default: open until ended)",
    )
    start.add_argument("--reason", required=True, help="why (shown to the crew and in events)")
    start.add_argument(
        "--by",
        help="who (default: the local user; basic auth's user when the agent has one)",
    )
    connection_options(start)
    end = actions.add_parser("end", help="close maintenance windows")
    _selection(end)
    connection_options(end)
    listing = actions.add_parser("list", help="show the open maintenance windows")
    listing.add_argument("--json", action="store_true", help="the API's JSON")
    connection_options(listing)
    parser.set_defaults(handler=_cmd)
