"""Liquid cooling (altitude-thermal.md §7): test vectors L1–L6 and the rules R2 liquid, R11, R8."""

from __future__ import annotations

import io
import itertools
import json

import jsonschema
import pytest
from prometheus_client import CollectorRegistry
from rich.console import Console

from agent import top
from agent.alarms.config import SiteThermal, ThermalSettings, ThresholdOverride
from agent.alarms.engine import AlarmEngine, Observation
from agent.alarms.liquid import flow_estimate
from agent.alarms.model import Severity
from agent.alarms.testing import Driver, Site, make_snapshot
from agent.fleet_state import FleetState
from agent.metrics import AgentMetrics, MetricsRenderer
from agent.mqtt import schemas
from agent.mqtt.discovery import DeviceInfo, device_config
from agent.mqtt.events import EventFactory, Topics
from collectors.coolant import boiling_point_at_altitude_c
from collectors.snapshot import BoardReading, Cooling, Family, Identity, MinerSnapshot, Tier
from collectors.source import MinerTarget

WARN, CRIT, INFO = Severity.WARNING, Severity.CRITICAL, Severity.INFO
HYDRO = {"cooling": Cooling.HYDRO}


def limits(**values: object) -> ThermalSettings:
    """Settings with coolant limits configured for every miner (as from a spec sheet)."""
    return ThermalSettings(
        sites=(SiteThermal(name="site"),), overrides=(ThresholdOverride.model_validate(values),)
    )


CONFIGURED = limits(coolant_inlet_max_c=40.0, coolant_delta_max_k=10.0)


def steady(**fields: object) -> dict[str, object]:
    """A hashing S21+ Hydro at a calm coolant loop, with ``fields`` changed."""
    base: dict[str, object] = {
        **HYDRO,
        "die": 70.0,
        "coolant_in": 30.0,
        "coolant_out": 36.0,
        "power": 5400.0,
        "fans": 0,
        "hashrate_ratio": 1.0,
    }
    base.update(fields)
    return base


def test_liquid_l1_no_delta_derating_of_r1_at_4000_m():
    """L1: S21+ Hydro at 4,000 m, chip 84 raises nothing (warn 85.0, crit 95.0); 85 → R1 WARN."""
    drv = Driver(site_altitude_m=4000, preset="s21hydro", settings=CONFIGURED)
    drv.hold(5, **steady(die=84.0))
    assert [a for a in drv.engine.active() if a.miner == "m1"] == []
    th = drv.engine.thresholds("m1")
    assert th is not None
    assert th.cooling == "hydro"
    assert th.warning_c == pytest.approx(85.0, abs=0.05)
    assert th.critical_c == pytest.approx(95.0, abs=0.05)
    drv.hold(2, **steady(die=85.0))
    assert drv.severity("R1") is WARN


def test_liquid_l1_same_chip_on_air_s21_at_4000_m_warns():
    """Control for L1: an air-cooled S21 at 4,000 m warns at 84 (its warning is derated)."""
    drv = Driver(site_altitude_m=4000, preset="s21")
    drv.hold(3, die=84.0, inlet=20.0)
    assert drv.severity("R1") is WARN


def test_liquid_l2_flow_estimate_water():
    """L2: 5,400 W with coolant 35 → 41 °C is 13.0 L/min of water."""
    drv = Driver(preset="s21hydro", settings=CONFIGURED)
    drv.poll(**steady(coolant_in=35.0, coolant_out=41.0))
    th = drv.engine.thresholds("m1")
    assert th is not None
    snap = make_snapshot(0.0, preset="s21hydro", **steady(coolant_in=35.0, coolant_out=41.0))  # type: ignore[arg-type]
    found = flow_estimate(snap, th)
    assert found is not None
    assert found[0] == pytest.approx(13.0, abs=0.1)
    assert found[1] is False  # measured power: not flagged estimated


def test_liquid_l3_delta_t_warn_then_crit():
    """L3: ΔT_max 10 K: ΔT 8.5 for 3 min → R11 WARN (from 8.0); then 10.2 for 2 polls → CRIT."""
    drv = Driver(preset="s21hydro", settings=CONFIGURED)
    drv.hold(1, **steady(coolant_out=38.5))
    assert drv.severity("R11") is None  # WARN needs its 2 minutes
    drv.hold(2, **steady(coolant_out=38.5))
    assert drv.severity("R11") is WARN
    alarm = next(a for a in drv.engine.active() if a.rule == "R11")
    assert alarm.threshold == pytest.approx(8.0, abs=0.05)
    drv.poll(**steady(coolant_out=40.2))
    assert drv.severity("R11") is WARN
    drv.poll(**steady(coolant_out=40.2))
    assert drv.severity("R11") is CRIT


