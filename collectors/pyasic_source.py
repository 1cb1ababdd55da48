"""The pyasic MinerSource: detection cache, tiered reads, and pyasic → MinerSnapshot conversion.

``PyasicSource.fetch(target, tier)`` is the only way the agent reads a miner. It

* finds the pyasic class for an address once (``pyasic.get_miner``) and caches the object, or
  builds it from a model hint without any I/O; the class is re-detected when a miner changes
  (its MAC differs from the cached one, it comes back after being unreachable, or it keeps
  answering with nothing pyasic can use);
* sets per-miner credentials on that miner's own web client (never pyasic's global settings);
* reads only the ``DataOptions`` of the tier (see ``FAST_OPTIONS`` / ``SLOW_OPTIONS``);
* bounds every poll with its own deadline (pyasic's read timeout is 100 s);
* turns every exception pyasic can raise into ``CollectorError(reason, detail)``, and a poll
  that returned no usable data at all (pyasic swallows connection errors) into one too, after a
  cheap probe that tells "refused" from "timeout" from "answers garbage" (after a failed
  detection it sends the RPC ``version`` command, so a misbehaving miner keeps its reason
  instead of becoming "unsupported_firmware" once it is re-detected; a well-formed answer that
  pyasic cannot classify *is* "unsupported_firmware": ``asic_up 0``, never an empty miner).

Values are converted to base units: hashrates to H/s (pyasic's ``rate × unit.value``), °C,
rpm, W, s. Anything unknown, NaN or negative stays ``None``.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import ipaddress
import json
import math
import re
import socket
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

import h11
import httpx
import pydantic
import structlog
from pyasic import get_miner
from pyasic.errors import APIError
from pyasic.miners.data import DataOptions
from pyasic.miners.factory import MINER_CLASSES, MinerTypes
from pyasic.web.antminer import AntminerModernWebAPI
from pyasic.web.vnish import VNishWebAPI

from collectors import (
    luxos,
    pools,
    pyasic_tuning,  # perf: CPU-saving adaptations (issue 7)
    whatsminer_v3,  # issue 16: API v3 detection and sensor semantics
)
from collectors.identity import clean_mac, clean_text
from collectors.snapshot import (
    BoardReading,
    Cooling,
    ErrorCode,
    Family,
    FanReading,
    Identity,
    MinerSnapshot,
    PoolInfo,
    PowerSource,
    Tier,
)
from collectors.source import CollectorError, FailureReason

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from collectors.source import MinerTarget

log = structlog.get_logger("altiwatch.pyasic_source")

#: Telemetry read every fast interval. Every family needs at least two RPC commands for this
#: set (or none, Bitaxe), which avoids pyasic's "single command fetched twice" quirk.
FAST_OPTIONS: tuple[DataOptions, ...] = (
    DataOptions.HASHRATE,
    DataOptions.EXPECTED_HASHRATE,
    DataOptions.HASHBOARDS,
    DataOptions.FANS,
    DataOptions.WATTAGE,
    DataOptions.ENVIRONMENT_TEMP,
    DataOptions.UPTIME,
    DataOptions.IS_MINING,
)

#: Identity, pools, errors, fault light and power limit, read every slow interval.
SLOW_OPTIONS: tuple[DataOptions, ...] = (
    DataOptions.MAC,
    DataOptions.SERIAL_NUMBER,
    DataOptions.HOSTNAME,
    DataOptions.API_VERSION,
    DataOptions.FW_VERSION,
    DataOptions.POOLS,
    DataOptions.ERRORS,
    DataOptions.FAULT_LIGHT,
    DataOptions.WATTAGE_LIMIT,
)

#: Families tried, in order, when a model hint names no family ("S19j Pro").
_HINT_FAMILY_ORDER: tuple[MinerTypes, ...] = (
    MinerTypes.ANTMINER,
    MinerTypes.WHATSMINER,
    MinerTypes.AVALONMINER,
    MinerTypes.BITAXE,
    MinerTypes.BRAIINS_OS,
    MinerTypes.VNISH,
    MinerTypes.LUX_OS,
)

#: Prefixes accepted in a model hint to name the firmware family: "vnish:S19j Pro".
_HINT_PREFIXES: dict[str, MinerTypes] = {
    "antminer": MinerTypes.ANTMINER,
    "stock": MinerTypes.ANTMINER,
    "whatsminer": MinerTypes.WHATSMINER,
    "avalon": MinerTypes.AVALONMINER,
    "avalonminer": MinerTypes.AVALONMINER,
    "bitaxe": MinerTypes.BITAXE,
    "braiins": MinerTypes.BRAIINS_OS,
    "bos": MinerTypes.BRAIINS_OS,
    "vnish": MinerTypes.VNISH,
    "luxos": MinerTypes.LUX_OS,
    "lux": MinerTypes.LUX_OS,
}

_REDETECT_AFTER_EMPTY = 3
_PROBE_TIMEOUT_S = 1.0
#: Most bytes the detection probe reads from a ``version`` reply (real ones are under 1 KiB).
_PROBE_REPLY_LIMIT = 64 * 1024
_MAX_PLAUSIBLE_TEMP_C = 200.0
_MIN_PLAUSIBLE_INLET_C = -60.0


@dataclass(slots=True)
class _Cached:
    """A detected pyasic miner object and what we learned about it."""

    miner: Any
    from_hint: bool
    mac: str | None = None
    empty_polls: int = 0
    unreachable: bool = False
    slow_polls: int = 0
    raw_pools: pools.RawPools | None = None


def _finite(value: Any, *, allow_zero: bool = True) -> float | None:
    """Return ``value`` as a finite, non-negative float, else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        return None
    return number


