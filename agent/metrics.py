"""The Prometheus exposition: per-miner ``asic_*`` series and the agent's own ``altiwatch_*``.

Text format 0.0.4, no sample timestamps, unknown values absent (no series). Example::

    # HELP asic_up Whether the last poll of the miner succeeded (1) or failed (0).
    # TYPE asic_up gauge
    asic_up{site="golmud",miner="02:42:AC:11:00:02"} 1
    asic_hashrate_hashes_per_second{site="golmud",miner="02:42:AC:11:00:02"} 1.04e+14

Scrape cost does not grow with scrape rate or fleet churn: each miner's lines are built once
per poll (cached on the record's ``version``), the whole body is joined only when the fleet's
``generation`` (or the alarm set) changed, and scrapes between changes get the same bytes.
The agent's own counters and histograms live in an injected ``CollectorRegistry`` and are
rendered with ``prometheus_client.generate_latest`` (a few dozen lines).

What the HTTP server sends is an `Exposition`: immutable bytes made on the event loop by
`MetricsRenderer.publish` (at most about once a second however many scrapes come), so the
server may send them from its own thread.

gzip (Prometheus asks with ``Accept-Encoding: gzip``) is the HTTP server's part, off the event
loop: it deflates each per-miner render once (level ``GZIP_LEVEL``, ending in a sync flush), the
agent's own few lines separately, and joins the two into one gzip member (header, both deflate
streams, CRC-32 and length of the whole), see `GzipBody`.
"""

from __future__ import annotations

import math
import struct
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from collectors.air import P0_PA
from collectors.coolant import WATER, Coolant, boiling_point_c, flow_l_per_min

if TYPE_CHECKING:
    from collections.abc import Callable, Container, Iterable, Iterator, Sequence

    from agent.fleet_state import FleetState, MinerRecord
    from agent.maintenance import MaintenanceBook
    from collectors.snapshot import MinerSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GZIP_LEVEL = 1
"""zlib level of the cached gzip body: the fastest; /metrics text still shrinks ~10-20x."""
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"  # deflate, no mtime, fastest, OS ?


@dataclass(frozen=True, slots=True)
class GzipBody:
    """A body deflated once, ready to be joined with a tail into one gzip member.

    ``deflated`` is a raw deflate stream ended by a sync flush (byte-aligned, no final block),
    so another raw deflate stream may follow it; ``crc`` and ``size`` are the body's CRC-32
    and length, for the gzip trailer of the whole.
    """

    source: bytes
    deflated: bytes
    crc: int
    size: int

    @classmethod
    def of(cls, body: bytes, level: int = GZIP_LEVEL) -> GzipBody:
        """Deflate ``body`` (raw, sync flush)."""
        comp = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        deflated = comp.compress(body) + comp.flush(zlib.Z_SYNC_FLUSH)
        return cls(body, deflated, zlib.crc32(body), len(body))

    def with_tail(self, tail: bytes, level: int = GZIP_LEVEL) -> tuple[bytes, bytes, bytes]:
        """One gzip member of ``source + tail``: (header + cached part, tail part, trailer)."""
        comp = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        tail_deflated = comp.compress(tail) + comp.flush(zlib.Z_FINISH)
        crc = zlib.crc32(tail, self.crc)
        trailer = struct.pack("<II", crc & 0xFFFFFFFF, (self.size + len(tail)) & 0xFFFFFFFF)
        return _GZIP_HEADER + self.deflated, tail_deflated, trailer


class AlarmView(Protocol):
    """What the renderer reads from the alarm engine."""

    def active(self) -> Sequence[Any]:
        """Firing alarms (each with miner, rule, severity).

        A view may also have ``changes``, a counter bumped whenever that set (or a severity)
        changes: the renderer then calls ``active`` only when it moved.
        """
        ...

    def thresholds(self, miner: str) -> Any:
        """Thresholds in force for ``miner`` (warning_c, critical_c, inlet_max_c) or None."""
        ...

    def site_air(self, site: str) -> Any:
        """Air at ``site`` (altitude_m, delta, cooling_multiplier)."""
        ...


