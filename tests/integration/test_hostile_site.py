"""A site with hostile miners (issue 15): healthy miners keep being polled, /metrics keeps answering.

The real agent polls 16 healthy S19s beside two VNish and two Bitaxe units that turn hostile
mid-run (a 256 MiB gzip bomb and an endless body from their web APIs), every poll over real
sockets against the emulator. Before the byte caps, one such poll held 0.5–0.9 GB.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from tests.integration.test_hostile_miners import _per_address
from tests.support.agent import agent_config

SCENARIO = {
    "name": "hostile-site",
    "site": {"name": "golmud", "altitude_m": 2800},
    "miners": [
        {"model": "antminer-s19jpro", "count": 16},
        {"model": "vnish-s19jpro", "count": 2},
        {"model": "bitaxe-ultra", "count": 2},
    ],
}
INTERVAL_S = 3.0
PEAK_RSS_LIMIT_KB = 400 * 1024
"""The agent's peak RSS (VmHWM) may not pass this; about 120 MB is its usual figure here."""


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    msg = "no VmHWM"
    raise AssertionError(msg)


def test_hostile_site_healthy_miners_keep_being_polled(emulator_factory, agent_factory):
    """Bombs and endless bodies on 4 miners: the 16 others are polled every interval, scrapes answer.

    1. All 20 miners up under their MACs.
    2. Two miners start sending gzip bombs, two endless bodies, from their web APIs.
    3. Every healthy miner succeeds in at least two more polls, every scrape meanwhile answers
       200, the agent keeps running and its peak RSS stays bounded.
    """
    emulator = emulator_factory(SCENARIO, base_address="127.97.2.1")
    healthy = emulator.addresses("antminer")
    vnish, bitaxe = emulator.addresses("vnish"), emulator.addresses("bitaxe")
    agent = agent_factory(
        agent_config(
            [{"address": a} for a in emulator.addresses()],
            interval_s=INTERVAL_S,
            polling={"slow_interval_s": 2 * INTERVAL_S, "timeout_s": 2.5},
        )
    )

    def all_identified() -> dict[str, str] | None:
        ids, up, _last = _per_address(agent.metrics())
        ok = len(ids) == 20 and all(":" in i and up.get(i) == 1.0 for i in ids.values())
        return ids if ok else None

    ids = agent.wait_for(all_identified, "all 20 miners up under their MACs", 90)
    for address in (vnish[0], bitaxe[0]):
        emulator.inject(address, "gzip_bomb", bytes=256 * 1024 * 1024, port="web")
    for address in (vnish[1], bitaxe[1]):
        emulator.inject(address, "endless", port="web")
    since = time.time() + 2 * INTERVAL_S
    scrapes: list[tuple[int, float]] = []

    def healthy_polled_twice_since() -> bool:
        began = time.monotonic()
        with urllib.request.urlopen(f"{agent.url}/metrics", timeout=10) as response:  # noqa: S310 - loopback
            status, text = response.status, response.read().decode()
        scrapes.append((status, time.monotonic() - began))
        _ids, _up, last = _per_address(text)
        return all(last.get(ids[a], 0.0) > since for a in healthy)

    agent.wait_for(healthy_polled_twice_since, "every healthy S19 polled twice more", 60)
    assert agent.proc.poll() is None, "the agent exited"
    assert all(status == 200 for status, _ in scrapes), scrapes
    peak_kb = _peak_rss_kb(agent.proc.pid)
    assert peak_kb < PEAK_RSS_LIMIT_KB, f"agent peak RSS {peak_kb / 1024:.0f} MB"
    slowest = max(seconds for _, seconds in scrapes)
    print(
        f"scrapes {len(scrapes)}, slowest {slowest * 1000:.0f} ms, peak RSS {peak_kb / 1024:.0f} MB"
    )
    assert agent.stop() == 0
