"""LuxOS readings pyasic 0.79 drops: the MAC, the summary hashrate and the ATM state.

pyasic 0.79.0's ``LUXMiner`` (pyasic/miners/backends/luxminer.py) fetches ``config`` and
``summary`` for ``DataOptions.MAC`` and ``HASHRATE`` but its ``_get_mac`` and ``_get_hashrate``
``return None`` before reading them (an unconditional return left above the parsing code). The
agent would then have no MAC for a LuxOS miner (its id falls back to the address) and only the
sum of the boards as its hashrate.

`adapt` wraps both functions on one miner object, as `collectors.pools.capture_raw_pools`
does for pools: they read the reply pyasic already fetched for this poll (``CONFIG[0].MACAddr``,
``SUMMARY[0]["GHS 5s"]``), so no request is added; when pyasic is fixed its own result wins.

``LUXMiner.atm_enabled()`` is pyasic's only read of Advanced Thermal Management (LuxOS steps
its frequency profile down when hot, so a lower hashrate is then the firmware's choice, not a
fault). `atm_enabled` asks it once per slow poll (one ``atm`` RPC connection).
"""

from __future__ import annotations

from typing import Any

from pyasic.errors import APIError
from pyasic.miners.backends.luxminer import LUXMiner

from collectors.identity import clean_mac


def is_luxos(miner: Any) -> bool:
    """Whether ``miner`` is pyasic's LuxOS backend (any model)."""
    return isinstance(miner, LUXMiner)


def mac_from_config(reply: Any) -> str | None:
    """``CONFIG[0].MACAddr`` of a LuxOS ``config`` reply, upper case; None when absent."""
    try:
        value = reply["CONFIG"][0]["MACAddr"]
    except (LookupError, TypeError):
        return None
    return clean_mac(value) if isinstance(value, str) else None


def ghs_from_summary(reply: Any) -> float | None:
    """``SUMMARY[0]["GHS 5s"]`` of a LuxOS ``summary`` reply in GH/s; None when absent."""
    try:
        value = float(reply["SUMMARY"][0]["GHS 5s"])
    except (LookupError, TypeError, ValueError):
        return None
    return value


def adapt(miner: Any) -> None:
    """Make ``miner``'s MAC and hashrate read the replies pyasic fetched (LuxOS only; idempotent).

    pyasic's ``get_data`` looks each data function up on the instance, so instance attributes
    wrap them for this miner only.
    """
    if not is_luxos(miner) or getattr(miner, "_altiwatch_luxos", False):
        return
    get_mac = miner._get_mac  # noqa: SLF001 - pyasic's data function for MAC
    get_hashrate = miner._get_hashrate  # noqa: SLF001 - pyasic's data function for HASHRATE

    async def _get_mac(rpc_config: Any = None) -> Any:
        own = await get_mac(rpc_config=rpc_config)
        return own if own is not None else mac_from_config(rpc_config)

    async def _get_hashrate(rpc_summary: Any = None) -> Any:
        own = await get_hashrate(rpc_summary=rpc_summary)
        ghs = ghs_from_summary(rpc_summary)
        if own is not None or ghs is None:
            return own
        algo = miner.algo
        return algo.hashrate(rate=ghs, unit=algo.unit.GH).into(algo.unit.default)

    miner._get_mac = _get_mac  # noqa: SLF001 - see docstring
    miner._get_hashrate = _get_hashrate  # noqa: SLF001 - see docstring
    miner._altiwatch_luxos = True  # noqa: SLF001 - our marker, for idempotence


async def atm_enabled(miner: Any) -> bool | None:
    """LuxOS's ATM switch as pyasic reads it (``atm`` RPC); None when unknown or not LuxOS."""
    if not is_luxos(miner):
        return None
    try:
        value = await miner.atm_enabled()
    except (APIError, OSError):
        return None
    return value if isinstance(value, bool) else None
