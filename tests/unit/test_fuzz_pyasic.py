"""Fuzz the pyasic → MinerSnapshot path: any reply is a valid snapshot or a clean CollectorError.

Three depths, all through ``PyasicSource.fetch`` (the boundary the agent calls):

* MinerData fields set to arbitrary values, as pyasic itself does (``setattr`` on an
  unvalidated model, so a firmware's odd types reach our converter untouched);
* real pyasic Bitaxe parsing of a fuzzed ``/api/system/info`` JSON document;
* real pyasic Antminer RPC parsing of fuzzed ``summary``/``stats`` replies and raw garbage bytes.

The pyasic objects get their replies by replacing the miner object's own transport methods
(``web.send_command``, ``rpc._send_bytes``), as pyasic's own tests patch ``_send_bytes``.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyasic.data import Fan, HashBoard, MinerData
from pyasic.device.algorithm.hashrate.sha256 import SHA256HashRate
from pyasic.device.algorithm.hashrate.unit.sha256 import SHA256Unit

from collectors.pyasic_source import PyasicSource, miner_from_hint
from collectors.snapshot import MinerSnapshot, Tier
from collectors.source import CollectorError, FailureReason, MinerTarget

ADDRESS = "127.90.255.1"  # never contacted: every transport method is replaced

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples on every run: CI stays deterministic
)

numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e308, -0.0, 2**63, float("nan"), float("inf")]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    numbers,
    st.text(max_size=12),
    st.sampled_from(["", "nan", "inf", "-1", "1e999", "72.5", "0x10", "N/A"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def assert_valid_snapshot(snapshot: MinerSnapshot) -> None:
    """Every value in a snapshot is None or a plausible, finite value of the right type."""
    assert isinstance(snapshot, MinerSnapshot)

    def ok_float(value: object, low: float = 0.0, high: float = math.inf) -> bool:
        return value is None or (
            isinstance(value, float | int)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and low <= value <= high
        )

    def ok_int(value: object) -> bool:
        return value is None or (
            isinstance(value, int) and not isinstance(value, bool) and value >= 0
        )

    for name in ("hashrate_hs", "expected_hashrate_hs", "power_w", "power_limit_w"):
        assert ok_float(getattr(snapshot, name)), (name, getattr(snapshot, name))
    assert ok_float(snapshot.inlet_temp_c, -60, 200), snapshot.inlet_temp_c
    assert ok_int(snapshot.uptime_s), snapshot.uptime_s
    assert ok_int(snapshot.expected_boards)
    assert ok_int(snapshot.expected_fans)
    assert snapshot.is_mining in {None, True, False}
    for board in snapshot.boards:
        assert isinstance(board.index, int)
        assert ok_float(board.hashrate_hs), board
        assert ok_float(board.board_temp_c, 0, 200), board
        assert ok_float(board.chip_temp_c, 0, 200), board
        assert ok_int(board.chips), board
        assert ok_int(board.expected_chips), board
    for fan in snapshot.fans:
        assert ok_int(fan.rpm), fan
    json.dumps(snapshot.identity.model)  # identity strings are serialisable


def _fetch(miner: Any, tier: Tier = Tier.FAST) -> MinerSnapshot | CollectorError:
    """Fetch through PyasicSource with ``miner`` as the detected object."""

    async def detector(_address: str) -> Any:
        return miner

    async def run() -> MinerSnapshot | CollectorError:
        source = PyasicSource(timeout_s=5.0, detector=detector)
        try:
            return await source.fetch(MinerTarget(address=ADDRESS), tier)
        except CollectorError as exc:
            return exc

    return asyncio.run(run())


def _check(outcome: MinerSnapshot | CollectorError) -> None:
    if isinstance(outcome, CollectorError):
        assert isinstance(outcome.reason, FailureReason)
        assert len(str(outcome)) < 1000
    else:
        assert_valid_snapshot(outcome)


# --- MinerData with arbitrary field values -----------------------------------------------------


def _hashrate(rate: Any) -> Any:
    return SHA256HashRate.model_construct(rate=rate, unit=SHA256Unit.TH)


odd_hashrates = st.one_of(st.none(), scalars, numbers.map(_hashrate))
odd_boards = st.lists(
    st.builds(
        lambda slot, hr, temp, chip, chips, exp, missing: HashBoard.model_construct(
            slot=slot,
            hashrate=hr,
            temp=temp,
            chip_temp=chip,
            chips=chips,
            expected_chips=exp,
            missing=missing,
            inlet_temp=None,
            outlet_temp=None,
        ),
        st.one_of(st.integers(-3, 5), scalars),
        odd_hashrates,
        scalars,
        scalars,
        scalars,
        scalars,
        scalars,
    ),
    max_size=4,
)
odd_fans = st.lists(st.builds(lambda s: Fan.model_construct(speed=s), scalars), max_size=4)


class _StubMiner:
    """A pyasic-shaped miner whose get_data returns a prepared MinerData (no I/O)."""

    def __init__(self, data: MinerData) -> None:
        self._data = data
        real = miner_from_hint(ADDRESS, "S19")
        self.device_info = real.device_info
        self.rpc = None
        self.web = None

    async def get_data(self, **_kwargs: Any) -> MinerData:
        return self._data


@FUZZ
@given(
    raw_hashrate=odd_hashrates,
    expected_hashrate=odd_hashrates,
    hashboards=odd_boards,
    fans=odd_fans,
    wattage=scalars,
    env_temp=scalars,
    uptime=scalars,
    is_mining=scalars,
    expected_hashboards=scalars,
    expected_fans=scalars,
)
def test_fuzz_minerdata_fields_give_valid_snapshot_or_collector_error(**fields: Any) -> None:
    """Any MinerData field values (NaN, inf, negative, strings, huge) → valid snapshot or error."""
    data = MinerData(ip=ADDRESS)
    for name, value in fields.items():
        object.__setattr__(data, name, value)  # like pyasic's setattr: no validation
    _check(_fetch(_StubMiner(data)))


@FUZZ
@given(
    mac=scalars,
    serial=scalars,
    hostname=scalars,
    fw_ver=scalars,
    wattage_limit=scalars,
    fault_light=scalars,
)
def test_fuzz_minerdata_slow_tier_fields_give_valid_snapshot_or_collector_error(
    mac: Any, serial: Any, hostname: Any, fw_ver: Any, wattage_limit: Any, fault_light: Any
) -> None:
    """Odd identity values (a numeric MAC, a list hostname) → valid slow snapshot or error."""
    data = MinerData(ip=ADDRESS)
    for name, value in {
        "mac": mac,
        "serial_number": serial,
        "hostname": hostname,
        "fw_ver": fw_ver,
        "wattage_limit": wattage_limit,
        "fault_light": fault_light,
    }.items():
        object.__setattr__(data, name, value)
    outcome = _fetch(_StubMiner(data), Tier.SLOW)
    _check(outcome)
    if isinstance(outcome, MinerSnapshot):
        for value in (outcome.identity.mac, outcome.identity.serial, outcome.identity.hostname):
            assert value is None or isinstance(value, str)


# --- real pyasic parsing: Bitaxe web JSON ----------------------------------------------------------

BITAXE_KEYS = (
    "hashRate",
    "power",
    "temp",
    "vrTemp",
    "uptimeSeconds",
    "asicCount",
    "smallCoreCount",
    "frequency",
    "fanrpm",
    "fanspeed",
    "voltage",
    "macAddr",
    "hostname",
    "version",
)


@FUZZ
@given(
    document=st.one_of(
        st.fixed_dictionaries({}, optional=dict.fromkeys(BITAXE_KEYS, json_values)),
        json_values,
    )
)
def test_fuzz_bitaxe_system_info_gives_valid_snapshot_or_collector_error(document: Any) -> None:
    """Any /api/system/info JSON, parsed by real pyasic → valid snapshot or CollectorError."""
    miner = miner_from_hint(ADDRESS, "BM1366")

    async def send_command(*_args: Any, **_kwargs: Any) -> Any:
        return document

    miner.web.send_command = send_command
    _check(_fetch(miner))


# --- real pyasic parsing: Antminer RPC bytes --------------------------------------------------------

STATS_KEYS = (
    "Elapsed",
    "fan_num",
    "fan1",
    "fan2",
    "temp1",
    "temp2_1",
    "temp_chip",
    "chain_rate1",
    "chain_acn1",
    "chain_acs1",
    "total_rateideal",
    "rate_unit",
    "miner_count",
)
SUMMARY_KEYS = ("GHS 5s", "GHS av", "Elapsed")
ok_status = {"STATUS": [{"STATUS": "S", "Msg": "ok"}], "id": 1}

replies = st.one_of(
    st.builds(
        lambda stats, summary: {
            "stats": [{**ok_status, "STATS": [{"Type": "Antminer S19"}, stats]}],
            "summary": [{**ok_status, "SUMMARY": [summary]}],
        },
        st.fixed_dictionaries({}, optional=dict.fromkeys(STATS_KEYS, json_values)),
        st.fixed_dictionaries({}, optional=dict.fromkeys(SUMMARY_KEYS, json_values)),
    ).map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.sampled_from([b"", b"{", b"\x00", b'{"STATUS":', b"}{", b'{"stats":[{}]}\x00']),
)


@FUZZ
@given(rpc_reply=replies, web_reply=json_values)
def test_fuzz_antminer_rpc_bytes_give_valid_snapshot_or_collector_error(
    rpc_reply: bytes, web_reply: Any
) -> None:
    """Any RPC reply bytes, parsed by real pyasic → valid snapshot or CollectorError."""
    miner = miner_from_hint(ADDRESS, "S19")

    async def send_bytes(*_args: Any, **_kwargs: Any) -> bytes:
        return rpc_reply

    async def send_command(*_args: Any, **_kwargs: Any) -> Any:
        return web_reply

    miner.rpc._send_bytes = send_bytes
    miner.web.send_command = send_command
    _check(_fetch(miner))