def _temperature(value: Any) -> float | None:
    """A chip/board temperature: pyasic reports 0 for "no reading", so 0 and below are None."""
    number = _finite(value, allow_zero=False)
    if number is None or number > _MAX_PLAUSIBLE_TEMP_C:
        return None
    return number


def _inlet_temperature(value: Any) -> float | None:
    """An air temperature: may legitimately be below 0 °C on a plateau winter night."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or not _MIN_PLAUSIBLE_INLET_C <= number <= _MAX_PLAUSIBLE_TEMP_C:
        return None
    return number


def hashrate_hs(value: Any) -> float | None:
    """Convert a pyasic hashrate object (rate in some unit) to H/s; None when unknown."""
    if value is None:
        return None
    rate = getattr(value, "rate", None)
    unit = getattr(value, "unit", None)
    if rate is None or unit is None:
        return None
    return _finite(float(rate) * int(unit))


def _int_or_none(value: Any) -> int | None:
    number = _finite(value)
    return None if number is None else int(number)


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def family_of(miner: Any) -> Family:
    """Our Family for a pyasic miner object, from its firmware and make (no I/O)."""
    info = getattr(miner, "device_info", None)
    firmware = str(getattr(info, "firmware", "") or "")
    make = str(getattr(info, "make", "") or "")
    by_firmware = {"VNish": Family.VNISH, "BOS+": Family.BRAIINS, "LuxOS": Family.LUXOS}
    if firmware in by_firmware:
        return by_firmware[firmware]
    by_make = {
        "AntMiner": Family.ANTMINER,
        "WhatsMiner": Family.WHATSMINER,
        "AvalonMiner": Family.AVALON,
        "BitAxe": Family.BITAXE,
        "Braiins": Family.BRAIINS,
    }
    return by_make.get(make, Family.UNKNOWN)


def cooling_of(miner: Any) -> Cooling | None:
    """Cooling known from the pyasic class alone: hydro models ("S19 Hydro", "S21+ Hydro").

    None when the model does not say (air, or immersion known only from the fan mode).
    """
    info = getattr(miner, "device_info", None)
    model = str(getattr(info, "model", "") or getattr(miner, "model", "") or "")
    return Cooling.HYDRO if "hyd" in model.lower() else None


async def fan_mode_cooling(miner: Any) -> Cooling | None:
    """Slow tier, Braiins OS+: immersion when the firmware's fan mode is immersion, else air.

    Read through pyasic's own ``get_config`` (one gRPC call). None when it cannot be read.
    """
    if family_of(miner) is not Family.BRAIINS:
        return None
    try:
        config = await miner.get_config()
    except (APIError, LookupError, ValueError, TypeError):  # pyasic parses the reply loosely
        return None
    mode = getattr(getattr(config, "fan_mode", None), "mode", None)
    return Cooling.IMMERSION if mode == "immersion" else Cooling.AIR


def _coolant(
    boards: tuple[BoardReading, ...], cooling: Cooling | None
) -> tuple[float | None, float | None]:
    """(coolant inlet, outlet) of a hydro miner: lowest board inlet, highest board outlet.

    Only hydro firmware reports coolant as board inlet/outlet (stock S21+ Hydro, pyasic 0.79);
    on other miners those fields are air or chip figures (Whatsminer API v3: chip min/max) and
    are never used as coolant (nor as air: the air inlet comes from an ambient sensor only).
    """
    if cooling is not Cooling.HYDRO:
        return None, None
    ins = [b.inlet_temp_c for b in boards if b.inlet_temp_c is not None]
    outs = [b.outlet_temp_c for b in boards if b.outlet_temp_c is not None]
    return (min(ins) if ins else None), (max(outs) if outs else None)


def identity_of(miner: Any) -> Identity:
    """The identity pyasic knows from the miner's class alone (family, make, model, firmware)."""
    info = getattr(miner, "device_info", None)
    return Identity(
        family=family_of(miner),
        make=_str_or_none(getattr(info, "make", None)),
        model=clean_text(getattr(info, "model", None), "model"),
        firmware=_str_or_none(getattr(info, "firmware", None)),
    )


_HINT_SEPARATORS = re.compile(r"[\s_]+")


def _hint_key(model: str) -> str:
    """A model name as compared with pyasic's keys: upper case, no spaces or underscores.

    Whatsminers report ``M30S+_VE40`` where pyasic's key is ``M30S+VE40``; operators type
    ``S19jPro`` or ``s19j pro`` for ``ANTMINER S19J PRO``.
    """
    return _HINT_SEPARATORS.sub("", model).upper()