class StatsView(Protocol):
    """What the renderer reads from the MQTT publisher."""

    def stats(self) -> Any:
        """connected, outbox_depth, oldest_age_s, dropped_total, published_total."""
        ...


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family of the per-miner exposition."""

    name: str
    kind: str
    help: str

    def header(self) -> bytes:
        """The HELP and TYPE lines."""
        return f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.kind}\n".encode()


FAMILIES: tuple[Family, ...] = (
    Family("asic_up", "gauge", "Whether the last poll of the miner succeeded (1) or failed (0)."),
    Family(
        "asic_last_poll_success_timestamp_seconds",
        "gauge",
        "UNIX time of the last successful poll.",
    ),
    Family("asic_poll_duration_seconds", "gauge", "Duration of the last poll of the miner."),
    Family(
        "asic_last_poll_error_info",
        "gauge",
        "1 while the last poll failed, with the failure reason.",
    ),
    Family(
        "asic_miner_info",
        "gauge",
        "Miner metadata (make, model, firmware, address, hostname, mac, serial, cooling: air, "
        "hydro or immersion) and where it stands (name, container, rack, shelf, slot; empty when "
        "unknown); always 1.",
    ),
    Family(
        "asic_maintenance",
        "gauge",
        "1 while the miner is in maintenance (its alarms held back, out of the R7 site-outage "
        "ratio), 0 otherwise.",
    ),
    Family(
        "asic_duplicate_id_info",
        "gauge",
        "1 while the miner reports an id (claimed: its MAC or serial) held by the miner at "
        "holder_address, both answering; it is exported under its name or address instead.",
    ),
    Family("asic_hashrate_hashes_per_second", "gauge", "Current hashrate reported by the miner."),
    Family(
        "asic_expected_hashrate_hashes_per_second",
        "gauge",
        "Factory nominal hashrate reported by the miner.",
    ),
    Family("asic_board_hashrate_hashes_per_second", "gauge", "Hashrate of one hashboard."),
    Family("asic_chip_temperature_celsius", "gauge", "Chip temperature of one hashboard."),
    Family("asic_board_temperature_celsius", "gauge", "PCB temperature of one hashboard."),
    Family(
        "asic_inlet_temperature_celsius",
        "gauge",
        "Intake air temperature at the miner, from an ambient (environment) sensor only.",
    ),
    Family(
        "asic_coolant_temperature_celsius",
        "gauge",
        "Liquid-cooled miners: coolant temperature at the miner's inlet or outlet (position).",
    ),
    Family(
        "asic_coolant_flow_estimate_liters_per_minute",
        "gauge",
        "Liquid-cooled miners: coolant flow estimated from power and coolant rise, "
        '60·P/(ρ·c_p·ΔT); source="estimated" where the power is estimated.',
    ),
    Family("asic_fan_speed_rpm", "gauge", "Fan speed in revolutions per minute."),
    Family(
        "asic_fan_duty_ratio",
        "gauge",
        "Fan load estimated from rpm / rated max rpm: the fastest fan's speed over the model's "
        "rated maximum (asic_fan_max_rpm), clamped to 0..1.5.",
    ),
    Family(
        "asic_fan_max_rpm",
        "gauge",
        "Rated maximum fan speed of the miner's model (alarm preset or override) in force.",
    ),
    Family(
        "asic_power_watts",
        "gauge",
        'Power draw; source="estimated" is hashrate times the model\'s nominal J/TH.',
    ),
    Family("asic_power_limit_watts", "gauge", "Configured power limit."),
    Family("asic_board_chips", "gauge", "Working chips detected on one hashboard."),
    Family("asic_board_expected_chips", "gauge", "Chips a hashboard of this model should have."),
    Family("asic_uptime_seconds", "gauge", "Seconds since the mining software started."),
    Family("asic_mining", "gauge", "Whether the miner is mining (1) or sleeping (0)."),
    Family(
        "asic_atm_enabled",
        "gauge",
        "LuxOS Advanced Thermal Management: 1 while on (the firmware steps its frequency profile "
        "down when hot, so less hashrate is its choice), 0 while off; absent for other firmware.",
    ),
    Family(
        "asic_pool_shares_total",
        "counter",
        "Shares the miner submitted to one pool since its mining software started, by result "
        "(accepted, rejected, stale; stale only where the firmware reports it). Read on the "
        "slow tier; a miner restart resets it (rate() handles the reset).",
    ),
    Family(
        "asic_pool_failures_total",
        "counter",
        "Failures to get work from (kind=get) or talk to (kind=remote) one pool, as the "
        "firmware counts them; absent where the firmware does not (Braiins OS+).",
    ),
    Family(
        "asic_pool_active",
        "gauge",
        "Whether the miner is mining on this pool now (1) or not (0).",
    ),
    Family(
        "asic_pool_alive", "gauge", "Whether the firmware reports this pool alive (1) or not (0)."
    ),
    Family(
        "asic_pool_info",
        "gauge",
        "A configured pool: index, URL (no credentials) and worker (the pool user); always 1.",
    ),
    Family(
        "asic_temperature_threshold_celsius",
        "gauge",
        "Altitude-derated temperature alarm threshold in force for the miner; sensor says "
        "which reading it applies to (board for stock S19, die otherwise).",
    ),
    Family(
        "asic_temperature_threshold_sea_level_celsius",
        "gauge",
        "The same temperature alarm threshold at sea level (no altitude derating).",
    ),
    Family(
        "asic_inlet_temperature_max_celsius",
        "gauge",
        "Altitude-derated maximum inlet air temperature for the miner.",
    ),
    Family(
        "asic_inlet_temperature_max_sea_level_celsius",
        "gauge",
        "The miner's maximum inlet air temperature at sea level (no altitude derating).",
    ),
)
_INDEX = {family.name: i for i, family in enumerate(FAMILIES)}
ALARM_FAMILY = Family(
    "asic_alarm_active",
    "gauge",
    "1 while an alarm rule fires for the miner, labelled with rule and severity.",
)
SITE_ALARM_FAMILY = Family(
    "altiwatch_site_alarm_active",
    "gauge",
    "1 while a site-level alarm rule fires (R7 site outage, R9 site sanity), by rule and severity.",
)
#: Highest fan load exported: a fan above its rated maximum is plausible (overclocked fan
#: firmware, a preset for the wrong fan), a ratio of 20 is a misreading.
FAN_DUTY_MAX = 1.5


def escape_label_value(value: str) -> str:
    """Escape a label value for the text format: backslash, double quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    """Render a sample value (integers without a fraction, floats in Python's shortest form)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:  # noqa: PLR2004 - exact below 2**53
        return str(int(value))
    return repr(value)


def labels(**pairs: str | int | None) -> str:
    """``{a="x",b="y"}`` with escaped values (None → empty string)."""
    inner = ",".join(
        f'{key}="{escape_label_value("" if v is None else str(v))}"' for key, v in pairs.items()
    )
    return "{" + inner + "}"


def fan_duty_ratio(snap: MinerSnapshot, rpm_max: float | None) -> float | None:
    """Fan load estimated as the fastest fan's rpm over the rated max rpm, clamped to 0..1.5.

    None when no fan speed or no rated maximum is known (never a guessed 0).
    """
    rpms = [fan.rpm for fan in snap.fans if fan.rpm is not None]
    if not rpms or rpm_max is None or not rpm_max > 0:
        return None
    return min(max(max(rpms) / rpm_max, 0.0), FAN_DUTY_MAX)


def _ok(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def miner_fragments(
    record: MinerRecord,
    alarms: AlarmView | None,
    maintenance: Container[str] | None = None,
) -> tuple[bytes, ...]:
    """Every family's lines for one miner (b"" where the miner has no series).

    ``maintenance``: the ids of the miners in maintenance (``asic_maintenance``).
    """
    lines: list[list[str]] = [[] for _ in FAMILIES]
    base = f'site="{escape_label_value(record.site)}",miner="{escape_label_value(record.miner_id)}"'
    own = "{" + base + "}"

    def add(name: str, value: float | None, extra: str = "") -> None:
        if value is None or not _ok(value):
            return
        label_text = "{" + base + extra + "}" if extra else own
        lines[_INDEX[name]].append(f"{name}{label_text} {format_value(value)}\n")

    add("asic_up", 1 if record.up else 0)
    add("asic_last_poll_success_timestamp_seconds", record.last_success_at)
    add("asic_poll_duration_seconds", record.last_poll_duration_s)
    if not record.up and record.last_error:
        add("asic_last_poll_error_info", 1, f',reason="{escape_label_value(record.last_error)}"')
    snap = record.snapshot
    ident = snap.identity if snap is not None else None
    if record.slow is not None:
        ident = record.slow.identity
    limits = alarms.thresholds(record.miner_id) if alarms is not None else None
    if ident is not None:
        info = labels(
            make=ident.make,
            model=ident.model,
            firmware=ident.firmware,
            address=record.address,
            hostname=ident.hostname,
            mac=ident.mac,
            serial=ident.serial,
            name=record.name,
            container=loc.container if (loc := record.location) is not None else None,
            rack=loc.rack if loc is not None else None,
            shelf=loc.shelf if loc is not None else None,
            slot=loc.slot if loc is not None else None,
            cooling=cooling_label(snap, limits),
        )
        add("asic_miner_info", 1, "," + info[1:-1])
    if maintenance is not None:
        add("asic_maintenance", 1 if record.miner_id in maintenance else 0)
    if record.duplicate_of is not None:
        flag = labels(claimed=record.duplicate_of, holder_address=record.duplicate_holder)
        add("asic_duplicate_id_info", 1, "," + flag[1:-1])
    rpm_max = getattr(limits, "rpm_max", None) if limits is not None else None
    if snap is not None and record.up:
        _telemetry(add, snap)
        _coolant(add, snap, limits)
        add("asic_fan_duty_ratio", fan_duty_ratio(snap, rpm_max))
        _pools(add, snap)
    if limits is not None:
        _thresholds(add, limits)
    return tuple("".join(family_lines).encode() for family_lines in lines)


def _telemetry(add: Callable[[str, float | None, str], None], snap: MinerSnapshot) -> None:
    """The telemetry series of a miner that is up."""
    add("asic_hashrate_hashes_per_second", snap.hashrate_hs, "")
    add("asic_expected_hashrate_hashes_per_second", snap.expected_hashrate_hs, "")
    for board in snap.boards:
        b = f',board="{board.index}"'
        add("asic_board_hashrate_hashes_per_second", board.hashrate_hs, b)
        add("asic_chip_temperature_celsius", board.chip_temp_c, b)
        add("asic_board_temperature_celsius", board.board_temp_c, b)
        add("asic_board_chips", board.chips, b)
        add("asic_board_expected_chips", board.expected_chips, b)
    for fan in snap.fans:
        add("asic_fan_speed_rpm", fan.rpm, f',fan="{fan.index}"')
    add("asic_inlet_temperature_celsius", snap.inlet_temp_c, "")
    if snap.power_source is not None:
        add("asic_power_watts", snap.power_w, f',source="{snap.power_source.value}"')
    add("asic_power_limit_watts", snap.power_limit_w, "")
    add("asic_uptime_seconds", snap.uptime_s, "")
    if snap.is_mining is not None:
        add("asic_mining", 1 if snap.is_mining else 0, "")
    if snap.atm_enabled is not None:
        add("asic_atm_enabled", 1 if snap.atm_enabled else 0, "")


def cooling_label(snap: MinerSnapshot | None, limits: Any) -> str | None:
    """The miner's cooling as the alarm engine resolved it (overrides included), else as read."""
    cooling = getattr(limits, "cooling", None)
    if isinstance(cooling, str):
        return cooling
    if snap is not None and snap.cooling is not None:
        return snap.cooling.value
    return None


