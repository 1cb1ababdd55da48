"""Misbehaving miners among healthy ones: the agent keeps polling, reports each, stays bounded.

Real parts only: the emulator serves every miner on its own 127.90.x.y address with the real
protocols; the agent is the real ``altiwatch run`` subprocess (or, for the memory bound, the
real ``PyasicSource`` in this process). Faults are injected through the emulator's control API
after the fleet was detected, as on a site where a working miner starts misbehaving.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
import tracemalloc
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collectors.pyasic_source import PyasicSource
from collectors.snapshot import Tier
from collectors.source import CollectorError, FailureReason, MinerTarget
from tests.support.agent import agent_config

if TYPE_CHECKING:
    from tests.support.agent import AgentProcess

HEALTHY = 100
INTERVAL_S = 5.0

#: fault → (emulator fault parameters, reasons the agent may report for it).
#: Several reasons are acceptable where the wire truth allows more than one reading: a reply
#: cut mid-JSON is a parse error to pyasic, or "open but nothing usable" when pyasic swallowed
#: the error and returned an empty MinerData.
BAD: dict[str, tuple[dict[str, Any], set[str]]] = {
    "hang": ({"kind": "hang"}, {"timeout"}),
    "drip": ({"kind": "drip"}, {"timeout"}),
    "garbage": ({"kind": "garbage"}, {"parse_error", "protocol_error"}),
    "truncated": ({"kind": "truncated"}, {"parse_error", "protocol_error"}),
    "reset": ({"kind": "reset"}, {"reset", "protocol_error"}),
    "oversized": ({"kind": "oversized", "bytes": 50_000_000, "port": "rpc"}, {"oversized"}),
    "refuse": ({"kind": "offline"}, {"refused"}),
}


def _scenario(count: int, name: str = "reliability") -> dict[str, Any]:
    return {
        "name": name,
        "site": {"name": "golmud", "altitude_m": 2800},
        "miners": [{"model": "antminer-s19jpro", "count": count, "hostname_prefix": "s19"}],
    }


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Exposition text → {sample name: [(labels, value), ...]}."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def by_address(samples: dict[str, list[tuple[dict[str, str], float]]]) -> dict[str, str]:
    """Address → miner id label, from asic_miner_info."""
    return {
        labels["address"]: labels["miner"]
        for labels, _value in samples.get("asic_miner_info", [])
        if "address" in labels
    }


def per_miner(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str
) -> dict[str, float]:
    """Miner id → value of the (single-series-per-miner) metric ``name``."""
    return {labels["miner"]: value for labels, value in samples.get(name, [])}


def log_events(agent: AgentProcess) -> list[dict[str, Any]]:
    """The agent's JSON log lines as dicts (non-JSON lines skipped)."""
    events = []
    for line in agent.output().splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            events.append(json.loads(line[start:]))
        except json.JSONDecodeError:
            continue
    return events


@pytest.mark.parametrize(
    ("profile", "base"),
    [("antminer-s19jpro", "127.90.0.10"), ("whatsminer-m30s+ve40", "127.90.0.11")],
)
async def test_reliability_oversized_rpc_reply_is_cut_off_not_buffered(
    emulator_factory, profile, base
):
    """A 50 MB RPC reply → CollectorError(oversized), also through re-detection; never buffered.

    Five polls: the first three fail on the cached miner object, then the source detects the
    miner again (pyasic's factory has its own read loop on port 4028). Several commands and
    probes run concurrently, each cut at 2 MiB, so the peak stays far below one whole reply
    (without the caps: +230 MB RSS and seconds of CPU per poll).
    """
    scenario = {
        "name": "oversized",
        "site": {"name": "golmud", "altitude_m": 2800},
        "miners": [{"model": profile, "count": 1}],
    }
    emulator = emulator_factory(scenario, base_address=base)
    (address,) = emulator.addresses()
    source = PyasicSource(timeout_s=20.0)
    healthy = await source.fetch(MinerTarget(address=address), Tier.FAST)
    assert healthy.hashrate_hs
    emulator.inject(address, "oversized", bytes=50_000_000, port="rpc")
    durations, reasons = [], []
    tracemalloc.start()
    try:
        for _ in range(5):
            began = time.monotonic()
            try:
                await source.fetch(MinerTarget(address=address), Tier.FAST)
            except CollectorError as exc:  # not pytest.raises: its traceback pins pyasic's sockets
                reasons.append(exc.reason)
            durations.append(time.monotonic() - began)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    await asyncio.sleep(0.2)  # let aborted transports finish closing inside this loop
    gc.collect()
    assert reasons == [FailureReason.OVERSIZED] * 5
    assert peak < 40 * 1024 * 1024, f"the polls allocated {peak / 1e6:.1f} MB at peak"
    assert max(durations) < 5.0, f"poll durations {durations}"  # 20 s deadline otherwise


def _wait_all_up(agent: AgentProcess, addresses: list[str]) -> dict[str, str]:
    """Wait until every address is detected, identified by its MAC and up; return address → id.

    Until its identity is read a miner's id is its address (and series move when it is), so
    the ids are taken only once each one carries a MAC.
    """

    def all_up() -> dict[str, str] | None:
        samples = parse_metrics(agent.metrics())
        ids = by_address(samples)
        macs = {
            labels["address"]: labels.get("mac")
            for labels, _value in samples.get("asic_miner_info", [])
            if "address" in labels
        }
        up = per_miner(samples, "asic_up")
        ok = len(ids) == len(addresses) and all(
            up.get(ids[a]) == 1 and macs.get(a) and ids[a] == macs[a] for a in addresses
        )
        return ids if ok else None

    ids: dict[str, str] = agent.wait_for(
        all_up, "every miner detected, identified and up", timeout=120
    )
    return ids