@functools.cache
def _normalised_classes(miner_type: MinerTypes) -> dict[str, Any]:
    """Pyasic's classes of one family keyed by ``_hint_key`` (first key wins on a clash)."""
    out: dict[str, Any] = {}
    for key, cls in MINER_CLASSES.get(miner_type, {}).items():
        if key:
            out.setdefault(_hint_key(key), cls)
    return out


def miner_from_hint(address: str, hint: str) -> Any:
    """Build a pyasic miner object from a model hint without any network I/O.

    ``hint`` is a pyasic model key such as ``"Antminer S19j Pro"``, ``"BM1366"``,
    ``"M30S+VE40"``, optionally prefixed with a family: ``"vnish:Antminer S19j Pro"``. Case,
    spaces and underscores do not matter (``"M30S+_VE40"`` as a Whatsminer reports its model,
    ``"s19jpro"``); an exact pyasic key wins. Raises CollectorError(UNKNOWN_MODEL) when pyasic
    has no class for it.
    """
    family: MinerTypes | None = None
    model = hint
    if ":" in hint:
        prefix, _, rest = hint.partition(":")
        if prefix.strip().lower() == "whatsminer-v3":  # issue 16: API v3 on 4433
            v2 = miner_from_hint(address, f"whatsminer:{rest}")
            return whatsminer_v3.same_class_on_v3(address, v2)
        family = _HINT_PREFIXES.get(prefix.strip().lower())
        if family is None:
            raise CollectorError(FailureReason.UNKNOWN_MODEL, f"unknown family in hint {hint!r}")
        model = rest
    key = model.strip().upper()
    families = (family,) if family is not None else _HINT_FAMILY_ORDER
    for miner_type in families:
        classes = MINER_CLASSES.get(miner_type, {})
        for candidate in (key, f"ANTMINER {key}", f"AVALONMINER {key}"):
            cls = classes.get(candidate)
            if cls is not None:
                return cls(address)
    loose = _hint_key(model)
    for miner_type in families:
        classes = _normalised_classes(miner_type)
        for candidate in (loose, f"ANTMINER{loose}", f"AVALONMINER{loose}"):
            cls = classes.get(candidate)
            if cls is not None:
                return cls(address)
    raise CollectorError(FailureReason.UNKNOWN_MODEL, f"pyasic has no class for {hint!r}")


