"""The events-stream consumer: an MQTT 5 shared subscription, acknowledged after the commit.

Subscribes to ``$share/<group>/<prefix>/<site|+>/events`` (QoS 1) with a persistent session
(``clean_start`` false, session expiry from the config): the broker gives each event to ONE
member of the group and keeps this instance's share while it is away. Acknowledgements are
manual: the PUBACK of a message is sent only after ``on_event`` returned (the event is in the
durable queue), so a crash before the commit makes the broker deliver it again instead of losing
it. A fresh client per connection keeps a message received on a dead connection from being
acknowledged on the next one (where its packet id means another message).
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
from typing import TYPE_CHECKING, Any

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

if TYPE_CHECKING:
    from collections.abc import Callable

    from agent.alerts.config import BrokerSettings

log = structlog.get_logger("agent.alerts.consumer")


def topics(settings: BrokerSettings) -> list[str]:
    """The shared-subscription filters of ``settings``."""
    prefix = settings.topic_prefix.strip("/")
    sites = settings.sites or ["+"]
    return [f"$share/{settings.group}/{prefix}/{site}/events" for site in sites]


def _tls_context(settings: BrokerSettings) -> ssl.SSLContext | None:
    tls = settings.tls
    if tls is None:
        return None
    ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file is not None and tls.key_file is not None:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.insecure_skip_hostname_check:
        ctx.check_hostname = False
    return ctx


class EventConsumer:
    """Reads the events stream and hands each decoded payload to ``on_event``."""

    def __init__(
        self,
        settings: BrokerSettings,
        on_event: Callable[[dict[str, Any]], None],
        *,
        password: str | None,
    ) -> None:
        """``on_event`` must have made the event durable when it returns."""
        self._s = settings
        self._on_event = on_event
        self._password = password
        self.connected = asyncio.Event()

    def _client(self) -> aiomqtt.Client:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._s.session_expiry_s
        client = aiomqtt.Client(
            self._s.host,
            self._s.port,
            identifier=self._s.identifier(),
            username=self._s.username,
            password=self._password,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
            keepalive=self._s.keepalive_s,
            tls_context=_tls_context(self._s),
        )
        # aiomqtt 2.x acknowledges on receipt; paho (its engine) can leave that to us.
        client._client.manual_ack_set(on=True)  # noqa: SLF001 - no public switch in aiomqtt 2.x
        return client

    async def run(self) -> None:
        """Consume forever, reconnecting with capped, jittered backoff."""
        attempt = 0
        while True:
            client = self._client()
            try:
                async with client:
                    for topic in topics(self._s):
                        await client.subscribe(topic, qos=1)
                    attempt = 0
                    self.connected.set()
                    log.info(
                        "notify_subscribed", topics=topics(self._s), client_id=self._s.identifier()
                    )
                    async for message in client.messages:
                        self._handle(message)
                        if message.qos > 0:
                            client._client.ack(message.mid, message.qos)  # noqa: SLF001 - see above
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                attempt += 1
                delay = min(self._s.reconnect_max_s, 0.5 * 2 ** min(attempt, 10))
                delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not cryptography
                log.warning("notify_broker_lost", error=str(exc), retry_in_s=round(delay, 2))
                await asyncio.sleep(delay)

    def _handle(self, message: aiomqtt.Message) -> None:
        raw = message.payload
        try:
            payload = json.loads(raw if isinstance(raw, bytes | str) else b"")
        except ValueError:
            log.warning("notify_payload_invalid", topic=str(message.topic))
            return
        if isinstance(payload, dict) and isinstance(payload.get("event_id"), str):
            self._on_event(payload)
