"""End to end: an emulated heatwave at 3,500 m through the real agent to an MQTT subscriber.

Real emulator (127.50.3.0/24), real ``altiwatch run`` (pyasic polling, alarm engine, the
EventPublisher), real mosquitto. A +15 K heatwave drives the S19j Pro into its firmware
temperature protection, which the agent reports as R10 CRITICAL; once the heatwave is over R10
clears after 60 s without the protection error. (R1/R2 are the altitude-derated rules, but the
emulated firmware caps boards near 75 °C and its fan control holds them near 60 °C when cool,
and R2 needs 5 minutes: R10 is the heatwave alarm this test can raise and clear in ~2 minutes.)
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest

from agent.mqtt import schemas
from tests.support.agent import agent_config
from tests.support.mosquitto import Subscriber, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = [pytest.mark.broker, pytest.mark.slow]

SCENARIO = {
    "name": "mqtt-heatwave-3500",
    "site": {"name": "plateau", "altitude_m": 3500, "inlet_override_c": 24.0},
    "miners": [{"model": "antminer-s19jpro", "count": 1}],
}


async def test_agent_heatwave_raise_and_clear_reach_mqtt_schema_valid(
    emulator_factory: Callable[..., Any], agent_factory: Callable[..., Any], mosquitto: Any
):
    """1. heatwave → R10 critical raised on MQTT; 2. heatwave over → R10 cleared; schema-valid."""
    emulator = emulator_factory(SCENARIO, base_address="127.50.3.1", speedup=60.0)
    address = emulator.addresses()[0]
    mac = emulator.truth(address)["mac"].upper()
    mqtt = {"enabled": True, "host": mosquitto.host, "port": mosquitto.port}
    config = agent_config(
        [{"address": address}],
        site="plateau",
        altitude_m=3500,
        interval_s=2.0,
        mqtt=mqtt,
        polling={"slow_interval_s": 4.0},  # firmware errors (R10's input) are slow-tier data
    )
    async with Subscriber(mosquitto, ["altiwatch/v1/plateau/events"]) as sub:
        agent = await asyncio.to_thread(agent_factory, config)

        def r10(event: str) -> list[dict[str, Any]]:
            return [
                p
                for p in sub.payloads()
                if p.get("rule") == "R10" and p.get("miner") == mac and p["event"] == event
            ]

        await wait_until(
            lambda: any(p.get("event") == "agent_started" for p in sub.payloads()),
            within=60,
            what="agent_started",
        )

        async def expect(event: str, within: float) -> None:
            try:
                await wait_until(lambda: bool(r10(event)), within=within, what=f"R10 {event}")
            except AssertionError as exc:
                seen = [(p.get("event"), p.get("rule"), p.get("severity")) for p in sub.payloads()]
                alarms = agent.fetch("/api/v1/alarms")[1][:2000]
                truth = emulator.truth(address)
                boards = [(b["board_temp_c"], b["chip_temp_c"]) for b in truth["boards"]]
                detail = (
                    f"{exc}; mqtt {seen}; api {alarms!r}; boards {boards} {truth['inlet_temp_c']}"
                )
                raise AssertionError(detail) from None

        emulator.inject(address, "heatwave", k=15.0)
        await expect("raised", 90)
        emulator.clear(address, "heatwave")
        emulator.inject(address, "heatwave", k=-18.0)
        await expect("cleared", 150)
        raised, cleared = r10("raised")[0], r10("cleared")[0]
        for payload in (raised, cleared):
            jsonschema.validate(payload, schemas.load(payload["schema"]))
        assert raised["severity"] == "critical"
        assert raised["altitude_m"] == 3500
        assert raised["delta"] == pytest.approx(0.649, abs=0.001)
        assert cleared["state"] == "cleared"
        assert cleared["seq"] > raised["seq"]
        assert await asyncio.to_thread(agent.stop) == 0
        await wait_until(
            lambda: any(p.get("event") == "agent_stopped" for p in sub.payloads()),
            within=30,
            what="agent_stopped",
        )
