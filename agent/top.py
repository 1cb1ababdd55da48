"""``altiwatch top``: a live terminal view of a running agent, read from its JSON API.

One table per site, one row per miner: hashrate against expected, the hottest sensor against
its altitude-derated warning/critical thresholds, fans, power and active alarms, under a site
header with altitude, δ = p/p0 and the cooling multiplier M(δ). ``--once`` prints one frame
(plain text when stdout is not a terminal) and exits; without it the view refreshes in place
until Ctrl-C.

The view reads ``GET /api/v1/fleet`` (and ``/api/v1/alarms`` for site-level alarms) and is
tolerant by design: every field may be missing or null, and unknown values show as ``-``.
"""

from __future__ import annotations

import base64
import getpass
import json
import math
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from agent.location import Location, walk_key

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Mapping, Sequence

    from rich.console import RenderableType

DEFAULT_URL = "http://127.0.0.1:9847"
SortKey = Literal["hashrate", "temp", "alarms", "miner"]
SORT_KEYS: tuple[SortKey, ...] = ("hashrate", "temp", "alarms", "miner")
GroupKey = Literal["container", "rack"]
GROUP_KEYS: tuple[GroupKey, ...] = ("container", "rack")
EX_OK = 0
EX_USAGE = 64
EX_UNAVAILABLE = 69
DEFAULT_LIMIT = 40
"""Rows per site by default: rendering is ~3 ms a row, a 10,000-miner site would take 30 s."""
PASSWORD_ENV = "ALTIWATCH_TOP_PASSWORD"  # noqa: S105 - the variable's name, not a password
PLAIN_WIDTH = 160
"""Columns of a frame printed to a pipe or file (a terminal uses its own width)."""

MAX_EXPLANATIONS = 12
"""Alarm explanation lines under a site's table; the rest is counted."""

_SEVERITY_RANK = {"info": 1, "warning": 2, "critical": 3}
_SEVERITY_STYLE = {1: "cyan", 2: "yellow", 3: "bold red"}
_SEVERITY_SHORT = {1: "info", 2: "warn", 3: "crit"}
_UNITS = ((1e18, "EH/s"), (1e15, "PH/s"), (1e12, "TH/s"), (1e9, "GH/s"), (1e6, "MH/s"))


class FetchError(RuntimeError):
    """The agent's API could not be read or did not return the expected JSON."""


