"""The alarm engine gets one observation per poll slot (the fast poll), whatever the slow tier did.

Real Poller, real AgentService wiring (``_on_outcome`` → ``alarm_tick`` → engine); the miner is a
fake ``MinerSource`` (a boundary we own). Counting per slot matters: R7 counts consecutive
failed polls, so a slot observed twice would raise "offline" in half the time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import TYPE_CHECKING, Any

import yaml

from agent.config import load_config
from agent.notify import Notifier
from agent.service import AgentService
from collectors.snapshot import MinerSnapshot, Tier
from collectors.source import CollectorError, FailureReason

if TYPE_CHECKING:
    from pathlib import Path

    from agent.alarms.engine import Observation
    from collectors.source import MinerTarget

SLOTS = 6
ADDRESS = "10.9.9.9"


class FakeMiner:
    """Answers each tier as told: a snapshot, or a CollectorError with the given reason."""

    def __init__(self, *, fast: FailureReason | None, slow: FailureReason | None) -> None:
        """``None``: that tier succeeds."""
        self.outcomes = {Tier.FAST: fast, Tier.SLOW: slow}
        self.calls: list[Tier] = []

    async def fetch(self, target: MinerTarget, tier: Tier) -> MinerSnapshot:
        """One poll."""
        self.calls.append(tier)
        reason = self.outcomes[tier]
        if reason is not None:
            raise CollectorError(reason, f"fake {reason.value}")
        return MinerSnapshot(address=target.address, collected_at=time.time(), tier=tier)


def observations_per_slot(tmp_path: Path, miner: FakeMiner) -> list[Observation]:
    """Run the miner's poll loop for ``SLOTS`` slots; the observations the engine got."""
    config = {
        "agent": {"id": "t", "state_dir": str(tmp_path / "state")},
        "sites": [{"name": "site", "altitude_m": 0}],
        "miners": [{"address": ADDRESS}],
        # slow tier due every slot; no backoff: every slot polls
        "polling": {"interval_s": 0.2, "slow_interval_s": 0.2, "timeout_s": 0.1},
    }
    path = tmp_path / "altiwatch.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    service = AgentService(load_config(path, env={}), source=miner, notifier=Notifier.from_env({}))
    service.poller.schedule = dataclasses.replace(
        service.poller.schedule, jitter_ratio=0.0, backoff_max_s=0.2, spread_s=0.0
    )
    seen: list[Observation] = []
    evaluate = service.engine.evaluate

    def spy(now: float, observations: Any) -> Any:
        seen.extend(observations)
        return evaluate(now, observations)

    service.engine.evaluate = spy  # type: ignore[method-assign]
    site, target = service.config.targets()[0]

    async def run() -> None:
        service.fleet.add(site.name, target, time.time())
        task = asyncio.create_task(service.poller.run_miner(site.name, target))
        deadline = time.monotonic() + 30
        # every slot starts with a slow poll here (due every slot, or the miner is failing)
        while miner.calls.count(Tier.SLOW) <= SLOTS and time.monotonic() < deadline:  # noqa: ASYNC110 - a condition on a fake's call log, polled with a deadline
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        service.alarm_tick()

    asyncio.run(run())
    slots = miner.calls.count(Tier.SLOW)
    assert slots > SLOTS, f"only {slots} slots polled within 30 s"
    return seen


def test_alarm_observations_one_per_slot_for_a_healthy_miner(tmp_path):
    """Slow and fast poll every slot: only the fast poll reaches the engine."""
    miner = FakeMiner(fast=None, slow=None)
    seen = observations_per_slot(tmp_path, miner)
    assert len(seen) == miner.calls.count(Tier.FAST)
    assert all(o.snapshot is not None and o.snapshot.tier is Tier.FAST for o in seen)


def test_alarm_observations_slow_tier_failure_is_not_an_observation(tmp_path):
    """A reachable miner whose slow tier fails: the slot's observation is the fast success."""
    miner = FakeMiner(fast=None, slow=FailureReason.PARSE_ERROR)
    seen = observations_per_slot(tmp_path, miner)
    assert len(seen) == miner.calls.count(Tier.FAST) > 0
    assert all(o.snapshot is not None for o in seen)


def test_alarm_observations_unreachable_miner_is_one_failure_per_slot(tmp_path):
    """Unreachable: the slot's single (slow) attempt is its one failed observation."""
    miner = FakeMiner(fast=FailureReason.TIMEOUT, slow=FailureReason.TIMEOUT)
    seen = observations_per_slot(tmp_path, miner)
    assert miner.calls.count(Tier.FAST) == 0
    assert len(seen) == len(miner.calls)
    assert all(o.snapshot is None and o.failure_reason == "timeout" for o in seen)


def test_alarm_observations_auth_failure_is_one_failure_per_slot(tmp_path):
    """Both tiers refused (auth): one failed observation per slot, from the fast poll."""
    miner = FakeMiner(fast=FailureReason.AUTH, slow=FailureReason.AUTH)
    seen = observations_per_slot(tmp_path, miner)
    assert len(seen) == miner.calls.count(Tier.FAST) > 0
    assert all(o.failure_reason == "auth" for o in seen)