def coolant_flow(snap: MinerSnapshot, limits: Any) -> float | None:
    """Coolant flow estimate (L/min) with the coolant in force (water by default), or None."""
    if snap.power_w is None or snap.coolant_inlet_c is None or snap.coolant_outlet_c is None:
        return None
    fluid = Coolant(
        cp_j_per_kg_k=getattr(limits, "coolant_cp_j_per_kg_k", WATER.cp_j_per_kg_k),
        density_kg_per_l=getattr(limits, "coolant_density_kg_per_l", WATER.density_kg_per_l),
    )
    return flow_l_per_min(snap.power_w, snap.coolant_outlet_c - snap.coolant_inlet_c, fluid)


def _coolant(
    add: Callable[[str, float | None, str], None], snap: MinerSnapshot, limits: Any
) -> None:
    """Coolant inlet/outlet and the flow estimate (liquid-cooled miners that report them)."""
    add("asic_coolant_temperature_celsius", snap.coolant_inlet_c, ',position="inlet"')
    add("asic_coolant_temperature_celsius", snap.coolant_outlet_c, ',position="outlet"')
    if snap.power_source is not None:
        add(
            "asic_coolant_flow_estimate_liters_per_minute",
            coolant_flow(snap, limits),
            f',source="{snap.power_source.value}"',
        )