# --- reading the API ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connection:
    """Where the agent's API is and how to authenticate (exporter-toolkit web config)."""

    url: str = DEFAULT_URL
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None

    @classmethod
    def parse(
        cls,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
    ) -> Connection:
        """Accept ``http(s)://[user[:password]@]host:port``; userinfo is moved out of the URL."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in {"http", "https"}:
            msg = f"unsupported URL scheme {parts.scheme!r} (use http:// or https://)"
            raise FetchError(msg)
        if parts.username is not None:
            username = username or urllib.parse.unquote(parts.username)
            if parts.password is not None:
                password = password or urllib.parse.unquote(parts.password)
            host = parts.hostname or ""
            netloc = f"[{host}]" if ":" in host else host
            if parts.port is not None:
                netloc += f":{parts.port}"
            url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        return cls(url.rstrip("/"), username, password, ca_file)

    def _context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https:"):
            return None
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def get_json(self, path: str, timeout_s: float) -> Any:
        """GET ``path`` as JSON; FetchError (never the password) on any failure."""
        request = urllib.request.Request(self.url + path, headers=self._headers())  # noqa: S310 - scheme checked in parse()
        return self._json(request, timeout_s)

    def post_json(self, path: str, body: Any, timeout_s: float) -> tuple[int, Any]:
        """POST ``body`` as JSON to ``path``: (status, JSON answer), 4xx answers included.

        FetchError on a network failure, a 401/5xx, or an answer that is not JSON.
        """
        headers = {**self._headers(), "Content-Type": "application/json"}
        request = urllib.request.Request(  # noqa: S310 - scheme checked in parse()
            self.url + path, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            return HTTPStatus.OK, self._json(request, timeout_s)
        except _ClientError as exc:
            return exc.status, exc.answer

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.username is not None:
            token = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return headers

    def _json(self, request: urllib.request.Request, timeout_s: float) -> Any:
        url = request.full_url
        try:
            context = self._context()
            with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:  # noqa: S310 - scheme checked in parse()
                body = response.read()
        except urllib.error.HTTPError as exc:
            if request.get_method() == "POST" and 400 <= exc.code < 500 and exc.code != 401:  # noqa: PLR2004 - HTTP client errors
                try:
                    answer = json.loads(exc.read())
                except ValueError:
                    answer = {"error": exc.reason}
                raise _ClientError(exc.code, answer) from None
            hint = (
                " (use --user and ALTIWATCH_TOP_PASSWORD)"
                if exc.code == HTTPStatus.UNAUTHORIZED
                else ""
            )
            msg = f"{url} answered {exc.code} {exc.reason}{hint}"
            raise FetchError(msg) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            msg = f"cannot read {url}: {getattr(exc, 'reason', exc)}"
            raise FetchError(msg) from exc
        try:
            return json.loads(body)
        except ValueError as exc:
            msg = f"{url} did not return JSON"
            raise FetchError(msg) from exc


class _ClientError(Exception):
    """A write was refused (4xx) with a JSON answer."""

    def __init__(self, status: int, answer: Any) -> None:
        super().__init__(status)
        self.status = status
        self.answer = answer


def fetch(
    agent: Connection | str, *, timeout_s: float = 5.0
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Return the fleet list and the active alarms list from the agent.

    The alarms endpoint is optional (only site-level alarms come from it); a failure there
    yields an empty list.
    """
    conn = agent if isinstance(agent, Connection) else Connection.parse(agent)
    fleet = conn.get_json("/api/v1/fleet", timeout_s)
    if not isinstance(fleet, list):
        msg = f"{conn.url}/api/v1/fleet returned {type(fleet).__name__}, expected a list"
        raise FetchError(msg)
    try:
        alarms = conn.get_json("/api/v1/alarms", timeout_s)
    except FetchError:
        alarms = []
    return [m for m in fleet if isinstance(m, dict)], alarms if isinstance(alarms, list) else []


# --- tolerant field access ---------------------------------------------------------------------


