"""The MQTT publisher: reconnect loop, retained status and Last Will, outbox draining, HA discovery.

Producers (the service loop) call the synchronous methods :meth:`EventPublisher.alarm_transitions`,
:meth:`~EventPublisher.telemetry`, :meth:`~EventPublisher.miner_status` and
:meth:`~EventPublisher.miner_removed`; each commits to the durable outbox before returning and
wakes the drain loop. :meth:`EventPublisher.run` connects (capped, jittered backoff between
attempts), publishes the retained ``online`` status, Home Assistant discovery (if enabled), then
drains the outbox in order, deleting rows only once the broker acknowledged them. On
cancellation it publishes ``agent_stopped`` and the retained ``offline`` status, then disconnects
(the Last Will is not sent on a clean DISCONNECT).

A publish the broker refuses (an MQTT 5 PUBACK with a failure reason code, e.g. 0x87 Not
authorized from a Mosquitto ACL) is logged as ``mqtt_publish_rejected``, counted as dropped
under ``rejected`` and removed from the outbox: retrying a denied topic forever would block the
backlog behind it. MQTT 3.1.1 has no PUBACK reason codes (Mosquitto acknowledges a denied
publish as if delivered), so only MQTT 5 connections can learn of a denial.

A message that can never be published (`unpublishable`: an empty topic, one over 65,535 bytes,
with a wildcard or a NUL character, a payload over MQTT's 256 MiB) is logged as
``mqtt_message_unpublishable`` and counted as dropped under ``unpublishable``: never stored
when it is produced, dropped at the head of the queue when an older outbox holds one, so it
can neither crash the publisher (paho raises ``ValueError``) nor block the messages behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Literal

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from tenacity import RetryCallState, Retrying, wait_fixed, wait_random_exponential

from agent.alarms.model import Severity, TransitionKind
from agent.mqtt.discovery import DeviceInfo, config_topic, device_config_json
from agent.mqtt.events import SITE_LEVEL, EventFactory, Outgoing
from agent.mqtt.outbox import Outbox, RetainedAlarm, Row

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from paho.mqtt.client import Client as PahoClient
    from paho.mqtt.client import MQTTMessageInfo
    from paho.mqtt.reasoncodes import ReasonCode

    from agent.alarms.model import AlarmTransition
    from agent.mqtt.config import MqttSettings
    from agent.mqtt.events import MaintenanceEvent
    from collectors.snapshot import MinerSnapshot

log = structlog.get_logger(__name__)

_STAGE_MAX = 500
"""Telemetry staged in memory is committed at the end of the loop iteration or at this count."""

_IDLE_CHECK_S = 1.0
"""How often an idle drain loop retries storage recovery and checks for work."""

MAX_TOPIC_BYTES = 65_535
"""MQTT's limit on a topic name (a UTF-8 string with a 16-bit length)."""
MAX_PAYLOAD_BYTES = 268_435_455
"""MQTT's limit on a whole packet (payload included)."""


def unpublishable(topic: str, payload: bytes) -> str | None:
    """Why ``topic``/``payload`` can never be published, or None if they can."""
    reason = None
    encoded = topic.encode("utf-8", "surrogatepass")
    if not encoded:
        reason = "empty topic"
    elif len(encoded) > MAX_TOPIC_BYTES:
        reason = f"topic of {len(encoded)} bytes (MQTT allows {MAX_TOPIC_BYTES})"
    elif "+" in topic or "#" in topic:
        reason = "wildcard in topic"
    elif "\x00" in topic:
        reason = "NUL character in topic"
    elif len(payload) > MAX_PAYLOAD_BYTES:
        reason = f"payload of {len(payload)} bytes"
    return reason


def _log_unpublishable(topic: str, why: str, kind: str) -> None:
    log.warning("mqtt_message_unpublishable", topic=topic[:200], reason=why, kind=kind)


def _version() -> str:
    try:
        return metadata.version("altiwatch")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True, slots=True)
class PublisherStats:
    """Publisher health for metrics and the API."""

    connected: bool
    outbox_depth: int
    oldest_age_s: float | None
    dropped_total: dict[str, int]
    published_total: int
    bridge_connected: bool | None = None
    """The site broker's bridge state (``mqtt.bridge_state_topic``); None when unknown."""
    site: str = "_agent"


