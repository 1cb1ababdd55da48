"""Scheduling: one fixed-rate, jittered polling loop per miner under a global concurrency bound.

Each miner's polls are due at ``t0 + k·interval + jitter_k`` (``t0`` a random phase that spreads
the fleet over the interval, ``jitter_k`` uniform in ``[0, jitter_ratio·interval)``): the
schedule never drifts with poll durations. The slow tier
(identity, pools, errors) runs first and then every ``slow_interval``; the fast tier every
interval. A poll that overruns its next slot skips the slots it missed (counted). A miner that
keeps failing backs off exponentially (tenacity's ``wait_exponential_jitter``, capped at
``backoff_max_s``) but stays on its grid. Each poll holds one slot of the shared semaphore
only while it runs, and is bounded by the source's own deadline, so a hanging or
garbage-speaking miner never delays another.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from tenacity import AsyncRetrying, RetryCallState, wait_exponential_jitter

from collectors.snapshot import MinerSnapshot, Tier
from collectors.source import CollectorError, FailureReason

if TYPE_CHECKING:
    from collections.abc import Callable

    from agent.fleet_state import FleetState
    from agent.metrics import AgentMetrics
    from collectors.source import MinerSource, MinerTarget

log = structlog.get_logger("altiwatch.poller")

#: Failures that mean the miner cannot be reached at all (as opposed to answering badly).
UNREACHABLE_REASONS = frozenset(
    {
        FailureReason.TIMEOUT,
        FailureReason.REFUSED,
        FailureReason.RESET,
        FailureReason.UNREACHABLE,
    }
)
#: After a failed slow poll of a reachable miner, retry it after this many fast intervals.
SLOW_RETRY_SLOTS = 5
#: A slow poll that came back without MAC or serial is repeated in the next slot, this many
#: times at most: until then the miner's id is its address (``fleet_state.stable_id``).
IDENTITY_RETRIES = 3


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """One finished poll, handed to the sink (alarm engine, MQTT)."""

    site: str
    target: MinerTarget
    tier: Tier
    at: float
    duration_s: float
    snapshot: MinerSnapshot | None
    reason: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Schedule:
    """Polling cadence (from ``polling:`` in the config)."""

    interval_s: float = 30.0
    slow_interval_s: float = 300.0
    jitter_ratio: float = 0.1
    backoff_max_s: float = 300.0
    spread_s: float = 30.0
    """Each miner's grid starts at a random phase within ``min(interval, spread_s)``, so a
    fleet's polls (and its first cycle) are spread evenly instead of starting in one burst."""


