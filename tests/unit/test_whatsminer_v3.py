"""Whatsminer API v3 sensor semantics (altitude-thermal.md §7, vector L6) and hints."""

from __future__ import annotations

import asyncio
import contextlib
import struct

import pytest
from pyasic.data import Fan, HashBoard, MinerData
from pyasic.device.algorithm.sha256 import SHA256HashRate, SHA256Unit
from pyasic.miners.backends.btminer import BTMinerV2, BTMinerV3

from agent.alarms.config import ThermalSettings
from agent.alarms.engine import AlarmEngine, Observation
from agent.alarms.rules import inlet_value
from agent.alarms.testing import Site
from agent.fleet_state import MinerRecord
from agent.metrics import miner_fragments
from collectors import pyasic_tuning, whatsminer_v3
from collectors.pyasic_source import miner_from_hint, snapshot_from_data
from collectors.snapshot import MinerSnapshot, Tier
from collectors.source import CollectorError, FailureReason, MinerTarget

ADDRESS = "10.0.0.7"


def v3_reading(t: float, env_temp: float | None) -> MinerSnapshot:
    """What pyasic's BTMinerV3 gives for an M60S with chips 70–78 °C, as the agent converts it."""
    miner = miner_from_hint(ADDRESS, "whatsminer-v3:M60S_VK30")
    boards = [
        HashBoard(
            slot=i,
            hashrate=SHA256HashRate(rate=57.3, unit=SHA256Unit.TH),
            temp=70.0,  # pyasic: chip-temp-min
            inlet_temp=70.0,  # pyasic: chip-temp-min
            outlet_temp=78.0 + i,  # pyasic: chip-temp-max
            chips=245,
            expected_chips=245,
            missing=False,
        )
        for i in range(3)
    ]
    data = MinerData(
        ip=ADDRESS,
        hashboards=boards,
        fans=[Fan(speed=6900), Fan(speed=6900)],
        env_temp=env_temp,
        wattage=3400,
        uptime=7200,
    )
    data.raw_hashrate = SHA256HashRate(rate=172.0, unit=SHA256Unit.TH)
    return snapshot_from_data(ADDRESS, Tier.FAST, miner, data, collected_at=t)


def test_whatsminer_v3_hint_builds_pyasic_v3_class_without_io():
    """'whatsminer-v3:M60S_VK30' builds BTMinerM60SVK30 on API v3; 'whatsminer:' stays v2."""
    v3 = miner_from_hint(ADDRESS, "whatsminer-v3:M60S_VK30")
    assert type(v3).__name__ == "BTMinerM60SVK30"
    assert isinstance(v3, BTMinerV3)
    assert v3.rpc.port == whatsminer_v3.V3_PORT
    assert isinstance(miner_from_hint(ADDRESS, "whatsminer:M60S_VK30"), BTMinerV2)


def test_whatsminer_v3_model_key_is_pyasics_transformation():
    """The model 4433 reports maps to pyasic's key as its factory does."""
    assert whatsminer_v3.model_key("M60S_VK30") == "M60SVK30"
    assert whatsminer_v3.model_key("M30S+_VE45") == "M30S+VE40"
    assert type(whatsminer_v3.v3_class(ADDRESS, "M60S_VK30", "20250214.16.Rel")).__name__ == (
        "BTMinerM60SVK30"
    )
    assert isinstance(whatsminer_v3.v3_class(ADDRESS, "M60S_VK30", "20240901.1.Rel"), BTMinerV2)


def test_whatsminer_v3_snapshot_keeps_hottest_chip_and_no_air_or_board_sensor():
    """The chip min/max pyasic gives as board/inlet/outlet: only the hottest chip is kept."""
    snap = v3_reading(0.0, env_temp=None)
    assert [b.chip_temp_c for b in snap.boards] == [78.0, 79.0, 80.0]
    for board in snap.boards:
        assert (board.board_temp_c, board.inlet_temp_c, board.outlet_temp_c) == (None,) * 3
    assert snap.inlet_temp_c is None
    assert (
        snap.is_mining is None
    )  # pyasic's v3 class does not read it: its default True is no reading
    assert inlet_value(snap) is None
    with_env = v3_reading(0.0, env_temp=40.0)
    assert inlet_value(with_env) == 40.0


def test_whatsminer_v3_no_ambient_sensor_at_3000_m_gets_no_r2_and_no_inlet_series():
    """L6: chips 70-80 °C at 3,000 m, no ambient sensor: no R2 and no inlet series."""
    engine = AlarmEngine(ThermalSettings(), [Site("site", 3000.0)])
    transitions = []
    for step in range(30):  # 15 min of 30-s polls
        obs = Observation(ADDRESS, "site", step * 30.0, v3_reading(step * 30.0, None))
        transitions += engine.evaluate(step * 30.0, [obs])
    assert [t for t in transitions if t.rule == "R2"] == []
    assert all(a.rule != "R2" for a in engine.active())
    record = MinerRecord(
        site="site",
        target=MinerTarget(address=ADDRESS),
        miner_id="m1",
        added_at=0.0,
        snapshot=v3_reading(900.0, None),
        up=True,
    )
    text = b"".join(miner_fragments(record, None)).decode()
    assert "asic_chip_temperature_celsius" in text
    assert "asic_inlet_temperature_celsius" not in text
    assert "asic_board_temperature_celsius" not in text


def test_whatsminer_v3_ambient_40_c_at_3000_m_gets_r2_critical():
    """The same miner with a 40 °C environment sensor at 3,000 m: R2 CRIT on that reading."""
    engine = AlarmEngine(ThermalSettings(), [Site("site", 3000.0)])
    for step in range(30):
        obs = Observation(ADDRESS, "site", step * 30.0, v3_reading(step * 30.0, 40.0))
        engine.evaluate(step * 30.0, [obs])
    r2 = next(a for a in engine.active() if a.rule == "R2")
    assert r2.severity.label == "critical"
    assert r2.value == 40.0


async def test_whatsminer_v3_tuned_read_refuses_an_oversized_frame():
    """A 4433 reply announcing more than MAX_RPC_BYTES is cut off as OVERSIZED, not buffered."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(4)
        writer.write(struct.pack("<I", pyasic_tuning.MAX_RPC_BYTES + 1) + b"{" * 1024)
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            await reader.read()  # never sends the rest; returns when the client aborts
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        handled.set()

    handled = asyncio.Event()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        miner = miner_from_hint("127.0.0.1", "whatsminer-v3:M60S_VK30")
        miner.rpc.port = server.sockets[0].getsockname()[1]
        pyasic_tuning.tune(miner)
        async with asyncio.timeout(3):
            with pytest.raises(CollectorError) as info:
                await miner.rpc.send_command("get.device.info")
        assert info.value.reason is FailureReason.OVERSIZED
        async with asyncio.timeout(3):
            await handled.wait()  # the server saw the abort and closed its side
    finally:
        server.close()
        await server.wait_closed()
        pyasic_tuning.uninstall()