@dataclass(frozen=True, slots=True)
class _Window:
    """Rows handed to the client together, and the future of their PUBACK outcomes."""

    rows: Sequence[Row]
    results: asyncio.Future[list[ReasonCode | BaseException | None]]


_SENT_MIDS: ContextVar[list[int] | None] = ContextVar("altiwatch_mqtt_sent_mids", default=None)
"""Set by :meth:`_PubackReasons.publish` in the publishing task: the mids paho assigned there."""


class _PubackReasons:
    """Learn the PUBACK reason code of each QoS1 publish, which aiomqtt 2.5.1 discards.

    aiomqtt's ``Client.publish`` returns None once the PUBACK arrives whatever its reason code
    (its ``_on_publish`` ignores ``reason_code``), so a publish denied by the broker's ACL looks
    delivered. We go around it minimally, on the underlying paho client (``Client._client``):
    paho's ``publish`` is wrapped to record the message id it assigned in a ContextVar of the
    publishing task, and ``on_publish`` is wrapped to keep failing reason codes by message id
    before calling aiomqtt's own handler (which then wakes the waiting ``publish``).
    """

    def __init__(self, client: aiomqtt.Client) -> None:
        """Wrap ``publish`` and ``on_publish`` of ``client``'s paho client."""
        self._failed: dict[int, ReasonCode] = {}
        paho: PahoClient = client._client  # noqa: SLF001 - aiomqtt exposes no PUBACK reason code
        send = paho.publish
        handler = paho.on_publish
        failed = self._failed

        def publish(*args: object, **kwargs: object) -> MQTTMessageInfo:
            info = send(*args, **kwargs)
            failed.pop(info.mid, None)  # a reused mid: forget a late PUBACK of an older publish
            mids = _SENT_MIDS.get()
            if mids is not None:
                mids.append(info.mid)
            return info

        def on_publish(
            c: PahoClient, userdata: object, mid: int, reason: ReasonCode, props: Properties
        ) -> None:
            if reason.is_failure:
                failed[mid] = reason
            if handler is not None:
                handler(c, userdata, mid, reason, props)

        paho.publish = publish
        paho.on_publish = on_publish

    async def publish(
        self,
        client: aiomqtt.Client,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool,
        properties: Properties | None = None,
    ) -> ReasonCode | None:
        """Publish and wait for the broker; return the failing reason code, None when accepted."""
        mids: list[int] = []
        token = _SENT_MIDS.set(mids)
        try:
            await client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        finally:
            _SENT_MIDS.reset(token)
        return self.take(mids[-1]) if mids else None

    def take(self, mid: int) -> ReasonCode | None:
        """The failing reason code the broker gave message ``mid`` (forgotten once taken)."""
        return self._failed.pop(mid, None)


def _kind(msg: Outgoing) -> str:
    """What a queued message is, for logs: telemetry, retained (alarm state etc.) or event."""
    if msg.droppable:
        return "telemetry"
    return "retained" if msg.retain else "event"


def _log_rejected(topic: str, reason: ReasonCode, kind: str) -> None:
    log.warning(
        "mqtt_publish_rejected",
        topic=topic,
        reason=str(reason),
        reason_code=reason.value,
        kind=kind,
    )


class _ConnectionLostError(Exception):
    """The broker connection dropped (wraps the aiomqtt/OS error)."""


