"""The site kit's vmagent as the WAN buffer: central outages back-filled, a restart mid-outage.

Real emulator (127.170.0.0/24, 10 miners), real ``altiwatch run`` polling every 2 s, Debian's
vmagent with deploy/site/vmagent.env's flags (disk queue, bound, rate limit, TLS + basic auth)
scraping it every 2 s, writing through vmauth (TLS, one user per site: deploy/central/) into
VictoriaMetrics. The central store is stopped for 10 scrape intervals (the ratio to the scrape
interval is what matters; the 60-s and 1-hour figures are in tests/benchmarks/multisite.py).
"""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest
import yaml

from tests.support.agent import agent_config, wait_until
from tests.support.multisite import SITE_KIT, VictoriaMetrics, VmAgent, VmAuth, require_binaries
from tests.unit.test_web_security import make_pki

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

pytestmark = pytest.mark.slow

SITE = "golmud"
SCRAPE_S = 2.0
OUTAGE_SCRAPES = 30  # 60 s, the outage
RESTART_SCRAPES = 10  # the restart test: 20 s, vmagent restarted half-way
MINERS = 10
MAX_GAP_MS = 1.5 * SCRAPE_S * 1000


class Kit:
    """One site (emulator, agent, vmagent) and the central store behind vmauth."""

    def __init__(self, workdir: Path, agent_url: str) -> None:
        """Write the scrape config from the kit's and start central, then vmagent."""
        pki = make_pki(workdir)
        password = workdir / "central_password"
        password.write_text("site-golmud-pw\n", encoding="utf-8")
        self.vm = VictoriaMetrics(workdir).start()
        self.auth = VmAuth(
            workdir,
            users={"site-golmud": "site-golmud-pw"},
            backend=self.vm.url,
            cert=pki.server_cert,
            key=pki.server_key,
        ).start()
        scrape = yaml.safe_load((SITE_KIT / "vmagent.yml").read_text(encoding="utf-8"))
        scrape["global"] = {"scrape_interval": f"{SCRAPE_S:g}s", "scrape_timeout": "1500ms"}
        scrape["scrape_configs"][0]["static_configs"][0]["targets"] = [agent_url]
        self.scrape_config = workdir / "vmagent.yml"
        self.scrape_config.write_text(yaml.safe_dump(scrape), encoding="utf-8")
        self.agent = VmAgent(
            workdir,
            self.scrape_config,
            f"{self.auth.url}/api/v1/write",
            ALTIWATCH_SITE=SITE,
            remoteWrite_tlsCAFile=str(pki.ca_cert),
            remoteWrite_basicAuth_passwordFile=str(password),
            # 1 s retries instead of the kit's back-off so the test's outage ends sharply.
            remoteWrite_sendTimeout="5s",
        ).start()

    def scrapes(self) -> float:
        """Scrapes vmagent has done so far."""
        return self.agent.metric("vm_promscrape_scrapes_total")

    def wait_scrapes(self, count: int) -> None:
        """Wait until vmagent has scraped ``count`` more times."""
        target = self.scrapes() + count
        wait_until(
            lambda: self.scrapes() >= target, f"{count} scrapes", timeout=count * SCRAPE_S * 3
        )

    def wait_drained(self, after: float) -> None:
        """Wait until central has samples newer than ``after`` for every miner and the queue is empty."""

        def done() -> bool:
            fresh = self.vm.query(f"count(timestamp(asic_up{{site='{SITE}'}}) > {after:.0f})")
            pending = self.agent.metric("vm_persistentqueue_bytes_pending")
            return bool(fresh) and float(fresh[0]["value"][1]) >= MINERS and pending == 0

        wait_until(done, "central caught up and vmagent's queue empty", timeout=90, every=0.5)


def max_gaps_ms(series: list[dict[str, Any]], start: float, end: float) -> dict[str, Gap]:
    """Per miner: the largest step between samples within [start, end] (ms) and where it ends."""
    out: dict[str, Gap] = {}
    for s in series:
        stamps = sorted(t for t in s["timestamps"] if start * 1000 <= t <= end * 1000)
        points = [start * 1000, *stamps, end * 1000]
        step, at = max((b - a, b) for a, b in itertools.pairwise(points))
        out[s["metric"]["miner"]] = Gap(step, round(at / 1000 - start, 1))
    return out


