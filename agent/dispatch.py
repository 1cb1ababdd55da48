"""``altiwatch dispatch``: the miners that need a visit, per container and rack, in walking order.

Read from the agent's ``/api/v1/fleet`` (as ``altiwatch top`` does). A miner needs a visit for
any of these reasons, each said in words:

* a critical alarm (its summary);
* missing hashboards (reported missing, or fewer than the model has);
* dead fans (a fan reporting 0 rpm while the miner is up);
* offline for longer than ``--offline-after`` (default 10 min), or never answered;
* maintenance overdue: a window open longer than ``--overdue-after`` (default 8 h) with no end,
  or past its end.

A miner in maintenance is someone's job already: only "maintenance overdue" lists it. The list
is sorted as a technician walks: site, container, rack, shelf, slot (numbers by value, unknown
last). Text by default, ``--json`` or ``--csv`` for other tools.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from agent.location import Location, walk_key
from agent.maintenance import parse_duration
from agent.maintenance_cli import connect, connection_options
from agent.top import FetchError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterable, Mapping, Sequence

EX_OK = 0
EX_USAGE = 64
EX_UNAVAILABLE = 69
OFFLINE_AFTER_S = 600.0
OVERDUE_AFTER_S = 8 * 3600.0
CSV_COLUMNS = (
    "site",
    "container",
    "rack",
    "shelf",
    "slot",
    "name",
    "miner",
    "address",
    "reasons",
)


@dataclass(frozen=True, slots=True)
class Visit:
    """One miner to walk to, where it stands and why."""

    site: str
    container: str | None
    rack: str | None
    shelf: str | None
    slot: str | None
    name: str | None
    miner: str
    address: str | None
    reasons: tuple[str, ...]

    @property
    def location(self) -> Location:
        """The miner's place as a Location (for ordering)."""
        return Location(container=self.container, rack=self.rack, shelf=self.shelf, slot=self.slot)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _ago(seconds: float) -> str:
    if seconds >= 86400:  # noqa: PLR2004 - a day
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:  # noqa: PLR2004 - an hour
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"


def reasons_for(
    miner: Mapping[str, Any],
    *,
    now: float,
    offline_after_s: float = OFFLINE_AFTER_S,
    overdue_after_s: float = OVERDUE_AFTER_S,
) -> list[str]:
    """Why ``miner`` (a ``/api/v1/fleet`` object) needs a visit; empty when it does not."""
    maintenance = miner.get("maintenance")
    if isinstance(maintenance, dict):
        since, until = _num(maintenance.get("since")), _num(maintenance.get("until"))
        reason = _text(maintenance.get("reason")) or "-"
        if until is not None and now >= until:
            return [f"maintenance overdue: ended {_ago(now - until)} ago ({reason})"]
        if until is None and since is not None and now - since > overdue_after_s:
            return [f"maintenance overdue: open {_ago(now - since)} ({reason})"]
        return []
    out: list[str] = [
        f"CRIT {_text(alarm.get('summary')) or alarm.get('rule') or 'alarm'}"
        for alarm in miner.get("alarms") or ()
        if isinstance(alarm, dict) and alarm.get("severity") == "critical"
    ]
    up = miner.get("up")
    if up is False:
        last = _num(miner.get("last_success_at"))
        error = _text(miner.get("last_error")) or "no answer"
        if last is None:
            out.append(f"offline: never answered ({error})")
        elif now - last > offline_after_s:
            out.append(f"offline for {_ago(now - last)} ({error})")
        return out
    boards = [b for b in miner.get("boards") or () if isinstance(b, dict)]
    missing = sum(1 for b in boards if b.get("missing") is True)
    expected = _num(miner.get("expected_boards"))
    if expected is not None:
        missing = max(missing, int(expected) - sum(1 for b in boards if not b.get("missing")))
    if missing > 0 and up is True:
        out.append(f"{missing} hashboard{'s' if missing > 1 else ''} missing")
    dead = [f for f in miner.get("fans") or () if isinstance(f, dict) and f.get("rpm") == 0]
    if dead and up is True:
        which = ", ".join(str(f.get("index", "?")) for f in dead)
        out.append(f"{len(dead)} fan{'s' if len(dead) > 1 else ''} stopped (fan {which})")
    return out


