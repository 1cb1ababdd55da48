"""The site page at ``/``: fleet and alarm objects in, one self-contained HTML page out.

:func:`render` is a pure function of what ``/api/v1/fleet`` and ``/api/v1/alarms`` return (each
field may be missing or null, as for ``altiwatch top``) and the time. Per site it shows the air
(altitude, δ = p/p0, the cooling multiplier M(δ)), the miners up, down, alarming and in
maintenance, the open alarms, and a rack map: one table per container, racks as columns and
shelves as rows, each miner a tile coloured by its thermal headroom. Miners without a location
are tiled under "unplaced"; offline miners and miners in maintenance are marked as such.

Headroom is the derated warning threshold minus the reading it applies to (the hottest board
for stock S19 firmware, the hottest chip otherwise; as ``top`` and the Grafana headroom panels
compute it) and, when the miner reports an inlet, the derated inlet warning minus the inlet:
the smaller of the two. A miner without thresholds or readings has no headroom (grey), never 0.

The page has no script and loads nothing (sites are offline): inline CSS, a
``<meta http-equiv="refresh">`` and a Content-Security-Policy that forbids everything else.
Every miner-supplied string (hostname, name, location, alarm text) is HTML-escaped.
"""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from agent.top import Alarm, Row, SiteAir, severity_rank

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

REFRESH_S = 15
"""The page reloads itself this often (the agent polls every 15 s by default)."""
MAX_ALARMS = 50
"""Open alarms listed per site; the rest are counted."""
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
"""Nothing but the inline style sheet and the empty data: icon; no script at all."""

Status = Literal["maintenance", "offline", "pending", "up"]
Band = Literal["crit", "hot", "warm", "mild", "cool", "unknown"]

BANDS: tuple[tuple[Band, str], ...] = (
    ("crit", "past critical"),
    ("hot", "past warning (< 0 K)"),
    ("warm", "0-3 K"),
    ("mild", "3-10 K"),
    ("cool", "10 K and more"),
    ("unknown", "no reading"),
)
"""Headroom colour bands, hottest first, with their legend."""
WARM_K = 3.0
"""Headroom below this is orange (the Grafana headroom panels' step too)."""
MILD_K = 10.0
"""Headroom below this is yellow; above, green."""

_LOCATION_KEYS = ("container", "rack", "shelf", "slot")
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True, slots=True)
class Location:
    """Where a miner stands; any part may be unknown."""

    container: str | None
    rack: str | None
    shelf: str | None
    slot: str | None

    @classmethod
    def parse(cls, raw: Any) -> Location | None:
        """From the fleet JSON's ``location``; None when absent or wholly unknown."""
        if not isinstance(raw, dict):
            return None
        parts = [_text(raw.get(key)) for key in _LOCATION_KEYS]
        if all(part is None for part in parts):
            return None
        return cls(*parts)

    def describe(self) -> str:
        """``container C3, rack 12, shelf 2, slot 4`` (unknown parts left out)."""
        parts = zip(_LOCATION_KEYS, (self.container, self.rack, self.shelf, self.slot), strict=True)
        return ", ".join(f"{key} {value}" for key, value in parts if value is not None)


@dataclass(frozen=True, slots=True)
class Tile:
    """One miner as the page shows it."""

    row: Row
    name: str | None
    mac: str | None
    hostname: str | None
    location: Location | None
    maintenance: str | None
    """The maintenance window (reason, by whom, until when); None when not in maintenance."""
    headroom_k: float | None
    past_critical: bool

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Tile:
        """Reduce one ``/api/v1/fleet`` object; every field may be missing."""
        row = Row.parse(raw)
        thresholds = raw.get("thresholds")
        if not isinstance(thresholds, dict):
            thresholds = {}
        headrooms = [row.headroom_k] if row.headroom_k is not None else []
        inlet, inlet_warning = (
            _num(raw.get("inlet_temp_c")),
            _num(thresholds.get("inlet_warning_c")),
        )
        if inlet is not None and inlet_warning is not None:
            headrooms.append(inlet_warning - inlet)
        maintenance = raw.get("maintenance")
        reason = None
        if isinstance(maintenance, dict):
            reason = _text(maintenance.get("reason")) or "no reason given"
            who, until = _text(maintenance.get("by")), _num(maintenance.get("until"))
            if who is not None:
                reason += f", by {who}"
            if until is not None:
                reason += ", until " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(until))
        return cls(
            row=row,
            name=_text(raw.get("name")),
            mac=_text(raw.get("mac")),
            hostname=_text(raw.get("hostname")),
            location=Location.parse(raw.get("location")),
            maintenance=reason,
            headroom_k=min(headrooms) if headrooms and row.up else None,
            past_critical=bool(
                row.up
                and row.hottest_c is not None
                and row.critical_c is not None
                and row.hottest_c >= row.critical_c
            ),
        )

    @property
    def status(self) -> Status:
        """Maintenance first (it explains the rest), then offline, pending, up."""
        if self.maintenance is not None:
            return "maintenance"
        if self.row.up is False:
            return "offline"
        return "pending" if self.row.up is None else "up"

    @property
    def alarming(self) -> bool:
        """An active alarm, outside maintenance (there alarms are held back)."""
        return bool(self.row.alarms) and self.status != "maintenance"

    @property
    def band(self) -> Band:
        """The headroom colour band."""
        h = self.headroom_k
        if h is None:
            return "unknown"
        if self.past_critical:
            return "crit"
        if h < 0:
            return "hot"
        return "warm" if h < WARM_K else "mild" if h < MILD_K else "cool"

    @property
    def label(self) -> str:
        """What names the miner to a technician: its name, else its MAC, else its id."""
        return self.name or self.mac or self.row.miner


