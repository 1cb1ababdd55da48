"""Conversion of pyasic's MinerData into MinerSnapshot, model hints, error classification."""

import json
from typing import Any

import pydantic
import pytest
from pyasic.data import Fan, HashBoard, MinerData
from pyasic.data.pools import PoolMetrics, PoolUrl
from pyasic.device.algorithm.hashrate.sha256 import SHA256HashRate
from pyasic.device.algorithm.hashrate.unit.sha256 import SHA256Unit
from pyasic.errors import APIError

from collectors import whatsminer_v3
from collectors.emulator.profiles import PROFILES, WHATSMINER_V3_FAMILIES, FirmwareFamily
from collectors.pyasic_source import (
    _PROBE_REPLY_LIMIT,
    _http_reply_failure,
    _reply_failure,
    classify,
    family_of,
    hashrate_hs,
    miner_from_hint,
    snapshot_from_data,
)
from collectors.snapshot import Family, PowerSource, Tier
from collectors.source import CollectorError, FailureReason


def th(rate: float) -> SHA256HashRate:
    """A pyasic hashrate in TH/s."""
    return SHA256HashRate(rate=rate, unit=SHA256Unit.TH)


def s19() -> Any:
    """An S19j Pro object built from a hint (no I/O)."""
    return miner_from_hint("10.0.0.1", "Antminer S19j Pro")


def test_hashrate_hs_converts_pyasic_units_to_hashes_per_second():
    """104 TH/s is 1.04e14 H/s; None stays None."""
    assert hashrate_hs(th(104.0)) == pytest.approx(1.04e14)
    assert hashrate_hs(SHA256HashRate(rate=500.0, unit=SHA256Unit.GH)) == pytest.approx(5e11)
    assert hashrate_hs(None) is None


def test_miner_from_hint_builds_the_right_class_without_io():
    """Hints select pyasic classes; a family prefix picks the firmware."""
    assert type(s19()).__name__ == "BMMinerS19jPro"
    assert type(miner_from_hint("10.0.0.1", "vnish:Antminer S19j Pro")).__name__ == "VNishS19jPro"
    assert type(miner_from_hint("10.0.0.1", "bitaxe:BM1366")).__name__ == "BitAxeUltra"
    assert family_of(miner_from_hint("10.0.0.1", "braiins:S19j Pro")) is Family.BRAIINS


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_miner_from_hint_accepts_every_emulated_models_reported_name(profile):
    """The model string each emulated firmware reports, as a hint, gives its pyasic class."""
    v3 = profile.family in WHATSMINER_V3_FAMILIES
    prefix = "whatsminer-v3" if v3 else profile.family.value
    hinted = miner_from_hint("10.0.0.1", f"{prefix}:{profile.model}")
    assert whatsminer_v3.is_v3(hinted) is v3
    assert type(hinted).__name__ == profile.pyasic_class
    if profile.family in {FirmwareFamily.WHATSMINER, FirmwareFamily.AVALON}:
        assert type(miner_from_hint("10.0.0.1", profile.model)).__name__ == profile.pyasic_class


def test_miner_from_hint_ignores_case_spaces_and_underscores():
    """'M30S+_VE40', 'm50 vh50' and 's19jpro' resolve like pyasic's own keys."""
    assert type(miner_from_hint("10.0.0.1", "M30S+_VE40")).__name__ == "BTMinerM30SPlusVE40"
    assert type(miner_from_hint("10.0.0.1", "m50 vh50")).__name__ == "BTMinerM50VH50"
    assert type(miner_from_hint("10.0.0.1", "s19jpro")).__name__ == "BMMinerS19jPro"
    assert type(miner_from_hint("10.0.0.1", "whatsminer:M50_VH50")).__name__ == "BTMinerM50VH50"