def visits(
    fleet: Iterable[Any],
    *,
    now: float,
    offline_after_s: float = OFFLINE_AFTER_S,
    overdue_after_s: float = OVERDUE_AFTER_S,
) -> list[Visit]:
    """The miners of ``fleet`` that need a visit, in walking order."""
    out = []
    for miner in fleet:
        if not isinstance(miner, dict):
            continue
        why = reasons_for(
            miner, now=now, offline_after_s=offline_after_s, overdue_after_s=overdue_after_s
        )
        if not why:
            continue
        raw_place = miner.get("location")
        place: dict[str, Any] = raw_place if isinstance(raw_place, dict) else {}
        out.append(
            Visit(
                site=_text(miner.get("site")) or "-",
                container=_text(place.get("container")),
                rack=_text(place.get("rack")),
                shelf=_text(place.get("shelf")),
                slot=_text(place.get("slot")),
                name=_text(miner.get("name")),
                miner=_text(miner.get("miner")) or _text(miner.get("address")) or "?",
                address=_text(miner.get("address")),
                reasons=tuple(why),
            )
        )
    out.sort(key=lambda v: (v.site, walk_key(v.location), v.miner))
    return out


def render_text(found: Sequence[Visit], *, now: float) -> str:
    """Per site, container and rack: one line per miner (shelf, slot, name, id, address, why)."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now))
    if not found:
        return f"Dispatch list {stamp}: no miner needs a visit\n"
    lines = [f"Dispatch list {stamp}: {len(found)} miner(s) to visit"]
    heading: tuple[str, str | None, str | None] | None = None
    for v in found:
        if (v.site, v.container, v.rack) != heading:
            heading = (v.site, v.container, v.rack)
            lines.append("")
            lines.append(f"site {v.site} — container {v.container or '?'}, rack {v.rack or '?'}")
        spot = f"shelf {v.shelf or '?'} slot {v.slot or '?'}"
        who = f"{v.name} ({v.miner})" if v.name else v.miner
        lines.append(f"  {spot:<16} {who}  {v.address or ''}")
        lines.extend(f"      - {reason}" for reason in v.reasons)
    return "\n".join(lines) + "\n"


def render_csv(found: Sequence[Visit]) -> str:
    """One CSV row per miner (``CSV_COLUMNS``; reasons joined with ``; ``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for v in found:
        row = asdict(v)
        row["reasons"] = "; ".join(v.reasons)
        writer.writerow(["" if row[c] is None else row[c] for c in CSV_COLUMNS])
    return buffer.getvalue()


def render_json(found: Sequence[Visit]) -> str:
    """The visits as a JSON list of objects (``reasons`` a list)."""
    return json.dumps([{**asdict(v), "reasons": list(v.reasons)} for v in found], indent=2) + "\n"


def _cmd(args: argparse.Namespace) -> int:
    try:
        offline = parse_duration(args.offline_after)
        overdue = parse_duration(args.overdue_after)
    except ValueError as exc:
        sys.stderr.write(f"altiwatch dispatch: {exc}\n")
        return EX_USAGE
    try:
        fleet = connect(args).get_json("/api/v1/fleet", 10.0)
    except FetchError as exc:
        sys.stderr.write(f"altiwatch dispatch: {exc}\n")
        return EX_UNAVAILABLE
    if not isinstance(fleet, list):
        sys.stderr.write("altiwatch dispatch: unexpected answer from the agent\n")
        return EX_UNAVAILABLE
    now = time.time()
    found = visits(fleet, now=now, offline_after_s=offline, overdue_after_s=overdue)
    if args.site is not None:
        found = [v for v in found if v.site == args.site]
    if args.json:
        sys.stdout.write(render_json(found))
    elif args.csv:
        sys.stdout.write(render_csv(found))
    else:
        sys.stdout.write(render_text(found, now=now))
    return EX_OK


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``altiwatch dispatch`` to the CLI."""
    parser = subparsers.add_parser(
        "dispatch",
        help="the miners that need a visit, in walking order",
        description="The miners that need a visit (critical alarms, missing boards, dead fans, "
        "offline too long, maintenance overdue), per container and rack in walking order, "
        "read from the agent's API.",
    )
    formats = parser.add_mutually_exclusive_group()
    formats.add_argument("--json", action="store_true", help="a JSON list of visits")
    formats.add_argument("--csv", action="store_true", help="CSV, one row per miner")
    parser.add_argument("--site", help="only this site")
    parser.add_argument(
        "--offline-after",
        default="10m",
        help="an offline miner needs a visit after this long (default 10m)",
    )
    parser.add_argument(
        "--overdue-after",
        default="8h",
        help="an open-ended maintenance window is overdue after this long (default 8h)",
    )
    connection_options(parser)
    parser.set_defaults(handler=_cmd)