class Gap(NamedTuple):
    """A gap between samples: its length (ms) and when it ended (s after the window start)."""

    ms: float
    ends_at_s: float


def worst(gaps: dict[str, Gap]) -> float:
    """The longest gap (ms)."""
    return max(g.ms for g in gaps.values())


@pytest.fixture(scope="module")
def kit(
    tmp_path_factory: pytest.TempPathFactory,
    module_emulator_factory: Callable[..., Any],
    module_agent_factory: Callable[..., Any],
) -> Iterator[Kit]:
    """Emulator, agent, central VictoriaMetrics behind vmauth, and the site's vmagent."""
    require_binaries("victoria-metrics", "vmagent", "vmauth")
    scenario = {
        "name": "multisite-metrics",
        "site": {"name": SITE, "altitude_m": 2800},
        "miners": [{"model": "antminer-s19jpro", "count": MINERS}],
    }
    emulator = module_emulator_factory(scenario, base_address="127.170.0.1")
    miners = [{"address": a} for a in emulator.addresses()]
    agent = module_agent_factory(agent_config(miners, site=SITE, interval_s=SCRAPE_S))
    kit = Kit(tmp_path_factory.mktemp("kit"), agent.url.removeprefix("http://"))
    kit.wait_drained(time.time() - 60)
    yield kit
    kit.agent.stop()
    kit.auth.stop()
    kit.vm.stop()


def wait_backfilled(
    kit: Kit, start: float, end: float, *, skip: tuple[float, float] | None = None
) -> float:
    """Wait until every miner's asic_up has no gap above 1.5 scrape intervals in [start, end].

    vmagent re-sends a block that failed with a doubling back-off (up to a minute in 1.79), so
    the last blocks of an outage may arrive some seconds after central is back, after newer
    data: the back-fill is complete when the gaps are gone. ``skip`` = (from, to) is a window
    left out (a vmagent restart: it scrapes nothing while it is down). Returns the seconds it took.
    """
    began = time.monotonic()
    last: dict[str, Gap] = {}

    def complete() -> bool:
        nonlocal last
        series = kit.vm.export(f'asic_up{{site="{SITE}"}}', start - SCRAPE_S, end + SCRAPE_S)
        if len(series) < MINERS:
            return False
        windows = [(start, end)] if skip is None else [(start, skip[0]), (skip[1], end)]
        last = {}
        for a, b in windows:
            for miner, gap in max_gaps_ms(series, a, b).items():
                if gap.ms > last.get(miner, Gap(0, 0)).ms:
                    last[miner] = gap
        return worst(last) <= MAX_GAP_MS

    try:
        wait_until(complete, "a complete back-fill", timeout=120, every=1.0)
    except pytest.fail.Exception:
        pytest.fail(f"gaps left after 120 s: {last}")
    return time.monotonic() - began


def test_vmagent_backfills_a_central_outage_without_gaps(kit: Kit):
    """Central store down 60 s (30 scrapes): every series back-filled, no gap > 1.5 intervals."""
    start = time.time()
    kit.wait_scrapes(2)
    kit.vm.stop()
    down_at = time.time()
    kit.wait_scrapes(OUTAGE_SCRAPES)
    kit.vm.start()
    up_at = time.time()
    assert up_at - down_at >= OUTAGE_SCRAPES * SCRAPE_S * 0.9
    took = wait_backfilled(kit, start + SCRAPE_S, up_at)
    print(
        f"back-fill of a {up_at - down_at:.0f}-s outage complete {took:.0f} s after central returned"
    )


def test_vmagent_restart_mid_outage_keeps_what_it_scraped(kit: Kit):
    """Vmagent SIGTERMed and restarted while central is down: nothing scraped before is lost."""
    start = time.time()
    kit.wait_scrapes(2)
    kit.vm.stop()
    kit.wait_scrapes(RESTART_SCRAPES // 2)
    stopping_at = time.time()
    kit.agent.stop()
    kit.agent.start()
    restarted_at = time.time()
    kit.wait_scrapes(RESTART_SCRAPES // 2)
    kit.vm.start()
    up_at = time.time()
    # Left out: only the time vmagent was down and its first scrape after the restart. Up to
    # the SIGTERM, no step above 1.5 intervals: the last scrape before it is there too.
    wait_backfilled(kit, start + SCRAPE_S, up_at, skip=(stopping_at, restarted_at + SCRAPE_S))
