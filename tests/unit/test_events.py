"""MQTT payloads and topics: sanitised segments, schema-valid payloads, QoS/retain per kind."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import jsonschema
from hypothesis import given
from hypothesis import strategies as st

from agent.alarms.model import AlarmTransition, Severity, TransitionKind
from agent.mqtt import schemas
from agent.mqtt.events import EventFactory, Topics, rfc3339, segment
from collectors.snapshot import BoardReading, FanReading, MinerSnapshot

FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER


def factory() -> EventFactory:
    """An EventFactory with a simple counter for seq."""
    counter = itertools.count(1)
    return EventFactory(
        agent_id="a1", prefix="altiwatch/v1", version="0.1.0", next_seq=lambda: next(counter)
    )


def transition(kind: TransitionKind, miner: str | None = "AA:BB:CC:00:11:22") -> AlarmTransition:
    """A synthetic transition."""
    return AlarmTransition(
        kind=kind,
        site="Xining West",
        miner=miner,
        rule="chip_temp",
        severity=Severity.CRITICAL,
        previous_severity=Severity.WARNING if kind is TransitionKind.ESCALATED else None,
        at=1_784_009_550.25,
        value=None,
        threshold=80.2,
        sea_level_threshold=85.0,
        altitude_m=2275.0,
        delta=0.7653,
        tags=("thermal", "altitude"),
        summary="hot",
        details={"inlet_c": 31.0, "note": None},
    )


def check(body: bytes) -> dict[str, object]:
    """Decode and validate against the schema the payload names."""
    payload: dict[str, object] = json.loads(body)
    jsonschema.validate(payload, schemas.load(str(payload["schema"])), format_checker=FORMATS)
    return payload


def test_segment_makes_mac_and_names_topic_safe():
    """MACs, spaces, wildcards and slashes become dashes; case is folded; empty becomes `_`."""
    assert segment("AA:BB:CC:00:11:22") == "aa-bb-cc-00-11-22"
    assert segment("Xining West") == "xining-west"
    assert segment("a/+/#") == "a"
    assert segment("$SYS") == "sys"
    assert segment("  ") == "_"


@given(st.text())
def test_segment_never_contains_topic_syntax(value: str):
    """Any input yields a non-empty segment without `/`, `+`, `#`, `$` or NUL."""
    out = segment(value)
    assert out
    assert not set(out) & {"/", "+", "#", "$", "\x00", " "}


def test_topics_layout():
    """Topic builders follow the documented layout, site-level alarms under `_site`."""
    t = Topics("altiwatch/v1/")
    assert t.telemetry("X", "m1") == "altiwatch/v1/x/m1/telemetry"
    assert t.alarm("X", None, "site_inlet") == "altiwatch/v1/x/_site/alarm/site_inlet"
    assert t.events("X") == "altiwatch/v1/x/events"
    assert t.status("X", "Agent 1") == "altiwatch/v1/x/agent/agent-1/status"
    assert t.all_events() == "altiwatch/v1/+/events"


def test_alarm_payload_event_and_retained_state():
    """An alarm yields a QoS1 event and a retained QoS1 state message with the same payload."""
    payload, (event, state) = factory().alarm(transition(TransitionKind.ESCALATED))
    assert (event.qos, event.retain, state.qos, state.retain) == (1, False, 1, True)
    assert event.topic == "altiwatch/v1/xining-west/events"
    assert state.topic == "altiwatch/v1/xining-west/aa-bb-cc-00-11-22/alarm/chip_temp"
    body = check(event.payload)
    assert body["miner"] == "AA:BB:CC:00:11:22"
    assert body["previous_severity"] == "warning"
    assert body["value"] is None
    assert body["ts"] == "2026-07-14T06:12:30.250Z"
    assert body["event_id"] == payload.event_id


def test_cleared_alarm_state_is_explicit():
    """A cleared transition is an explicit `cleared` state, not an empty payload."""
    _, (_, state) = factory().alarm(transition(TransitionKind.CLEARED, miner=None))
    body = check(state.payload)
    assert (body["event"], body["state"], body["miner"]) == ("cleared", "cleared", None)


def test_every_payload_kind_validates_and_seq_increases():
    """Status, agent event, miner status and telemetry validate; seq increases per payload."""
    f = factory()
    snap = MinerSnapshot(
        address="127.50.0.9",
        collected_at=1_784_009_550.0,
        boards=(BoardReading(index=0, chip_temp_c=70.0), BoardReading(index=1, missing=True)),
        fans=(FanReading(index=0, rpm=None),),
    )
    bodies = [
        check(f.agent_status(1.0, "s", "online", None).payload),
        check(f.agent_event(2.0, "s", "agent_started").payload),
        check(
            f.miner_status(3.0, "s", "m", "miner_offline", online=False, reason="timeout").payload
        ),
        check(f.telemetry("s", "m", snap, alarm_severity="none", expiry_s=60).payload),
    ]
    assert [b["seq"] for b in bodies] == [1, 2, 3, 4]
    assert bodies[3]["hashrate_hs"] is None
    assert bodies[3]["max_chip_temp_c"] == 70.0


def test_telemetry_is_droppable_qos0_with_expiry():
    """Telemetry is QoS0, not retained, droppable and carries its expiry."""
    snap = MinerSnapshot(address="127.50.0.9", collected_at=1.0)
    msg = factory().telemetry("s", "m", snap, alarm_severity="warning", expiry_s=90)
    assert (msg.qos, msg.retain, msg.droppable, msg.expiry_s) == (0, False, True, 90)


def test_rfc3339_is_utc_with_z():
    """Timestamps are RFC 3339 UTC with milliseconds and a Z suffix."""
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"


def test_schema_examples_validate():
    """Every schema's own examples validate (the README shows them)."""
    for name in schemas.FILES:
        schema = schemas.load(name)
        jsonschema.Draft202012Validator.check_schema(schema)
        for example in schema["examples"]:
            jsonschema.validate(example, schema, format_checker=FORMATS)


