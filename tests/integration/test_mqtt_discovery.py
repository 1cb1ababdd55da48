"""Home Assistant discovery against a real mosquitto: announce, re-announce on HA birth, remove."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from agent.mqtt.config import MqttSettings
from agent.mqtt.publisher import EventPublisher
from collectors.snapshot import BoardReading, FanReading, Identity, MinerSnapshot
from tests.support.mosquitto import Subscriber, publish_once, wait_until

pytestmark = pytest.mark.broker

CONFIG = "homeassistant/device/altiwatch_xining_aa-bb-cc-00-11-22/config"


def snapshot() -> MinerSnapshot:
    """A two-board, four-fan miner."""
    return MinerSnapshot(
        address="127.50.2.1",
        collected_at=time.time(),
        identity=Identity(model="S19j Pro"),
        hashrate_hs=1.0e14,
        boards=(BoardReading(index=0, chip_temp_c=70.0), BoardReading(index=1, chip_temp_c=71.0)),
        fans=tuple(FanReading(index=i, rpm=4000) for i in range(4)),
    )


async def test_discovery_announces_reannounces_on_birth_and_removes(mosquitto, tmp_path):
    """A miner becomes an HA device (retained), is re-sent on `homeassistant/status` online, removed with an empty payload."""
    settings = MqttSettings(
        enabled=True,
        host=mosquitto.host,
        port=mosquitto.port,
        home_assistant={"enabled": True},  # type: ignore[arg-type]
    )
    pub = EventPublisher(settings, agent_id="ha-agent", state_dir=tmp_path, sites=["xining"])
    task = asyncio.create_task(pub.run(), name="test.publisher")
    try:
        async with Subscriber(mosquitto, ["homeassistant/device/#"]) as sub:
            await wait_until(lambda: pub.stats().connected, within=20, what="connected")
            pub.telemetry("xining", "AA:BB:CC:00:11:22", snapshot())

            def configs() -> list[bytes]:
                return [m.payload for m in sub.messages if m.topic == CONFIG]

            await wait_until(lambda: len(configs()) == 1, within=20, what="discovery config")
            device = sub.messages[0].json()
            async with Subscriber(mosquitto, [CONFIG]) as late:
                await wait_until(lambda: bool(late.messages), within=20, what="retained config")
                assert late.messages[0].retain
            assert device["dev"]["mdl"] == "S19j Pro"
            assert device["state_topic"] == "altiwatch/v1/xining/aa-bb-cc-00-11-22/telemetry"
            assert device["availability_topic"] == pub.status_topic
            kinds = {c["unique_id"].rsplit("_", 1)[-1] for c in device["cmps"].values()}
            assert {"hashrate", "temp", "power", "fan0", "fan3", "alarm", "problem"} <= kinds
            # Same snapshot shape again: no re-announcement.
            pub.telemetry("xining", "AA:BB:CC:00:11:22", snapshot())
            await publish_once(mosquitto, "homeassistant/status", b"online")
            await wait_until(lambda: len(configs()) == 2, within=20, what="re-announce on birth")
            pub.miner_removed("xining", "AA:BB:CC:00:11:22")
            await wait_until(lambda: configs()[-1] == b"", within=20, what="device removed")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        pub.close()
