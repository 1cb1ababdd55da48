"""MQTT payload models and topic builders: what goes on the wire, under which topic, with which QoS.

Topics (prefix ``altiwatch/v1`` by default; every segment sanitised by :func:`segment`)::

    <p>/<site>/<miner>/telemetry           QoS0, MQTT5 message expiry     altiwatch.telemetry/1
    <p>/<site>/<miner>/alarm/<rule>        QoS1, retained current state   altiwatch.alarm/1
    <p>/<site>/events                      QoS1, the site's event stream  alarm/1, miner_status/1,
                                                                          agent_event/1,
                                                                          maintenance/1
    <p>/<site>/agent/<agent_id>/status     QoS1, retained + Last Will     altiwatch.agent_status/1

Site-level alarms (no miner) use the miner segment ``_site.<agent_id>``: each agent (each shard
of a site) owns its retained site-level topics, so one shard's ``cleared`` never overwrites
another's ``firing``. Every payload carries ``schema``, ``event_id`` (ULID), the per-agent
``seq``, ``ts`` (RFC 3339, UTC) and ``ts_unix``, ``agent_id``, ``site`` and ``miner`` (null when
not about one miner). Payloads sent on ``<p>/<site>/events`` also carry ``events_seq``: 1, 2, 3…
per agent and events topic, counting that topic alone (persisted with the outbox), so a consumer
far away can tell a lost event (a gap) from a duplicate. JSON Schemas: ``agent/mqtt/schemas/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict
from ulid import ULID

from agent.alarms.model import AlarmTransition, TransitionKind
from collectors.coolant import flow_l_per_min

if TYPE_CHECKING:
    from collections.abc import Callable

    from collectors.snapshot import MinerSnapshot

SITE_LEVEL = "_site"
"""Miner segment of site-level alarms (``_site.<agent_id>`` on the wire, one per agent)."""

ALARM_SCHEMA = "altiwatch.alarm/1"
MINER_STATUS_SCHEMA = "altiwatch.miner_status/1"
AGENT_EVENT_SCHEMA = "altiwatch.agent_event/1"
AGENT_STATUS_SCHEMA = "altiwatch.agent_status/1"
TELEMETRY_SCHEMA = "altiwatch.telemetry/1"
MAINTENANCE_SCHEMA = "altiwatch.maintenance/1"

_UNSAFE = re.compile(r"[^a-z0-9_.-]+")


def segment(value: str) -> str:
    """Return ``value`` as a safe topic segment: lowercase ``[a-z0-9_.-]``, never empty.

    Wildcards (``+``, ``#``), ``/``, ``$``, spaces and colons become ``-``, so a MAC
    ``AA:BB:CC:00:11:22`` becomes ``aa-bb-cc-00-11-22``. The original id stays in the payload.
    """
    cleaned = _UNSAFE.sub("-", value.strip().lower()).strip("-")
    return cleaned or "_"


def rfc3339(ts: float) -> str:
    """Format a UNIX time as RFC 3339 UTC with milliseconds, e.g. ``2026-01-02T03:04:05.678Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_event_id() -> str:
    """Return a new ULID (26 chars, sortable by creation time)."""
    return str(ULID())


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic builder for one prefix."""

    prefix: str = "altiwatch/v1"

    def _base(self, site: str) -> str:
        return f"{self.prefix.strip('/')}/{segment(site)}"

    def telemetry(self, site: str, miner: str) -> str:
        """``<p>/<site>/<miner>/telemetry``."""
        return f"{self._base(site)}/{segment(miner)}/telemetry"

    def alarm(self, site: str, miner: str | None, rule: str, *, agent_id: str | None = None) -> str:
        """``<p>/<site>/<miner>/alarm/<rule>``; site-level: ``<p>/<site>/_site.<agent_id>/…``.

        Without ``agent_id`` a site-level alarm's segment is the bare ``_site`` (used only to
        build subscription filters and by tools that predate shards).
        """
        if miner is not None:
            who = segment(miner)
        elif agent_id is not None:
            who = f"{SITE_LEVEL}.{segment(agent_id)}"
        else:
            who = SITE_LEVEL
        return f"{self._base(site)}/{who}/alarm/{segment(rule)}"

    def events(self, site: str) -> str:
        """``<p>/<site>/events``."""
        return f"{self._base(site)}/events"

    def status(self, site: str, agent_id: str) -> str:
        """``<p>/<site>/agent/<agent_id>/status``."""
        return f"{self._base(site)}/agent/{segment(agent_id)}/status"

    def all_events(self, site: str | None = None) -> str:
        """Subscription filter for the event stream of one site, or of every site."""
        return f"{self.prefix.strip('/')}/{segment(site) if site else '+'}/events"


def _alias(name: str) -> str:
    return "schema" if name == "schema_" else name


class _Wire(BaseModel):
    """Fields every payload carries (``schema_`` is ``schema`` on the wire)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=_alias, populate_by_name=True
    )

    schema_: str
    event_id: str
    seq: int
    ts: str
    ts_unix: float
    agent_id: str
    site: str
    miner: str | None

    def to_json(self) -> bytes:
        """Serialise with ``schema`` as the first key."""
        return self.model_dump_json(by_alias=True).encode()