def _num(data: Mapping[str, Any] | None, *keys: str) -> float | None:
    """The first key of ``data`` holding a finite number (bools are not numbers)."""
    if not isinstance(data, dict):
        return None
    for key in keys:
        value = data.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def _str(data: Mapping[str, Any] | None, *keys: str) -> str | None:
    if not isinstance(data, dict):
        return None
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _dict(data: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = data.get(key)
    return value if isinstance(value, dict) else None


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    return value if isinstance(value, list) else []


def severity_rank(value: Any) -> int:
    """1 info, 2 warning, 3 critical from a label ("critical"), an int (3) or an enum name."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value if value in _SEVERITY_STYLE else 0
    if isinstance(value, str):
        return _SEVERITY_RANK.get(value.strip().lower(), 0)
    if isinstance(value, dict):
        return severity_rank(value.get("label") or value.get("name"))
    return 0


@dataclass(frozen=True, slots=True)
class Alarm:
    """One active alarm as the view shows it."""

    rule: str
    severity: int
    summary: str | None = None

    @classmethod
    def parse(cls, raw: Any) -> Alarm | None:
        """Build from an ``ActiveAlarm.as_dict()``; None if it names no rule."""
        if not isinstance(raw, dict):
            return None
        rule = _str(raw, "rule", "name", "id")
        if rule is None:
            return None
        return cls(
            rule=rule,
            severity=severity_rank(raw.get("severity")),
            summary=_str(raw, "summary", "title"),
        )


@dataclass(frozen=True, slots=True)
class Row:
    """One miner's line: everything the table shows, already reduced to numbers or None."""

    miner: str
    site: str
    model: str | None
    address: str | None
    up: bool | None
    error: str | None
    hashrate_hs: float | None
    expected_hs: float | None
    hottest_c: float | None
    sensor: str | None
    warning_c: float | None
    critical_c: float | None
    fan_rpm: float | None
    fan_load: float | None
    power_w: float | None
    alarms: tuple[Alarm, ...]
    bad_shares: float | None = None
    """Rejected + stale over all shares in R12's window (None: no pool counters)."""
    name: str | None = None
    location: tuple[str | None, str | None, str | None, str | None] = (None, None, None, None)
    """container, rack, shelf, slot (None: unknown)."""
    maintenance: str | None = None
    """The maintenance reason while the miner is in maintenance."""
    cooling: str | None = None
    """``hydro``/``immersion``: the fans column shows the cooling and coolant instead."""
    coolant_in_c: float | None = None
    coolant_out_c: float | None = None

    @property
    def label(self) -> str:
        """The miner named for people: ``name (id)``, or the id alone."""
        named = self.name and self.name != self.miner
        return f"{self.name} ({self.miner})" if named else self.miner

    @property
    def where(self) -> str:
        """``C3/12/2/4`` (unknown parts ``-``), or ``-`` when nothing is known."""
        if not any(self.location):
            return "-"
        return "/".join(part or "-" for part in self.location)

    def group(self, by: GroupKey) -> str:
        """The container (``by="container"``) or container and rack the miner stands in."""
        container, rack = self.location[0], self.location[1]
        text = f"container {container or '?'}"
        return text if by == "container" else f"{text}, rack {rack or '?'}"

    @property
    def ratio(self) -> float | None:
        """Hashrate over expected hashrate."""
        if self.hashrate_hs is None or not self.expected_hs:
            return None
        return self.hashrate_hs / self.expected_hs

    @property
    def headroom_k(self) -> float | None:
        """Derated warning threshold minus the hottest sensor (negative = past warning)."""
        if self.hottest_c is None or self.warning_c is None:
            return None
        return self.warning_c - self.hottest_c

    @property
    def worst_severity(self) -> int:
        """Highest severity among active alarms (0 when none)."""
        return max((a.severity for a in self.alarms), default=0)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Row:
        """Reduce one ``/api/v1/fleet`` object; every field may be missing."""
        thresholds = _dict(raw, "thresholds")
        sensor = _str(thresholds, "sensor")
        chip = _num(raw, "max_chip_temp_c")
        board = _num(raw, "max_board_temp_c")
        if sensor == "board":
            hottest = board if board is not None else chip
        else:
            hottest = chip if chip is not None else board
        rpms = [
            rpm for fan in _list(raw, "fans") if (rpm := _num(fan, "rpm")) is not None and rpm > 0
        ]
        fan_rpm = sum(rpms) / len(rpms) if rpms else None
        fan_load = _num(raw, "fan_duty_ratio")
        rpm_max = _num(thresholds, "rpm_max")
        if fan_load is None and fan_rpm is not None and rpm_max:
            fan_load = max(rpms) / rpm_max
        up = raw.get("up")
        alarms = tuple(a for a in map(Alarm.parse, _list(raw, "alarms")) if a is not None)
        place = _dict(raw, "location")
        maintenance = _dict(raw, "maintenance")
        return cls(
            name=_str(raw, "name"),
            location=(
                _str(place, "container"),
                _str(place, "rack"),
                _str(place, "shelf"),
                _str(place, "slot"),
            ),
            maintenance=(_str(maintenance, "reason") or "-") if maintenance else None,
            miner=_str(raw, "miner", "name", "address") or "?",
            site=_str(raw, "site") or "-",
            model=_str(raw, "model"),
            address=_str(raw, "address"),
            up=up if isinstance(up, bool) else None,
            error=_str(raw, "last_error"),
            hashrate_hs=_num(raw, "hashrate_hs"),
            expected_hs=_num(raw, "expected_hashrate_hs"),
            hottest_c=hottest,
            sensor=sensor or ("chip" if chip is not None else "board" if board else None),
            warning_c=_num(thresholds, "warning_c"),
            critical_c=_num(thresholds, "critical_c"),
            fan_rpm=fan_rpm,
            fan_load=fan_load,
            power_w=_num(raw, "power_w"),
            alarms=tuple(sorted(alarms, key=lambda a: (-a.severity, a.rule))),
            bad_shares=_num(_dict(raw, "share_health"), "bad_ratio"),
            cooling=_str(thresholds, "cooling") or _str(raw, "cooling"),
            coolant_in_c=_num(raw, "coolant_inlet_c"),
            coolant_out_c=_num(raw, "coolant_outlet_c"),
        )


@dataclass(frozen=True, slots=True)
class SiteAir:
    """A site's air as the agent computed it."""

    altitude_m: float | None
    delta: float | None
    cooling_multiplier: float | None
    pressure_source: str | None

    @classmethod
    def parse(cls, raw: Any) -> SiteAir:
        """From the fleet JSON's ``site_air`` (or the thresholds, which repeat it)."""
        data = raw if isinstance(raw, dict) else None
        return cls(
            altitude_m=_num(data, "altitude_m"),
            delta=_num(data, "delta"),
            cooling_multiplier=_num(data, "cooling_multiplier", "m"),
            pressure_source=_str(data, "pressure_source"),
        )


# --- formatting --------------------------------------------------------------------------------


def format_hashrate(value: float | None) -> str:
    """H/s in the largest unit that keeps the number ≥ 1 (``104.2 TH/s``); ``-`` if unknown."""
    if value is None:
        return "-"
    for scale, unit in _UNITS:
        if abs(value) >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} H/s"


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _temp_style(row: Row) -> str:
    if row.hottest_c is None:
        return "dim"
    if row.critical_c is not None and row.hottest_c >= row.critical_c:
        return "bold red"
    if row.warning_c is not None and row.hottest_c >= row.warning_c:
        return "yellow"
    return "green"