def test_miner_from_hint_unknown_model_is_a_collector_error():
    """An unknown hint is UNKNOWN_MODEL, not an exception from pyasic."""
    with pytest.raises(CollectorError) as info:
        miner_from_hint("10.0.0.1", "Antminer Z99")
    assert info.value.reason is FailureReason.UNKNOWN_MODEL


def test_snapshot_from_fast_data_converts_units_and_keeps_unknown_none():
    """Fast tier: H/s, °C, rpm; pyasic's 0 °C "no reading" and NaN become None."""
    data = MinerData(
        ip="10.0.0.1",
        hashboards=[
            HashBoard(
                slot=0,
                hashrate=th(34.5),
                temp=59,
                chip_temp=74,
                chips=126,
                expected_chips=126,
                missing=False,
            ),
            HashBoard(
                slot=1, hashrate=None, temp=0, chip_temp=float("nan"), chips=None, missing=True
            ),
        ],
        fans=[Fan(speed=5500), Fan(speed=0), Fan(speed=None)],
        uptime=1000,
        wattage=None,
        env_temp=-12.5,
    )
    data.raw_hashrate = th(104.0)
    snap = snapshot_from_data("10.0.0.1", Tier.FAST, s19(), data, collected_at=5.0)
    assert snap.hashrate_hs == pytest.approx(1.04e14)
    assert snap.boards[0].chip_temp_c == 74
    assert snap.boards[0].hashrate_hs == pytest.approx(3.45e13)
    assert (snap.boards[1].chip_temp_c, snap.boards[1].board_temp_c) == (None, None)
    assert snap.boards[1].missing is True
    assert [f.rpm for f in snap.fans] == [5500, 0, None]
    assert snap.inlet_temp_c == -12.5
    assert (snap.power_w, snap.power_source) == (None, None)
    assert snap.errors is None
    assert snap.pools is None
    assert snap.identity.family is Family.ANTMINER
    assert snap.identity.model == "S19j Pro"


def test_snapshot_from_fast_data_marks_reported_power_measured():
    """Power reported by the firmware is measured; 0 W is treated as unknown."""
    data = MinerData(ip="10.0.0.1", wattage=3100)
    snap = snapshot_from_data("10.0.0.1", Tier.FAST, s19(), data, collected_at=5.0)
    assert (snap.power_w, snap.power_source) == (3100.0, PowerSource.MEASURED)
    zero = snapshot_from_data(
        "10.0.0.1", Tier.FAST, s19(), MinerData(ip="10.0.0.1", wattage=0), collected_at=5.0
    )
    assert zero.power_w is None


def test_snapshot_from_slow_data_takes_identity_not_telemetry():
    """Slow tier: identity, pools, errors; MinerData's default is_mining=True is not taken."""
    data = MinerData(
        ip="10.0.0.1",
        mac="02:a1:00:00:00:01",
        serial_number="SN1",
        hostname="rack-1",
        fw_ver="1.2",
        pools=[
            PoolMetrics(
                url=PoolUrl.from_str("stratum+tcp://pool.example:3333"),
                user="w1",
                alive=True,
                active=True,
            )
        ],
    )
    snap = snapshot_from_data("10.0.0.1", Tier.SLOW, s19(), data, collected_at=5.0)
    assert snap.identity.mac == "02:A1:00:00:00:01"
    assert (snap.identity.serial, snap.identity.hostname, snap.identity.firmware_version) == (
        "SN1",
        "rack-1",
        "1.2",
    )
    assert snap.pools is not None
    assert snap.pools[0].url == "stratum+tcp://pool.example:3333"
    assert snap.is_mining is None
    assert snap.boards == ()
    assert snap.errors == ()