def _wait_bad_reported(
    agent: AgentProcess, ids: dict[str, str], bad: dict[str, str]
) -> dict[str, str]:
    """Wait until every bad miner is down with an accepted reason; return fault → reason."""
    observed: dict[str, tuple[float | None, str | None]] = {}

    def bad_reported() -> dict[str, str] | None:
        samples = parse_metrics(agent.metrics())
        up = per_miner(samples, "asic_up")
        reasons = {
            labels["miner"]: labels["reason"]
            for labels, value in samples.get("asic_last_poll_error_info", [])
            if value == 1
        }
        seen = {}
        for name, address in bad.items():
            miner = ids[address]
            observed[name] = (up.get(miner), reasons.get(miner))
            if up.get(miner) == 0 and reasons.get(miner) in BAD[name][1]:
                seen[name] = reasons[miner]
        return seen if len(seen) == len(bad) else None

    try:
        seen: dict[str, str] = agent.wait_for(
            bad_reported, "every bad miner down with its reason", timeout=90
        )
    except pytest.fail.Exception:
        pytest.fail(f"bad miners not all reported; last (asic_up, reason) seen: {observed}")
    return seen


def _assert_polled_every_cycle(agent: AgentProcess, healthy_ids: list[str], cycles: int) -> None:
    """Cycle after cycle, every healthy miner has a new successful poll, and none goes down.

    Each cycle waits for the condition (every miner's last-success timestamp moved on) under a
    deadline of two intervals plus 2 s, instead of sleeping an interval and checking ages.
    """
    previous: dict[str, float] = {}
    pending: dict[str, float] = {}
    for cycle in range(cycles):

        def polled_again(cycle: int = cycle) -> bool:
            samples = parse_metrics(agent.metrics())
            up = per_miner(samples, "asic_up")
            last = per_miner(samples, "asic_last_poll_success_timestamp_seconds")
            reasons = {
                labels["miner"]: labels["reason"]
                for labels, value in samples.get("asic_last_poll_error_info", [])
                if value == 1
            }
            down = {m: (up.get(m), reasons.get(m)) for m in healthy_ids if up.get(m) != 1}
            assert not down, f"cycle {cycle}: healthy miners down, (asic_up, reason): {down}"
            pending.clear()
            pending.update(
                {m: last.get(m, 0.0) for m in healthy_ids if last.get(m, 0.0) <= previous.get(m, 0)}
            )
            if pending:
                return False
            previous.update({m: last[m] for m in healthy_ids})
            return True

        try:
            agent.wait_for(polled_again, f"cycle {cycle}: a new poll of every healthy miner",
                           timeout=2 * INTERVAL_S + 2)  # fmt: skip
        except pytest.fail.Exception:
            pytest.fail(f"cycle {cycle}: healthy miners not polled again: {sorted(pending)}")


@pytest.mark.slow
def test_reliability_bad_miners_do_not_disturb_healthy_ones(emulator_factory, agent_factory):
    """100 healthy + 7 misbehaving + 1 model change: healthy ones stay up and polled each cycle.

    1. The fleet is detected and every miner is up.
    2. Faults: hang, drip, garbage, truncated, reset, 50 MB reply, refuse; one miner changes model.
    3. Each bad miner shows asic_up 0 with asic_last_poll_error_info{reason} and a miner_down log.
    4. Over three further cycles every healthy miner stays up with a fresh successful poll.
    5. The miner that changed model is polled again as its new model.
    """
    emulator = emulator_factory(_scenario(HEALTHY + len(BAD) + 1), base_address="127.90.1.1")
    addresses = emulator.addresses()
    bad = dict(zip(BAD, addresses[HEALTHY:], strict=False))
    changer = addresses[-1]
    config = agent_config(
        [{"address": a} for a in addresses],
        interval_s=INTERVAL_S,
        polling={"timeout_s": 4.0, "backoff_max_s": 10.0, "slow_interval_s": 10.0},
    )
    agent = agent_factory(config)
    t0 = time.monotonic()
    ids = _wait_all_up(agent, addresses)
    print(f"all up after {time.monotonic() - t0:.1f} s")

    for name, address in bad.items():
        emulator.inject(address, **BAD[name][0])
    emulator.inject(changer, "model_change", model="whatsminer-m30s+ve40")

    reported = _wait_bad_reported(agent, ids, bad)
    print(f"bad reported after {time.monotonic() - t0:.1f} s")
    print(f"bad miner reasons: {reported}")
    events = [e for e in log_events(agent) if e.get("event") == "miner_down"]
    for name, address in bad.items():
        assert any(e.get("address") == address and e.get("reason") for e in events), (
            f"no miner_down log line with a reason for the {name} miner"
        )

    _assert_polled_every_cycle(agent, [ids[a] for a in addresses[:HEALTHY]], cycles=3)

    def changed_model_polled() -> bool:
        samples = parse_metrics(agent.metrics())
        for labels, _value in samples.get("asic_miner_info", []):
            if labels.get("address") == changer and "M30S" in labels.get("model", ""):
                return per_miner(samples, "asic_up").get(labels["miner"]) == 1
        return False

    agent.wait_for(changed_model_polled, "the changed miner polled as a Whatsminer", timeout=120)
    print(f"model change seen after {time.monotonic() - t0:.1f} s")
    assert agent.proc.poll() is None, "the agent died"