async def _resolve(address: str) -> str:
    """An IP literal for ``address`` (pyasic's RPC clients accept only IP addresses).

    Host names are resolved (IPv4 first) each time a miner is (re)detected, so a DHCP/DNS
    change is followed at the next detection.
    """
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(address, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise CollectorError(FailureReason.UNREACHABLE, f"cannot resolve {address}: {exc}") from exc
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return str(infos[0][4][0])


def _apply_credentials(miner: Any, target: MinerTarget) -> None:
    """Set the target's credentials on this miner's own web client (never global settings)."""
    creds = target.credentials
    web = getattr(miner, "web", None)
    if creds is None or web is None:
        return
    if creds.username is not None and hasattr(web, "username"):
        web.username = creds.username
    if creds.password is not None and hasattr(web, "pwd"):
        web.pwd = creds.password.get_secret_value()


def _has_fast_data(data: Any) -> bool:
    if data.raw_hashrate is not None or data.uptime is not None or data.wattage is not None:
        return True
    if any(f.speed is not None for f in data.fans):
        return True
    return any(
        not b.missing or b.hashrate is not None or b.chip_temp is not None for b in data.hashboards
    )


def _has_slow_data(data: Any) -> bool:
    # Not fw_ver/api_ver: pyasic keeps them on the miner object, so they "arrive" even from a
    # miner that is gone.
    fields = (data.mac, data.serial_number, data.hostname)
    return any(f is not None for f in fields) or bool(data.pools)


def _web_data_absent(miner: Any, tier: Tier, data: Any) -> bool:
    """True when a stock Antminer's web-sourced fields all came back empty.

    Stock Antminers (``AntminerModernWebAPI``) give their boards (fast tier) and MAC, serial
    and hostname (slow tier) only through the Digest-protected web API; the RPC port answers
    without credentials. pyasic reports a web failure as boards with ``missing=True`` and
    ``None`` identity fields, indistinguishable from the data alone.
    """
    if not isinstance(getattr(miner, "web", None), AntminerModernWebAPI):
        return False
    if tier is Tier.FAST:
        boards = data.hashboards
        return bool(boards) and all(
            b.missing and b.hashrate is None and b.chips is None for b in boards
        )
    return data.mac is None and data.serial_number is None and data.hostname is None


class WebCheck(enum.Enum):
    """What one authenticated GET of a stock Antminer's web API got."""

    ANSWERED = "answered"  # JSON: the empty data is the miner's own reading
    REFUSED = "refused"  # 401 to our Digest: a wrong password, not a reading
    UNUSABLE = "unusable"  # no answer, an error status or not JSON: the web fields are unknown


async def _check_web(miner: Any, deadline: float) -> WebCheck:
    """One authenticated GET of the miner's web API, to say why its web data came back empty.

    Only run when the web-sourced data came back empty (`_web_data_absent`), so a healthy miner
    costs nothing. A 401 is a wrong password. No answer, an error status or a body that is not
    JSON means the web fields are unknown: boards are then not reported missing (a web server
    that fails is not a lost hashboard). A JSON answer keeps the poll's normal meaning (a real
    board loss is still reported).
    """
    web = miner.web
    url = f"http://{web.ip}:{int(getattr(web, 'port', 80))}/cgi-bin/get_system_info.cgi"
    remaining = deadline - asyncio.get_running_loop().time()
    timeout = max(0.05, min(_PROBE_TIMEOUT_S * 2, remaining - 0.05))
    auth = httpx.DigestAuth(str(web.username), str(web.pwd))
    try:
        transport = pyasic_tuning.LeanHTTPTransport()  # bodies capped at MAX_BODY_BYTES
        async with httpx.AsyncClient(timeout=timeout, trust_env=False, transport=transport) as c:
            response = await c.get(url, auth=auth)
        if response.status_code == httpx.codes.UNAUTHORIZED:
            return WebCheck.REFUSED
        response.raise_for_status()
        response.json()
    except (httpx.HTTPError, ValueError):  # json.JSONDecodeError and UnicodeDecodeError
        return WebCheck.UNUSABLE
    return WebCheck.ANSWERED


def _vnish_token_failed(miner: Any, exc: APIError) -> bool:
    """Pyasic's VNish client could not get a web token (wrong password *or* no answer)."""
    return isinstance(getattr(miner, "web", None), VNishWebAPI) and (
        "could not authenticate" in str(exc).lower()
    )


async def _vnish_refuses_password(miner: Any, deadline: float) -> bool:
    """One unlock request as pyasic makes it: True when VNish answers 401/403 to the password."""
    web = miner.web
    url = f"http://{web.ip}:{int(getattr(web, 'port', 80))}/api/v1/unlock"
    remaining = deadline - asyncio.get_running_loop().time()
    timeout = max(0.05, min(_PROBE_TIMEOUT_S * 2, remaining - 0.05))
    try:
        # The lean transport: the reply is capped in bytes (decoded too) and read whole within
        # the timeout; httpx's own would read an endless or inflating body for ever.
        transport = pyasic_tuning.LeanHTTPTransport()
        async with httpx.AsyncClient(timeout=timeout, trust_env=False, transport=transport) as c:
            response = await c.post(url, json={"pw": str(web.pwd)})
    except httpx.HTTPError:
        return False
    return response.status_code in {httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN}


async def _cooling(miner: Any, tier: Tier, configured: Cooling | None) -> Cooling | None:
    """The configured cooling, else on the slow tier BOS+ fan mode's (immersion; issue 16)."""
    if configured is not None or tier is not Tier.SLOW:
        return configured
    return await fan_mode_cooling(miner)


async def _with_atm(snapshot: MinerSnapshot, miner: Any, tier: Tier) -> MinerSnapshot:
    """Slow tier, LuxOS: the snapshot with the ATM state (one extra request)."""
    if tier is Tier.SLOW and luxos.is_luxos(miner):
        return replace(snapshot, atm_enabled=await luxos.atm_enabled(miner))
    return snapshot


def _boards(data: Any, miner: Any = None) -> tuple[BoardReading, ...]:
    if whatsminer_v3.is_v3(miner):
        return _v3_boards(data)
    return tuple(
        BoardReading(
            index=int(board.slot),
            hashrate_hs=hashrate_hs(board.hashrate),
            board_temp_c=_temperature(board.temp),
            chip_temp_c=_temperature(board.chip_temp),
            inlet_temp_c=_inlet_temperature(board.inlet_temp),
            outlet_temp_c=_inlet_temperature(board.outlet_temp),
            chips=_int_or_none(board.chips),
            expected_chips=_int_or_none(board.expected_chips),
            missing=bool(board.missing),
        )
        for board in data.hashboards
    )


def _v3_boards(data: Any) -> tuple[BoardReading, ...]:
    """Whatsminer API v3: pyasic's board temp/inlet are the coolest chip, outlet the hottest.

    Only the hottest chip is kept (as the chip temperature); no board, inlet or outlet sensor
    exists, so those stay unknown and never feed the air-inlet rule (issue 16, trap a).
    """
    return tuple(
        BoardReading(
            index=int(board.slot),
            hashrate_hs=hashrate_hs(board.hashrate),
            chip_temp_c=_temperature(board.outlet_temp),
            chips=_int_or_none(board.chips),
            expected_chips=_int_or_none(board.expected_chips),
            missing=bool(board.missing),
        )
        for board in data.hashboards
    )


def _fans(data: Any) -> tuple[FanReading, ...]:
    return tuple(
        FanReading(index=i, rpm=_int_or_none(fan.speed)) for i, fan in enumerate(data.fans)
    )


def _errors(data: Any) -> tuple[ErrorCode, ...]:
    errors = []
    for err in data.errors:
        message = clean_text(getattr(err, "error_message", None), "error") or type(err).__name__
        code = getattr(err, "error_code", None)
        errors.append(ErrorCode(message=message, code=code if isinstance(code, int) else None))
    return tuple(errors)


def _pools(data: Any, raw: pools.RawPools | None = None) -> tuple[PoolInfo, ...]:
    """Pyasic's pool list, with the stale counts and URLs its raw reply holds (by position).

    Every pool is kept, also one whose URL pyasic could not parse (``url`` None unless the raw
    reply has it): a pool the agent cannot name is still a pool (rule R14 judges it).
    """
    listed = list(data.pools or ())
    more = pools.extras(raw, len(listed))
    out = []
    for index, pool in enumerate(listed):
        extra = more[index] if more is not None else pools.PoolExtras()
        url = pools.public_url(str(pool.url)) if pool.url is not None else extra.url
        url = clean_text(url, "pool_url")  # issue 15: bounded, no control characters
        failures = extra.failures_known
        out.append(
            PoolInfo(
                url=url,
                user=clean_text(pool.user, "pool_user"),
                alive=pool.alive,
                active=pool.active,
                index=index,
                accepted=_int_or_none(pool.accepted),
                rejected=_int_or_none(pool.rejected),
                stale=extra.stale,
                get_failures=_int_or_none(pool.get_failures) if failures else None,
                remote_failures=_int_or_none(pool.remote_failures) if failures else None,
            )
        )
    return tuple(out)


def snapshot_from_data(
    address: str,
    tier: Tier,
    miner: Any,
    data: Any,
    *,
    collected_at: float,
    raw_pools: pools.RawPools | None = None,
    cooling: Cooling | None = None,
) -> MinerSnapshot:
    """Convert pyasic's MinerData for ``tier`` into our frozen MinerSnapshot.

    Only the tier's own fields are taken: MinerData's defaults for data that was not read
    (``is_mining=True``, ``errors=[]``, blank expected hashboards) would otherwise pose as
    readings. ``cooling`` (configured or read from the fan mode) wins over the model's.
    """
    base = identity_of(miner)
    cooling = cooling or cooling_of(miner)
    if tier is Tier.SLOW:
        identity = Identity(
            family=base.family,
            make=base.make,
            model=base.model,
            firmware=base.firmware,
            firmware_version=clean_text(data.fw_ver, "firmware_version"),
            mac=clean_mac(data.mac),
            serial=clean_text(data.serial_number, "serial"),
            hostname=clean_text(data.hostname, "hostname"),
        )
        return MinerSnapshot(
            address=address,
            collected_at=collected_at,
            tier=tier,
            identity=identity,
            power_limit_w=_finite(data.wattage_limit, allow_zero=False),
            fault_light=data.fault_light,
            errors=_errors(data),
            pools=_pools(data, raw_pools),
            cooling=cooling,
        )
    power = _finite(data.wattage, allow_zero=False)
    hashrate = hashrate_hs(data.raw_hashrate)
    if hashrate is None:
        hashrate = hashrate_hs(data.hashrate)
    boards = _boards(data, miner)
    coolant_in, coolant_out = _coolant(boards, cooling)
    return MinerSnapshot(
        address=address,
        collected_at=collected_at,
        tier=tier,
        identity=base,
        hashrate_hs=hashrate,
        expected_hashrate_hs=hashrate_hs(data.expected_hashrate),
        boards=boards,
        cooling=cooling,
        coolant_inlet_c=coolant_in,
        coolant_outlet_c=coolant_out,
        expected_boards=_int_or_none(data.expected_hashboards),
        fans=_fans(data),
        expected_fans=_int_or_none(data.expected_fans),
        inlet_temp_c=_inlet_temperature(data.env_temp),
        power_w=power,
        power_source=PowerSource.MEASURED if power is not None else None,
        uptime_s=_int_or_none(data.uptime),
        # pyasic's LuxOS backend and BTMinerV3 read no mining state: MinerData's default True
        # is not a reading.
        is_mining=(
            None if luxos.is_luxos(miner) or whatsminer_v3.is_v3(miner) else bool(data.is_mining)
        ),
    )


def _is_auth_failure(exc: BaseException) -> bool:
    """Credentials refused: Braiins OS+ answers gRPC status UNAUTHENTICATED.

    (VNish's "Could not authenticate web token" comes for a refused password and for an
    unreachable web port alike: `_vnish_refuses_password` tells them apart.)
    """
    status = getattr(exc, "status", None)
    if type(exc).__name__ == "GRPCError" and getattr(status, "name", None) == "UNAUTHENTICATED":
        return True
    return (
        isinstance(exc, APIError) and exc.__cause__ is not None and _is_auth_failure(exc.__cause__)
    )


def classify(exc: BaseException) -> FailureReason:
    """Map an exception raised while reading a miner to a FailureReason."""
    reason = FailureReason.ERROR
    if isinstance(exc, CollectorError):
        reason = exc.reason
    elif _is_auth_failure(exc):
        reason = FailureReason.AUTH
    elif isinstance(exc, APIError):
        cause = exc.__cause__
        reason = classify(cause) if cause is not None else FailureReason.PROTOCOL_ERROR
        if reason is FailureReason.ERROR:
            reason = FailureReason.PROTOCOL_ERROR
    elif isinstance(exc, TimeoutError | httpx.TimeoutException):
        reason = FailureReason.TIMEOUT
    elif isinstance(exc, ConnectionRefusedError | httpx.ConnectError):
        reason = FailureReason.REFUSED
    elif isinstance(exc, ConnectionResetError | httpx.RemoteProtocolError):
        reason = FailureReason.RESET
    elif isinstance(exc, OSError | httpx.TransportError):
        reason = FailureReason.UNREACHABLE
    elif isinstance(
        exc,
        json.JSONDecodeError | pydantic.ValidationError | ValueError | LookupError | TypeError,
    ):
        reason = FailureReason.PARSE_ERROR
    return reason


class PyasicSource:
    """MinerSource reading miners with pyasic; one instance serves the whole fleet.

    Args:
        timeout_s: the per-poll deadline (detection included); must be below the interval.
        detector: the detection coroutine, ``pyasic.get_miner`` by default.
        clock: wall clock for ``collected_at``.
        on_new_miner: called with each new pyasic miner object (after pyasic_tuning.tune).
        verify_model_every: re-run detection on every N-th slow poll of a detected miner, to
            notice hardware swapped in place (same MAC, same family, another model); 12 slow
            polls at the default 300 s is once an hour (~6 ms of CPU per S19).
        tuning: apply `collectors.pyasic_tuning` (the caller decides, with
            ``pyasic_tuning.select``); False reads with pyasic exactly as released.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        detector: Callable[[str], Any] | None = None,
        clock: Callable[[], float] = time.time,
        on_new_miner: Callable[[Any], object] | None = None,
        verify_model_every: int = 12,
        tuning: bool = True,
    ) -> None:
        """Create an empty detection cache."""
        self._tuning = tuning
        if tuning:
            pyasic_tuning.install()  # before any detection: its read caps are process-wide
        self.on_new_miner = on_new_miner
        self._verify_every = verify_model_every
        self._timeout_s = timeout_s
        self._detector = detector or get_miner
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        # The API port of the miner last detected at each address: probed when a detection
        # finds nothing (a hung web-only miner is then a timeout on port 80, not "refused" 4028).
        self._ports: dict[str, ApiPort] = {}

    @property
    def timeout_s(self) -> float:
        """The per-poll deadline in seconds."""
        return self._timeout_s

    def forget(self, address: str) -> None:
        """Drop the cached detection for ``address`` (removed from inventory)."""
        self._cache.pop(address, None)
        self._ports.pop(address, None)

    def cached_class(self, address: str) -> str | None:
        """Name of the pyasic class cached for ``address`` (for tests and the JSON API)."""
        cached = self._cache.get(address)
        return None if cached is None else type(cached.miner).__name__

    async def fetch(self, target: MinerTarget, tier: Tier) -> MinerSnapshot:
        """Read ``target`` for ``tier``; raise CollectorError on any failure."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                return await self._fetch(target, tier, deadline)
        except CollectorError:
            self._mark_failure(target.address)
            raise
        except TimeoutError as exc:
            self._mark_failure(target.address)
            msg = f"no complete answer within {self._timeout_s:g} s"
            raise CollectorError(FailureReason.TIMEOUT, msg) from exc
        except Exception as exc:
            self._mark_failure(target.address)
            reason = classify(exc)
            raise CollectorError(reason, f"{type(exc).__name__}: {exc}"[:300]) from exc

    def _mark_failure(self, address: str) -> None:
        cached = self._cache.get(address)
        if cached is not None:
            cached.unreachable = True
            cached.empty_polls += 1
            if cached.empty_polls >= _REDETECT_AFTER_EMPTY and not cached.from_hint:
                # Keeps answering with nothing usable or not at all: detect again next time.
                self._cache.pop(address, None)

    async def _miner(self, target: MinerTarget, deadline: float) -> _Cached:
        cached = self._cache.get(target.address)
        if cached is not None:
            return cached
        ip = await _resolve(target.address)
        if target.model_hint:
            miner = miner_from_hint(ip, target.model_hint)
            cached = _Cached(miner=miner, from_hint=True)
        else:
            miner = await self._detector(ip)
            if miner is not None:  # issue 16: 4028 closed, API v3 on 4433 (pyasic picks v2)
                remaining = deadline - asyncio.get_running_loop().time()
                miner = await whatsminer_v3.upgrade_to_v3(miner, max(0.05, min(2.0, remaining)))
            if miner is None:
                port = self._ports.get(target.address, ApiPort(4028, web=False))
                raise await _probe_failure(ip, port, deadline, "detection")
            if family_of(miner) is Family.UNKNOWN or type(miner).__name__ == "UnknownMiner":
                msg = f"detected {type(miner).__name__}, which pyasic cannot read"
                raise CollectorError(FailureReason.UNSUPPORTED_FIRMWARE, msg)
            cached = _Cached(miner=miner, from_hint=False)
        _apply_credentials(cached.miner, target)
        cached.raw_pools = pools.capture_raw_pools(cached.miner)  # stale counts (R12)
        luxos.adapt(cached.miner)  # LuxOS MAC and hashrate pyasic 0.79 drops
        if self._tuning:
            pyasic_tuning.tune(cached.miner)  # perf: issue 7 (lean transport, Digest reuse, RPC)
        if self.on_new_miner is not None:
            self.on_new_miner(cached.miner)
        self._cache[target.address] = cached
        self._ports[target.address] = api_port(cached.miner)
        return cached

    async def _fetch(self, target: MinerTarget, tier: Tier, deadline: float) -> MinerSnapshot:
        previous = self._cache.get(target.address)
        if previous is not None and tier is Tier.SLOW and not previous.from_hint:
            previous.slow_polls += 1
            if previous.slow_polls > self._verify_every:
                self._cache.pop(target.address, None)  # detect again: hardware may be swapped
        cached = await self._miner(target, deadline)
        if previous is not None and cached is not previous:
            before, after = type(previous.miner).__name__, type(cached.miner).__name__
            if before != after:
                log.info("miner_model_changed", address=target.address, old=before, new=after)
        options: Sequence[DataOptions] = FAST_OPTIONS if tier is Tier.FAST else SLOW_OPTIONS
        if tier is Tier.SLOW and cached.raw_pools is not None:
            cached.raw_pools.clear()
        try:
            data = await cached.miner.get_data(include=list(options))
        except APIError as exc:
            if _vnish_token_failed(cached.miner, exc) and await _vnish_refuses_password(
                cached.miner, deadline
            ):
                msg = "the web API refused the configured password (VNish unlock)"
                raise CollectorError(FailureReason.AUTH, msg) from exc
            raise
        web = await self._check_reading(cached.miner, tier, data, deadline)
        snapshot = snapshot_from_data(
            target.address,
            tier,
            cached.miner,
            data,
            collected_at=self._clock(),
            raw_pools=cached.raw_pools,
            cooling=await _cooling(cached.miner, tier, target.cooling),
        )
        snapshot = await _with_atm(snapshot, cached.miner, tier)
        if web is WebCheck.UNUSABLE:
            # The RPC port answered, the web API did not: the boards are unknown, not missing.
            snapshot = replace(snapshot, boards=(), expected_boards=None)
        self._after_success(target.address, cached, snapshot)
        return snapshot

    async def _check_reading(self, miner: Any, tier: Tier, data: Any, deadline: float) -> WebCheck:
        """Raise when ``data`` holds nothing usable or the web API refused our credentials.

        Otherwise say whether the web API answered (``UNUSABLE``: its fields are unknown).
        """
        usable = _has_fast_data(data) if tier is Tier.FAST else _has_slow_data(data)
        if not usable:
            raise await _probe_failure(str(miner.ip), api_port(miner), deadline, "read")
        if not _web_data_absent(miner, tier, data):
            return WebCheck.ANSWERED
        web = await _check_web(miner, deadline)
        if web is WebCheck.REFUSED:
            # pyasic turns the web API's 401 into empty data: boards "missing", no MAC. That is
            # not a reading (a false R6 board-missing alarm otherwise) but a wrong password.
            msg = "the web API refused the configured credentials (HTTP 401)"
            raise CollectorError(FailureReason.AUTH, msg)
        return web

    def _after_success(self, address: str, cached: _Cached, snapshot: MinerSnapshot) -> None:
        came_back = cached.unreachable
        cached.empty_polls = 0
        cached.unreachable = False
        mac = snapshot.identity.mac
        changed_mac = mac is not None and cached.mac is not None and mac != cached.mac
        if mac is not None:
            cached.mac = mac
        if not cached.from_hint and (came_back or changed_mac):
            # A miner that was away or shows another MAC may be other hardware: the next
            # poll detects its class again.
            self._cache.pop(address, None)


class ApiPort(NamedTuple):
    """The port a miner's API answers on, and whether it speaks HTTP there (web-only firmware)."""

    port: int
    web: bool


def api_port(miner: Any) -> ApiPort:
    """The RPC port of ``miner``, else its web port (Bitaxe and other web-only firmware)."""
    rpc = getattr(miner, "rpc", None)
    if rpc is not None:
        return ApiPort(int(rpc.port), web=False)
    web = getattr(miner, "web", None)
    if web is not None:
        return ApiPort(int(getattr(web, "port", 80)), web=True)
    return ApiPort(4028, web=False)


async def _probe_failure(address: str, api: ApiPort, deadline: float, stage: str) -> CollectorError:
    """Say why a miner gave nothing: connect to its API port and ask once, within the deadline.

    The API is asked itself (RPC ``version``, or an HTTP GET on a web-only miner's port), so a
    miner that hangs, drips, resets or sends garbage gets that reason, the same before and after
    it is detected again (not "unsupported_firmware").
    """
    port = api.port
    remaining = deadline - asyncio.get_running_loop().time()
    timeout = max(0.05, min(_PROBE_TIMEOUT_S, remaining - 0.05))
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(address, port)
    except TimeoutError:
        return CollectorError(FailureReason.TIMEOUT, f"{stage}: port {port} did not answer")
    except ConnectionRefusedError:
        return CollectorError(FailureReason.REFUSED, f"{stage}: port {port} refused")
    except OSError as exc:
        return CollectorError(FailureReason.UNREACHABLE, f"{stage}: {exc.strerror or exc}")
    answered = (
        FailureReason.UNSUPPORTED_FIRMWARE if stage == "detection" else FailureReason.PROTOCOL_ERROR
    )
    request = _http_probe()[1] if api.web else b'{"command":"version"}'
    where = f"{stage}: port {port}"
    return await _ask(
        reader, writer, request, where=where, deadline=deadline, answered=answered, web=api.web
    )


async def _ask(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: bytes,
    *,
    where: str,
    deadline: float,
    answered: FailureReason,
    web: bool,
) -> CollectorError:
    """Send ``request`` on an open connection and say what kind of failure the miner has.

    ``where`` ("detection: port 4028") starts every detail. No complete answer by ``deadline``
    (loop time, less a 50 ms margin) is TIMEOUT; a dropped connection is RESET; the reply
    itself is judged by ``_reply_failure`` (for ``web``, the body after the HTTP head). Reads
    at most ``_PROBE_REPLY_LIMIT``+1 bytes, and always aborts the connection.
    """
    reply = bytearray()
    loop_deadline = max(deadline - 0.05, asyncio.get_running_loop().time() + 0.05)
    try:
        async with asyncio.timeout_at(loop_deadline):
            writer.write(request)
            await writer.drain()
            while len(reply) <= _PROBE_REPLY_LIMIT and (chunk := await reader.read(65536)):
                reply += chunk
    except TimeoutError:
        detail = f"{where} gave no complete answer ({len(reply)} bytes in time)"
        return CollectorError(FailureReason.TIMEOUT, detail)
    except ConnectionError:  # reset, broken pipe, aborted: the peer dropped the connection
        return CollectorError(FailureReason.RESET, f"{where} reset the connection")
    except OSError as exc:
        return CollectorError(FailureReason.UNREACHABLE, f"{where}: {exc.strerror or exc}")
    finally:
        writer.transport.abort()
    if web and reply and len(reply) <= _PROBE_REPLY_LIMIT:
        return _http_reply_failure(bytes(reply), where, answered)
    return _reply_failure(bytes(reply), where, answered)


def _http_probe() -> tuple[h11.Connection, bytes]:
    """The request asked of a web-only miner's port when pyasic got nothing, and its sender.

    AxeOS serves JSON at ``/api/system/info``; the h11 connection parses the reply.
    """
    conn = h11.Connection(h11.CLIENT)
    headers = [("Host", "miner"), ("Connection", "close")]
    request = conn.send(h11.Request(method="GET", target="/api/system/info", headers=headers))
    return conn, (request or b"") + (conn.send(h11.EndOfMessage()) or b"")


def _http_reply_failure(reply: bytes, where: str, answered: FailureReason) -> CollectorError:
    """What a web-only miner's complete HTTP reply says: a 2xx body is judged as JSON.

    The reply is parsed by h11 (httpx's parser) as the answer to ``_http_probe``: bytes that
    are not a complete HTTP response are PARSE_ERROR; a status other than 2xx is ``answered``.
    """
    conn, _request = _http_probe()
    conn.receive_data(reply)
    conn.receive_data(b"")  # the peer closed: the reply is all there is
    status: int | None = None
    body = bytearray()
    try:
        while True:  # until the end of the message (or of the bytes)
            event = conn.next_event()
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            else:
                break
    except h11.RemoteProtocolError as exc:
        detail = f"{where} answered with {len(reply)} bytes that are not HTTP ({exc})"
        return CollectorError(FailureReason.PARSE_ERROR, detail)
    if status is None:
        detail = f"{where} answered with {len(reply)} bytes that are not HTTP"
        return CollectorError(FailureReason.PARSE_ERROR, detail)
    if not 200 <= status < 300:  # noqa: PLR2004 - the 2xx range
        if answered is FailureReason.UNSUPPORTED_FIRMWARE:
            detail = f"{where} answers HTTP {status}, but pyasic knows no firmware there"
            return CollectorError(answered, detail)
        return CollectorError(answered, f"{where} answers HTTP {status}")
    return _reply_failure(bytes(body), where, answered)


def _reply_failure(reply: bytes, where: str, answered: FailureReason) -> CollectorError:
    """What a complete reply to ``version`` says about a miner pyasic got nothing from.

    More than ``_PROBE_REPLY_LIMIT`` bytes is OVERSIZED; nothing is PROTOCOL_ERROR; anything
    that is not JSON (NUL terminator and whitespace aside) is PARSE_ERROR; JSON gets
    ``answered`` (UNSUPPORTED_FIRMWARE after a detection: something speaks the miner API, but
    no firmware pyasic can read).
    """
    if len(reply) > _PROBE_REPLY_LIMIT:
        detail = f"{where} sent more than {_PROBE_REPLY_LIMIT} bytes"
        return CollectorError(FailureReason.OVERSIZED, detail)
    text = reply.strip(b"\x00 \t\r\n")
    if not text:
        return CollectorError(FailureReason.PROTOCOL_ERROR, f"{where} closed without answering")
    try:
        json.loads(text)
    except ValueError:
        detail = f"{where} answered with {len(text)} bytes that are not JSON"
        return CollectorError(FailureReason.PARSE_ERROR, detail)
    if answered is FailureReason.UNSUPPORTED_FIRMWARE:
        detail = f"{where} answers the miner API, but pyasic identifies no firmware it can read"
        return CollectorError(answered, detail)
    return CollectorError(answered, f"{where} answers, but with nothing usable")
