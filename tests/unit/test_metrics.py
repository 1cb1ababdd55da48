"""The metrics renderer: names, labels, escaping, absent values, caching."""

import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agent.alarms.model import Severity
from agent.fleet_state import FleetState
from agent.metrics import AgentMetrics, MetricsRenderer, escape_label_value, format_value
from collectors.snapshot import (
    BoardReading,
    FanReading,
    Identity,
    MinerSnapshot,
    PowerSource,
    Tier,
)
from collectors.source import MinerTarget


@dataclass
class Limits:
    """Thresholds as the alarm engine reports them."""

    warning_c: float = 80.0
    critical_c: float = 90.0
    inlet_max_c: float = 30.0


@dataclass
class Alarm:
    """An active alarm as the engine reports it."""

    miner: str
    site: str
    rule: str
    severity: Severity


@dataclass
class Air:
    """Site air as the engine reports it."""

    altitude_m: float = 2800.0
    delta: float = 0.71
    cooling_multiplier: float = 1.4


class StubAlarms:
    """The renderer's view of the alarm engine (a boundary we own)."""

    def __init__(self) -> None:
        """No alarms firing."""
        self.firing: list[Alarm] = []

    def active(self):
        """Firing alarms."""
        return self.firing

    def thresholds(self, _miner):
        """Same thresholds for every miner."""
        return Limits()

    def site_air(self, _site):
        """Same air everywhere."""
        return Air()


def snapshot(address: str = "10.0.0.1", **kw: Any) -> MinerSnapshot:
    """A fast snapshot with two boards and two fans."""
    values: dict[str, Any] = {
        "hashrate_hs": 1.04e14,
        "expected_hashrate_hs": 1.04e14,
        "boards": (
            BoardReading(
                index=0,
                hashrate_hs=3.4e13,
                chip_temp_c=74.0,
                board_temp_c=59.0,
                chips=126,
                expected_chips=126,
            ),
            BoardReading(
                index=1, hashrate_hs=None, chip_temp_c=None, board_temp_c=None, missing=True
            ),
        ),
        "fans": (FanReading(index=0, rpm=5500), FanReading(index=1, rpm=0)),
        "uptime_s": 1000,
        "is_mining": True,
    }
    values.update(kw)
    return MinerSnapshot(
        address=address,
        collected_at=1.0,
        tier=Tier.FAST,
        identity=Identity(model="S19j Pro"),
        **values,
    )


def identity_snapshot(address: str = "10.0.0.1", hostname: str = "rack-1") -> MinerSnapshot:
    """A slow snapshot with identity."""
    return MinerSnapshot(
        address=address,
        collected_at=1.0,
        tier=Tier.SLOW,
        identity=Identity(
            make="AntMiner",
            model="S19j Pro",
            firmware="Stock",
            mac="02:00:00:00:00:01",
            hostname=hostname,
        ),
    )


def make(alarms: StubAlarms | None = None) -> tuple[FleetState, AgentMetrics, MetricsRenderer]:
    """A fleet with one miner and a renderer over it."""
    fleet = FleetState()
    fleet.add("golmud", MinerTarget(address="10.0.0.1"), now=0)
    registry = CollectorRegistry(auto_describe=False)
    metrics = AgentMetrics(registry, version="1.2.3")
    renderer = MetricsRenderer(fleet, registry, sites=["golmud"], alarms=alarms)
    return fleet, metrics, renderer


def test_escape_label_value_escapes_backslash_quote_newline():
    """Label values escape backslash, double quote and newline."""
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'


def test_format_value_integers_without_fraction():
    """Integral values render without a fraction, others in shortest form."""
    assert format_value(5500) == "5500"
    assert format_value(74.0) == "74"
    assert format_value(0.25) == "0.25"


def test_renderer_exports_telemetry_with_site_and_miner_labels():
    """An up miner exports hashrate, per-board and per-fan series under its stable id."""
    fleet, _, renderer = make()
    fleet.record_success("10.0.0.1", identity_snapshot(), 0.1, now=1)
    fleet.record_success("10.0.0.1", snapshot(), 0.1, now=2)
    text = renderer.render().decode()
    own = 'site="golmud",miner="02:00:00:00:00:01"'
    assert f"asic_up{{{own}}} 1\n" in text
    assert f"asic_hashrate_hashes_per_second{{{own}}} 104000000000000\n" in text
    assert f'asic_chip_temperature_celsius{{{own},board="0"}} 74\n' in text
    assert f'asic_fan_speed_rpm{{{own},fan="1"}} 0\n' in text
    assert f'asic_power_watts{{{own},source="estimated"}}' in text
    assert (
        'asic_miner_info{site="golmud",miner="02:00:00:00:00:01",make="AntMiner",model="S19j Pro",firmware="Stock",address="10.0.0.1",hostname="rack-1",mac="02:00:00:00:00:01",serial="",name="",container="",rack="",shelf="",slot="",cooling=""} 1'
        in text
    )
    assert 'altiwatch_build_info{version="1.2.3"} 1.0' in text
    assert 'altiwatch_inventory_miners{site="golmud"} 1.0' in text