@dataclass(frozen=True, slots=True)
class Counts:
    """Miners of one site by state (maintenance counted only there)."""

    total: int
    up: int
    down: int
    alarming: int
    maintenance: int

    @classmethod
    def of(cls, tiles: Sequence[Tile]) -> Counts:
        """Count ``tiles``."""
        statuses = [t.status for t in tiles]
        return cls(
            total=len(tiles),
            up=statuses.count("up"),
            down=statuses.count("offline"),
            alarming=sum(t.alarming for t in tiles),
            maintenance=statuses.count("maintenance"),
        )


# --- rendering --------------------------------------------------------------------------------


def render(
    fleet: Sequence[Mapping[str, Any]],
    alarms: Sequence[Mapping[str, Any]] = (),
    *,
    now: float | None = None,
    refresh_s: int = REFRESH_S,
) -> str:
    """The whole page for ``fleet`` (``/api/v1/fleet``) and ``alarms`` (``/api/v1/alarms``)."""
    now = time.time() if now is None else now
    tiles = [Tile.parse(raw) for raw in fleet if isinstance(raw, dict)]
    air: dict[str, SiteAir] = {}
    for raw in fleet:
        site = _text(raw.get("site")) or "-"
        if site not in air or air[site].delta is None:
            air[site] = SiteAir.parse(raw.get("site_air") or raw.get("thresholds"))
    by_site: dict[str, list[Tile]] = {}
    for tile in tiles:
        by_site.setdefault(tile.row.site, []).append(tile)
    site_alarms: dict[str, list[Mapping[str, Any]]] = {}
    for alarm in alarms:
        if isinstance(alarm, dict):
            site = _text(alarm.get("site")) or "-"
            site_alarms.setdefault(site, []).append(alarm)
            by_site.setdefault(site, [])
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    sections = [
        _site_section(
            site,
            by_site[site],
            air.get(site, SiteAir(None, None, None, None)),
            site_alarms.get(site, []),
            now,
        )
        for site in sorted(by_site, key=_natural)
    ]
    if not sections:
        sections = ['<p class="none">No miners configured.</p>']
    title = "altiwatch: " + ", ".join(sorted(by_site, key=_natural)) if by_site else "altiwatch"
    return "".join(
        (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
            f'<meta http-equiv="refresh" content="{int(refresh_s)}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<link rel="icon" href="data:,">',
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
            (
                f'<header><h1>altiwatch</h1><span class="stamp">updated {stamp}, '
                f"reloads every {int(refresh_s)} s</span></header>"
            ),
            *sections,
            _legend(),
            "</body></html>\n",
        )
    )


def _site_section(
    site: str, tiles: list[Tile], air: SiteAir, alarms: list[Mapping[str, Any]], now: float
) -> str:
    counts = Counts.of(tiles)
    by_miner = {t.row.miner: t for t in tiles}
    return "".join(
        (
            f'<section class="site"><h2>Site {_e(site)}</h2>',
            _air(air),
            _counts(counts),
            _alarms(alarms, by_miner, now),
            _rack_map(tiles),
            "</section>",
        )
    )


def _air(air: SiteAir) -> str:
    items = [
        ("altitude", _fmt(air.altitude_m, ",.0f", " m")),
        ("δ = p/p0", _fmt(air.delta, ".3f")),
        ("M(δ)", _fmt(air.cooling_multiplier, ".3f")),
        ("pressure", air.pressure_source or "-"),
    ]
    cells = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in items)
    return f'<dl class="air">{cells}</dl>'


def _counts(counts: Counts) -> str:
    items = [
        ("miners", counts.total, ""),
        ("up", counts.up, "ok" if counts.up else ""),
        ("down", counts.down, "bad" if counts.down else ""),
        ("alarming", counts.alarming, "bad" if counts.alarming else ""),
        ("maintenance", counts.maintenance, "maint" if counts.maintenance else ""),
    ]
    cells = "".join(
        f'<div class="{css}"><dd>{value}</dd><dt>{label}</dt></div>' for label, value, css in items
    )
    return f'<dl class="counts">{cells}</dl>'


