# ruff: noqa: INP001  (a stand-alone script next to the JSON it writes, not a package)
"""Generates altiwatch's Grafana dashboards (grafana/dashboards/*.json) from one description.

Run ``.venv/bin/python grafana/generate_dashboards.py`` after editing and commit the JSON;
``tests/unit/test_dashboards.py`` fails when the committed JSON differs from this output.

Every panel and target uses the ``${datasource}`` variable, every panel has a title, a
description and a unit, every rate/increase uses ``$__rate_interval``. Per-miner series are
filtered by the chained ``site`` → ``model`` → ``miner`` variables; ``model`` lives only in
``asic_miner_info``, so model filtering is a join ``and on (site, miner) asic_miner_info{...}``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39
GRID_WIDTH = 24
TOP_N = 10
SATURATED_DUTY = 0.95
THROTTLED_RATIO = 0.9

Json = dict[str, Any]

# Label matchers shared by every per-miner query.
SEL = 'site=~"$site", miner=~"$miner"'
WARNING = 'kind="warning"'
CRITICAL = 'kind="critical"'
R3 = 'rule="R3"'
INFO = 'asic_miner_info{site=~"$site", model=~"$model", miner=~"$miner"}'


def m(metric: str, extra: str = "") -> str:
    """Return ``metric`` with the site/miner matchers (and any ``extra`` matchers)."""
    matchers = f"{SEL}, {extra}" if extra else SEL
    return f"{metric}{{{matchers}}}"


def severity(name: str) -> str:
    """Return the matcher for one alarm severity label."""
    return f'severity="{name}"'


def f(expr: str) -> str:
    """Restrict a per-miner vector expression to miners of the selected model(s)."""
    return f"({expr}) and on (site, miner) {INFO}"


def hottest_by_miner() -> str:
    """Hottest chip per miner, or hottest board where the firmware reports no chip sensor."""
    chip = f"max by (site, miner) ({f(m('asic_chip_temperature_celsius'))})"
    board = f"max by (site, miner) ({f(m('asic_board_temperature_celsius'))})"
    return f"{chip} or {board}"


def alarm_sensor_by_miner() -> str:
    """Per miner, the hottest reading of the sensor its thresholds apply to.

    Stock S19 thresholds apply to the board sensor (its "chip" is an estimate, board + ~15 K);
    die presets to the chip. The threshold series says which in its ``sensor`` label when the
    agent exports it; without the label this falls back to the hottest chip, else board.
    """
    chip = f"max by (site, miner) ({f(m('asic_chip_temperature_celsius'))})"
    board = f"max by (site, miner) ({f(m('asic_board_temperature_celsius'))})"
    threshold = "asic_temperature_threshold_celsius"
    on_board = m(threshold, f'{WARNING}, sensor="board"')
    on_die = m(threshold, f'{WARNING}, sensor="die"')
    return (
        f"({board} and on (site, miner) {on_board}) or ({chip} and on (site, miner) {on_die}) "
        f"or {hottest_by_miner()}"
    )


def hottest_on_sensor(sensor: str, reading: str) -> str:
    """Per site, the hottest ``reading`` among miners whose thresholds apply to ``sensor``.

    ``sensor`` is the ``sensor`` label of asic_temperature_threshold_celsius ("board" for
    stock S19, whose chip figure is an estimate; "die" otherwise); ``reading`` is the matching
    temperature selector (board or chip).
    """
    mine = m("asic_temperature_threshold_celsius", f'{WARNING}, sensor="{sensor}"')
    return f"max by (site) ({reading} and on (site, miner) {mine})"


def count_or_zero(expr: str, base: str) -> str:
    """Count ``expr``; 0 when it is empty but ``base`` (what it filters) has data.

    "None match" is then a real 0, while an unknown input (no ``base`` series: agent down,
    metric not reported) stays "no data" instead of a reassuring 0.
    """
    return f"count({expr}) or on () (0 * count({base}))"


def headroom_by_miner() -> str:
    """Per miner, derated warning threshold minus the reading it applies to (negative: past it)."""
    threshold = m("asic_temperature_threshold_celsius", WARNING)
    return f"max by (site, miner) ({threshold}) - on (site, miner) ({alarm_sensor_by_miner()})"


PLACED = 'asic_miner_info{site=~"$site", model=~"$model", miner=~"$miner", rack!=""}'
"""The info series of miners with a known rack (their location labels: container, rack, shelf)."""


def headroom_by_rack_shelf() -> str:
    """The least headroom per (container, rack) and shelf, from asic_miner_info's location labels.

    The info series is 1, so multiplying by it keeps the headroom and adds the labels; the row
    label ``rack`` is "container / rack" (rack numbers repeat from one container to the next).
    """
    placed = (
        f"({headroom_by_miner()}) * on (site, miner) group_left (container, rack, shelf) {PLACED}"
    )
    least = f"min by (site, container, rack, shelf) ({placed})"
    return f'label_join({least}, "rack", " / ", "container", "rack")'


def share_rate(by: str, results: str = "") -> str:
    """Shares per second summed ``by`` labels (``results``: a result regex, all by default)."""
    extra = f'result=~"{results}"' if results else ""
    shares = f"rate({m('asic_pool_shares_total', extra)}[$__rate_interval])"
    return f"sum by ({by}) ({f(shares)})"


def bad_share_ratio(by: str) -> str:
    """(rejected + stale) / all shares per ``by`` labels over the rate interval (rule R12)."""
    return f"{share_rate(by, 'rejected|stale')} / {share_rate(by)}"


POOLS_IN_USE = (
    f"count by (site, url, worker) ({m('asic_pool_info')} "
    f"and on (site, miner, pool) ({m('asic_pool_active')} == 1))"
)
"""Miners mining on each (pool URL, worker) right now."""


AGENT_ZERO = "0 * count(altiwatch_build_info)"
"""0 while an agent is scraped: the honest value of an agent counter that never moved."""


@dataclass(frozen=True, slots=True)
class Target:
    """One PromQL query of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