def test_renderer_absent_values_have_no_series():
    """Unknown values (a missing board's temperature, no inlet) produce no series, never 0."""
    fleet, _, renderer = make()
    fleet.record_success("10.0.0.1", snapshot(), 0.1, now=2)
    text = renderer.render().decode()
    assert (
        'board="1"' not in text.split("asic_chip_temperature_celsius", 1)[1].split("# HELP", 1)[0]
    )
    assert "asic_inlet_temperature_celsius{" not in text
    assert "asic_power_limit_watts{" not in text


def test_renderer_down_miner_has_up_zero_reason_and_no_telemetry():
    """A failed poll shows asic_up 0 and the reason; stale telemetry is not exported."""
    fleet, _, renderer = make()
    fleet.record_success("10.0.0.1", snapshot(), 0.1, now=2)
    fleet.record_failure("10.0.0.1", "timeout", "no answer", 5.0, now=3, tier=Tier.FAST)
    text = renderer.render().decode()
    assert 'asic_up{site="golmud",miner="10.0.0.1"} 0\n' in text
    assert 'asic_last_poll_error_info{site="golmud",miner="10.0.0.1",reason="timeout"} 1\n' in text
    assert "asic_hashrate_hashes_per_second{" not in text
    assert 'asic_last_poll_success_timestamp_seconds{site="golmud",miner="10.0.0.1"} 2\n' in text


def test_renderer_escapes_label_values_from_miners():
    """A hostname with quotes and backslashes is escaped in asic_miner_info."""
    fleet, _, renderer = make()
    fleet.record_success("10.0.0.1", identity_snapshot(hostname='evil"\\\nname'), 0.1, now=1)
    fleet.record_success("10.0.0.1", snapshot(), 0.1, now=2)
    assert 'hostname="evil\\"\\\\\\nname"' in renderer.render().decode()


def test_renderer_caches_body_until_fleet_changes():
    """Scrapes between changes get the same bytes without re-rendering."""
    fleet, _, renderer = make()
    fleet.record_success("10.0.0.1", snapshot(), 0.1, now=2)
    first = renderer.miners_body()
    renders = renderer.renders
    assert renderer.miners_body() is first
    assert renderer.renders == renders
    fleet.record_success("10.0.0.1", snapshot(hashrate_hs=1e14), 0.1, now=3)
    assert renderer.miners_body() != first
    assert renderer.renders == renders + 1


def test_renderer_exports_alarms_thresholds_and_site_air():
    """Firing alarms, derated thresholds and site air come from the alarm engine."""
    alarms = StubAlarms()
    fleet, _, renderer = make(alarms)
    fleet.record_success("10.0.0.1", snapshot(), 0.1, now=2)
    alarms.firing.append(Alarm("10.0.0.1", "golmud", "chip_temp", Severity.CRITICAL))
    text = renderer.render().decode()
    assert (
        'asic_alarm_active{site="golmud",miner="10.0.0.1",rule="chip_temp",severity="critical"} 1\n'
        in text
    )
    assert (
        'asic_temperature_threshold_celsius{site="golmud",miner="10.0.0.1",kind="warning"} 80\n'
        in text
    )
    assert 'asic_inlet_temperature_max_celsius{site="golmud",miner="10.0.0.1"} 30\n' in text
    assert 'altiwatch_site_cooling_multiplier{site="golmud"} 1.4' in text
    alarms.firing.clear()
    assert "asic_alarm_active{" not in renderer.render().decode()


def test_renderer_has_no_sample_timestamps_and_one_help_per_family():
    """Every sample line has exactly name{labels} value, and every family one HELP/TYPE."""
    fleet, metrics, renderer = make()
    fleet.record_success(
        "10.0.0.1", snapshot(power_w=3000.0, power_source=PowerSource.MEASURED), 0.1, now=2
    )
    metrics.polls.labels(tier="fast").inc()
    text = renderer.render().decode()
    helps = [line.split()[2] for line in text.splitlines() if line.startswith("# HELP")]
    assert len(helps) == len(set(helps))
    for line in text.splitlines():
        if not line.startswith("#"):
            assert len(line.rsplit("} ", 1)[-1].split()) == 1 or "{" not in line, line