def _alarms(alarms: list[Mapping[str, Any]], by_miner: Mapping[str, Tile], now: float) -> str:
    if not alarms:
        return '<h3>Open alarms</h3><p class="none">None.</p>'

    def key(raw: Mapping[str, Any]) -> tuple[int, float, str]:
        since = _num(raw.get("since"))
        return (-severity_rank(raw.get("severity")), since or 0.0, str(raw.get("miner") or ""))

    ordered = sorted(alarms, key=key)
    rows = []
    for raw in ordered[:MAX_ALARMS]:
        parsed = Alarm.parse(raw)
        severity = _text(raw.get("severity")) or "?"
        miner = _text(raw.get("miner"))
        tile = by_miner.get(miner) if miner else None
        where = "site"
        if tile is not None:
            where = tile.label
            if tile.location is not None:
                where += f" ({tile.location.describe()})"
        elif miner:
            where = miner
        held = tile is not None and tile.status == "maintenance"
        summary = (parsed.summary if parsed else None) or _text(raw.get("title")) or ""
        since = _num(raw.get("since"))
        age = _age(now - since) if since is not None else "-"
        css = f"sev-{_e(severity.lower())}" + (" held" if held else "")
        rows.append(
            f'<tr class="{css}"><td>{_e(severity)}</td><td>{_e(parsed.rule if parsed else "?")}'
            f"</td><td>{_e(where)}</td><td>{_e(summary)}"
            f"{' <em>(held: maintenance)</em>' if held else ''}</td><td>{_e(age)}</td></tr>"
        )
    more = len(ordered) - MAX_ALARMS
    tail = f'<p class="none">and {more} more (see /api/v1/alarms)</p>' if more > 0 else ""
    return (
        f'<h3>Open alarms ({len(ordered)})</h3><table class="alarms"><thead><tr>'
        "<th>severity</th><th>rule</th><th>where</th><th>what</th><th>for</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{tail}"
    )


def _rack_map(tiles: list[Tile]) -> str:
    placed: dict[str, dict[str, dict[str, list[Tile]]]] = {}
    unplaced: list[Tile] = []
    for tile in tiles:
        loc = tile.location
        if loc is None or (loc.rack is None and loc.shelf is None):
            unplaced.append(tile)
            continue
        container = placed.setdefault(loc.container or "", {})
        container.setdefault(loc.rack or "", {}).setdefault(loc.shelf or "", []).append(tile)
    parts = ["<h3>Rack map</h3>"]
    for container_name in sorted(placed, key=_natural):
        racks = placed[container_name]
        rack_names = sorted(racks, key=_natural)
        shelves = sorted({s for rack in racks.values() for s in rack}, key=_natural)
        head = "".join(f"<th>rack {_e(r) if r else '?'}</th>" for r in rack_names)
        body = []
        for shelf in shelves:
            cells = "".join(
                f"<td>{_tiles(sorted(racks[r].get(shelf, []), key=_slot_key))}</td>"
                for r in rack_names
            )
            body.append(f"<tr><th>shelf {_e(shelf) if shelf else '?'}</th>{cells}</tr>")
        caption = f"container {_e(container_name)}" if container_name else "no container"
        parts.append(
            f'<table class="rack"><caption>{caption}</caption><thead><tr><th></th>{head}</tr>'
            f"</thead><tbody>{''.join(body)}</tbody></table>"
        )
    if unplaced:
        ordered = sorted(unplaced, key=lambda t: _natural(t.label))
        parts.append(
            f'<div class="unplaced"><h4>unplaced ({len(unplaced)})</h4>{_tiles(ordered)}</div>'
        )
    return "".join(parts)


def _tiles(tiles: Iterable[Tile]) -> str:
    return "".join(_tile(t) for t in tiles)


def _tile(tile: Tile) -> str:
    status = tile.status
    row = tile.row
    if status == "maintenance":
        mark = "MAINT"
    elif status == "offline":
        mark = "OFF"
    elif status == "pending":
        mark = "…"
    else:
        mark = _fmt(tile.headroom_k, "+.0f", " K")
    details = [tile.label]
    if tile.name and tile.mac:
        details.append(tile.mac)
    details += [
        f"{row.model or '?'} at {row.address or '?'}",
        f"hostname {tile.hostname}" if tile.hostname else "",
        tile.location.describe() if tile.location else "no location",
    ]
    if status == "maintenance":
        details.append(f"maintenance: {tile.maintenance}")
    elif status == "offline":
        details.append(f"offline: {row.error or 'no answer'}")
    if tile.headroom_k is not None:
        details.append(f"headroom {tile.headroom_k:+.1f} K to the derated warning")
    if row.hottest_c is not None:
        details.append(f"hottest {row.sensor or 'sensor'} {row.hottest_c:.1f} °C")
    details += [a.summary or a.rule for a in row.alarms]
    tooltip = "\n".join(d for d in details if d)
    short = tile.location.slot if tile.location and tile.location.slot else tile.label
    alarm = " alarm" if tile.alarming else ""
    return (
        f'<div class="tile b-{tile.band} s-{status}{alarm}" title="{_e(tooltip)}">'
        f'<span class="id">{_e(_shorten(short))}</span><span class="v">{_e(mark)}</span></div>'
    )


