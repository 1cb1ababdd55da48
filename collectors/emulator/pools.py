"""The pools an emulated miner mines on: share counters that move with its hashrate, and faults.

Shares are found at ``hashrate / (difficulty × 2³²)`` per second (stratum difficulty
`DIFFICULTY`, a vardiff a pool would settle on for a ~100 TH/s miner: about 1.5 shares/s) and
credited to the active pool: accepted, rejected (`BASE_REJECTED` of them when healthy) and stale
(`BASE_STALE`). Counters are the firmware's own since its mining software started: a reboot
resets them, as cgminer and BOSminer do.

Faults (control API or scenario):

* ``pool_latency``: a slow or lossy uplink; ``factor`` (default 0.06) of the shares come back
  bad, two thirds stale and one third rejected;
* ``pool_down``: pool ``pool`` (default 0) is dead: not alive, its get-work failures count up
  every `RETRY_S`, and the miner mines on the next alive pool (cgminer's failover); cleared,
  the miner returns to the first alive pool;
* ``pool_hijack``: pool ``pool`` (default 0) gets ``url`` and ``worker`` replaced (defaults:
  `HIJACK_URL`, `HIJACK_WORKER`), as malware or a leaked password does; cleared, the original
  pool is back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from collectors.emulator.scenario import FaultSpec

POOL_URLS = (
    "stratum+tcp://btc.emulated-pool.example:3333",
    "stratum+tcp://btc-backup.emulated-pool.example:443",
)
DIFFICULTY = 16384
BASE_REJECTED = 0.002
BASE_STALE = 0.001
LATENCY_BAD = 0.06
RETRY_S = 30.0
HIJACK_URL = "stratum+tcp://hijacked-pool.example:3333"
HIJACK_WORKER = "thief.rig1"
_HASHES_PER_DIFF1 = 2**32


@dataclass(slots=True)
class _Counters:
    accepted: float = 0.0
    rejected: float = 0.0
    stale: float = 0.0
    get_failures: float = 0.0
    remote_failures: float = 0.0


class PoolState:
    """The pool list of one miner and its counters."""

    def __init__(self, worker: str, boot_time: float) -> None:
        """Two pools (primary, backup) for ``worker``, counters zero at ``boot_time``."""
        self.worker = worker
        self.boot_time = boot_time
        self.counters = [_Counters() for _ in POOL_URLS]

    def _down(self, faults: Mapping[str, FaultSpec]) -> int | None:
        fault = faults.get("pool_down")
        return None if fault is None else (fault.pool or 0)

    def active_index(self, faults: Mapping[str, FaultSpec]) -> int | None:
        """The pool being mined on: the first one alive (None when none is)."""
        down = self._down(faults)
        return next((i for i in range(len(POOL_URLS)) if i != down), None)

    def step(
        self, dt: float, hashrate_hs: float, faults: Mapping[str, FaultSpec], boot_time: float
    ) -> None:
        """Advance ``dt`` simulated seconds at ``hashrate_hs``; a new ``boot_time`` resets."""
        if boot_time != self.boot_time:
            self.boot_time = boot_time
            self.counters = [_Counters() for _ in POOL_URLS]
        if dt <= 0:
            return
        down = self._down(faults)
        if down is not None and 0 <= down < len(self.counters):
            self.counters[down].get_failures += dt / RETRY_S
        active = self.active_index(faults)
        if active is None or hashrate_hs <= 0:
            return
        shares = dt * hashrate_hs / (DIFFICULTY * _HASHES_PER_DIFF1)
        latency = faults.get("pool_latency")
        bad = (latency.factor or LATENCY_BAD) if latency is not None else 0.0
        stale = BASE_STALE + bad * 2 / 3
        rejected = BASE_REJECTED + bad / 3
        c = self.counters[active]
        c.stale += shares * stale
        c.rejected += shares * rejected
        c.accepted += shares * (1.0 - stale - rejected)

    def view(self, faults: Mapping[str, FaultSpec]) -> list[dict[str, Any]]:
        """Per pool as the firmware reports it: url, worker, alive, active and counters."""
        down = self._down(faults)
        active = self.active_index(faults)
        hijack = faults.get("pool_hijack")
        out = []
        for i, (configured, c) in enumerate(zip(POOL_URLS, self.counters, strict=True)):
            url, worker = configured, self.worker
            if hijack is not None and (hijack.pool or 0) == i:
                url = hijack.url or HIJACK_URL
                worker = hijack.worker or HIJACK_WORKER
            out.append(
                {
                    "index": i,
                    "url": url,
                    "worker": worker,
                    "alive": i != down,
                    "active": i == active,
                    "accepted": int(c.accepted),
                    "rejected": int(c.rejected),
                    "stale": int(c.stale),
                    "get_failures": int(c.get_failures),
                    "remote_failures": int(c.remote_failures),
                }
            )
        return out