def _ratio_style(ratio: float | None) -> str:
    if ratio is None:
        return "dim"
    if ratio < 0.75:  # noqa: PLR2004 - R5 critical ratio
        return "bold red"
    if ratio < 0.9:  # noqa: PLR2004 - R5 warning ratio
        return "yellow"
    return "green"


def _share_style(ratio: float | None) -> str:
    """R12's colours: 1.5 % and above yellow, 5 % and above red."""
    if ratio is None:
        return "dim"
    if ratio >= 0.05:  # noqa: PLR2004 - R12 critical
        return "bold red"
    return "yellow" if ratio >= 0.015 else ""  # noqa: PLR2004 - R12 warning


def sort_rows(rows: Sequence[Row], key: SortKey) -> list[Row]:
    """Order rows: worst first for hashrate/temp/alarms, by id for ``miner``."""
    if key == "miner":
        return sorted(rows, key=lambda r: r.miner)
    if key == "hashrate":
        # Down or unknown first, then the lowest ratio.
        return sorted(rows, key=lambda r: (r.ratio is not None, r.ratio or 0.0, r.miner))
    if key == "temp":
        # Least headroom to the derated warning first; rows without thresholds by temperature.
        def temp_key(r: Row) -> tuple[int, float, str]:
            if r.headroom_k is not None:
                return (0, r.headroom_k, r.miner)
            if r.hottest_c is not None:
                return (1, -r.hottest_c, r.miner)
            return (2, 0.0, r.miner)

        return sorted(rows, key=temp_key)
    return sorted(rows, key=lambda r: (-r.worst_severity, -len(r.alarms), r.miner))


def _status(row: Row) -> Text:
    if row.maintenance is not None:
        return Text("maintenance", style="magenta")
    if row.up is True:
        return Text("up", style="green")
    if row.up is False:
        return Text(f"DOWN {row.error or ''}".strip(), style="bold red")
    return Text("pending", style="dim")


def _alarm_text(row: Row) -> Text:
    text = Text()
    for i, alarm in enumerate(row.alarms):
        if i:
            text.append(" ")
        label = f"{alarm.rule}:{_SEVERITY_SHORT.get(alarm.severity, '?')}"
        text.append(label, style=_SEVERITY_STYLE.get(alarm.severity, ""))
    return text if row.alarms else Text("-", style="dim")


def _fan_text(row: Row) -> str:
    if row.cooling in {"hydro", "immersion"}:  # no fans / 0 rpm is normal: show the coolant
        if row.coolant_in_c is None and row.coolant_out_c is None:
            return row.cooling
        inlet, outlet = _fmt(row.coolant_in_c, ".0f"), _fmt(row.coolant_out_c, ".0f")
        return f"{row.cooling} {inlet}→{outlet} °C"
    rpm = _fmt(row.fan_rpm, ".0f", " rpm")
    if row.fan_load is None:
        return rpm
    return f"{rpm} ({row.fan_load:.0%})"