def _legend() -> str:
    bands = "".join(
        f'<span class="tile b-{band} s-up"><span class="v">&nbsp;</span></span>{_e(text)}'
        for band, text in BANDS
    )
    marks = (
        '<span class="tile b-unknown s-offline"><span class="v">OFF</span></span>offline'
        '<span class="tile b-unknown s-maintenance"><span class="v">MAINT</span></span>maintenance'
        '<span class="tile b-cool s-up alarm"><span class="v">&nbsp;</span></span>active alarm'
    )
    return (
        '<footer class="legend"><b>Headroom to the derated warning:</b> '
        f"{bands}<br>{marks}</footer>"
    )


# --- helpers ----------------------------------------------------------------------------------


def _e(value: object) -> str:
    """HTML-escaped text (quotes too: it may land in an attribute)."""
    return html.escape(str(value), quote=True)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key putting ``rack 2`` before ``rack 10``."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part.lower()) for part in _DIGITS.split(text)
    )


def _slot_key(tile: Tile) -> tuple[tuple[int, int | str], ...]:
    slot = tile.location.slot if tile.location else None
    return _natural(slot or tile.label)


def _shorten(text: str, width: int = 10) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:  # noqa: PLR2004 - a minute and a half still reads as seconds
        return f"{seconds:.0f} s"
    if seconds < 5400:  # noqa: PLR2004 - an hour and a half still reads as minutes
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:  # noqa: PLR2004 - two days still read as hours
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


_CSS = """
*{box-sizing:border-box}
body{font:14px/1.35 system-ui,sans-serif;margin:0;padding:0 1rem 1rem;color:#1b1f24;
background:#f5f6f8}
header{display:flex;align-items:baseline;gap:1rem;border-bottom:1px solid #ccd;margin-bottom:.5rem}
h1{font-size:1.3rem;margin:.6rem 0}h2{font-size:1.15rem;margin:.8rem 0 .4rem}
h3{font-size:1rem;margin:.8rem 0 .3rem}h4{font-size:.9rem;margin:.4rem 0}
.stamp,.none{color:#667}
dl{display:flex;flex-wrap:wrap;gap:.5rem;margin:.3rem 0}
dl div{background:#fff;border:1px solid #dde;border-radius:4px;padding:.25rem .6rem}
dt{font-size:.75rem;color:#667}dd{margin:0;font-weight:600}
.counts dd{font-size:1.4rem}.counts .ok dd{color:#1a7f37}.counts .bad dd{color:#c62828}
.counts .maint dd{color:#1f5fbf}
table{border-collapse:collapse;background:#fff;margin:.3rem 0 .8rem}
th,td{border:1px solid #dde;padding:.2rem .4rem;text-align:left;vertical-align:top}
.alarms td:first-child{font-weight:600}
.sev-critical td:first-child{color:#c62828}.sev-warning td:first-child{color:#b26a00}
.held{color:#778}
caption{text-align:left;font-weight:600;padding:.2rem 0}
.rack td{min-width:4rem}
.tile{display:inline-flex;flex-direction:column;align-items:center;justify-content:center;
width:4.6rem;height:2.6rem;margin:1px;border-radius:3px;border:2px solid transparent;
font-size:.7rem;line-height:1.1;overflow:hidden;vertical-align:middle}
.tile .v{font-weight:700;font-size:.8rem}
.b-crit{background:#7f0000;color:#fff}.b-hot{background:#d32f2f;color:#fff}
.b-warm{background:#f57c00;color:#fff}.b-mild{background:#fbc02d}
.b-cool{background:#43a047;color:#fff}.b-unknown{background:#cfd3d8;color:#333}
.s-offline{background:repeating-linear-gradient(45deg,#444 0 4px,#666 4px 8px);color:#fff}
.s-maintenance{background:repeating-linear-gradient(45deg,#1f5fbf 0 4px,#5b8fd9 4px 8px);color:#fff}
.alarm{border-color:#000;box-shadow:0 0 0 1px #fff inset}
.legend{margin-top:1rem;color:#445;font-size:.8rem}
.legend .tile{width:3.4rem;height:1.4rem;margin:0 .3rem 0 .8rem}
""".replace("\n", "")