def _pools(add: Callable[[str, float | None, str], None], snap: MinerSnapshot) -> None:
    """The pool series of a miner that is up: counters, active/alive and the info line."""
    for pool in snap.pools or ():
        url = escape_label_value(pool.url or "")
        p = f',pool="{pool.index}",url="{url}"'
        for result, count in (
            ("accepted", pool.accepted),
            ("rejected", pool.rejected),
            ("stale", pool.stale),
        ):
            add("asic_pool_shares_total", count, f'{p},result="{result}"')
        add("asic_pool_failures_total", pool.get_failures, f'{p},kind="get"')
        add("asic_pool_failures_total", pool.remote_failures, f'{p},kind="remote"')
        if pool.active is not None:
            add("asic_pool_active", 1 if pool.active else 0, p)
        if pool.alive is not None:
            add("asic_pool_alive", 1 if pool.alive else 0, p)
        add("asic_pool_info", 1, f'{p},worker="{escape_label_value(pool.user or "")}"')


def _thresholds(add: Callable[[str, float | None, str], None], limits: Any) -> None:
    """The thresholds in force for a miner, their sea-level equivalents and its rated fan max."""
    sensor = getattr(limits, "sensor", None)
    on = f',sensor="{escape_label_value(str(sensor))}"' if sensor else ""
    for kind in ("warning", "critical"):
        add(
            "asic_temperature_threshold_celsius",
            getattr(limits, f"{kind}_c", None),
            f',kind="{kind}"{on}',
        )
        add(
            "asic_temperature_threshold_sea_level_celsius",
            getattr(limits, f"{kind}_sea_level_c", None),
            f',kind="{kind}"{on}',
        )
    add("asic_inlet_temperature_max_celsius", getattr(limits, "inlet_max_c", None), "")
    add(
        "asic_inlet_temperature_max_sea_level_celsius",
        getattr(limits, "inlet_max_sea_level_c", None),
        "",
    )
    add("asic_fan_max_rpm", getattr(limits, "rpm_max", None), "")


