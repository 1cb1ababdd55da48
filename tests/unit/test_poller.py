"""The poller: fixed-rate schedule, isolation of hanging miners, backoff, tiers, first cycle."""

import asyncio
import random

import pytest

from agent.fleet_state import FleetState
from agent.poller import IDENTITY_RETRIES, Poller, PollOutcome, Schedule
from collectors.snapshot import Identity, MinerSnapshot, Tier
from collectors.source import CollectorError, FailureReason, MinerTarget


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


async def calls_reach(source: FakeSource, count: int) -> None:
    """Wait (under the caller's deadline) until the source saw ``count`` fetches."""
    while len(source.calls) < count:  # noqa: ASYNC110 - a condition polled under a deadline
        await asyncio.sleep(0.02)


async def run_for(poller: Poller, addresses: list[str], seconds: float) -> None:
    """Run every miner's loop for ``seconds``."""
    async with asyncio.timeout(seconds + 5):
        tasks = [
            asyncio.create_task(poller.run_miner("s", MinerTarget(address=a))) for a in addresses
        ]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_poller_first_poll_is_slow_then_fast():
    """The slow tier runs first (identity before telemetry), then the fast tier."""
    source = FakeSource()
    poller, _, _ = make(source, ["a"])
    await run_for(poller, ["a"], 0.1)
    assert [tier for _, tier, _ in source.calls[:2]] == [Tier.SLOW, Tier.FAST]


async def test_poller_fixed_rate_does_not_drift():
    """Fast polls start on the k·interval grid: 60 ms polls do not push later slots back."""
    source = FakeSource(delay_s=0.06)
    poller, _, _ = make(source, ["a"], interval=0.2)
    await run_for(poller, ["a"], 1.5)
    starts = [t for _, tier, t in source.calls if tier is Tier.FAST]
    assert len(starts) >= 6
    # A drifting scheduler would be ≥ 5 × 60 ms late by the 6th slot; allow 150 ms of load.
    assert starts[5] - starts[0] == pytest.approx(5 * 0.2, abs=0.15)


async def test_poller_hanging_miner_never_delays_another():
    """A miner that hangs until its deadline does not delay the healthy miner's polls."""
    source = FakeSource(hang=frozenset({"bad"}), timeout_s=0.5)
    poller, _, _ = make(source, ["bad", "good"], interval=0.2, concurrency=1 + 1)
    await run_for(poller, ["bad", "good"], 1.1)
    good = [t for a, tier, t in source.calls if a == "good" and tier is Tier.FAST]
    assert len(good) >= 4  # 6 slots; a delayed one would be cut to 1 per 0.5 s hang


async def test_poller_records_failures_as_data():
    """A refused miner is down with its reason, and the sink sees the failure."""
    source = FakeSource(down=frozenset({"a"}))
    poller, fleet, outcomes = make(source, ["a"])
    await run_for(poller, ["a"], 0.1)
    record = fleet.get("a")
    assert record is not None
    assert (record.up, record.last_error) == (False, "refused")
    assert outcomes[0].snapshot is None
    assert outcomes[0].reason == "refused"


async def test_poller_backs_off_unreachable_miner():
    """A miner that keeps failing is polled less and less often, not every interval."""
    source = FakeSource(down=frozenset({"a"}))
    poller, _, _ = make(source, ["a"], interval=0.1, backoff_max=10.0)
    await run_for(poller, ["a"], 1.6)
    attempts = [t for _, _, t in source.calls]
    assert 3 <= len(attempts) <= 8  # 16 slots without backoff


async def test_poller_spreads_first_polls_over_the_interval():
    """With a spread, miners start at different phases within the interval, not in one burst."""
    source = FakeSource()
    addresses = [f"m{i}" for i in range(20)]
    poller, _, _ = make(source, addresses, interval=1.0, spread=1.0)
    await run_for(poller, addresses, 0.5)
    first = {a: t for a, _, t in reversed(source.calls)}
    assert 3 <= len(first) <= 17  # about half of them started in the first half interval


async def test_poller_unreachable_slot_is_one_slow_attempt_then_identity_first_on_return():
    """While a miner is unreachable each slot is one (slow) attempt; back, slow runs first."""
    source = FakeSource(down=frozenset({"a"}))
    poller, fleet, outcomes = make(source, ["a"], interval=0.1, backoff_max=0.1)
    task = asyncio.create_task(poller.run_miner("s", MinerTarget(address="a")))
    try:
        async with asyncio.timeout(10):
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


async def test_poller_reachable_miner_with_broken_slow_tier_still_gets_fast_polls():
    """A miner whose slow tier answers garbage is still polled for telemetry every slot."""
    source = FakeSource(bad_slow=frozenset({"a"}))
    poller, fleet, _ = make(source, ["a"], interval=0.1)
    await run_for(poller, ["a"], 0.55)
    fast = [t for _, tier, t in source.calls if tier is Tier.FAST]
    assert len(fast) >= 4
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


async def test_poller_first_cycle_completes_when_every_miner_polled():
    """first_cycle is set once every expected miner finished its first poll."""
    source = FakeSource(down=frozenset({"b"}))
    poller, _, _ = make(source, ["a", "b"])
    poller.expect({"a", "b"})
    assert not poller.first_cycle.is_set()
    await run_for(poller, ["a", "b"], 0.1)
    assert poller.first_cycle.is_set()


async def test_poller_spreads_slow_tier_over_the_slow_interval():
    """Miners started together do not all repeat their slow tier in the same fast interval."""
    source = FakeSource()
    addresses = [f"m{i}" for i in range(20)]
    poller, _, _ = make(source, addresses, interval=0.1, slow=2.0, spread=0.0)
    await run_for(poller, addresses, 2.4)
    slow_at: dict[str, list[float]] = {}
    for address, tier, t in source.calls:
        if tier is Tier.SLOW:
            slow_at.setdefault(address, []).append(t)
    second = sorted(times[1] for times in slow_at.values() if len(times) > 1)
    assert len(second) >= 10  # most miners had a second slow poll within 2.4 s
    # Unspread, every second slow poll would fall within one 0.1 s fast interval.
    assert second[-1] - second[0] > 0.5


async def test_poller_repeats_a_slow_poll_without_identity_a_few_slots_only():
    """A slow poll without MAC or serial is read again in the next slots, then on the slow interval."""
    source = FakeSource(anonymous=frozenset({"a"}))
    poller, _, _ = make(source, ["a", "b"], interval=0.1, slow=100.0)
    await run_for(poller, ["a", "b"], 1.05)
    tiers = {a: [tier for addr, tier, _ in source.calls if addr == a] for a in ("a", "b")}
    assert tiers["b"][:3] == [Tier.SLOW, Tier.FAST, Tier.FAST]
    assert tiers["b"].count(Tier.SLOW) == 1
    expected = [Tier.SLOW, Tier.FAST] * (1 + IDENTITY_RETRIES) + [Tier.FAST]
    assert tiers["a"][: len(expected)] == expected
    assert tiers["a"].count(Tier.SLOW) == 1 + IDENTITY_RETRIES