def test_site_level_alarm_topic_is_per_agent():
    """A site-level alarm's retained topic names its agent: shards never overwrite each other."""
    _, (_, state) = factory().alarm(transition(TransitionKind.RAISED, miner=None))
    assert state.topic == "altiwatch/v1/xining-west/_site.a1/alarm/chip_temp"
    assert (
        Topics().alarm("x", None, "R7", agent_id="Shard 2")
        == "altiwatch/v1/x/_site.shard-2/alarm/r7"
    )


def test_events_seq_counts_the_events_topic_alone():
    """events_seq rises by one per event-stream payload, per site; status and telemetry skip it."""
    f = factory()
    snap = MinerSnapshot(address="127.50.0.9", collected_at=1.0)
    f.agent_status(1.0, "s", "online", None)
    f.telemetry("s", "m", snap, alarm_severity="none", expiry_s=60)
    started = check(f.agent_event(2.0, "s", "agent_started").payload)
    other = check(f.agent_event(2.0, "t", "agent_started").payload)
    f.telemetry("s", "m", snap, alarm_severity="none", expiry_s=60)
    offline = check(
        f.miner_status(3.0, "s", "m", "miner_offline", online=False, reason=None).payload
    )
    raised, _ = f.alarm(transition(TransitionKind.RAISED))
    alarm = check(f.alarm(transition(TransitionKind.CLEARED))[1][0].payload)
    assert [started["events_seq"], offline["events_seq"]] == [1, 2]
    assert [raised.events_seq, alarm["events_seq"]] == [1, 2]  # Xining West's own events topic
    assert other["events_seq"] == 1
    assert int(str(alarm["seq"])) > int(str(offline["seq"])) > int(str(started["seq"]))


def test_maintenance_and_placed_alarm_payloads_validate():
    """maintenance/1 events and alarm/1 payloads naming the miner and its place validate."""
    f = factory()
    where = {"container": "C3", "rack": "12", "shelf": None, "slot": None}
    window = {"reason": "fan swap", "since": 1.0, "until": None, "by": None}
    event = check(
        f.maintenance(
            2.0, "s", "m", "maintenance_started", window=window, name="S19-0412", location=where
        ).payload
    )
    assert (event["event"], event["location"], event["until"]) == (
        "maintenance_started",
        where,
        None,
    )
    placed = replace(transition(TransitionKind.RAISED), name="S19-0412", location=where)
    _, messages = f.alarm(placed)
    alarm = check(messages[0].payload)
    assert (alarm["name"], alarm["location"]) == ("S19-0412", where)
