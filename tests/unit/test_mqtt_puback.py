"""PUBACK reason codes learnt around aiomqtt (which discards them), on an unconnected client."""

from __future__ import annotations

import asyncio

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.mqtt.publisher import _PubackReasons

NOT_AUTHORIZED = 0x87


def puback(client: aiomqtt.Client, mid: int, code: int) -> None:
    """Deliver a PUBACK with reason ``code`` for ``mid`` to the paho callback, as paho does."""
    paho = client._client
    reason = ReasonCode(PacketTypes.PUBACK, identifier=code)
    assert paho.on_publish is not None
    paho.on_publish(paho, None, mid, reason, Properties(PacketTypes.PUBACK))


async def test_puback_reasons_record_a_failure_and_still_wake_aiomqtt():
    """A 0x87 PUBACK is kept for its mid, and aiomqtt's own handler still wakes the publisher."""
    client = aiomqtt.Client("127.0.0.1", 1, protocol=aiomqtt.ProtocolVersion.V5)
    acks = _PubackReasons(client)
    waiting = asyncio.Event()
    client._pending_publishes[7] = waiting
    puback(client, 7, NOT_AUTHORIZED)
    assert waiting.is_set()
    reason = acks.take(7)
    assert reason is not None
    assert reason.value == NOT_AUTHORIZED
    assert str(reason) == "Not authorized"
    assert acks.take(7) is None  # taken once


async def test_puback_reasons_ignore_success_codes():
    """Success and "no matching subscribers" PUBACKs are not rejections."""
    client = aiomqtt.Client("127.0.0.1", 1, protocol=aiomqtt.ProtocolVersion.V5)
    acks = _PubackReasons(client)
    puback(client, 3, 0x00)
    puback(client, 4, 0x10)
    assert acks.take(3) is None
    assert acks.take(4) is None


async def test_puback_reasons_forget_a_late_failure_when_the_mid_is_reused():
    """A failure left over from an older publish is not blamed on a new one that reuses its mid."""
    client = aiomqtt.Client("127.0.0.1", 1, protocol=aiomqtt.ProtocolVersion.V5)
    acks = _PubackReasons(client)
    paho = client._client
    first = paho.publish("altiwatch/v1/s/events", b"{}", qos=1)  # not connected: queued in paho
    reused = first.mid + 1  # paho hands out mids in sequence
    puback(client, reused, NOT_AUTHORIZED)  # a late reply to an older, timed-out publish
    second = paho.publish("altiwatch/v1/s/events", b"{}", qos=1)
    assert second.mid == reused
    assert acks.take(reused) is None
