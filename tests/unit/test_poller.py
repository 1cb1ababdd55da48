"""The poller: fixed-rate schedule, isolation of hanging miners, backoff, tiers, first cycle.

Every test runs on a virtual clock (:mod:`tests.support.virtual_time`): the fake source answers
after ``asyncio.sleep`` and the poller schedules with ``loop.time()``, so the schedule is observed
exactly, with no real waiting and no slack for load. Figures measured in real time (lateness and
drift under load, the spread of a fleet's first cycle) are in ``tests/benchmarks/poll_schedule.py``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import random
from typing import TYPE_CHECKING, Any

import pytest

from agent.fleet_state import FleetState
from agent.poller import IDENTITY_RETRIES, Poller, PollOutcome, Schedule
from collectors.snapshot import Identity, MinerSnapshot, Tier
from collectors.source import CollectorError, FailureReason, MinerTarget
from tests.support.virtual_time import run_virtual

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine


class FakeSource:
    """A MinerSource (a boundary we own) with per-address behaviour."""

    def __init__(
        self,
        *,
        hang: frozenset[str] = frozenset(),
        down: frozenset[str] = frozenset(),
        timeout_s: float = 0.3,
        delay_s: float = 0.0,
        bad_slow: frozenset[str] = frozenset(),
        anonymous: frozenset[str] = frozenset(),
    ) -> None:
        """``hang`` never answer (cut at ``timeout_s``), ``down`` are refused, others take ``delay_s``.

        ``anonymous`` answer without MAC or serial (a web API that failed); others have a MAC.
        """
        self.anonymous = anonymous
        self.delay_s = delay_s
        self.bad_slow = bad_slow
        self.hang = hang
        self.down = down
        self.timeout_s = timeout_s
        self.calls: list[tuple[str, Tier, float]] = []

    async def fetch(self, target: MinerTarget, tier: Tier) -> MinerSnapshot:
        """Answer, refuse, or hang until the deadline."""
        loop = asyncio.get_running_loop()
        self.calls.append((target.address, tier, loop.time()))
        if target.address in self.down:
            raise CollectorError(FailureReason.REFUSED, "refused")
        if target.address in self.bad_slow and tier is Tier.SLOW:
            raise CollectorError(FailureReason.PARSE_ERROR, "garbage")
        if target.address in self.hang:
            await asyncio.sleep(self.timeout_s)
            raise CollectorError(FailureReason.TIMEOUT, "timeout")
        await asyncio.sleep(self.delay_s)
        mac = None if target.address in self.anonymous else f"mac-{target.address}"
        return MinerSnapshot(
            address=target.address,
            collected_at=0.0,
            tier=tier,
            identity=Identity(mac=mac),
            hashrate_hs=1e12,
        )


def make(
    source: FakeSource,
    addresses: list[str],
    *,
    interval: float = 0.2,
    concurrency: int = 10,
    **kw: float,
) -> tuple[Poller, FleetState, list[PollOutcome]]:
    """A poller over ``addresses`` recording its outcomes."""
    fleet = FleetState()
    for address in addresses:
        fleet.add("s", MinerTarget(address=address), now=0)
    outcomes: list[PollOutcome] = []
    schedule = Schedule(
        interval_s=interval,
        slow_interval_s=kw.get("slow", 10.0),
        jitter_ratio=0.0,
        spread_s=kw.get("spread", 0.0),
        backoff_max_s=kw.get("backoff_max", 5.0),
    )
    poller = Poller(
        source,
        fleet,
        schedule=schedule,
        concurrency=concurrency,
        sink=outcomes.append,
        rng=random.Random(1),  # noqa: S311 - test jitter
    )
    return poller, fleet, outcomes


def virtual(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test on a fresh virtual-clock loop."""

    @functools.wraps(test)
    def run() -> None:
        run_virtual(test())

    return run


async def until(condition: Callable[[], bool], *, within: float = 60.0) -> None:
    """Wait (virtual time) until ``condition()`` holds; fail after ``within`` virtual seconds."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - a condition on a fake's call log, deadline above
            await asyncio.sleep(0.001)


async def calls_reach(source: FakeSource, count: int) -> None:
    """Wait until the source saw ``count`` fetches."""
    await until(lambda: len(source.calls) >= count)


async def run_until(poller: Poller, addresses: list[str], at: float) -> None:
    """Run every miner's loop from now until virtual time ``at`` (exact), then stop them."""
    tasks = [asyncio.create_task(poller.run_miner("s", MinerTarget(address=a))) for a in addresses]
    try:
        await asyncio.sleep(at - asyncio.get_running_loop().time())  # the clock jumps there
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def now() -> float:
    """The virtual clock."""
    return asyncio.get_running_loop().time()


