"""Pool readings: credential-free pool URLs and the counters pyasic reads but does not keep.

pyasic 0.79.0 parses each family's pool list (``DataOptions.POOLS``) into ``PoolMetrics``:
accepted, rejected, get/remote failures, active, alive, url, user. It drops two things the
same reply holds, which the agent needs for share health (rule R12):

* **stale shares**: cgminer-style firmware (stock Antminer, VNish, Whatsminer v2, Avalon and
  the Braiins OS+ RPC) sends ``Stale`` in every ``POOLS`` entry; Braiins OS+ gRPC sends
  ``stats.staleShares`` (omitted when 0, as proto3 JSON omits defaults);
* **which counters are real**: pyasic's Braiins OS+ gRPC parser writes 0 for get and remote
  failures, which that firmware does not report at all (they are unknown, not 0).

`capture_raw_pools` wraps one miner object's ``_get_pools`` so the raw argument pyasic hands it
(the reply already fetched for this poll: no extra request) is kept next to pyasic's own
result; `extras` reads the stale counts from it, aligned with pyasic's list by position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence


def public_url(url: str | None) -> str | None:
    """``url`` without user info, query or fragment: ``s+tcp://u:p@h:3333?x`` → ``s+tcp://h:3333``.

    A URL written without a scheme (``pool.example:3333``, as some firmware shows it) keeps
    none. None or blank gives None.
    """
    if url is None:
        return None
    text = url.strip()
    if not text:
        return None
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    rest = rest[:cut]
    netloc, slash, path = rest.partition("/")
    host = netloc.rpartition("@")[2]
    if not host:
        return None
    out = f"{scheme}://{host}" if scheme else host
    return out + (slash + path if path else "")


def _count(value: Any) -> int | None:
    """A share counter as the firmware sent it: a non-negative integer, else None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return int(number)


@dataclass(frozen=True, slots=True)
class PoolExtras:
    """What the raw reply says beyond pyasic's ``PoolMetrics`` for one pool (by position)."""

    url: str | None = None
    stale: int | None = None
    failures_known: bool = True


@dataclass(slots=True)
class RawPools:
    """The raw pool reply of a miner's last poll that read pools (set by the wrapper)."""

    rpc: dict[str, Any] | None = None
    grpc: dict[str, Any] | None = None

    def clear(self) -> None:
        """Forget the previous poll's reply."""
        self.rpc = self.grpc = None


def capture_raw_pools(miner: Any) -> RawPools:
    """Keep the raw reply pyasic passes to ``miner._get_pools``; returns the holder.

    pyasic's ``get_data`` looks the data function up on the instance, so an instance attribute
    wraps it for this miner only; pyasic's parsing runs unchanged. Idempotent.
    """
    existing = getattr(miner, "_altiwatch_raw_pools", None)
    if isinstance(existing, RawPools):
        return existing
    holder = RawPools()
    original = miner._get_pools  # noqa: SLF001 - pyasic's data function for POOLS

    async def _get_pools(**kwargs: Any) -> Any:
        rpc = kwargs.get("rpc_pools")
        grpc = kwargs.get("grpc_pool_groups")
        holder.rpc = rpc if isinstance(rpc, dict) else None
        holder.grpc = grpc if isinstance(grpc, dict) else None
        try:
            return await original(**kwargs)
        except ValueError:
            # pyasic's PoolUrl raises on a scheme it does not know ("stratum+tls://", "ssl://"),
            # which would fail the whole slow poll: a hijacked pool would blind the slow tier.
            if holder.rpc is None:
                raise
            return cgminer_pool_metrics(holder.rpc)

    miner._get_pools = _get_pools  # noqa: SLF001 - see docstring
    miner._altiwatch_raw_pools = holder  # noqa: SLF001 - our marker, for idempotence
    return holder


def _rpc_extras(reply: dict[str, Any]) -> list[PoolExtras] | None:
    """Cgminer-style ``POOLS`` entries: ``URL`` and ``Stale``."""
    entries = reply.get("POOLS")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return None
    return [
        PoolExtras(
            url=public_url(url) if isinstance(url := entry.get("URL"), str) else None,
            stale=_count(entry.get("Stale")),
        )
        for entry in entries
    ]


def _grpc_extras(reply: dict[str, Any]) -> list[PoolExtras] | None:
    """Braiins OS+ pool groups: ``stats.staleShares`` (absent = 0); no failure counters."""
    groups = reply.get("poolGroups")
    if not isinstance(groups, list):
        return None
    out: list[PoolExtras] = []
    for group in groups:
        listed = group.get("pools", []) if isinstance(group, dict) else None
        if not isinstance(listed, list) or not all(isinstance(p, dict) for p in listed):
            return None
        for pool in listed:
            stats = pool.get("stats")
            out.append(
                PoolExtras(
                    url=public_url(url) if isinstance(url := pool.get("url"), str) else None,
                    stale=_count(stats.get("staleShares", 0)) if isinstance(stats, dict) else None,
                    failures_known=False,
                )
            )
    return out


def cgminer_pool_metrics(reply: dict[str, Any]) -> list[Any]:
    """A cgminer ``POOLS`` reply as pyasic's ``PoolMetrics``, with ``url`` None (see extras)."""
    from pyasic.data.pools import PoolMetrics  # noqa: PLC0415 - only on pyasic's failure path

    entries = reply.get("POOLS")
    return [
        PoolMetrics(
            url=None,
            accepted=_count(entry.get("Accepted")),
            rejected=_count(entry.get("Rejected")),
            get_failures=_count(entry.get("Get Failures")),
            remote_failures=_count(entry.get("Remote Failures")),
            active=entry.get("Stratum Active")
            if isinstance(entry.get("Stratum Active"), bool)
            else None,
            alive=entry.get("Status") == "Alive",
            user=entry.get("User") if isinstance(entry.get("User"), str) else None,
            index=_count(entry.get("POOL")),
        )
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict)
    ]


def extras(raw: RawPools | None, count: int) -> Sequence[PoolExtras] | None:
    """Per-pool extras of the raw reply, or None when it does not line up with ``count`` pools."""
    if raw is None:
        return None
    if raw.rpc is not None:
        out = _rpc_extras(raw.rpc)
    elif raw.grpc is not None:
        out = _grpc_extras(raw.grpc)
    else:
        return None
    return out if out is not None and len(out) == count else None