@dataclass(slots=True)
class Panel:
    """One visualisation: its queries, unit and size in grid cells."""

    title: str
    description: str
    unit: str
    targets: list[Target]
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    decimals: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    overrides: list[Json] = field(default_factory=list)
    transformations: list[Json] = field(default_factory=list)
    links: list[Json] = field(default_factory=list)
    stacked: bool = False
    steps: tuple[tuple[float | None, str], ...] = ()
    """Colour thresholds (from value, colour); lines on time series."""
    custom: Json = field(default_factory=dict)
    """``fieldConfig.defaults.custom`` of a panel other than a time series (table cell options)."""


def _variables(*, single_miner: bool) -> list[Json]:
    """The datasource variable and the chained site → model → miner query variables."""
    variables: list[Json] = [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "includeAll": False,
            "multi": False,
            "refresh": 1,
            "regex": "",
            "options": [],
        }
    ]
    chain = [
        ("site", "Site", "label_values(asic_miner_info, site)"),
        ("model", "Model", 'label_values(asic_miner_info{site=~"$site"}, model)'),
        (
            "miner",
            "Miner",
            'label_values(asic_miner_info{site=~"$site", model=~"$model"}, miner)',
        ),
    ]
    for name, label, query in chain:
        many = not (single_miner and name == "miner")
        variables.append(
            {
                "name": name,
                "label": label,
                "type": "query",
                "datasource": dict(DATASOURCE),
                "query": query,
                "definition": query,
                "current": {},
                "hide": 0,
                "includeAll": many,
                "multi": many,
                "allValue": ".*" if many else None,
                "refresh": 2,
                "regex": "",
                "sort": 1,
                "options": [],
            }
        )
    return variables


def _target(ref: str, target: Target) -> Json:
    out: Json = {
        "refId": ref,
        "datasource": dict(DATASOURCE),
        "editorMode": "code",
        "expr": target.expr,
        "legendFormat": target.legend or "__auto",
        "range": not target.instant,
        "instant": target.instant,
    }
    if target.table:
        out["format"] = "table"
    return out


def _options(panel: Panel) -> Json:
    if panel.kind == "stat":
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
        }
    if panel.kind == "table":
        return {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    if panel.kind == "bargauge":
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
        }
    return {
        "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def _panel_json(panel_id: int, panel: Panel, x: int, y: int) -> Json:
    defaults: Json = {"unit": panel.unit}
    if panel.decimals is not None:
        defaults["decimals"] = panel.decimals
    if panel.minimum is not None:
        defaults["min"] = panel.minimum
    if panel.maximum is not None:
        defaults["max"] = panel.maximum
    if panel.links:
        defaults["links"] = panel.links
    if panel.steps:
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"value": value, "color": color} for value, color in panel.steps],
        }
    if panel.custom:
        defaults["custom"] = panel.custom
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10 if panel.stacked else 0,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if panel.stacked else "none", "group": "A"},
            "thresholdsStyle": {"mode": "line" if panel.steps else "off"},
        }
    refs = "ABCDEFGHIJ"
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": dict(DATASOURCE),
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": panel.overrides},
        "options": _options(panel),
        "targets": [_target(refs[i], t) for i, t in enumerate(panel.targets)],
        "transformations": panel.transformations,
    }