def test_liquid_l4_freeze_warn_then_crit():
    """L4: water loop, not hashing: coolant inlet 4 °C → R8 WARN; then 1.5 °C → R8 CRIT."""
    drv = Driver(preset="s21hydro", settings=CONFIGURED)
    idle = {"is_mining": False, "hashrate_ratio": 0.0, "uptime_s": 60, "power": None}
    drv.hold(1, **steady(coolant_in=4.0, coolant_out=4.0, **idle))
    assert drv.severity("R8") is WARN
    drv.hold(1, **steady(coolant_in=1.5, coolant_out=1.5, **idle))
    assert drv.severity("R8") is CRIT
    assert "freeze" in drv.tags("R8")


@pytest.mark.parametrize(("altitude_m", "expected_c"), [(3000, 90.0), (4500, 85.0), (0, 100.0)])
def test_liquid_l5_boiling_point_isa(altitude_m, expected_c):
    """L5: water boils at 90.0 °C at 3,000 m and 85.0 °C at 4,500 m (ISA, Antoine)."""
    assert boiling_point_at_altitude_c(altitude_m) == pytest.approx(expected_c, abs=0.1)
    drv = Driver(site_altitude_m=altitude_m, preset="s21hydro", settings=CONFIGURED)
    drv.poll(**steady())
    th = drv.engine.thresholds("m1")
    assert th is not None
    assert th.boiling_point_c == pytest.approx(expected_c, abs=0.1)


def _whatsminer_v3_no_ambient(t: float) -> MinerSnapshot:
    """A Whatsminer API v3 poll: pyasic fills board inlet/outlet with chip min/max, no env."""
    boards = tuple(
        BoardReading(index=i, chip_temp_c=75.0, inlet_temp_c=70.0, outlet_temp_c=75.0)
        for i in range(3)
    )
    return MinerSnapshot(
        address="127.150.9.1",
        collected_at=t,
        tier=Tier.FAST,
        identity=Identity(family=Family.WHATSMINER, model="M60S"),
        hashrate_hs=1.7e14,
        expected_hashrate_hs=1.7e14,
        boards=boards,
        uptime_s=3600,
        is_mining=True,
    )


def test_liquid_l6_board_inlet_is_not_air():
    """L6: v3 Whatsminer, no ambient, board 'inlet' 70 at 3,000 m: no R2, no inlet series."""
    engine = AlarmEngine(ThermalSettings(), [Site("site", 3000)])
    t = 1_000_000.0
    for _ in range(30):  # 15 simulated minutes of 30-s polls
        engine.evaluate(t, [Observation("wm", "site", t, _whatsminer_v3_no_ambient(t))])
        t += 30
    assert [a.rule for a in engine.active() if a.miner == "wm"] == []
    fleet = FleetState()
    fleet.add("site", MinerTarget(address="127.150.9.1"), now=0)
    fleet.record_success("127.150.9.1", _whatsminer_v3_no_ambient(t), now=t, duration_s=0.1)
    registry = CollectorRegistry(auto_describe=False)
    AgentMetrics(registry, version="test")
    body = MetricsRenderer(fleet, registry, sites=["site"]).render().decode()
    assert "asic_chip_temperature_celsius{" in body
    assert "asic_inlet_temperature_celsius{" not in body
    assert "asic_coolant_temperature_celsius{" not in body


def test_liquid_r9_info_while_coolant_limits_unknown():
    """Unknown coolant limits: R2 liquid and R11 ΔT inactive, one R9 INFO naming them."""
    drv = Driver(preset="s21hydro", settings=ThermalSettings(sites=(SiteThermal(name="site"),)))
    drv.hold(5, **steady(coolant_in=60.0, coolant_out=75.0))  # would be R2/R11 if known
    assert drv.severity("R9") is INFO
    assert "coolant_limits_unknown" in drv.tags("R9")
    assert drv.severity("R2") is None
    assert drv.severity("R11") is None


def test_liquid_r2_coolant_inlet_warn_then_crit():
    """R2 liquid: coolant inlet ≥ max − 3 for 5 min → WARN; ≥ max for 2 min → CRIT."""
    drv = Driver(preset="s21hydro", settings=CONFIGURED)
    drv.hold(4, **steady(coolant_in=37.5, coolant_out=43.5))
    assert drv.severity("R2") is None
    drv.hold(1, **steady(coolant_in=37.5, coolant_out=43.5))
    assert drv.severity("R2") is WARN
    drv.hold(2, **steady(coolant_in=40.5, coolant_out=46.5))
    assert drv.severity("R2") is CRIT
    assert drv.severity("R9") is None  # limits configured: no INFO


def test_liquid_r11_outlet_near_boiling_at_4500_m():
    """R11: outlet 71 °C at 4,500 m is within 15 K of boiling (85.0) → CRIT near_boiling."""
    drv = Driver(site_altitude_m=4500, preset="s21hydro", settings=limits(coolant_inlet_max_c=75.0))
    drv.hold(1, **steady(coolant_in=65.0, coolant_out=71.0))
    assert drv.severity("R11") is CRIT
    assert "near_boiling" in drv.tags("R11")


