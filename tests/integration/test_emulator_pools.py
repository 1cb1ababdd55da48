"""Emulated pools: every family's pool counters read back by pyasic as the emulator says; faults."""

from __future__ import annotations

import pytest

from collectors.emulator.profiles import PROFILES, WHATSMINER_V3_FAMILIES
from collectors.pyasic_source import PyasicSource
from collectors.snapshot import Tier
from collectors.source import MinerTarget
from tests.support.agent import wait_until

BASE = "127.118.1.1"
# Whatsminer API v3 differs in pools (pyasic 0.79 reads none on v3): tests/integration/test_emulator_whatsminer_v3.py.
FAMILY_KEYS = sorted(k for k, p in PROFILES.items() if p.family not in WHATSMINER_V3_FAMILIES)
SCENARIO = {
    "name": "pools",
    "site": {"name": "lab", "altitude_m": 2275},
    "miners": [{"model": key} for key in FAMILY_KEYS],
}
SECRET = "planted-pool-secret-118"  # noqa: S105 - a planted pool password that must never leak


@pytest.fixture(scope="module")
def site(module_emulator_factory):
    """One emulator with one miner per family."""
    return module_emulator_factory(SCENARIO, base_address=BASE)


@pytest.fixture(scope="module")
def by_profile(site):
    """Profile key -> address."""
    return {m["profile"]: m["address"] for m in site.miners()}


async def _read(site, address: str):
    source = PyasicSource(timeout_s=10.0)
    target = MinerTarget(address=address)
    await source.fetch(target, Tier.SLOW)  # detection
    site.pause()
    try:
        snap = await source.fetch(target, Tier.SLOW)
        truth = site.truth(address)
    finally:
        site.resume()
    return snap, truth


@pytest.mark.parametrize("key", FAMILY_KEYS)
async def test_emulator_pools_read_back_per_family(site, by_profile, key):
    """Counters, URL, worker, alive/active as pyasic parses each family (stale where sent)."""
    snap, truth = await _read(site, by_profile[key])
    if truth["family"] == "bitaxe":
        assert snap.pools == (), "pyasic reads no pools from AxeOS"
        return
    assert snap.pools is not None
    assert len(snap.pools) == len(truth["pools"])
    for got, want in zip(snap.pools, truth["pools"], strict=True):
        assert (got.index, got.url, got.user) == (want["index"], want["url"], want["worker"])
        assert (got.alive, got.active) == (want["alive"], want["active"])
        assert (got.accepted, got.rejected, got.stale) == (
            want["accepted"],
            want["rejected"],
            want["stale"],
        )
        if truth["family"] == "braiins":
            assert (got.get_failures, got.remote_failures) == (None, None)
        else:
            assert got.get_failures == want["get_failures"]
    assert snap.pools[0].accepted > 0, "a running miner has found shares"


async def test_emulator_pool_counters_move_with_the_hashrate(site, by_profile):
    """Accepted shares grow at about hashrate / (difficulty · 2^32) per second."""
    address = by_profile["antminer-s19jpro"]
    first = site.truth(address)
    start = first["pools"][0]["accepted"]
    wait_until(
        lambda: site.truth(address)["pools"][0]["accepted"] > start + 5, "shares", timeout=15.0
    )
    later = site.truth(address)
    dt = later["sim_time"] - first["sim_time"]
    rate = (later["pools"][0]["accepted"] - first["pools"][0]["accepted"]) / dt
    expected = first["hashrate_hs"] / (16384 * 2**32)
    assert rate == pytest.approx(expected, rel=0.35)


async def test_emulator_pool_faults_failover_and_hijack(site, by_profile):
    """pool_down fails over to the backup and back; pool_hijack replaces URL and worker."""
    address = by_profile["vnish-s19jpro"]
    site.inject(address, "pool_down")
    snap, _ = await _read(site, address)
    assert snap.pools is not None
    assert [(p.alive, p.active) for p in snap.pools] == [(False, False), (True, True)]
    site.clear(address, "pool_down")
    snap, _ = await _read(site, address)
    assert snap.pools is not None
    assert [p.active for p in snap.pools] == [True, False]

    url = f"stratum+tcp://thief:{SECRET}@evil.example:3333"
    site.inject(address, "pool_hijack", url=url, worker="thief.rig9")
    snap, truth = await _read(site, address)
    assert truth["pools"][0]["url"] == url
    assert snap.pools is not None
    assert (snap.pools[0].url, snap.pools[0].user) == (
        "stratum+tcp://evil.example:3333",
        "thief.rig9",
    )
    assert SECRET not in repr(snap)
    site.clear(address, "pool_hijack")


async def test_emulator_pool_latency_raises_bad_shares(site, by_profile):
    """pool_latency: stale and rejected shares take the fault's share of new shares."""
    address = by_profile["antminer-s21"]
    site.inject(address, "pool_latency", factor=0.3)
    try:
        first = site.truth(address)["pools"][0]
        wait_until(
            lambda: site.truth(address)["pools"][0]["stale"] > first["stale"] + 10,
            "stale shares",
            timeout=20.0,
        )
        later = site.truth(address)["pools"][0]
        bad = later["stale"] + later["rejected"] - first["stale"] - first["rejected"]
        total = bad + later["accepted"] - first["accepted"]
        assert bad / total == pytest.approx(0.3 + 0.003, abs=0.08)
    finally:
        site.clear(address, "pool_latency")