def _site_header(
    site: str, air: SiteAir, rows: Sequence[Row], site_alarms: Sequence[Alarm]
) -> Text:
    up = sum(1 for r in rows if r.up)
    known = [r.hashrate_hs for r in rows if r.hashrate_hs is not None]
    hashrate = sum(known) if known else None
    expected = sum(r.expected_hs for r in rows if r.expected_hs is not None)
    counts = dict.fromkeys((3, 2, 1), 0)
    for alarm in [a for r in rows for a in r.alarms] + list(site_alarms):
        if alarm.severity in counts:
            counts[alarm.severity] += 1
    header = Text()
    header.append(f"Site {site}", style="bold")
    altitude = _fmt(air.altitude_m, ",.0f", " m")
    header.append(f"  altitude {altitude}  δ {_fmt(air.delta, '.3f')}")
    header.append(f"  M(δ) {_fmt(air.cooling_multiplier, '.3f')}")
    if air.pressure_source:
        header.append(f"  pressure: {air.pressure_source}", style="dim")
    header.append(f"\n{up}/{len(rows)} up  hashrate {format_hashrate(hashrate)}")
    header.append(f" of {format_hashrate(expected) if expected else '-'} expected")
    header.append("  alarms: ")
    header.append(f"{counts[3]} critical", style="bold red" if counts[3] else "")
    header.append(f", {counts[2]} warning", style="yellow" if counts[2] else "")
    header.append(f", {counts[1]} info")
    for alarm in site_alarms:
        header.append(f"  site {alarm.rule}:{_SEVERITY_SHORT.get(alarm.severity, '?')}")
    return header


def _explanations(rows: Sequence[Row], site_alarms: Sequence[Alarm]) -> Text | None:
    """The engine's one-line explanation of each alarm (value, derated and sea-level limit)."""
    items = [("site", a) for a in site_alarms] + [(r.label, a) for r in rows for a in r.alarms]
    items = [(who, a) for who, a in items if a.summary]
    if not items:
        return None
    items.sort(key=lambda item: (-item[1].severity, item[0], item[1].rule))
    text = Text()
    for who, alarm in items[:MAX_EXPLANATIONS]:
        text.append(
            f"\n  {_SEVERITY_SHORT.get(alarm.severity, '?'):<4} ",
            _SEVERITY_STYLE.get(alarm.severity, ""),
        )
        text.append(f"{who}  {alarm.summary}")
    if len(items) > MAX_EXPLANATIONS:
        text.append(f"\n  … and {len(items) - MAX_EXPLANATIONS} more (GET /api/v1/alarms)", "dim")
    return text


def _hidden_note(hidden: Sequence[Row]) -> Text:
    down = sum(1 for r in hidden if r.up is False)
    alarmed = sum(1 for r in hidden if r.alarms)
    return Text(
        f"… {len(hidden):,} more miners not shown ({down:,} down, {alarmed:,} with alarms); "
        "--limit 0 shows all, --sort changes which come first",
        style="dim",
    )