Sev = Literal["info", "warning", "critical"]


class _EventStream(_Wire):
    """A payload sent on ``<p>/<site>/events``: it carries that topic's own counter."""

    events_seq: int


class AlarmPayload(_EventStream):
    """One alarm transition; also the retained current state of (miner, rule)."""

    event: Literal["raised", "escalated", "deescalated", "cleared"]
    state: Literal["firing", "cleared"]
    rule: str
    severity: Sev
    previous_severity: Sev | None
    value: float | None
    threshold: float | None
    sea_level_threshold: float | None
    altitude_m: float
    delta: float
    tags: list[str]
    summary: str
    details: dict[str, float | str | None]
    name: str | None = None
    location: dict[str, str | None] | None = None


MinerStatusEvent = Literal["miner_online", "miner_offline", "miner_removed", "miner_duplicate_id"]


class MinerStatusPayload(_EventStream):
    """A miner's status changed, or its id is in question.

    ``miner_online``/``miner_offline``; ``miner_removed``: its id is gone (reason removed or
    renamed); ``miner_duplicate_id``: it reports an id another answering miner holds (the
    reason says which id and where).
    """

    event: MinerStatusEvent
    online: bool | None
    reason: str | None


MaintenanceEvent = Literal["maintenance_started", "maintenance_ended", "maintenance_expired"]


class MaintenancePayload(_EventStream):
    """A miner's maintenance window opened, was ended, or expired by itself.

    While it is open the miner's alarm transitions are held back; when it closes, the
    difference to what was announced before follows as alarm events.
    """

    event: MaintenanceEvent
    reason: str
    since: float
    until: float | None
    by: str | None
    name: str | None
    location: dict[str, str | None] | None


class AgentEventPayload(_EventStream):
    """The agent started or stopped (on the event stream)."""

    event: Literal["agent_started", "agent_stopped"]
    version: str


class AgentStatusPayload(_Wire):
    """The agent's retained status; ``offline`` is also its Last Will."""

    state: Literal["online", "offline"]
    reason: str | None
    version: str


class BoardPayload(BaseModel):
    """One hashboard in a telemetry payload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int
    hashrate_hs: float | None
    board_temp_c: float | None
    chip_temp_c: float | None
    chips: int | None
    expected_chips: int | None
    missing: bool


class FanPayload(BaseModel):
    """One fan in a telemetry payload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int
    rpm: int | None


class PoolPayload(BaseModel):
    """The pool a miner mines on (URL without credentials; worker = the pool user)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int
    url: str | None
    worker: str | None
    alive: bool | None


class TelemetryPayload(_Wire):
    """Latest readings of one miner (unknown values are null, never 0)."""

    collected_at: str
    model: str | None
    hashrate_hs: float | None
    expected_hashrate_hs: float | None
    max_chip_temp_c: float | None
    max_board_temp_c: float | None
    inlet_temp_c: float | None
    power_w: float | None
    power_source: Literal["measured", "estimated"] | None
    uptime_s: int | None
    is_mining: bool | None
    boards: list[BoardPayload]
    fans: list[FanPayload]
    alarm_severity: Literal["none", "info", "warning", "critical"]
    pool: PoolPayload | None = None
    """The active pool (slow tier); null when unknown or none is active."""
    bad_share_ratio: float | None = None
    """(rejected + stale) / all shares over rule R12's window; null until known."""
    cooling: Literal["air", "hydro", "immersion"] | None = None
    """How the miner is cooled; null when not known."""
    coolant_inlet_c: float | None = None
    """Liquid-cooled miners: coolant inlet, °C (never air)."""
    coolant_outlet_c: float | None = None
    coolant_flow_lpm: float | None = None
    """Coolant flow estimate (water), L/min; estimated when ``power_source`` is."""


