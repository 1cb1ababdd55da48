"""Whatsminer API v3 (4433): detection where pyasic 0.79 fails, and its sensor semantics.

Detection (issue 16, trap c). pyasic's factory finds a Whatsminer whose 4028 is closed through
``get.device.info`` on 4433, but its version check asks only 4028 (``get_version``), gets
nothing and builds the API v2 class, which then reads nothing. `upgrade_to_v3` corrects that:
when pyasic built the v2 class, 4028 refuses and 4433 answers ``get.device.info``, the miner is
rebuilt as pyasic's own class for that model with the firmware version 4433 reports, so
pyasic picks ``BTMinerV3`` and every read goes to 4433.

Sensor semantics (trap a). pyasic's ``BTMinerV3`` reports each board's coolest chip
(``chip-temp-min``) as the board temperature *and* the board inlet temperature, and the hottest
chip (``chip-temp-max``) as the board outlet temperature. None of them is air or a PCB sensor,
so the agent (``collectors.pyasic_source``) keeps only the hottest chip, as the chip
temperature: the board, inlet and outlet temperatures are unknown. The air inlet of a v3
Whatsminer is its environment temperature (``environment-temperature``) or nothing.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

import structlog
from pyasic.miners.backends.btminer import BTMinerV2, BTMinerV3
from pyasic.miners.factory import MINER_CLASSES, MinerTypes

log = structlog.get_logger("altiwatch.whatsminer_v3")

V3_PORT = 4433
V2_PORT = 4028
HINT_VERSION = "20250101.00.Rel"
"""Firmware version given to a class built from a ``whatsminer-v3:`` hint (after 2024-11)."""
_HEADER = struct.Struct("<I")
_MAX_REPLY_BYTES = 256 * 1024
"""Largest ``get.device.info`` reply accepted (real ones are about 2 KiB)."""


def is_v3(miner: Any) -> bool:
    """Whether ``miner`` is pyasic's Whatsminer API v3 class."""
    return isinstance(miner, BTMinerV3)


def model_key(reported: str) -> str:
    """Pyasic's class key for the model 4433 reports: ``M60S_VK30`` -> ``M60SVK30``.

    The same transformation as pyasic's factory: underscores dropped, last character ``0``.
    """
    key = reported.replace("_", "")
    return key[:-1] + "0"


def v3_class(ip: str, model: str | None, version: str) -> Any:
    """Pyasic's Whatsminer class for ``model`` (unknown: its generic one) on API v3."""
    classes = MINER_CLASSES[MinerTypes.WHATSMINER]
    cls = classes.get(model_key(model).upper()) if model else None
    if cls is None:
        cls = classes[None]
    return cls(ip, version)


def same_class_on_v3(ip: str, miner: Any) -> Any:
    """Pyasic's Whatsminer class of ``miner`` (built for v2), built again for API v3."""
    name = type(miner).__name__
    for cls in MINER_CLASSES[MinerTypes.WHATSMINER].values():
        if cls.__name__ == name:
            return cls(ip, HINT_VERSION)
    return MINER_CLASSES[MinerTypes.WHATSMINER][None](ip, HINT_VERSION)


async def _port_refuses(ip: str, port: int, limit_s: float) -> bool:
    """True when a TCP connect to ``port`` is refused (closed port), False when it connects."""
    try:
        async with asyncio.timeout(limit_s):
            _, writer = await asyncio.open_connection(ip, port)
    except ConnectionRefusedError:
        return True
    except (OSError, TimeoutError):
        return False
    writer.transport.abort()
    return False


async def device_info(ip: str, limit_s: float) -> dict[str, Any] | None:
    """``get.device.info`` from 4433 (framed as pyasic frames it), or None."""
    body = json.dumps({"cmd": "get.device.info"}).encode()
    try:
        async with asyncio.timeout(limit_s):
            reader, writer = await asyncio.open_connection(ip, V3_PORT)
            try:
                writer.write(_HEADER.pack(len(body)) + body)
                await writer.drain()
                (length,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
                if length > _MAX_REPLY_BYTES:
                    return None
                reply = json.loads(await reader.readexactly(length))
            finally:
                writer.transport.abort()
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
        return None
    msg = reply.get("msg") if isinstance(reply, dict) else None
    return msg if isinstance(msg, dict) else None


async def upgrade_to_v3(miner: Any, limit_s: float) -> Any:
    """``miner`` rebuilt as pyasic's API v3 class when it is a v2 Whatsminer that is really v3.

    Only a ``BTMinerV2`` is checked, at a cost of one TCP connect (and, when 4028 refuses,
    one ``get.device.info`` on 4433); anything else is returned as it is.
    """
    if not isinstance(miner, BTMinerV2):
        return miner
    ip = str(miner.ip)
    if not await _port_refuses(ip, V2_PORT, limit_s):
        return miner
    info = await device_info(ip, limit_s)
    if info is None:
        return miner
    system, hardware = info.get("system"), info.get("miner")
    version = system.get("fwversion") if isinstance(system, dict) else None
    model = hardware.get("type") if isinstance(hardware, dict) else None
    upgraded = v3_class(ip, str(model) if model else None, str(version or HINT_VERSION))
    if not is_v3(upgraded):  # a firmware on 4433 dated up to 2024-11: keep pyasic's choice
        return miner
    log.info("whatsminer_v3_on_4433", address=ip, model=model, firmware=version)
    return upgraded