def grid(t0: float, interval: float, slots: int) -> list[float]:
    """The first ``slots`` slot times of a fixed-rate grid starting at ``t0``."""
    return [t0 + k * interval for k in range(slots)]


@virtual
async def test_poller_first_poll_is_slow_then_fast():
    """The slow tier runs first (identity before telemetry), then the fast tier, in one slot."""
    source = FakeSource()
    poller, _, _ = make(source, ["a"])
    t0 = now()
    await run_until(poller, ["a"], t0 + 0.1)
    assert [(tier, t) for _, tier, t in source.calls] == [(Tier.SLOW, t0), (Tier.FAST, t0)]


@virtual
async def test_poller_fixed_rate_does_not_drift():
    """Fast polls start exactly on the k·interval grid: 60 ms polls push no later slot back."""
    source = FakeSource(delay_s=0.06)
    poller, _, _ = make(source, ["a"], interval=0.2)
    t0 = now()
    await run_until(poller, ["a"], t0 + 1.5)
    starts = [t for _, tier, t in source.calls if tier is Tier.FAST]
    # Slot 0 is the slow poll (60 ms) then the fast one; every later slot is on the grid.
    assert starts[0] == pytest.approx(t0 + 0.06)
    assert starts[1:] == pytest.approx(grid(t0, 0.2, 8)[1:])


@virtual
async def test_poller_hanging_miner_never_delays_another():
    """A miner that hangs until its deadline does not delay the healthy miner's polls at all."""
    source = FakeSource(hang=frozenset({"bad"}), timeout_s=0.5)
    poller, _, _ = make(source, ["bad", "good"], interval=0.2, concurrency=1 + 1)
    t0 = now()
    await run_until(poller, ["bad", "good"], t0 + 1.1)
    good = [t for a, tier, t in source.calls if a == "good" and tier is Tier.FAST]
    assert good == pytest.approx(grid(t0, 0.2, 6))


@virtual
async def test_poller_records_failures_as_data():
    """A refused miner is down with its reason, and the sink sees the failure."""
    source = FakeSource(down=frozenset({"a"}))
    poller, fleet, outcomes = make(source, ["a"])
    task = asyncio.create_task(poller.run_miner("s", MinerTarget(address="a")))
    try:
        await until(lambda: bool(outcomes))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    record = fleet.get("a")
    assert record is not None
    assert (record.up, record.last_error) == (False, "refused")
    assert outcomes[0].snapshot is None
    assert outcomes[0].reason == "refused"


@virtual
async def test_poller_backs_off_unreachable_miner():
    """A miner that keeps failing is polled less and less often (on its grid), not every interval."""
    source = FakeSource(down=frozenset({"a"}))
    poller, _, _ = make(source, ["a"], interval=0.1, backoff_max=10.0)
    t0 = now()
    await run_until(poller, ["a"], t0 + 1.6)
    attempts = [t for _, _, t in source.calls]
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(attempts)]
    assert len(attempts) < 16  # one per slot without backoff
    assert gaps == sorted(gaps), f"gaps between attempts shrank: {gaps}"
    assert gaps[-1] >= 4 * 0.1, f"no backoff: {gaps}"
    assert all(round((t - t0) / 0.1, 6) % 1 == 0 for t in attempts), "attempts left the grid"


@virtual
async def test_poller_spreads_first_polls_over_the_interval():
    """With a spread, miners start at different phases within the interval, not in one burst."""
    source = FakeSource()
    addresses = [f"m{i}" for i in range(20)]
    poller, _, _ = make(source, addresses, interval=1.0, spread=1.0)
    t0 = now()
    await run_until(poller, addresses, t0 + 1.0)
    first = {a: t - t0 for a, _, t in reversed(source.calls)}
    assert len(first) == 20, "every miner starts within its first interval"
    assert all(0.0 <= offset < 1.0 for offset in first.values())
    assert len(set(first.values())) == 20, "two miners started at the same instant"
    assert max(first.values()) - min(first.values()) > 0.5