def _flow(snap: MinerSnapshot) -> float | None:
    """The coolant flow estimate (water) rounded to 0.01 L/min, or None."""
    inlet, outlet = snap.coolant_inlet_c, snap.coolant_outlet_c
    if snap.power_w is None or inlet is None or outlet is None:
        return None
    flow = flow_l_per_min(snap.power_w, outlet - inlet)
    return None if flow is None else round(flow, 2)


class _MemoryCounters:
    """In-memory ``events_seq`` counters by events topic (when no outbox persists them)."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def __call__(self, topic: str) -> int:
        self._last[topic] = self._last.get(topic, 0) + 1
        return self._last[topic]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message ready for the outbox.

    ``droppable`` messages (telemetry) are evicted first when the outbox is full;
    ``expiry_s`` (telemetry) becomes the MQTT5 message expiry, shortened by the time spent queued.
    """

    topic: str
    payload: bytes
    qos: int
    retain: bool
    droppable: bool = False
    expiry_s: int | None = None


class EventFactory:
    """Builds payloads and their messages for one agent; ``next_seq`` hands out the ``seq``."""

    def __init__(
        self,
        *,
        agent_id: str,
        prefix: str,
        version: str,
        next_seq: Callable[[], int],
        next_events_seq: Callable[[str], int] | None = None,
    ) -> None:
        """Bind the agent id, topic prefix, seq source and events_seq source (by events topic).

        Without ``next_events_seq`` the events_seq counters live in memory (tests, tools).
        """
        self.agent_id = agent_id
        self.topics = Topics(prefix)
        self.version = version
        self._next_seq = next_seq
        self._next_events_seq = next_events_seq or _MemoryCounters()

    def _stream(self, ts: float, site: str, miner: str | None, schema: str) -> dict[str, object]:
        """Common fields plus the events topic's next ``events_seq``."""
        return {
            **self._common(ts, site, miner, schema),
            "events_seq": self._next_events_seq(self.topics.events(site)),
        }

    def _common(self, ts: float, site: str, miner: str | None, schema: str) -> dict[str, object]:
        return {
            "schema_": schema,
            "event_id": new_event_id(),
            "seq": self._next_seq(),
            "ts": rfc3339(ts),
            "ts_unix": round(ts, 3),
            "agent_id": self.agent_id,
            "site": site,
            "miner": miner,
        }

    def alarm(self, t: AlarmTransition) -> tuple[AlarmPayload, list[Outgoing]]:
        """The event-stream message and the retained state message for one transition."""
        payload = AlarmPayload.model_validate(
            {
                **self._stream(t.at, t.site, t.miner, ALARM_SCHEMA),
                "event": t.kind.value,
                "state": "cleared" if t.kind is TransitionKind.CLEARED else "firing",
                "rule": t.rule,
                "severity": t.severity.label,
                "previous_severity": (
                    t.previous_severity.label if t.previous_severity is not None else None
                ),
                "value": t.value,
                "threshold": t.threshold,
                "sea_level_threshold": t.sea_level_threshold,
                "altitude_m": t.altitude_m,
                "delta": t.delta,
                "tags": list(t.tags),
                "summary": t.summary,
                "details": dict(t.details),
                "name": t.name,
                "location": t.location,
            }
        )
        body = payload.to_json()
        return payload, [
            Outgoing(self.topics.events(t.site), body, qos=1, retain=False),
            Outgoing(
                self.topics.alarm(t.site, t.miner, t.rule, agent_id=self.agent_id),
                body,
                qos=1,
                retain=True,
            ),
        ]

    def miner_status(
        self,
        at: float,
        site: str,
        miner: str,
        event: MinerStatusEvent,
        *,
        online: bool | None,
        reason: str | None,
    ) -> Outgoing:
        """A miner status event on the site's event stream."""
        payload = MinerStatusPayload.model_validate(
            {
                **self._stream(at, site, miner, MINER_STATUS_SCHEMA),
                "event": event,
                "online": online,
                "reason": reason,
            }
        )
        return Outgoing(self.topics.events(site), payload.to_json(), qos=1, retain=False)

    def maintenance(
        self,
        at: float,
        site: str,
        miner: str,
        event: MaintenanceEvent,
        *,
        window: dict[str, object],
        name: str | None,
        location: dict[str, str | None] | None,
    ) -> Outgoing:
        """A maintenance event on the site's event stream (``window``: reason, since, until, by)."""
        payload = MaintenancePayload.model_validate(
            {
                **self._stream(at, site, miner, MAINTENANCE_SCHEMA),
                "event": event,
                **window,
                "name": name,
                "location": location,
            }
        )
        return Outgoing(self.topics.events(site), payload.to_json(), qos=1, retain=False)

    def agent_event(
        self, at: float, site: str, event: Literal["agent_started", "agent_stopped"]
    ) -> Outgoing:
        """An agent lifecycle event on a site's event stream."""
        payload = AgentEventPayload.model_validate(
            {
                **self._stream(at, site, None, AGENT_EVENT_SCHEMA),
                "event": event,
                "version": self.version,
            }
        )
        return Outgoing(self.topics.events(site), payload.to_json(), qos=1, retain=False)

    def agent_status(
        self, at: float, site: str, state: Literal["online", "offline"], reason: str | None
    ) -> Outgoing:
        """The retained status message (also used as the Last Will)."""
        payload = AgentStatusPayload.model_validate(
            {
                **self._common(at, site, None, AGENT_STATUS_SCHEMA),
                "state": state,
                "reason": reason,
                "version": self.version,
            }
        )
        return Outgoing(
            self.topics.status(site, self.agent_id), payload.to_json(), qos=1, retain=True
        )

    def telemetry(
        self,
        site: str,
        miner: str,
        snap: MinerSnapshot,
        *,
        alarm_severity: Literal["none", "info", "warning", "critical"],
        expiry_s: int,
        bad_share_ratio: float | None = None,
    ) -> Outgoing:
        """A droppable QoS0 telemetry message."""
        active = next((p for p in snap.pools or () if p.active), None)
        payload = TelemetryPayload.model_validate(
            {
                **self._common(snap.collected_at, site, miner, TELEMETRY_SCHEMA),
                "collected_at": rfc3339(snap.collected_at),
                "model": snap.identity.model,
                "hashrate_hs": snap.hashrate_hs,
                "expected_hashrate_hs": snap.expected_hashrate_hs,
                "max_chip_temp_c": snap.max_chip_temp_c,
                "max_board_temp_c": snap.max_board_temp_c,
                "inlet_temp_c": snap.inlet_temp_c,
                "power_w": snap.power_w,
                "power_source": snap.power_source.value if snap.power_source else None,
                "uptime_s": snap.uptime_s,
                "is_mining": snap.is_mining,
                "boards": [
                    {
                        "index": b.index,
                        "hashrate_hs": b.hashrate_hs,
                        "board_temp_c": b.board_temp_c,
                        "chip_temp_c": b.chip_temp_c,
                        "chips": b.chips,
                        "expected_chips": b.expected_chips,
                        "missing": b.missing,
                    }
                    for b in snap.boards
                ],
                "fans": [{"index": f.index, "rpm": f.rpm} for f in snap.fans],
                "alarm_severity": alarm_severity,
                "cooling": None if snap.cooling is None else snap.cooling.value,
                "coolant_inlet_c": snap.coolant_inlet_c,
                "coolant_outlet_c": snap.coolant_outlet_c,
                "coolant_flow_lpm": _flow(snap),
                "pool": None
                if active is None
                else {
                    "index": active.index,
                    "url": active.url,
                    "worker": active.user,
                    "alive": active.alive,
                },
                "bad_share_ratio": bad_share_ratio,
            }
        )
        return Outgoing(
            self.topics.telemetry(site, miner),
            payload.to_json(),
            qos=0,
            retain=False,
            droppable=True,
            expiry_s=expiry_s,
        )