def _validation_error() -> pydantic.ValidationError:
    try:
        Fan(speed="fast")
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (TimeoutError(), FailureReason.TIMEOUT),
        (ConnectionRefusedError(), FailureReason.REFUSED),
        (ConnectionResetError(), FailureReason.RESET),
        (OSError("no route"), FailureReason.UNREACHABLE),
        (json.JSONDecodeError("x", "doc", 0), FailureReason.PARSE_ERROR),
        (_validation_error(), FailureReason.PARSE_ERROR),
        (APIError("bad status"), FailureReason.PROTOCOL_ERROR),
        (RuntimeError("?"), FailureReason.ERROR),
    ],
)
def test_classify_maps_exceptions_to_reasons(exc, reason):
    """Every exception pyasic can raise maps to a FailureReason label."""
    assert classify(exc) is reason


def test_classify_looks_through_apierror_to_its_cause():
    """Pyasic's "Failed to call X" APIError is classified by what caused it."""
    outer = APIError("Failed to call fans")
    outer.__cause__ = _validation_error()
    assert classify(outer) is FailureReason.PARSE_ERROR


async def test_resolve_gives_pyasic_an_ip_literal():
    """Host names are resolved for pyasic (which accepts only IPs); IPs pass through."""
    from collectors.pyasic_source import _resolve  # noqa: PLC0415 - private helper under test

    assert await _resolve("10.1.2.3") == "10.1.2.3"
    assert await _resolve("localhost") in {"127.0.0.1", "::1"}
    with pytest.raises(CollectorError) as info:
        await _resolve("no-such-miner.invalid")
    assert info.value.reason is FailureReason.UNREACHABLE


@pytest.mark.parametrize(
    ("reply", "answered", "reason"),
    [
        (
            b'{"STATUS":[{"STATUS":"S"}],"VERSION":[{"CGMiner":"4.9"}]}\x00',
            "unsupported_firmware",
            "unsupported_firmware",
        ),
        (b'{"STATUS":[{"STATUS":"S"}]}', "protocol_error", "protocol_error"),
        (b"", "unsupported_firmware", "protocol_error"),
        (b"\x00\n", "unsupported_firmware", "protocol_error"),
        (b'{"STATUS":[{"STAT', "unsupported_firmware", "parse_error"),
        (b"\x8b\x1f<html>\xff\xfe not json", "unsupported_firmware", "parse_error"),
        (b"x" * (_PROBE_REPLY_LIMIT + 1), "unsupported_firmware", "oversized"),
    ],
)
def test_pyasic_source_version_reply_names_the_failure(reply, answered, reason):
    """The detection probe's reply: JSON -> ``answered``, empty, not JSON, or too big."""
    failure = _reply_failure(reply, "detection: port 4028", FailureReason(answered))
    assert failure.reason is FailureReason(reason)
    assert "port 4028" in failure.detail


@pytest.mark.parametrize(
    ("reply", "answered", "reason"),
    [
        (
            b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"ASICModel":"BM1366"}',
            "unsupported_firmware",
            "unsupported_firmware",
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n{}", "protocol_error", "protocol_error"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            "unsupported_firmware",
            "unsupported_firmware",
        ),
        (
            b"HTTP/1.0 404 Not Found\r\n\r\n<html>no</html>",
            "unsupported_firmware",
            "unsupported_firmware",
        ),
        (b"HTTP/1.0 500 Oops\r\n\r\n", "protocol_error", "protocol_error"),
        (b"HTTP/1.1 200 OK\r\n\r\n<html>\xff\x00\x00", "unsupported_firmware", "parse_error"),
        (
            b'HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{"ASICMo',
            "unsupported_firmware",
            "parse_error",
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n", "unsupported_firmware", "protocol_error"),
        (b"\x8b\x1f garbage \xff", "unsupported_firmware", "parse_error"),
        (b"HTTP/1.1 200 OK\r\nno end of head", "unsupported_firmware", "parse_error"),
    ],
)
def test_pyasic_source_http_reply_names_the_failure(reply, answered, reason):
    """A web-only miner's probe reply: not HTTP, a 2xx body judged as JSON, other statuses."""
    failure = _http_reply_failure(reply, "detection: port 80", FailureReason(answered))
    assert failure.reason is FailureReason(reason)