@virtual
async def test_poller_unreachable_slot_is_one_slow_attempt_then_identity_first_on_return():
    """While a miner is unreachable each slot is one (slow) attempt; back, slow runs first."""
    source = FakeSource(down=frozenset({"a"}))
    poller, fleet, outcomes = make(source, ["a"], interval=0.1, backoff_max=0.1)
    task = asyncio.create_task(poller.run_miner("s", MinerTarget(address="a")))
    try:
        await calls_reach(source, 3)
        assert {tier for _, tier, _ in source.calls} == {Tier.SLOW}
        assert all(o.tier is Tier.FAST and o.snapshot is None for o in outcomes)
        record = fleet.get("a")
        assert record is not None
        assert record.up is False
        source.down = frozenset()
        seen = len(source.calls)
        await calls_reach(source, seen + 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [tier for _, tier, _ in source.calls[seen : seen + 2]] == [Tier.SLOW, Tier.FAST]


@virtual
async def test_poller_reachable_miner_with_broken_slow_tier_still_gets_fast_polls():
    """A miner whose slow tier answers garbage is still polled for telemetry every slot."""
    source = FakeSource(bad_slow=frozenset({"a"}))
    poller, fleet, _ = make(source, ["a"], interval=0.1)
    t0 = now()
    await run_until(poller, ["a"], t0 + 0.55)
    fast = [t for _, tier, t in source.calls if tier is Tier.FAST]
    assert fast == pytest.approx(grid(t0, 0.1, 6))
    record = fleet.get("a")
    assert record is not None
    assert record.up is True


def test_poller_backoff_grows_and_is_capped():
    """Backoff is 0 for one failure, then grows exponentially up to backoff_max_s."""
    poller, _, _ = make(FakeSource(), [], interval=10.0, backoff_max=60.0)
    assert poller.backoff_s(1) == 0
    assert 10.0 <= poller.backoff_s(2) <= 11.0
    assert 20.0 <= poller.backoff_s(3) <= 21.0
    assert poller.backoff_s(10) == 60.0


@virtual
async def test_poller_first_cycle_completes_when_every_miner_polled():
    """first_cycle is set once every expected miner finished its first poll (one up, one down)."""
    source = FakeSource(down=frozenset({"b"}))
    poller, _, _ = make(source, ["a", "b"])
    poller.expect({"a", "b"})
    assert not poller.first_cycle.is_set()
    tasks = [asyncio.create_task(poller.run_miner("s", MinerTarget(address=a))) for a in "ab"]
    try:
        async with asyncio.timeout(60):
            await poller.first_cycle.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert {a for a, _, _ in source.calls} == {"a", "b"}


@virtual
async def test_poller_spreads_slow_tier_over_the_slow_interval():
    """Miners started together do not all repeat their slow tier in the same fast interval."""
    source = FakeSource()
    addresses = [f"m{i}" for i in range(20)]
    poller, _, _ = make(source, addresses, interval=0.1, slow=2.0, spread=0.0)
    t0 = now()
    await run_until(poller, addresses, t0 + 2.05)
    slow_at: dict[str, list[float]] = {}
    for address, tier, t in source.calls:
        if tier is Tier.SLOW:
            slow_at.setdefault(address, []).append(t)
    second = sorted(times[1] for times in slow_at.values() if len(times) > 1)
    assert len(second) == 20, "every miner repeats its slow tier within the slow interval"
    # Unspread, every second slow poll would fall within one 0.1 s fast interval.
    assert second[-1] - second[0] > 0.5


@virtual
async def test_poller_repeats_a_slow_poll_without_identity_a_few_slots_only():
    """A slow poll without MAC or serial is read again in the next slots, then on the slow interval."""
    source = FakeSource(anonymous=frozenset({"a"}))
    poller, _, _ = make(source, ["a", "b"], interval=0.1, slow=100.0)
    t0 = now()
    await run_until(poller, ["a", "b"], t0 + 1.05)
    tiers = {a: [tier for addr, tier, _ in source.calls if addr == a] for a in ("a", "b")}
    assert tiers["b"] == [Tier.SLOW] + [Tier.FAST] * 11
    expected = [Tier.SLOW, Tier.FAST] * (1 + IDENTITY_RETRIES) + [Tier.FAST] * 7
    assert tiers["a"] == expected