def _alarm_lines(
    alarms: AlarmView | None,
    sites_of: Callable[[str], str | None],
    held: Container[str] = (),
) -> bytes:
    """``asic_alarm_active`` per miner alarm, then ``altiwatch_site_alarm_active`` per site.

    Alarms of the miners in ``held`` (in maintenance) are left out.
    """
    if alarms is None:
        return b""
    per_miner: list[str] = []
    per_site: list[str] = []
    for alarm in alarms.active():
        miner = getattr(alarm, "miner", None)
        if miner is not None and miner in held:
            continue
        site = getattr(alarm, "site", None) or (sites_of(miner) if miner else None) or ""
        severity = getattr(alarm, "severity", None)
        severity_label = escape_label_value(getattr(severity, "label", None) or str(severity))
        rule = getattr(alarm, "rule", "")
        if miner is None:
            text = labels(site=site, rule=rule)
            per_site.append(
                f'altiwatch_site_alarm_active{text[:-1]},severity="{severity_label}"}} 1\n'
            )
        else:
            text = labels(site=site, miner=miner, rule=rule)
            per_miner.append(f'asic_alarm_active{text[:-1]},severity="{severity_label}"}} 1\n')
    parts: list[bytes] = []
    if per_miner:
        parts += [ALARM_FAMILY.header(), "".join(per_miner).encode()]
    if per_site:
        parts += [SITE_ALARM_FAMILY.header(), "".join(per_site).encode()]
    return b"".join(parts)