def _table(rows: Sequence[Row]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold", expand=False)
    table.add_column("miner", no_wrap=True)
    table.add_column("where", no_wrap=True)
    table.add_column("model", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("hashrate", justify="right", no_wrap=True)
    table.add_column("of expected", justify="right", no_wrap=True)
    table.add_column("hottest °C", justify="right", no_wrap=True)
    table.add_column("derated warn/crit", justify="right", no_wrap=True)
    table.add_column("headroom K", justify="right", no_wrap=True)
    table.add_column("fans", justify="right", no_wrap=True)
    table.add_column("power", justify="right", no_wrap=True)
    table.add_column("bad shares", justify="right", no_wrap=True)
    table.add_column("alarms", overflow="fold", min_width=12)
    for row in rows:
        limits = (
            "-"
            if row.warning_c is None and row.critical_c is None
            else f"{_fmt(row.warning_c, '.1f')}/{_fmt(row.critical_c, '.1f')}"
        )
        hottest = _fmt(row.hottest_c, ".1f")
        if row.hottest_c is not None and row.sensor:
            hottest = f"{hottest} {row.sensor}"
        table.add_row(
            row.label,
            row.where,
            row.model or "-",
            _status(row),
            format_hashrate(row.hashrate_hs),
            Text(_fmt(row.ratio, ".1%"), style=_ratio_style(row.ratio)),
            Text(hottest, style=_temp_style(row)),
            limits,
            Text(_fmt(row.headroom_k, "+.1f"), style=_temp_style(row)),
            _fan_text(row),
            _fmt(row.power_w, ",.0f", " W"),
            Text(_fmt(row.bad_shares, ".2%"), style=_share_style(row.bad_shares)),
            _alarm_text(row),
        )
    return table


def _site_air(fleet: Sequence[Mapping[str, Any]]) -> dict[str, SiteAir]:
    """Each site's air, from the first of its miners that carries it."""
    air: dict[str, SiteAir] = {}
    for raw in fleet:
        site = _str(raw, "site") or "-"
        if site not in air or air[site].delta is None:
            air[site] = SiteAir.parse(raw.get("site_air") or raw.get("thresholds"))
    return air


def _site_alarms(alarms: Sequence[Any]) -> dict[str, list[Alarm]]:
    """Site-level alarms (no miner) by site, from ``/api/v1/alarms``."""
    by_site: dict[str, list[Alarm]] = {}
    for raw in alarms:
        if not isinstance(raw, dict) or raw.get("miner"):
            continue
        alarm = Alarm.parse(raw)
        if alarm is not None:
            by_site.setdefault(_str(raw, "site") or "-", []).append(alarm)
    return by_site


def render(
    fleet: Sequence[Mapping[str, Any]],
    *,
    alarms: Sequence[Any] = (),
    sort: SortKey = "temp",
    source: str = "",
    now: float | None = None,
    limit: int | None = DEFAULT_LIMIT,
    group: GroupKey | None = None,
) -> RenderableType:
    """One frame: a title line, then a header and a table per site (sites sorted by name).

    Each site's table shows its first ``limit`` rows in sort order (the worst ones for every
    key but ``miner``) and counts the rest; ``None`` or 0 shows every row. The header and the
    alarm counts always cover the whole site. With ``group``, a site's rows are split into one
    table per container (or per container and rack), in walking order, ``limit`` rows each.
    """
    rows = [Row.parse(m) for m in fleet if isinstance(m, dict)]
    air = _site_air(fleet)
    site_alarms = _site_alarms(alarms)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() if now is None else now))
    title = Text(f"altiwatch top  {source}  {stamp}  sorted by {sort}", style="bold")
    parts: list[RenderableType] = [title]
    sites = sorted({r.site for r in rows} | set(site_alarms))
    if not sites:
        parts.append(Text("no miners in the agent's inventory yet", style="dim"))
    for site in sites:
        site_rows = sort_rows([r for r in rows if r.site == site], sort)
        parts.append(Text(""))
        parts.append(
            _site_header(
                site, air.get(site, SiteAir.parse(None)), site_rows, site_alarms.get(site, [])
            )
        )
        for heading, group_rows in _groups(site_rows, group):
            if heading:
                parts.append(Text(heading, style="bold"))
            shown = group_rows[:limit] if limit else group_rows
            if shown:
                parts.append(_table(shown))
            if len(shown) < len(group_rows):
                parts.append(_hidden_note(group_rows[len(shown) :]))
        explained = _explanations(site_rows, site_alarms.get(site, []))
        if explained is not None:
            parts.append(explained)
    return Group(*parts)


def _groups(rows: Sequence[Row], by: GroupKey | None) -> list[tuple[str, list[Row]]]:
    """``rows`` split by container (or container and rack) in walking order; one group if None."""
    if by is None:
        return [("", list(rows))]
    groups: dict[str, list[Row]] = {}
    order: dict[str, tuple[object, ...]] = {}
    for row in rows:
        key = row.group(by)
        groups.setdefault(key, []).append(row)
        order[key] = walk_key(Location(container=row.location[0], rack=row.location[1]))
    headings = sorted(groups, key=lambda k: (order[k], k))
    return [
        (f"{k}: {len(groups[k])} miners, {sum(1 for r in groups[k] if r.up)} up", groups[k])
        for k in headings
    ]


# --- the command -------------------------------------------------------------------------------