def _layout(panels: list[Panel]) -> list[Json]:
    """Place panels left to right, wrapping at the grid width; ids are 1..n in order."""
    out: list[Json] = []
    x = y = row_height = 0
    for panel_id, panel in enumerate(panels, start=1):
        if x + panel.width > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        out.append(_panel_json(panel_id, panel, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return out


def dashboard(
    uid: str, title: str, description: str, panels: list[Panel], *, single_miner: bool = False
) -> Json:
    """Return a complete dashboard JSON model (``id`` null so provisioning assigns one)."""
    return {
        "uid": uid,
        "id": None,
        "title": title,
        "description": description,
        "tags": ["altiwatch"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "altiwatch",
                "type": "dashboards",
                "tags": ["altiwatch"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "templating": {"list": _variables(single_miner=single_miner)},
        "panels": _layout(panels),
    }


MINER_LINK = [
    {
        "title": "Miner detail",
        "url": "/d/altiwatch-miner-detail?var-site=${__data.fields.site}"
        "&var-miner=${__data.fields.miner}&${datasource:queryparam}",
    }
]


def _table_value_names(names: dict[str, str]) -> list[Json]:
    """Overrides that give a merged table's value columns readable names.

    One query's table has a single ``Value`` column: name it with the key ``""``.
    """
    return [
        {
            "matcher": {"id": "byName", "options": f"Value #{ref}" if ref else "Value"},
            "properties": [{"id": "displayName", "value": name}],
        }
        for ref, name in names.items()
    ]


def _table_transforms(sort_by: str, *, desc: bool = True) -> list[Json]:
    return [
        {"id": "merge", "options": {}},
        {
            "id": "organize",
            "options": {"excludeByName": {"Time": True, "job": True, "instance": True}},
        },
        {"id": "sortBy", "options": {"sort": [{"field": sort_by, "desc": desc}]}},
    ]


SEVERITY_COLOURS = [
    {
        "matcher": {"id": "byFrameRefID", "options": ref},
        "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": colour}}],
    }
    for ref, colour in (("A", "red"), ("B", "orange"), ("C", "blue"))
]
"""Fixed colours for the critical/warning/info targets of ``_alarm_targets``."""


def alarm_count(sev: str) -> str:
    """Firing alarms of one severity: per-miner plus site-level (R7 site outage, R9 sanity).

    Each part is 0 (not "no data") when nothing fires while the agent reports miners.
    """
    zero = f"0 * count({m('asic_up')})"
    miners = f"sum({m('asic_alarm_active', severity(sev))}) or on () ({zero})"
    sites = f'sum(altiwatch_site_alarm_active{{site=~"$site", {severity(sev)}}}) or on () ({zero})'
    return f"({miners}) + on () ({sites})"


def _alarm_targets() -> list[Target]:
    """One target per severity, miner and site-level alarms together."""
    return [Target(alarm_count(sev), sev) for sev in ("critical", "warning", "info")]


def fleet_overview() -> Json:
    """Fleet overview: hashrate vs expected, up/down/throttled, power, J/TH, alarms, hottest."""
    hashrate = f(m("asic_hashrate_hashes_per_second"))
    expected = f(m("asic_expected_hashrate_hashes_per_second"))
    power_hashing = f(
        f"{m('asic_power_watts')} and on (site, miner) {m('asic_hashrate_hashes_per_second')} > 0"
    )
    hashrate_powered = f(
        f"{m('asic_hashrate_hashes_per_second')} and on (site, miner) {m('asic_power_watts')}"
    )
    throttled = f(
        f"{m('asic_hashrate_hashes_per_second')} < {THROTTLED_RATIO} * "
        f"{m('asic_expected_hashrate_hashes_per_second')} "
        f"and on (site, miner) {m('asic_mining')} == 1"
    )
    hottest = f"topk({TOP_N}, {alarm_sensor_by_miner()})"
    panels = [
        Panel(
            "Fleet hashrate",
            "Sum of the current hashrate of the selected miners (H/s, auto-scaled).",
            "Hs",
            [Target(f"sum({hashrate})")],
            kind="stat",
            width=3,
            height=4,
        ),
        Panel(
            "Hashrate vs expected",
            "Current hashrate over the firmware's expected (nominal) hashrate of the same miners.",
            "percentunit",
            [Target(f"sum({hashrate}) / sum({expected})")],
            kind="stat",
            width=3,
            height=4,
            decimals=1,
            steps=((None, "red"), (0.75, "orange"), (THROTTLED_RATIO, "green")),
        ),
        Panel(
            "Miners up",
            "Miners whose last poll succeeded (asic_up == 1). Not filtered by model: a miner "
            "that never answered has no model.",
            "short",
            [Target(count_or_zero(f"{m('asic_up')} == 1", m("asic_up")))],
            kind="stat",
            width=3,
            height=4,
        ),
        Panel(
            "Miners down",
            "Miners whose last poll failed (asic_up == 0); see Agent health for the reasons.",
            "short",
            [Target(count_or_zero(f"{m('asic_up')} == 0", m("asic_up")))],
            kind="stat",
            width=3,
            height=4,
            steps=((None, "green"), (1, "red")),
        ),
        Panel(
            "Miners throttled",
            f"Mining miners hashing below {THROTTLED_RATIO:.0%} of their expected hashrate "
            "(thermal or power throttling, lost chips).",
            "short",
            [Target(count_or_zero(throttled, f(m("asic_expected_hashrate_hashes_per_second"))))],
            kind="stat",
            width=3,
            height=4,
            steps=((None, "green"), (1, "orange")),
        ),
        Panel(
            "Fleet power",
            "Sum of measured or estimated wall power of the selected miners.",
            "watt",
            [Target(f"sum({f(m('asic_power_watts'))})")],
            kind="stat",
            width=3,
            height=4,
        ),
        Panel(
            "Efficiency",
            "Joules per terahash over miners reporting both power and hashrate (W / (H/s) × 10¹²).",
            "suffix: J/TH",
            [Target(f"sum({power_hashing}) / sum({hashrate_powered}) * 1e12")],
            kind="stat",
            width=3,
            height=4,
            decimals=1,
        ),
        Panel(
            "Active alarms",
            "Alarms firing now in the agent's altitude-aware alarm engine, by severity: "
            "per-miner alarms plus site-level ones (R7 site outage, R9 site sanity).",
            "short",
            _alarm_targets(),
            kind="stat",
            width=3,
            height=4,
            overrides=SEVERITY_COLOURS,
        ),
        Panel(
            "Hashrate vs expected by site",
            "Actual and expected (nominal) hashrate summed per site.",
            "Hs",
            [
                Target(f"sum by (site) ({hashrate})", "{{site}} actual"),
                Target(f"sum by (site) ({expected})", "{{site}} expected"),
            ],
        ),
        Panel(
            "Miners in inventory and up by site",
            "The agent's inventory size and how many of those miners answered their last poll.",
            "short",
            [
                Target(
                    'sum by (site) (altiwatch_inventory_miners{site=~"$site"})',
                    "{{site}} inventory",
                ),
                Target('sum by (site) (altiwatch_miners_up{site=~"$site"})', "{{site}} up"),
            ],
        ),
        Panel(
            "Power by site",
            "Wall power per site, split by whether the firmware measured it or it was "
            "estimated from the model's nominal efficiency.",
            "watt",
            [Target(f"sum by (site, source) ({f(m('asic_power_watts'))})", "{{site}} {{source}}")],
            stacked=True,
        ),
        Panel(
            "Efficiency by site",
            "Joules per terahash per site (lower is better); rises when miners throttle.",
            "suffix: J/TH",
            [
                Target(
                    f"sum by (site) ({power_hashing}) / sum by (site) ({hashrate_powered}) * 1e12",
                    "{{site}}",
                )
            ],
            decimals=1,
        ),
        Panel(
            "Active alarms by severity",
            "Number of alarms firing over time, by severity, per-miner and site-level "
            "(R7 site outage, R9 site sanity) together.",
            "short",
            _alarm_targets(),
            stacked=True,
            overrides=SEVERITY_COLOURS,
        ),
        Panel(
            f"Top {TOP_N} hottest miners",
            "Hottest reading per miner of the sensor its thresholds apply to (board for stock "
            "S19, chip otherwise), with its altitude-derated warning and critical thresholds. "
            "Click a row for details.",
            "celsius",
            [
                Target(hottest, instant=True, table=True),
                Target(
                    "max by (site, miner) "
                    f"({m('asic_temperature_threshold_celsius', WARNING)}) "
                    f"and on (site, miner) ({hottest})",
                    instant=True,
                    table=True,
                ),
                Target(
                    "max by (site, miner) "
                    f"({m('asic_temperature_threshold_celsius', CRITICAL)}) "
                    f"and on (site, miner) ({hottest})",
                    instant=True,
                    table=True,
                ),
            ],
            kind="table",
            overrides=_table_value_names(
                {"A": "hottest", "B": "derated warning", "C": "derated critical"}
            ),
            transformations=_table_transforms("hottest"),
            links=MINER_LINK,
        ),
        Panel(
            "Share health by site",
            "Rejected + stale shares over all shares submitted to pools, per site (rule R12 "
            "warns at 1.5 %, critical at 5 %; below 0.5 % is healthy). A bad uplink (4G, "
            "microwave, satellite) raises it while the miners' own hashrate looks fine.",
            "percentunit",
            [Target(bad_share_ratio("site"), "{{site}}")],
            minimum=0,
            decimals=2,
            steps=((None, "green"), (0.015, "orange"), (0.05, "red")),
        ),
        Panel(
            f"Top {TOP_N} miners by bad shares",
            "Miners with the highest (rejected + stale) / all shares over the rate interval. "
            "Click a row for details.",
            "percentunit",
            [Target(f"topk({TOP_N}, {bad_share_ratio('site, miner')})", instant=True, table=True)],
            kind="table",
            decimals=2,
            overrides=_table_value_names({"": "bad shares"}),
            transformations=_table_transforms("bad shares"),
            links=MINER_LINK,
        ),
        Panel(
            "Pools in use",
            "Miners mining on each pool URL (credentials never exported) and worker now. A "
            "pool or worker that is not yours is rule R14 (with an allow-list configured).",
            "short",
            [Target(POOLS_IN_USE, "{{site}} {{url}} {{worker}}", instant=True, table=True)],
            kind="table",
            overrides=_table_value_names({"": "miners"}),
            transformations=_table_transforms("miners"),
        ),
        Panel(
            "Site alarms",
            "Site-level alarms firing now (R7: a large share of the site dropped at once, "
            "probable power or network outage; R9: site sanity, e.g. implausible station "
            "pressure or a very high site; R13: a large share of the site failed over to a "
            "backup pool). Empty when none fires.",
            "short",
            [
                Target(
                    'max by (site, rule, severity) (altiwatch_site_alarm_active{site=~"$site"})',
                    "{{site}} {{rule}} {{severity}}",
                    instant=True,
                    table=True,
                )
            ],
            kind="table",
            transformations=[
                {
                    "id": "organize",
                    "options": {"excludeByName": {"Time": True, "Value": True}},
                }
            ],
        ),
    ]
    return dashboard(
        "altiwatch-fleet-overview",
        "altiwatch / Fleet overview",
        "Hashrate, availability, power, efficiency and alarms of the selected sites and models.",
        panels,
    )


def thermal_altitude() -> Json:
    """Thermal and altitude: temperatures vs derated and sea-level thresholds, inlet, fans, air."""
    chip = f(m("asic_chip_temperature_celsius"))
    board = f(m("asic_board_temperature_celsius"))
    threshold = "asic_temperature_threshold_celsius"
    sea_level = "asic_temperature_threshold_sea_level_celsius"
    duty = f(m("asic_fan_duty_ratio"))
    saturated = f(f"{m('asic_fan_duty_ratio')} >= {SATURATED_DUTY}")

    def sensor_panel(sensor: str, reading: str, title: str, description: str) -> Panel:
        """Hottest reading vs derated and sea-level thresholds of the miners on one sensor."""
        on = f'sensor="{sensor}"'
        return Panel(
            title,
            description,
            "celsius",
            [
                Target(hottest_on_sensor(sensor, reading), "{{site}} hottest"),
                Target(
                    f"min by (site) ({f(m(threshold, f'{WARNING}, {on}'))})",
                    "{{site}} derated warning",
                ),
                Target(
                    f"min by (site) ({f(m(threshold, f'{CRITICAL}, {on}'))})",
                    "{{site}} derated critical",
                ),
                Target(
                    f"min by (site) ({f(m(sea_level, f'{WARNING}, {on}'))})",
                    "{{site}} sea-level warning",
                ),
                Target(
                    f"min by (site) ({f(m(sea_level, f'{CRITICAL}, {on}'))})",
                    "{{site}} sea-level critical",
                ),
            ],
        )

    panels = [
        Panel(
            "Site altitude",
            "Configured altitude of each site.",
            "lengthm",
            [Target('max by (site) (altiwatch_site_altitude_meters{site=~"$site"})', "{{site}}")],
            kind="stat",
            width=6,
            height=4,
        ),
        Panel(
            "Air pressure ratio δ",
            "δ = p/p0: station pressure over sea-level standard pressure (ISA for the "
            "altitude, or measured). Air mass flow through a fan at fixed rpm scales with δ.",
            "short",
            [Target('max by (site) (altiwatch_site_air_density_ratio{site=~"$site"})', "{{site}}")],
            kind="stat",
            width=6,
            height=4,
            decimals=3,
        ),
        Panel(
            "Cooling multiplier M(δ)",
            "How much larger the chip-to-inlet temperature rise is than at sea level; warning "
            "headroom below critical and the maximum inlet are scaled by it.",
            "short",
            [
                Target(
                    'max by (site) (altiwatch_site_cooling_multiplier{site=~"$site"})', "{{site}}"
                )
            ],
            kind="stat",
            width=6,
            height=4,
            decimals=3,
        ),
        Panel(
            "Saturated fans",
            f"Miners whose fan duty (estimated from rpm / rated max rpm) is at or above "
            f"{SATURATED_DUTY:.0%}, and fan-saturation alarms (R3, held saturation with "
            "rising temperature): no cooling reserve left, the chip now follows the inlet 1:1.",
            "short",
            [
                Target(count_or_zero(saturated, duty), "duty ≥ 95 %"),
                Target(count_or_zero(m("asic_alarm_active", R3), m("asic_up")), "R3"),
            ],
            kind="stat",
            width=6,
            height=4,
            steps=((None, "green"), (1, "orange")),
        ),
        sensor_panel(
            "board",
            board,
            "Board-sensor models: hottest board vs thresholds",
            "Miners whose thresholds apply to the board (PCB) sensor (stock S19 firmware, whose "
            '"chip" figure is an estimate): hottest board per site against the lowest derated '
            "warning/critical threshold in force and the same thresholds at sea level; the gap "
            "is what altitude costs.",
        ),
        sensor_panel(
            "die",
            chip,
            "Die-sensor models: hottest chip vs thresholds",
            "Miners whose thresholds apply to a real die sensor (S21, Whatsminer, Avalon, "
            "Bitaxe, S19 on VNish/Braiins OS+): hottest chip per site against the lowest derated "
            "warning/critical threshold in force and the same thresholds at sea level.",
        ),
        Panel(
            "Headroom to derated warning",
            f"The {TOP_N} miners closest to (or past, when negative) their derated warning "
            "threshold: threshold minus the hottest reading of the sensor the threshold "
            "applies to (board for stock S19, chip otherwise).",
            "celsius",
            [Target(f"bottomk({TOP_N}, {headroom_by_miner()})", "{{miner}}")],
            steps=((None, "red"), (0, "orange"), (3, "green")),
        ),
        Panel(
            "Rack heat-map: headroom by rack × shelf",
            "The least headroom to the derated warning threshold among the miners of each rack "
            "(row: container / rack) and shelf (column), from the location labels of "
            "asic_miner_info (miners without a rack are left out): green 10 K and more, yellow "
            "3-10 K, orange 0-3 K, red past the warning. The agent's site page (/) shows the "
            "same map per miner, with offline and maintenance marked.",
            "celsius",
            [
                Target(
                    headroom_by_rack_shelf(), "{{rack}} shelf {{shelf}}", instant=True, table=True
                )
            ],
            kind="table",
            width=24,
            height=10,
            decimals=1,
            steps=((None, "red"), (0, "orange"), (3, "yellow"), (10, "green")),
            custom={
                "align": "center",
                "cellOptions": {"type": "color-background", "mode": "basic"},
            },
            transformations=[
                {
                    "id": "groupingToMatrix",
                    "options": {
                        "columnField": "shelf",
                        "rowField": "rack",
                        "valueField": "Value",
                        "emptyValue": "empty",
                    },
                },
                {"id": "sortBy", "options": {"sort": [{"field": "rack\\shelf", "desc": False}]}},
            ],
        ),
        Panel(
            "Chip temperature per miner",
            "Hottest chip of each selected miner.",
            "celsius",
            [Target(f"max by (site, miner) ({chip})", "{{miner}}")],
        ),
        Panel(
            "Inlet vs derated maximum inlet",
            "Hottest inlet per site against the lowest altitude-derated maximum inlet "
            "temperature of its miners, and the same limit at sea level.",
            "celsius",
            [
                Target(
                    f"max by (site) ({f(m('asic_inlet_temperature_celsius'))})", "{{site}} inlet"
                ),
                Target(
                    f"min by (site) ({f(m('asic_inlet_temperature_max_celsius'))})",
                    "{{site}} derated max inlet",
                ),
                Target(
                    f"min by (site) ({f(m('asic_inlet_temperature_max_sea_level_celsius'))})",
                    "{{site}} sea-level max inlet",
                ),
            ],
        ),
        Panel(
            "Board temperature per miner",
            "Every board's PCB temperature.",
            "celsius",
            [Target(board, "{{miner}} board {{board}}")],
        ),
        Panel(
            "Fan duty",
            "Average and highest fan duty per site, estimated from rpm / rated max rpm (the "
            "fastest fan over the model's rated maximum); closed-loop fans run harder at "
            "altitude to hold the same chip temperature.",
            "percentunit",
            [
                Target(f"avg by (site) ({duty})", "{{site}} average"),
                Target(f"max by (site) ({duty})", "{{site}} highest"),
            ],
            minimum=0,
            steps=((None, "green"), (SATURATED_DUTY, "orange")),
        ),
        Panel(
            "Saturated fans by site",
            f"Miners per site with fan duty ≥ {SATURATED_DUTY:.0%} (estimated from rpm / rated "
            "max rpm) and with an active fan-saturation alarm (R3).",
            "short",
            [
                Target(
                    f"count by (site) ({saturated}) or on () (0 * count({duty}))",
                    "{{site}} duty",
                ),
                Target(
                    f"count by (site) ({m('asic_alarm_active', R3)}) "
                    f"or on () (0 * count({m('asic_up')}))",
                    "{{site}} R3",
                ),
            ],
        ),
        Panel(
            "Fan speed per miner",
            "Fastest fan of each miner, and the lowest rated maximum fan speed per site.",
            "rotrpm",
            [
                Target(f"max by (site, miner) ({f(m('asic_fan_speed_rpm'))})", "{{miner}}"),
                Target(f"min by (site) ({f(m('asic_fan_max_rpm'))})", "{{site}} rated max"),
            ],
        ),
        Panel(
            "Site air: δ and M(δ)",
            "Air pressure ratio δ and cooling multiplier M(δ) per site over time; they move "
            "with measured station pressure when a pressure source is configured.",
            "short",
            [
                Target('altiwatch_site_air_density_ratio{site=~"$site"}', "{{site}} δ"),
                Target('altiwatch_site_cooling_multiplier{site=~"$site"}', "{{site}} M(δ)"),
            ],
            decimals=3,
        ),
    ]
    return dashboard(
        "altiwatch-thermal-altitude",
        "altiwatch / Thermal and altitude",
        "Temperatures against altitude-derated thresholds, inlet limits, fans and site air.",
        panels,
    )


def miner_detail() -> Json:
    """Miner detail: one miner's identity, boards, chips, fans, hashrate, power, alarms."""
    panels = [
        Panel(
            "Identity",
            "Make, model, firmware, address and hardware ids as last detected.",
            "short",
            [Target(m("asic_miner_info"), instant=True, table=True)],
            kind="table",
            width=16,
            height=4,
            transformations=[
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {
                            "Time": True,
                            "Value": True,
                            "__name__": True,
                            "job": True,
                            "instance": True,
                        }
                    },
                }
            ],
        ),
        Panel(
            "Last poll error",
            "Why the last poll failed (no data while the miner answers).",
            "short",
            [Target(m("asic_last_poll_error_info"), "{{reason}}", instant=True, table=True)],
            kind="table",
            width=8,
            height=4,
            transformations=[
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {
                            "Time": True,
                            "Value": True,
                            "__name__": True,
                            "job": True,
                            "instance": True,
                        }
                    },
                }
            ],
        ),
        Panel(
            "Up",
            "1 when the last poll succeeded.",
            "bool_on_off",
            [Target(m("asic_up"), "{{miner}}")],
            kind="stat",
            width=4,
            height=4,
        ),
        Panel(
            "Uptime",
            "Time since the miner (or its mining process) started.",
            "dtdurations",
            [Target(m("asic_uptime_seconds"), "{{miner}}")],
            kind="stat",
            width=4,
            height=4,
        ),
        Panel(
            "Last successful poll",
            "When the agent last read this miner successfully.",
            "dateTimeFromNow",
            [Target(f"{m('asic_last_poll_success_timestamp_seconds')} * 1000", "{{miner}}")],
            kind="stat",
            width=4,
            height=4,
        ),
        Panel(
            "Poll duration",
            "How long the agent's last poll of this miner took.",
            "s",
            [Target(m("asic_poll_duration_seconds"), "{{miner}}")],
            kind="stat",
            width=4,
            height=4,
        ),
        Panel(
            "Derated thresholds",
            "The warning and critical temperature thresholds in force for this miner at its "
            "site's altitude (on the sensor named), and its maximum inlet.",
            "celsius",
            [
                Target(m("asic_temperature_threshold_celsius"), "{{kind}} ({{sensor}})"),
                Target(m("asic_inlet_temperature_max_celsius"), "max inlet"),
            ],
            kind="stat",
            width=8,
            height=4,
        ),
        Panel(
            "Hashrate vs expected",
            "Total hashrate against the firmware's expected hashrate.",
            "Hs",
            [
                Target(m("asic_hashrate_hashes_per_second"), "{{miner}} actual"),
                Target(m("asic_expected_hashrate_hashes_per_second"), "{{miner}} expected"),
            ],
        ),
        Panel(
            "Board hashrate",
            "Hashrate of each hashboard.",
            "Hs",
            [Target(m("asic_board_hashrate_hashes_per_second"), "{{miner}} board {{board}}")],
            stacked=True,
        ),
        Panel(
            "Chip and board temperatures",
            "Per-board chip and PCB temperatures against the derated thresholds.",
            "celsius",
            [
                Target(m("asic_chip_temperature_celsius"), "{{miner}} chip {{board}}"),
                Target(m("asic_board_temperature_celsius"), "{{miner}} board {{board}}"),
                Target(
                    m("asic_temperature_threshold_celsius"),
                    "{{miner}} derated {{kind}} ({{sensor}})",
                ),
                Target(
                    m("asic_temperature_threshold_sea_level_celsius"),
                    "{{miner}} sea-level {{kind}} ({{sensor}})",
                ),
            ],
        ),
        Panel(
            "Inlet temperature",
            "Inlet air temperature against the altitude-derated maximum inlet.",
            "celsius",
            [
                Target(m("asic_inlet_temperature_celsius"), "{{miner}} inlet"),
                Target(m("asic_inlet_temperature_max_celsius"), "{{miner}} derated max inlet"),
            ],
        ),
        Panel(
            "Coolant temperatures (liquid-cooled)",
            "Coolant inlet and outlet of a hydro miner (never air), and the site's water boiling "
            "point (R11 fires CRIT at 15 K below it).",
            "celsius",
            [
                Target(m("asic_coolant_temperature_celsius"), "{{miner}} coolant {{position}}"),
                Target(
                    'altiwatch_site_water_boiling_point_celsius{site=~"$site"}',
                    "{{site}} water boiling point",
                ),
            ],
        ),
        Panel(
            "Coolant flow estimate (liquid-cooled)",
            "60·P/(ρ·c_p·ΔT) from power and coolant rise; falling at steady power means a failing "
            "pump, an air lock or a closed valve (R11 low_flow).",
            "short",
            [
                Target(
                    m("asic_coolant_flow_estimate_liters_per_minute"),
                    "{{miner}} L/min ({{source}} power)",
                )
            ],
        ),
        Panel(
            "Chips per board",
            "Working chips found on each board against the model's expected count.",
            "short",
            [
                Target(m("asic_board_chips"), "{{miner}} board {{board}}"),
                Target(m("asic_board_expected_chips"), "{{miner}} board {{board}} expected"),
            ],
        ),
        Panel(
            "Fan speeds",
            "Every fan's speed, and the model's rated maximum the fan duty is estimated from.",
            "rotrpm",
            [
                Target(m("asic_fan_speed_rpm"), "{{miner}} fan {{fan}}"),
                Target(m("asic_fan_max_rpm"), "{{miner}} rated max"),
            ],
        ),
        Panel(
            "Fan duty",
            "Fan load estimated from rpm / rated max rpm: the fastest fan over the model's "
            f"rated maximum (1 = full speed; saturated at ≥ {SATURATED_DUTY:.0%}).",
            "percentunit",
            [Target(m("asic_fan_duty_ratio"), "{{miner}}")],
            minimum=0,
            steps=((None, "green"), (SATURATED_DUTY, "orange")),
        ),
        Panel(
            "Power",
            "Wall power (measured or estimated) and the configured power limit.",
            "watt",
            [
                Target(m("asic_power_watts"), "{{miner}} {{source}}"),
                Target(m("asic_power_limit_watts"), "{{miner}} limit"),
            ],
        ),
        Panel(
            "Share health",
            "Rejected + stale shares over all shares this miner submitted (rule R12: warning "
            "1.5 %, critical 5 %).",
            "percentunit",
            [Target(bad_share_ratio("site, miner"), "{{miner}}")],
            minimum=0,
            decimals=2,
            steps=((None, "green"), (0.015, "orange"), (0.05, "red")),
        ),
        Panel(
            "Pools",
            "The miner's pools: index (0 = first priority), URL without credentials, worker, "
            "whether it mines there now (active) and whether the firmware says it is alive.",
            "short",
            [
                Target(m("asic_pool_active"), instant=True, table=True),
                Target(m("asic_pool_alive"), instant=True, table=True),
            ],
            kind="table",
            overrides=_table_value_names({"A": "active", "B": "alive"}),
            transformations=_table_transforms("active"),
        ),
        Panel(
            "Alarm history",
            "Alarms of this miner over time (1 while firing), by rule and severity.",
            "short",
            [Target(m("asic_alarm_active"), "{{miner}} {{rule}} {{severity}}")],
            width=24,
        ),
    ]
    return dashboard(
        "altiwatch-miner-detail",
        "altiwatch / Miner detail",
        "One miner: identity, boards, chips, temperatures, fans, hashrate, power and alarms.",
        panels,
        single_miner=True,
    )


