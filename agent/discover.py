"""Miner discovery: scan a CIDR range with pyasic and describe every miner that answers.

Each address gets a quick TCP probe on the miner ports (80, 443, 4028, 50051); only addresses
that accept a connection go through pyasic's detection (``pyasic.get_miner``), then identity
(MAC, hostname, firmware) is read. ``concurrency`` workers share the address list and every
address has a deadline, so a hanging host costs at most ``timeout_s`` of one worker. Used by
``altiwatch discover`` and by the agent's periodic discovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import structlog

from agent.config import parse_cidr
from agent.errors import DiscoveryError

if TYPE_CHECKING:
    from collections.abc import Callable

log = structlog.get_logger(__name__)

PROBE_PORTS = (80, 4028, 443, 50051)
DEFAULT_CONCURRENCY = 256
DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class DiscoveredMiner:
    """One miner found by a scan; unknown fields are None."""

    address: str
    make: str | None
    model: str | None
    firmware: str | None
    mac: str | None
    hostname: str | None

    def as_dict(self) -> dict[str, str | None]:
        """JSON-ready mapping (the ``--json`` output of ``altiwatch discover``)."""
        return asdict(self)


def hosts_of(cidr: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses to scan in ``cidr`` (host addresses; a /32 or /31 keeps all)."""
    try:
        network = parse_cidr(cidr)
    except ValueError as exc:
        raise DiscoveryError(str(exc)) from None
    hosts: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = list(network.hosts())
    return hosts or [network.network_address]


async def _accepts_connection(address: str, timeout_s: float) -> bool:
    async def probe(port: int) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                _reader, writer = await asyncio.open_connection(address, port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    results = await asyncio.gather(*(probe(port) for port in PROBE_PORTS))
    return any(results)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


async def identify(address: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> DiscoveredMiner | None:
    """Detect the miner at ``address`` with pyasic; None when nothing miner-like answers."""
    import pyasic  # noqa: PLC0415 - heavy import, only needed when scanning

    if not await _accepts_connection(address, min(timeout_s, 2.0)):
        return None
    try:
        async with asyncio.timeout(timeout_s):
            miner = await pyasic.get_miner(address)
            if miner is None:
                return None
            identity: tuple[Any, ...] = await asyncio.gather(
                miner.get_mac(), miner.get_hostname(), miner.get_fw_ver(), return_exceptions=True
            )
    except TimeoutError:
        log.info("discover_timeout", address=address, timeout_s=timeout_s)
        return None
    except Exception as exc:  # noqa: BLE001 - pyasic's detection raises anything on garbage replies
        log.info("discover_failed", address=address, error=type(exc).__name__, detail=str(exc))
        return None
    mac, hostname, firmware = (None if isinstance(v, BaseException) else v for v in identity)
    return DiscoveredMiner(
        address=address,
        make=_text(getattr(miner, "make", None)),
        model=_text(getattr(miner, "raw_model", None)) or _text(getattr(miner, "model", None)),
        firmware=_text(firmware) or _text(getattr(miner, "firmware", None)),
        mac=_text(mac),
        hostname=_text(hostname),
    )


async def scan(
    cidr: str,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    on_progress: Callable[[int], None] | None = None,
) -> list[DiscoveredMiner]:
    """Scan every host of ``cidr``; return the miners found, sorted by address.

    ``on_progress(n)`` is called with the number of addresses finished since the last call.
    Raises ``DiscoveryError`` for an invalid range or one larger than a /16.
    """
    if concurrency < 1:
        msg = "concurrency must be at least 1"
        raise DiscoveryError(msg)
    hosts = hosts_of(cidr)
    pending = iter(hosts)  # shared by the workers: at most ``concurrency`` tasks, even for a /16
    found: list[DiscoveredMiner] = []

    async def worker() -> None:
        for host in pending:
            miner = await identify(str(host), timeout_s=timeout_s)
            if miner is not None:
                found.append(miner)
            if on_progress is not None:
                on_progress(1)

    async with asyncio.TaskGroup() as group:
        for index in range(min(concurrency, len(hosts))):
            group.create_task(worker(), name=f"discover[{cidr}#{index}]")
    found.sort(key=lambda m: ipaddress.ip_address(m.address))
    log.info("discover_done", cidr=cidr, scanned=len(hosts), found=len(found))
    return found