class AgentMetrics:
    """The agent's own instruments, registered in an injected registry."""

    def __init__(self, registry: CollectorRegistry, *, version: str) -> None:
        """Create and register every ``altiwatch_*`` instrument."""
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: they double the counters for nothing
        self.registry = registry
        build = Gauge(
            "altiwatch_build_info",
            "Build of the running agent; always 1.",
            ["version"],
            registry=registry,
        )
        build.labels(version=version).set(1)
        self.polls = Counter(
            "altiwatch_polls", "Polls attempted, by tier.", ["tier"], registry=registry
        )
        self.poll_errors = Counter(
            "altiwatch_poll_errors", "Failed polls, by reason.", ["reason"], registry=registry
        )
        self.poll_duration = Histogram(
            "altiwatch_poll_duration_seconds",
            "Duration of one poll, by tier.",
            ["tier"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.poll_lateness = Histogram(
            "altiwatch_poll_lateness_seconds",
            "How late a poll started against its fixed-rate schedule.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=registry,
        )
        self.polls_skipped = Counter(
            "altiwatch_polls_skipped",
            "Fast-tier slots skipped because the previous poll of the miner overran.",
            registry=registry,
        )
        self.state_write_failures = Counter(
            "altiwatch_state_write_failures",
            "Failed writes of the state directory (alarm store, outbox).",
            registry=registry,
        )
        self.http_front_restarts = Counter(
            "altiwatch_http_front_restarts",
            "Times the HTTP front process exited and was started again.",
            registry=registry,
        )
        self.http_api_requests = Counter(
            "altiwatch_http_api_requests",
            "Requests the agent itself answered, by path (behind the HTTP front: its fetches).",
            ["path"],
            registry=registry,
        )
        for tier in ("fast", "slow"):
            self.polls.labels(tier=tier)
            self.poll_duration.labels(tier=tier)


class _LiveCollector:
    """Per-site and MQTT gauges read at scrape time from the fleet, engine and publisher."""

    def __init__(self, renderer: MetricsRenderer) -> None:
        self._renderer = renderer

    def collect(self) -> Iterator[Metric]:
        r = self._renderer
        inventory = GaugeMetricFamily(
            "altiwatch_inventory_miners", "Miners in inventory, by site.", labels=["site"]
        )
        up = GaugeMetricFamily(
            "altiwatch_miners_up", "Miners whose last poll succeeded, by site.", labels=["site"]
        )
        counts = r.fleet.sites()
        for site in r.site_names():
            total, n_up = counts.get(site, (0, 0))
            inventory.add_metric([site], total)
            up.add_metric([site], n_up)
        yield inventory
        yield up
        if r.alarms is not None:
            yield from self._site_air(r.alarms, r.site_names())
        if r.publisher is not None:
            yield from self._mqtt(r.publisher.stats())

    @staticmethod
    def _site_air(alarms: AlarmView, sites: Iterable[str]) -> Iterator[GaugeMetricFamily]:
        altitude = GaugeMetricFamily(
            "altiwatch_site_altitude_meters", "Configured site altitude.", labels=["site"]
        )
        density = GaugeMetricFamily(
            "altiwatch_site_air_density_ratio",
            "Air density at the site relative to sea level (delta).",
            labels=["site"],
        )
        cooling = GaugeMetricFamily(
            "altiwatch_site_cooling_multiplier",
            "Airflow needed at the site relative to sea level for the same cooling.",
            labels=["site"],
        )
        boiling = GaugeMetricFamily(
            "altiwatch_site_water_boiling_point_celsius",
            "Boiling point of water at the site's pressure (Antoine); R11 fires CRIT when a "
            "coolant outlet comes within 15 K of it.",
            labels=["site"],
        )
        for site in sites:
            air = alarms.site_air(site)
            for family, attr in ((altitude, "altitude_m"), (density, "delta")):
                value = getattr(air, attr, None)
                if value is not None:
                    family.add_metric([site], float(value))
            value = getattr(air, "cooling_multiplier", None)
            if value is not None:
                cooling.add_metric([site], float(value))
            delta = getattr(air, "delta", None)
            if isinstance(delta, int | float):
                boiling.add_metric([site], round(boiling_point_c(delta * P0_PA), 2))
        yield altitude
        yield density
        yield cooling
        yield boiling

    @staticmethod
    def _mqtt(stats: Any) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily  # noqa: PLC0415 - local to MQTT

        yield GaugeMetricFamily(
            "altiwatch_mqtt_connected",
            "Whether the MQTT publisher is connected.",
            value=1 if stats.connected else 0,
        )
        yield GaugeMetricFamily(
            "altiwatch_mqtt_outbox_depth",
            "Events waiting in the durable outbox.",
            value=stats.outbox_depth,
        )
        oldest = getattr(stats, "oldest_age_s", None)
        if oldest is not None:
            yield GaugeMetricFamily(
                "altiwatch_mqtt_outbox_oldest_age_seconds",
                "Age of the oldest event waiting in the outbox.",
                value=oldest,
            )
        dropped = CounterMetricFamily(
            "altiwatch_mqtt_dropped", "Events dropped, by reason.", labels=["reason"]
        )
        for reason, count in sorted(dict(stats.dropped_total).items()):
            dropped.add_metric([reason], count)
        yield dropped
        yield CounterMetricFamily(
            "altiwatch_mqtt_published", "Messages published.", value=stats.published_total
        )
        bridge = getattr(stats, "bridge_connected", None)
        if bridge is not None:
            family = GaugeMetricFamily(
                "altiwatch_mqtt_bridge_connected",
                "Whether the site broker's bridge to central is up (mqtt.bridge_state_topic).",
                labels=["site"],
            )
            family.add_metric([str(getattr(stats, "site", ""))], 1 if bridge else 0)
            yield family


@dataclass(frozen=True, slots=True)
class Exposition:
    """One /metrics answer: the per-miner render and the agent's own series, sent back to back.

    Immutable, so the HTTP thread may serve it as it is.
    """

    body: bytes
    tail: bytes
    made_at: float


class MetricsRenderer:
    """Builds the /metrics body; cached until the fleet (or the alarm set) changes.

    Per family, one ``{address: lines}`` dict holds every miner's lines; a poll re-renders only
    that miner's lines (the fleet's dirty set), and a changed body is one ``bytes.join`` over the
    dicts' values, so a scrape at 10,000 miners does no per-miner Python work.
    """

    def __init__(
        self,
        fleet: FleetState,
        registry: CollectorRegistry,
        *,
        sites: Sequence[str] = (),
        alarms: AlarmView | None = None,
        publisher: StatsView | None = None,
        maintenance: MaintenanceBook | None = None,
    ) -> None:
        """Read the fleet, engine and publisher; register the live collector in ``registry``."""
        self.fleet = fleet
        self.registry = registry
        self.alarms = alarms
        self.maintenance = maintenance
        self.publisher = publisher
        self._sites = tuple(sites)
        self._rows: list[dict[str, bytes]] = [{} for _ in FAMILIES]
        self._body: bytes | None = None
        self._alarm_bytes = b""
        self._alarm_changes: object = None
        self._rendered_at = 0.0
        self.renders = 0
        self.last_render_s = 0.0
        #: A scrape may get a body up to this old (s) instead of rendering inline; the service
        #: refreshes in the background, so scrape latency does not grow with the fleet.
        #: None: every scrape sees every change.
        self.scrape_max_age_s: float | None = None
        #: The latest `publish` (None before the first).
        self.exposition: Exposition | None = None
        registry.register(_LiveCollector(self))

    def site_names(self) -> tuple[str, ...]:
        """Configured sites plus any site a record belongs to."""
        names = dict.fromkeys(self._sites)
        for record in self.fleet:
            names.setdefault(record.site)
        return tuple(names)

    def set_sites(self, sites: Sequence[str]) -> None:
        """Replace the configured site list (config reload)."""
        self._sites = tuple(sites)
        self._rendered_at = 0.0

    def _site_of(self, miner: str) -> str | None:
        record = self.fleet.by_id(miner)
        return None if record is None else record.site

    def miners_body(self, *, max_age_s: float | None = None) -> bytes:
        """The ``asic_*`` part, rebuilt only when something changed.

        With ``max_age_s``, a body rendered less than that long ago is returned as it is.
        """
        if (
            self._body is not None
            and max_age_s is not None
            and time.monotonic() - self._rendered_at < max_age_s
        ):
            return self._body
        dirty = self.fleet.drain_dirty()
        if self._body is None:
            dirty.update(record.address for record in self.fleet)
        changes = getattr(self.alarms, "changes", None)
        book = self.maintenance
        if changes is not None and book is not None:
            changes = (changes, book.changes)
        alarm_bytes = self._alarm_bytes
        if changes is None or changes != self._alarm_changes:
            alarm_bytes = _alarm_lines(self.alarms, self._site_of, book or ())
            self._alarm_changes = changes
        if self._body is not None and not dirty and alarm_bytes == self._alarm_bytes:
            return self._body
        started = time.perf_counter()
        self._apply(dirty)
        parts: list[bytes] = []
        for family, rows in zip(FAMILIES, self._rows, strict=True):
            if rows:
                parts.append(family.header())
                parts.extend(rows.values())
        if alarm_bytes:
            parts.append(alarm_bytes)
        self._body = b"".join(parts)
        self._alarm_bytes = alarm_bytes
        self._rendered_at = time.monotonic()
        self.renders += 1
        self.last_render_s = time.perf_counter() - started
        return self._body

    def _apply(self, dirty: set[str]) -> None:
        """Re-render the rows of every changed address (or drop them)."""
        for address in dirty:
            record = self.fleet.get(address)
            fragments: tuple[bytes, ...] | None = None
            if record is not None and record.visible and record.up is not None:
                fragments = miner_fragments(record, self.alarms, self.maintenance)
            for i, rows in enumerate(self._rows):
                if fragments is not None and fragments[i]:
                    rows[address] = fragments[i]
                else:
                    rows.pop(address, None)

    def render_chunks(self) -> tuple[bytes, bytes]:
        """The exposition as (per-miner series, the agent's own), to be sent back to back."""
        body = self.miners_body(max_age_s=self.scrape_max_age_s)
        return body, generate_latest(self.registry)

    def publish(self) -> Exposition:
        """Make (and keep as ``exposition``) what a scrape sends now; event loop only.

        The per-miner part comes from the cache (rendered here only if older than
        ``scrape_max_age_s``); the agent's own series are rendered here.
        """
        body = self.miners_body(max_age_s=self.scrape_max_age_s)
        self.exposition = Exposition(body, generate_latest(self.registry), time.monotonic())
        return self.exposition

    def is_current(self, exposition: Exposition, max_age_s: float) -> bool:
        """Whether ``exposition`` has the latest per-miner render and is younger than ``max_age_s``.

        Reads two references and the clock, so any thread may ask.
        """
        return exposition.body is self._body and time.monotonic() - exposition.made_at < max_age_s

    def render(self) -> bytes:
        """The whole exposition: per-miner series, then the agent's own."""
        return b"".join(self.render_chunks())