def agent_health() -> Json:
    """Agent health: poll rates and durations, errors, lag, inventory, MQTT outbox and link."""
    rate = "$__rate_interval"
    panels = [
        Panel(
            "Agents up",
            'Prometheus scrape status of every altiwatch agent (job "altiwatch").',
            "short",
            [Target('sum(up{job="altiwatch"})', "up"), Target('count(up{job="altiwatch"})', "all")],
            kind="stat",
            width=6,
            height=4,
        ),
        Panel(
            "MQTT connected",
            "Agents currently connected to their MQTT broker.",
            "short",
            [Target("sum(altiwatch_mqtt_connected)")],
            kind="stat",
            width=6,
            height=4,
        ),
        Panel(
            "MQTT outbox depth",
            "Events committed to the durable outbox and not yet acknowledged by the broker.",
            "short",
            [Target("sum(altiwatch_mqtt_outbox_depth)")],
            kind="stat",
            width=6,
            height=4,
        ),
        Panel(
            "Oldest unsent event",
            "Age of the oldest event waiting in the outbox (0 when the outbox is empty).",
            "s",
            [
                Target(
                    "max(altiwatch_mqtt_outbox_oldest_age_seconds) "
                    "or on () (0 * max(altiwatch_mqtt_outbox_depth))"
                )
            ],
            kind="stat",
            width=6,
            height=4,
        ),
        Panel(
            "Polls per second",
            "Completed polls per second by tier (fast telemetry, slow identity).",
            "ops",
            [Target(f"sum by (tier) (rate(altiwatch_polls_total[{rate}]))", "{{tier}}")],
        ),
        Panel(
            "Poll errors by reason",
            "Failed polls per second by reason (timeout, refused, parse, auth, ...).",
            "ops",
            [
                Target(
                    f"sum by (reason) (rate(altiwatch_poll_errors_total[{rate}])) "
                    f"or on () ({AGENT_ZERO})",
                    "{{reason}}",
                ),
            ],
            stacked=True,
        ),
        Panel(
            "Poll duration",
            "Median and 95th percentile of poll durations by tier.",
            "s",
            [
                Target(
                    "histogram_quantile(0.5, sum by (le, tier) "
                    f"(rate(altiwatch_poll_duration_seconds_bucket[{rate}])))",
                    "p50 {{tier}}",
                ),
                Target(
                    "histogram_quantile(0.95, sum by (le, tier) "
                    f"(rate(altiwatch_poll_duration_seconds_bucket[{rate}])))",
                    "p95 {{tier}}",
                ),
            ],
        ),
        Panel(
            "Cycle lag",
            "How late polls start relative to their schedule (p50/p99); growing lag means "
            "the agent cannot keep up with its interval.",
            "s",
            [
                Target(
                    "histogram_quantile(0.5, sum by (le) "
                    f"(rate(altiwatch_poll_lateness_seconds_bucket[{rate}])))",
                    "p50",
                ),
                Target(
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(altiwatch_poll_lateness_seconds_bucket[{rate}])))",
                    "p99",
                ),
            ],
        ),
        Panel(
            "Slowest miners",
            f"The {TOP_N} miners with the longest last poll.",
            "s",
            [Target(f"topk({TOP_N}, {m('asic_poll_duration_seconds')})", "{{miner}}")],
        ),
        Panel(
            "Miners down by reason",
            "Miners whose last poll failed, by the reason of that failure (timeout, refused, "
            "auth, parse, ...): many timeouts at once usually mean a switch or power issue.",
            "short",
            [
                Target(
                    f"count by (reason) ({m('asic_last_poll_error_info')}) "
                    f"or on () (0 * count({m('asic_up')}))",
                    "{{reason}}",
                )
            ],
            stacked=True,
        ),
        Panel(
            "Inventory and up by site",
            "Miners the agent polls per site and how many answered.",
            "short",
            [
                Target('altiwatch_inventory_miners{site=~"$site"}', "{{site}} inventory"),
                Target('altiwatch_miners_up{site=~"$site"}', "{{site}} up"),
            ],
        ),
        Panel(
            "MQTT outbox",
            "Outbox depth and the age of its oldest event; a steadily growing outbox means "
            "the broker is unreachable or slower than the event rate.",
            "short",
            [Target("altiwatch_mqtt_outbox_depth", "{{instance}}")],
        ),
        Panel(
            "MQTT published and dropped",
            "Messages acknowledged by the broker and messages dropped, by reason, per second.",
            "ops",
            [
                Target(f"sum(rate(altiwatch_mqtt_published_total[{rate}]))", "published"),
                Target(
                    f"sum by (reason) (rate(altiwatch_mqtt_dropped_total[{rate}])) "
                    f"or on () ({AGENT_ZERO})",
                    "dropped {{reason}}",
                ),
            ],
        ),
        Panel(
            "State write failures",
            "Failed writes of the alarm state or the outbox (disk full, read-only state dir).",
            "short",
            [
                Target(
                    f"sum(increase(altiwatch_state_write_failures_total[{rate}])) "
                    f"or on () ({AGENT_ZERO})",
                    "failures",
                )
            ],
        ),
        Panel(
            "Scrape duration",
            "How long Prometheus takes to scrape each agent's /metrics.",
            "s",
            [Target('scrape_duration_seconds{job="altiwatch"}', "{{instance}}")],
        ),
    ]
    return dashboard(
        "altiwatch-agent-health",
        "altiwatch / Agent health",
        "The agents themselves: polling throughput and latency, errors, lag and MQTT delivery.",
        panels,
    )


DASHBOARDS = {
    "fleet-overview.json": fleet_overview,
    "thermal-altitude.json": thermal_altitude,
    "miner-detail.json": miner_detail,
    "agent-health.json": agent_health,
}


def render(builder_name: str) -> str:
    """Return the JSON text of one dashboard exactly as committed."""
    return json.dumps(DASHBOARDS[builder_name](), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    """Write every dashboard; ``--check`` only reports files that differ (exit 1)."""
    check = "--check" in sys.argv[1:]
    stale = []
    for name in DASHBOARDS:
        path = DASHBOARD_DIR / name
        text = render(name)
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    for name in stale:
        sys.stderr.write(f"stale: grafana/dashboards/{name}\n")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