def _console() -> Console:
    if sys.stdout.isatty():
        return Console()
    width = os.environ.get("COLUMNS", "")
    return Console(width=int(width) if width.isdigit() else PLAIN_WIDTH, no_color=True)


def run_once(
    agent: Connection | str,
    sort: SortKey,
    *,
    console: Console | None = None,
    limit: int | None = DEFAULT_LIMIT,
    group: GroupKey | None = None,
) -> int:
    """Print one frame; EX_UNAVAILABLE (69) with a message on stderr if the agent is unreachable."""
    try:
        conn = agent if isinstance(agent, Connection) else Connection.parse(agent)
        fleet, alarms = fetch(conn)
    except FetchError as exc:
        sys.stderr.write(f"altiwatch top: {exc}\n")
        return EX_UNAVAILABLE
    frame = render(fleet, alarms=alarms, sort=sort, source=conn.url, limit=limit, group=group)
    (console or _console()).print(frame)
    return EX_OK


def run_live(
    agent: Connection | str,
    sort: SortKey,
    *,
    interval_s: float,
    sleep: Callable[[float], None] = time.sleep,
    console: Console | None = None,
    limit: int | None = DEFAULT_LIMIT,
    group: GroupKey | None = None,
) -> int:
    """Refresh the view every ``interval_s`` until Ctrl-C; fetch errors show in place."""
    conn = agent if isinstance(agent, Connection) else Connection.parse(agent)
    console = console or Console()
    with Live(Text("connecting…"), console=console, screen=False, auto_refresh=False) as live:
        try:
            while True:
                try:
                    fleet, alarms = fetch(conn, timeout_s=max(1.0, interval_s))
                    frame = render(
                        fleet, alarms=alarms, sort=sort, source=conn.url, limit=limit, group=group
                    )
                except FetchError as exc:
                    frame = Text(f"altiwatch top: {exc} (retrying)", style="bold red")
                live.update(frame, refresh=True)
                sleep(interval_s)
        except KeyboardInterrupt:
            return EX_OK


def _cmd_top(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        sys.stderr.write("altiwatch top: --interval must be positive\n")
        return EX_USAGE
    password = os.environ.get(PASSWORD_ENV)
    if args.user is not None and password is None and sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.user}: ")
    try:
        conn = Connection.parse(
            args.url, username=args.user, password=password, ca_file=args.ca_file
        )
    except FetchError as exc:
        sys.stderr.write(f"altiwatch top: {exc}\n")
        return EX_UNAVAILABLE
    if args.limit < 0:
        sys.stderr.write("altiwatch top: --limit must be 0 (all) or positive\n")
        return EX_USAGE
    if args.once:
        return run_once(conn, args.sort, limit=args.limit, group=args.group)
    return run_live(conn, args.sort, interval_s=args.interval, limit=args.limit, group=args.group)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``altiwatch top`` to the CLI."""
    parser = subparsers.add_parser(
        "top",
        help="live terminal view of a running agent",
        description="Live terminal view of a running agent, read from its JSON API.",
    )
    parser.add_argument(
        "--url", default=DEFAULT_URL, help=f"the agent's HTTP address (default {DEFAULT_URL})"
    )
    parser.add_argument(
        "--sort",
        choices=SORT_KEYS,
        default="temp",
        help="row order: hashrate (lowest ratio first), temp (least headroom first), "
        "alarms (most severe first), miner (by id); default temp",
    )
    parser.add_argument("--once", action="store_true", help="print one frame and exit")
    parser.add_argument(
        "--group",
        choices=GROUP_KEYS,
        help="one table per container, or per container and rack, in walking order "
        "(miners[].location)",
    )
    parser.add_argument(
        "--user",
        help=f"basic-auth user (http.web_config_file); password from ${PASSWORD_ENV} or a prompt",
    )
    parser.add_argument(
        "--ca-file", type=Path, help="CA bundle to verify an https:// agent (default: system CAs)"
    )
    parser.add_argument(
        "--interval", type=float, default=5.0, help="seconds between refreshes (default 5)"
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"rows per site, worst first (default {DEFAULT_LIMIT}; 0 = all)",
    )
    parser.set_defaults(handler=_cmd_top)