def test_liquid_r11_low_flow_against_own_median():
    """R11: flow estimate < 0.7 × its 24-h median at the same power for 10 min → low_flow."""
    wide = limits(coolant_inlet_max_c=40.0, coolant_delta_max_k=15.0)  # ΔT warns from 12 K
    drv = Driver(preset="s21hydro", settings=wide, step_s=300.0)
    drv.hold(60, **steady(coolant_out=36.0))  # 6 K: 13.0 L/min for an hour
    assert drv.severity("R11") is None
    drv.step_s = 30.0
    drv.hold(9, **steady(coolant_out=39.0))  # 9 K: 8.7 L/min (< 0.7 × 13.0), below ΔT warn
    assert drv.severity("R11") is None
    drv.hold(2, **steady(coolant_out=39.0))
    assert drv.severity("R11") is WARN
    assert "low_flow" in drv.tags("R11")


def test_liquid_no_fan_rule_for_immersion_at_zero_rpm():
    """Immersion (BOS+ fan mode): fans at 0 rpm with hot chips raise no R3."""
    drv = Driver(site_altitude_m=3000, preset="bos-immersion", settings=CONFIGURED)
    drv.hold(12, cooling=Cooling.IMMERSION, die=86.0, rpm=0)
    assert drv.severity("R3") is None
    th = drv.engine.thresholds("m1")
    assert th is not None
    assert th.cooling == "immersion"


def test_liquid_override_forces_cooling():
    """thermal.overrides[].cooling makes an air-cooled model liquid (an S19 in a tank)."""
    drv = Driver(site_altitude_m=3000, preset="s21", settings=limits(cooling="immersion"))
    drv.poll(die=70.0)
    th = drv.engine.thresholds("m1")
    assert th is not None
    assert th.cooling == "immersion"
    assert th.warning_c == pytest.approx(85.0, abs=0.05)


def test_liquid_r11_site_cooler_capacity():
    """R11 site: ≥ 30 % of a site's liquid miners at coolant inlet ≥ max − 3 → site WARN."""
    engine = AlarmEngine(CONFIGURED, [Site("site", 3000)])
    t = 1_000_000.0
    for _ in range(6):  # R11's WARN holds 2 minutes
        obs = [
            Observation(
                f"m{i}",
                "site",
                t,
                make_snapshot(t, preset="s21hydro", **steady(coolant_in=38.0 if i < 2 else 30.0)),  # type: ignore[arg-type]
            )
            for i in range(5)
        ]
        engine.evaluate(t, obs)
        t += 30
    site = [a for a in engine.active() if a.miner is None and a.rule == "R11"]
    assert len(site) == 1
    assert site[0].severity is WARN
    assert "cooler_capacity" in site[0].tags


def test_liquid_telemetry_payload_and_discovery_carry_coolant():
    """MQTT telemetry carries cooling, coolant temperatures and flow (schema-valid); HA too."""
    counter = itertools.count(1)
    events = EventFactory(
        agent_id="a1", prefix="altiwatch/v1", version="0", next_seq=lambda: next(counter)
    )
    snap = make_snapshot(0.0, preset="s21hydro", **steady(coolant_in=35.0, coolant_out=41.0))  # type: ignore[arg-type]
    body = events.telemetry("s", "m", snap, alarm_severity="none", expiry_s=60).payload
    payload = json.loads(body)
    jsonschema.validate(payload, schemas.load(str(payload["schema"])))
    assert payload["cooling"] == "hydro"
    assert (payload["coolant_inlet_c"], payload["coolant_outlet_c"]) == (35.0, 41.0)
    assert payload["coolant_flow_lpm"] == pytest.approx(13.0, abs=0.1)
    info = DeviceInfo("s", "m", "S21+ Hydro", (0, 1, 2), (), coolant=True)
    config = device_config(info, topics=Topics(), status_topic="st", version="0")
    names = {c["name"] for c in config["cmps"].values()}  # type: ignore[attr-defined]
    assert {"Coolant inlet", "Coolant outlet", "Coolant flow (estimate)"} <= names


def test_liquid_top_shows_cooling_and_coolant_instead_of_fans():
    """`top`: a hydro miner's fans column names the cooling and the coolant in → out."""
    raw = {
        "miner": "m1",
        "site": "s",
        "up": True,
        "fans": [],
        "thresholds": {"cooling": "hydro", "sensor": "die"},
        "coolant_inlet_c": 35.0,
        "coolant_outlet_c": 41.0,
    }
    row = top.Row.parse(raw)
    assert row.cooling == "hydro"
    buffer = io.StringIO()
    Console(file=buffer, width=200, no_color=True).print(top.render([raw], now=0.0))
    assert "hydro 35→41 °C" in buffer.getvalue()