@pytest.mark.prometheus
@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs Debian's promtool")
def test_renderer_output_passes_promtool_check_metrics():
    """Promtool check metrics finds no problem in a rendered exposition."""
    alarms = StubAlarms()
    fleet, metrics, renderer = make(alarms)
    fleet.record_success("10.0.0.1", identity_snapshot(), 0.1, now=1)
    fleet.record_success("10.0.0.1", snapshot(), 0.1, now=2)
    alarms.firing.append(Alarm("02:00:00:00:00:01", "golmud", "chip_temp", Severity.WARNING))
    metrics.poll_errors.labels(reason="timeout").inc()
    proc = subprocess.run(
        ["promtool", "check", "metrics"], input=renderer.render(), capture_output=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_renderer_scrape_max_age_serves_recent_body_without_rendering():
    """With scrape_max_age_s a scrape gets the last body; a background refresh picks changes up."""
    fleet, _, renderer = make()
    fleet.record_success("10.0.0.1", snapshot(), 0.1, now=2)
    renderer.scrape_max_age_s = 60.0
    first, _ = renderer.render_chunks()
    fleet.record_success("10.0.0.1", snapshot(hashrate_hs=1e14), 0.1, now=3)
    assert renderer.render_chunks()[0] is first
    renderer.miners_body()  # what the service's metrics_refresh task does
    assert b" 100000000000000\n" in renderer.render_chunks()[0]


def test_renderer_drops_rows_of_miners_that_go_away():
    """A miner removed from inventory loses every series at the next render."""
    fleet, _, renderer = make()
    fleet.record_success("10.0.0.1", snapshot(), 0.1, now=2)
    assert b"asic_up{" in renderer.miners_body()
    fleet.remove("10.0.0.1", now=3)
    assert b"asic_" not in renderer.miners_body()


def engine_renderer(preset: str, altitude_m: float = 2800.0, **poll: Any):
    """A renderer over one miner whose thresholds come from the real alarm engine.

    The miner id is the MAC of ``identity_snapshot``; the engine saw one poll of it.
    """
    from agent.alarms.testing import Driver  # noqa: PLC0415 - only these tests need the engine

    driver = Driver(site_altitude_m=altitude_m, preset=preset, miner="02:00:00:00:00:01")
    driver.poll(**poll)
    fleet = FleetState()
    fleet.add("site", MinerTarget(address="10.0.0.1"), now=0)
    registry = CollectorRegistry(auto_describe=False)
    AgentMetrics(registry, version="t")
    renderer = MetricsRenderer(fleet, registry, sites=["site"], alarms=driver.engine)
    fleet.record_success("10.0.0.1", identity_snapshot(), 0.1, now=1)
    return fleet, renderer, driver


OWN = 'site="site",miner="02:00:00:00:00:01"'


def sample(text: str, head: str) -> float:
    """The value of the one sample line starting with ``head``."""
    found = [line for line in text.splitlines() if line.startswith(head)]
    assert len(found) == 1, (head, found)
    return float(found[0].rsplit(" ", 1)[1])


def test_renderer_fan_duty_is_fastest_fan_over_rated_max_rpm():
    """asic_fan_duty_ratio = fastest fan's rpm / the preset's rated max rpm (S19: 6000)."""
    fleet, renderer, _ = engine_renderer("s19", board=60.0, inlet=20.0, rpm=5000)
    fleet.record_success("10.0.0.1", snapshot(), 0.1, now=2)  # fans 5500 and 0 rpm
    text = renderer.render().decode()
    assert sample(text, f"asic_fan_max_rpm{{{OWN}}}") == 6000
    assert sample(text, f"asic_fan_duty_ratio{{{OWN}}}") == pytest.approx(5500 / 6000)
    assert "estimated from rpm / rated max rpm" in text


def test_renderer_fan_duty_is_clamped_and_absent_when_unknown():
    """Duty is clamped to 1.5, and has no series without fan speeds or without a rated max."""
    fleet, renderer, _ = engine_renderer("s19", board=60.0, inlet=20.0, rpm=5000)
    fleet.record_success("10.0.0.1", snapshot(fans=(FanReading(index=0, rpm=60000),)), 0.1, now=2)
    assert sample(renderer.render().decode(), f"asic_fan_duty_ratio{{{OWN}}}") == 1.5
    fleet.record_success("10.0.0.1", snapshot(fans=(FanReading(index=0, rpm=None),)), 0.1, now=3)
    assert "asic_fan_duty_ratio{" not in renderer.render().decode()
    bare_fleet, _, bare = make()  # no alarm engine: no rated max
    bare_fleet.record_success("10.0.0.1", snapshot(), 0.1, now=4)
    text = bare.render().decode()
    assert "asic_fan_speed_rpm{" in text
    assert "asic_fan_duty_ratio{" not in text


def test_renderer_thresholds_carry_the_sensor_and_sea_level_values():
    """Stock S19 thresholds are on the board sensor, S21's on the die; sea-level twins beside."""
    for preset, sensor, sea_warn, sea_crit in (("s19", "board", 65, 75), ("s21", "die", 85, 95)):
        fleet, renderer, driver = engine_renderer(preset, board=60.0, die=70.0, inlet=20.0)
        fleet.record_success("10.0.0.1", snapshot(), 0.1, now=2)
        text = renderer.render().decode()
        limits = driver.engine.thresholds("02:00:00:00:00:01")
        assert limits is not None
        on = f'kind="warning",sensor="{sensor}"'
        assert sample(text, f"asic_temperature_threshold_celsius{{{OWN},{on}}}") == pytest.approx(
            limits.warning_c
        )
        assert limits.warning_c < sea_warn  # derated at 2,800 m
        assert sample(text, f"asic_temperature_threshold_sea_level_celsius{{{OWN},{on}}}") == (
            sea_warn
        )
        on = f'kind="critical",sensor="{sensor}"'
        assert sample(text, f"asic_temperature_threshold_sea_level_celsius{{{OWN},{on}}}") == (
            sea_crit
        )
        assert sample(text, f"asic_inlet_temperature_max_sea_level_celsius{{{OWN}}}") == 40
        assert sample(text, f"asic_inlet_temperature_max_celsius{{{OWN}}}") == pytest.approx(
            limits.inlet_max_c
        )


def test_renderer_exports_site_alarms_apart_from_miner_alarms():
    """A site-level alarm (miner None) is altiwatch_site_alarm_active{site,rule,severity}."""
    alarms = StubAlarms()
    fleet, _, renderer = make(alarms)
    fleet.record_success("10.0.0.1", snapshot(), 0.1, now=2)
    alarms.firing.append(Alarm(None, "golmud", "R7", Severity.CRITICAL))  # type: ignore[arg-type]
    text = renderer.render().decode()
    assert 'altiwatch_site_alarm_active{site="golmud",rule="R7",severity="critical"} 1\n' in text
    assert "asic_alarm_active{" not in text
    assert text.count("# HELP altiwatch_site_alarm_active ") == 1
    alarms.firing.clear()
    assert "altiwatch_site_alarm_active{" not in renderer.render().decode()


def test_renderer_site_alarm_from_the_real_engine():
    """The engine's R9 site note at 2,800 m reaches the exposition as a site alarm."""
    fleet, renderer, _ = engine_renderer("s21", board=60.0, die=70.0, inlet=20.0)
    fleet.record_success("10.0.0.1", snapshot(), 0.1, now=2)
    text = renderer.render().decode()
    assert 'altiwatch_site_alarm_active{site="site",rule="R9",severity="info"} 1\n' in text


@pytest.mark.prometheus
@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs Debian's promtool")
def test_renderer_engine_families_pass_promtool_check_metrics():
    """Duty, rated max rpm, sea-level thresholds and site alarms pass promtool check metrics."""
    fleet, renderer, _ = engine_renderer("s19", board=60.0, inlet=20.0, rpm=5000)
    fleet.record_success("10.0.0.1", snapshot(), 0.1, now=2)
    body = renderer.render()
    for name in (b"asic_fan_duty_ratio{", b"asic_fan_max_rpm{", b"altiwatch_site_alarm_active{"):
        assert name in body
    proc = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_renderer_reads_active_alarms_only_when_the_engine_changed(monkeypatch):
    """Alarm lines are rebuilt when the engine's change counter moved, not on every render."""
    fleet, renderer, driver = engine_renderer("s21", die=70.0, inlet=15.0)
    calls: list[int] = []
    real = driver.engine.active

    def counted() -> Any:
        calls.append(1)
        return real()

    monkeypatch.setattr(driver.engine, "active", counted)
    renderer.miners_body()
    fleet.record_success("10.0.0.1", identity_snapshot(), 0.1, now=2)
    renderer.miners_body()  # a miner changed, the alarms did not
    assert len(calls) == 1
    for i in range(25):  # inlet rising 15 C/h: R4 warning
        driver.poll(die=60.0, inlet=15.0 + 0.25 * i)
    assert (
        f'asic_alarm_active{{{OWN},rule="R4",severity="warning"}} 1' in renderer.render().decode()
    )
    assert len(calls) == 2