class Poller:
    """Runs per-miner loops; results go to the fleet state, metrics and a sink."""

    def __init__(
        self,
        source: MinerSource,
        fleet: FleetState,
        *,
        schedule: Schedule,
        concurrency: int,
        metrics: AgentMetrics | None = None,
        sink: Callable[[PollOutcome], None] | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        """Share one semaphore of ``concurrency`` slots between all miners."""
        self.source = source
        self.fleet = fleet
        self.schedule = schedule
        self.metrics = metrics
        self.sink = sink
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - scheduling jitter, not cryptography
        self._semaphore = asyncio.Semaphore(concurrency)
        self._pending_first: set[str] = set()
        self.first_cycle = asyncio.Event()
        self.skipped_slots = 0
        self.polls_done = 0

    def expect(self, addresses: set[str]) -> None:
        """Declare the miners whose first poll completes the first cycle."""
        self._pending_first = set(addresses)
        if not self._pending_first:
            self.first_cycle.set()

    def _first_done(self, address: str) -> None:
        self._pending_first.discard(address)
        if not self._pending_first:
            self.first_cycle.set()

    def backoff_s(self, failures: int) -> float:
        """Delay before the next poll after ``failures`` consecutive failures (0 for < 2)."""
        if failures < 2:  # noqa: PLR2004 - one failure may be a blip: keep the normal cadence
            return 0.0
        wait = wait_exponential_jitter(
            multiplier=self.schedule.interval_s,
            max=self.schedule.backoff_max_s,
            jitter=self.schedule.interval_s * self.schedule.jitter_ratio,
        )
        state = RetryCallState(AsyncRetrying(), None, (), {})
        state.attempt_number = failures - 1
        return float(wait(state))

    async def run_miner(self, site: str, target: MinerTarget) -> None:
        """Poll ``target`` forever on its fixed-rate grid (until cancelled).

        A slot polls the slow tier first when it is due, and also while the miner is failing
        (so identity is read again before telemetry when it comes back, possibly as other
        hardware). A slow poll without MAC or serial is repeated in the next slots
        (``IDENTITY_RETRIES``), so a web API that failed once does not leave the miner named by
        its address for a whole slow interval. A slow poll that cannot reach the miner stands
        for the slot: the fast poll is skipped rather than waiting for a second timeout.
        """
        loop = asyncio.get_running_loop()
        interval = self.schedule.interval_s
        jitter_span = interval * self.schedule.jitter_ratio
        start = loop.time() + self._rng.uniform(0, min(interval, self.schedule.spread_s))
        k = 0
        slow_due = start
        # The second slow poll comes at a random phase of the slow interval, then every slow
        # interval: otherwise every miner's slow tier falls due within the same fast interval
        # (their starts are spread over one fast interval only) and the fleet bursts every
        # slow_interval_s.
        slow_interval = self.schedule.slow_interval_s
        next_slow_gap = self._rng.uniform(min(interval, slow_interval), slow_interval)
        failures = 0
        identity_retries = 0
        while True:
            scheduled = start + k * interval + self._rng.uniform(0, jitter_span)
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            first_at: float | None = scheduled
            if loop.time() >= slow_due or failures > 0:
                slow = await self.poll_once(site, target, Tier.SLOW, scheduled_at=first_at)
                first_at = None
                if slow.snapshot is not None:
                    identity = slow.snapshot.identity
                    if identity.mac is None and identity.serial is None:
                        identity_retries += 1
                    else:
                        identity_retries = 0
                    if 0 < identity_retries <= IDENTITY_RETRIES:
                        slow_due = start + (k + 1) * interval  # the next slot reads it again
                    else:
                        slow_due = start + k * interval + next_slow_gap
                        next_slow_gap = slow_interval
                elif slow.tier is Tier.FAST:  # unreachable: the slot's outcome
                    failures += 1
                    self._after_slot(target.address)
                    k = self._next_slot(k, start, failures)
                    continue
                else:  # reachable but the slow tier failed: retry sooner than a full interval
                    retry = min(self.schedule.slow_interval_s, SLOW_RETRY_SLOTS * interval)
                    slow_due = loop.time() + retry
            fast = await self.poll_once(site, target, Tier.FAST, scheduled_at=first_at)
            failures = 0 if fast.snapshot is not None else failures + 1
            self._after_slot(target.address)
            k = self._next_slot(k, start, failures)

    def _after_slot(self, address: str) -> None:
        self._first_done(address)

    def _next_slot(self, k: int, start: float, failures: int) -> int:
        """The first grid slot not already past, pushed out by backoff; count skipped slots."""
        interval = self.schedule.interval_s
        earliest = asyncio.get_running_loop().time() + self.backoff_s(failures)
        next_k = max(k + 1, int((earliest - start) // interval) + 1)
        if next_k > k + 1 and failures < 2:  # noqa: PLR2004 - see backoff_s
            self.skipped_slots += next_k - k - 1
            self._count_skipped(next_k - k - 1)
        return next_k

    def _count_skipped(self, slots: int) -> None:
        if self.metrics is not None:
            self.metrics.polls_skipped.inc(slots)

    async def poll_once(
        self, site: str, target: MinerTarget, tier: Tier, *, scheduled_at: float | None = None
    ) -> PollOutcome:
        """Run one poll under the semaphore and record it.

        The outcome's tier is FAST for a slow poll that could not reach the miner (it is
        recorded, and handed to the sink, as the slot's failed poll).
        """
        loop = asyncio.get_running_loop()
        async with self._semaphore:
            began = loop.time()
            if scheduled_at is not None and self.metrics is not None:
                self.metrics.poll_lateness.observe(max(0.0, began - scheduled_at))
            snapshot: MinerSnapshot | None = None
            error: CollectorError | None = None
            try:
                snapshot = await self.source.fetch(target, tier)
            except CollectorError as exc:
                error = exc
            duration = loop.time() - began
        now = self._clock()
        self.polls_done += 1
        if self.metrics is not None:
            self.metrics.polls.labels(tier=tier.value).inc()
            self.metrics.poll_duration.labels(tier=tier.value).observe(duration)
        if error is None and snapshot is not None:
            self.fleet.record_success(target.address, snapshot, duration, now)
            outcome = PollOutcome(site, target, tier, now, duration, snapshot)
        else:
            reason = error.reason if error is not None else FailureReason.ERROR
            detail = error.detail if error is not None else "no snapshot"
            if self.metrics is not None:
                self.metrics.poll_errors.labels(reason=reason.value).inc()
            slot_tier = Tier.FAST if reason in UNREACHABLE_REASONS else tier
            record = self.fleet.record_failure(
                target.address, reason.value, detail, duration, now, tier=slot_tier
            )
            if record is not None and record.down_since == now:
                log.info(
                    "miner_down",
                    miner=record.miner_id,
                    address=target.address,
                    reason=reason.value,
                    detail=detail,
                )
            outcome = PollOutcome(
                site, target, slot_tier, now, duration, None, reason.value, detail
            )
        if self.sink is not None:
            self.sink(outcome)
        return outcome