class EventPublisher:
    """Publishes alarm events, miner status and telemetry to MQTT through a durable outbox."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        agent_id: str,
        state_dir: Path,
        sites: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Open the outbox in ``state_dir``; ``sites`` get agent_started/stopped events.

        The status topic's site is ``settings.site``, else the first of ``sites``, else ``_agent``.
        """
        self._s = settings
        self.agent_id = agent_id
        self._clock = clock
        self._outbox = Outbox(
            state_dir,
            max_messages=settings.outbox_max_messages,
            memory_max=settings.memory_max_messages,
            clock=clock,
        )
        self.version = _version()
        self._events = EventFactory(
            agent_id=agent_id,
            prefix=settings.topic_prefix,
            version=self.version,
            next_seq=self._outbox.next_seq,
            next_events_seq=self._outbox.next_events_seq,
        )
        self.status_site = settings.site or (sites[0] if sites else "_agent")
        self._sites = list(dict.fromkeys([*sites])) or [self.status_site]
        self.status_topic = self._events.topics.status(self.status_site, agent_id)
        self._wake = asyncio.Event()
        self._connected = False
        self._published = 0
        self._started = False
        self._stopped = False
        self._devices: dict[tuple[str, str], DeviceInfo] = {}
        self._announce: set[tuple[str, str]] = set()
        self._staged: list[Outgoing] = []
        self._in_flight: _Window | None = None
        self._bridge_connected: bool | None = None
        self._wait = wait_fixed(settings.reconnect_min_s) + wait_random_exponential(
            multiplier=settings.reconnect_min_s,
            max=max(settings.reconnect_max_s - settings.reconnect_min_s, 0.0),
        )

    # -- producer side (synchronous, commits before returning) ------------------------------------

    def alarm_transitions(self, transitions: Sequence[AlarmTransition]) -> None:
        """Queue each transition (event stream + retained state) in one committed write."""
        messages: list[Outgoing] = []
        retained: list[RetainedAlarm] = []
        for t in transitions:
            _, msgs = self._events.alarm(t)
            messages.extend(msgs)
            severity = None if t.kind is TransitionKind.CLEARED else int(t.severity)
            retained.append(
                RetainedAlarm(msgs[1].topic, t.site, t.miner or SITE_LEVEL, t.rule, severity)
            )
        if messages:
            self._commit(messages, retained=retained)
            self._wake.set()

    def telemetry(
        self,
        site: str,
        miner: str,
        snapshot: MinerSnapshot,
        *,
        bad_share_ratio: float | None = None,
    ) -> None:
        """Queue a droppable telemetry message (QoS0, message expiry)."""
        if not self._s.telemetry:
            return
        if self._s.home_assistant.enabled:
            info = DeviceInfo(
                site,
                miner,
                snapshot.identity.model,
                tuple(b.index for b in snapshot.boards),
                tuple(f.index for f in snapshot.fans),
                snapshot.coolant_inlet_c is not None or snapshot.coolant_outlet_c is not None,
            )
            if self._devices.get((site, miner)) != info:
                self._devices[(site, miner)] = info
                self._announce.add((site, miner))
        worst = max(
            (r.severity for r in self._outbox.retained_alarms(site, miner) if r.severity),
            default=None,
        )
        label: Literal["none", "info", "warning", "critical"] = (
            Severity(worst).label if worst is not None else "none"  # type: ignore[assignment]
        )
        msg = self._events.telemetry(
            site,
            miner,
            snapshot,
            alarm_severity=label,
            expiry_s=self._s.telemetry_expiry_s,
            bad_share_ratio=bad_share_ratio,
        )
        self._staged.append(msg)
        if len(self._staged) >= _STAGE_MAX:
            self._flush_staged()
        elif len(self._staged) == 1:
            try:
                asyncio.get_running_loop().call_soon(self._flush_staged)
            except RuntimeError:  # no loop (a synchronous caller): commit now
                self._flush_staged()

    def miner_status(self, site: str, miner: str, *, online: bool, reason: str | None) -> None:
        """Queue ``miner_online``/``miner_offline`` on the site's event stream."""
        event: Literal["miner_online", "miner_offline"] = (
            "miner_online" if online else "miner_offline"
        )
        msg = self._events.miner_status(
            self._clock(), site, miner, event, online=online, reason=reason
        )
        self._commit([msg])

    def maintenance(
        self,
        site: str,
        miner: str,
        event: MaintenanceEvent,
        *,
        window: dict[str, object],
        name: str | None = None,
        location: dict[str, str | None] | None = None,
    ) -> None:
        """Queue ``maintenance_started``/``_ended``/``_expired`` on the site's event stream."""
        msg = self._events.maintenance(
            self._clock(), site, miner, event, window=window, name=name, location=location
        )
        self._commit([msg])

    def miner_duplicate_id(self, site: str, miner: str, *, claimed: str, holder: str) -> None:
        """Queue ``miner_duplicate_id``: ``miner`` reports ``claimed``, held by ``holder``."""
        reason = f"reports id {claimed}, held by the miner at {holder}"
        msg = self._events.miner_status(
            self._clock(), site, miner, "miner_duplicate_id", online=True, reason=reason
        )
        self._commit([msg])

    def miner_removed(self, site: str, miner: str, *, reason: str = "removed") -> None:
        """Queue ``miner_removed`` and empty the miner's retained alarm (and discovery) topics.

        ``reason``: "removed" (gone from inventory) or "renamed" (the miner now has another id).
        """
        messages = [
            self._events.miner_status(
                self._clock(), site, miner, "miner_removed", online=None, reason=reason
            )
        ]
        stale = self._outbox.retained_alarms(site, miner)
        messages.extend(Outgoing(r.topic, b"", qos=1, retain=True) for r in stale)
        if self._s.home_assistant.enabled:
            topic = config_topic(self._s.home_assistant.prefix, site, miner)
            messages.append(Outgoing(topic, b"", qos=1, retain=True))
        self._devices.pop((site, miner), None)
        self._announce.discard((site, miner))
        self._commit(messages, forget=stale)

    def _commit(
        self,
        messages: Sequence[Outgoing],
        *,
        retained: Sequence[RetainedAlarm] = (),
        forget: Sequence[RetainedAlarm] = (),
    ) -> None:
        """Commit staged telemetry and ``messages`` in one transaction, in order; wake the drain."""
        staged, self._staged = self._staged, []
        kept = []
        for msg in (*staged, *messages):
            why = unpublishable(msg.topic, msg.payload)
            if why is None:
                kept.append(msg)
            else:
                _log_unpublishable(msg.topic, why, _kind(msg))
                self._outbox.dropped["unpublishable"] += 1
        retained = [r for r in retained if unpublishable(r.topic, b"") is None]
        self._outbox.put(kept, retained=retained, forget=forget)
        self._wake.set()

    def _flush_staged(self) -> None:
        """Commit telemetry staged since the last write (one transaction per loop iteration)."""
        if self._staged:
            self._commit([])

    def stats(self) -> PublisherStats:
        """Connection state, outbox depth/age, drops by reason and messages published."""
        self._flush_staged()
        return PublisherStats(
            connected=self._connected,
            outbox_depth=self._outbox.depth,
            oldest_age_s=self._outbox.oldest_age_s(),
            dropped_total=dict(self._outbox.dropped),
            published_total=self._published,
            bridge_connected=self._bridge_connected,
            site=self.status_site,
        )

    def close(self) -> None:
        """Commit staged telemetry and close the outbox (after :meth:`run` has returned)."""
        self._flush_staged()
        self._outbox.close()

    # -- connection loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, publish and reconnect until cancelled; then say goodbye and disconnect."""
        if not self._started:
            self._started = True
            now = self._clock()
            self._commit([self._events.agent_event(now, s, "agent_started") for s in self._sites])
        attempt = 0
        try:
            while True:
                self._connected_once = False
                try:
                    await self._connection()
                except (aiomqtt.MqttError, _ConnectionLostError, OSError) as exc:
                    if self._connected_once:
                        attempt = 0
                    log.warning(
                        "mqtt_disconnected",
                        host=self._s.host,
                        port=self._s.port,
                        error=str(exc),
                        attempt=attempt,
                    )
                delay = self._backoff(attempt)
                attempt += 1
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self._enqueue_stopped()
            raise

    _connected_once = False
    _acks: _PubackReasons | None = None

    async def _publish(
        self,
        client: aiomqtt.Client,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool,
        properties: Properties | None = None,
    ) -> ReasonCode | None:
        """Publish on ``client``; the broker's failing reason code, or None when accepted."""
        assert self._acks is not None, "_client() sets it with the client"
        return await self._acks.publish(
            client, topic, payload, qos=qos, retain=retain, properties=properties
        )

    def _backoff(self, attempt: int) -> float:
        state = RetryCallState(Retrying(), None, (), {})
        state.attempt_number = attempt + 1
        return float(self._wait(state))

    def _enqueue_stopped(self) -> None:
        if not self._stopped:
            self._stopped = True
            now = self._clock()
            self._commit([self._events.agent_event(now, s, "agent_stopped") for s in self._sites])

    def _client(self) -> aiomqtt.Client:
        s = self._s
        v5 = s.protocol == "5"
        will = self._events.agent_status(
            self._clock(), self.status_site, "offline", "connection_lost"
        )
        password = s.resolve_password()
        connect_props: Properties | None = None
        if v5 and s.persistent_session:
            connect_props = Properties(PacketTypes.CONNECT)
            connect_props.SessionExpiryInterval = s.session_expiry_s
        kwargs: dict[str, object] = {}
        if v5:  # paho rejects clean_start on 3.1.1 and clean_session on 5
            kwargs["clean_start"] = not s.persistent_session
        else:
            kwargs["clean_session"] = not s.persistent_session
        client = aiomqtt.Client(
            s.host,
            s.port,
            identifier=f"altiwatch-{self.agent_id}",
            username=s.username,
            password=password.get_secret_value() if password is not None else None,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(will.topic, will.payload, qos=1, retain=True),
            keepalive=s.keepalive_s,
            timeout=s.publish_timeout_s,
            properties=connect_props,
            tls_context=self._tls_context(),
            max_inflight_messages=s.inflight_window,
            **kwargs,  # type: ignore[arg-type]
        )
        client.pending_calls_threshold = s.inflight_window + 10
        self._acks = _PubackReasons(client)
        return client

    def _tls_context(self) -> ssl.SSLContext | None:
        tls = self._s.tls
        if tls is None:
            return None
        ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if tls.cert_file is not None and tls.key_file is not None:
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        if tls.insecure_skip_hostname_check:
            ctx.check_hostname = False
        return ctx

    async def _connection(self) -> None:
        client = self._client()
        async with client:
            self._connected = True
            self._connected_once = True
            log.info("mqtt_connected", host=self._s.host, port=self._s.port, agent=self.agent_id)
            try:
                await self._on_connect(client)
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._receive(client), name="mqtt.receive")
                    tg.create_task(self._drain(client), name="mqtt.drain")
            except BaseExceptionGroup as group:
                lost, rest = group.split((aiomqtt.MqttError, OSError, TimeoutError))
                if rest is not None:
                    raise rest from None
                raise _ConnectionLostError(str(lost.exceptions[0] if lost else group)) from group
            except (TimeoutError, aiomqtt.MqttError) as exc:
                raise _ConnectionLostError(str(exc)) from exc
            except asyncio.CancelledError:
                self._connected = False
                await self._goodbye(client)
                raise
            finally:
                self._connected = False
                self._abandon_in_flight()

    async def _on_connect(self, client: aiomqtt.Client) -> None:
        online = self._events.agent_status(self._clock(), self.status_site, "online", None)
        refused = await self._publish(client, online.topic, online.payload, qos=1, retain=True)
        if refused is not None:
            _log_rejected(online.topic, refused, "status")
        ha = self._s.home_assistant
        if ha.enabled:
            await client.subscribe(f"{ha.prefix.strip('/')}/status", qos=1)
            self._announce.update(self._devices)
        if self._s.bridge_state_topic:
            await client.subscribe(self._s.bridge_state_topic, qos=1)

    async def _receive(self, client: aiomqtt.Client) -> None:
        """Watch incoming messages (HA birth, bridge state); MqttError when the link drops."""
        ha_status = f"{self._s.home_assistant.prefix.strip('/')}/status"
        bridge = self._s.bridge_state_topic
        async for message in client.messages:
            if bridge and message.topic.matches(bridge):
                connected = message.payload in (b"1", "1")
                if connected != self._bridge_connected:
                    log.info("mqtt_bridge_state", topic=bridge, connected=connected)
                self._bridge_connected = connected
                continue
            if message.topic.matches(ha_status) and message.payload in (b"online", "online"):
                log.info("mqtt_home_assistant_online", devices=len(self._devices))
                self._announce.update(self._devices)
                self._wake.set()

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish queued rows oldest first, a window at a time; ack each after its PUBACK."""
        while True:
            self._flush_staged()
            if self._outbox.degraded:
                self._outbox.maintain()
            await self._publish_discovery(client)
            rows = self._outbox.peek(self._s.inflight_window)
            if not rows:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_IDLE_CHECK_S):
                        await self._wake.wait()
                continue
            await self._publish_rows(client, rows)

    async def _publish_rows(self, client: aiomqtt.Client, rows: Sequence[Row]) -> None:
        now = self._clock()
        expired: list[Row] = []
        broken: list[Row] = []
        sending: list[Row] = []
        calls = []
        for row in rows:
            msg = row.message
            why = unpublishable(msg.topic, msg.payload)
            if why is not None:  # stored by an older version: it would fail at every start
                _log_unpublishable(msg.topic, why, _kind(msg))
                broken.append(row)
                continue
            props: Properties | None = None
            if msg.expiry_s is not None:
                remaining = msg.expiry_s - (now - row.created_at)
                if remaining <= 0:
                    expired.append(row)
                    continue
                if self._s.protocol == "5":
                    props = Properties(PacketTypes.PUBLISH)
                    props.MessageExpiryInterval = max(1, int(remaining))
            sending.append(row)
            calls.append(
                self._publish(
                    client, msg.topic, msg.payload, qos=msg.qos, retain=msg.retain, properties=props
                )
            )
        if expired:
            self._outbox.ack(expired, reason="expired")
        if broken:
            self._outbox.ack(broken, reason="unpublishable")
        if not calls:
            return
        window = _Window(sending, asyncio.gather(*calls, return_exceptions=True))
        self._in_flight = window
        # Shielded: when the agent stops mid-window, _goodbye waits for these PUBACKs instead of
        # publishing the same rows a second time.
        results = await asyncio.shield(window.results)
        self._in_flight = None
        self._settle(window.rows, results)

    async def _finish_in_flight(self) -> None:
        """Wait for the PUBACKs of the window the drain was publishing when it was cancelled."""
        window, self._in_flight = self._in_flight, None
        if window is not None:
            self._settle(window.rows, await window.results)

    def _abandon_in_flight(self) -> None:
        """The link is gone: stop waiting; the rows stay queued and go out on the next link."""
        window, self._in_flight = self._in_flight, None
        if window is not None:
            window.results.cancel()

    def _settle(
        self, sending: Sequence[Row], results: Sequence[ReasonCode | BaseException | None]
    ) -> None:
        """Delete accepted and rejected rows (rejected ones counted); re-raise a failed publish."""
        done: list[Row] = []
        rejected: list[Row] = []
        broken: list[Row] = []
        failure: BaseException | None = None
        for row, res in zip(sending, results, strict=True):
            if res is None:
                done.append(row)
            elif isinstance(res, ValueError):  # paho refused the message itself, not the link
                _log_unpublishable(row.message.topic, str(res), _kind(row.message))
                broken.append(row)
            elif isinstance(res, BaseException):
                failure = failure or res
            else:
                _log_rejected(row.message.topic, res, _kind(row.message))
                rejected.append(row)
        if rejected:  # denied by the broker: retrying would block the backlog forever
            self._outbox.ack(rejected, reason="rejected")
        if broken:
            self._outbox.ack(broken, reason="unpublishable")
        if done:
            self._outbox.ack(done)
            self._published += len(done)
        if failure is not None:
            raise failure

    async def _publish_discovery(self, client: aiomqtt.Client) -> None:
        if not self._announce or not self._s.home_assistant.enabled:
            return
        for key in list(self._announce):
            info = self._devices.get(key)
            self._announce.discard(key)
            if info is None:
                continue
            topic = config_topic(self._s.home_assistant.prefix, info.site, info.miner)
            why = unpublishable(topic, b"")
            if why is not None:
                _log_unpublishable(topic, why, "discovery")
                continue
            body = device_config_json(
                info,
                topics=self._events.topics,
                status_topic=self.status_topic,
                version=self.version,
            )
            try:
                refused = await self._publish(client, topic, body, qos=1, retain=True)
            except BaseException:
                self._announce.add(key)
                raise
            if refused is not None:
                _log_rejected(topic, refused, "discovery")

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        """On shutdown: queue agent_stopped, flush briefly, publish retained offline."""
        self._enqueue_stopped()
        deadline = min(self._s.publish_timeout_s, 5.0)
        try:
            async with asyncio.timeout(deadline):
                await self._finish_in_flight()
                while rows := self._outbox.peek(self._s.inflight_window):
                    await self._publish_rows(client, rows)
                offline = self._events.agent_status(
                    self._clock(), self.status_site, "offline", "shutdown"
                )
                refused = await self._publish(
                    client, offline.topic, offline.payload, qos=1, retain=True
                )
                if refused is not None:
                    _log_rejected(offline.topic, refused, "status")
                log.info("mqtt_offline_published", backlog=self._outbox.depth)
        except (TimeoutError, aiomqtt.MqttError, OSError) as exc:
            log.warning("mqtt_goodbye_incomplete", error=str(exc), backlog=self._outbox.depth)
