"""A bridge queue bound too small for a central outage: the audit finds the gap by events_seq.

Its own brokers, emulator (127.175.0.0/24, 30 miners) and agent, set up as in
test_multisite_mqtt (whose helpers it uses), so the overflow starts from fresh brokers: no
sessions or persistence left by the other outage tests.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.test_multisite_mqtt import (
    Sites,
    alarm_ids,
    all_ids,
    settled,
    start_sites,
    transitions,
)
from tests.support.mosquitto import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = [pytest.mark.broker, pytest.mark.slow]


@pytest.fixture(scope="module")
def sites(
    tmp_path_factory: pytest.TempPathFactory,
    module_emulator_factory: Callable[..., Any],
    module_agent_factory: Callable[..., Any],
) -> Iterator[Sites]:
    """Both brokers, the emulated site and its agent."""
    yield from start_sites(
        tmp_path_factory, module_emulator_factory, module_agent_factory, "127.175.0.1"
    )


@pytest.fixture(autouse=True)
async def _boards_restored(sites: Sites) -> Any:
    """Every hashboard back after the test, whatever happened in it."""
    yield
    await sites.flip_boards(sites.addresses, lost=False)

    def no_r6() -> bool:
        status, body = sites.agent.fetch("/api/v1/alarms")
        return status == 200 and all(a.get("rule") != "R6" for a in json.loads(body))

    await wait_until(no_r6, within=30, what="every R6 cleared")


async def test_bridge_queue_overflow_is_detected_through_events_seq(sites: Sites):
    """A bridge queue bound too small for the outage drops events; the audit reports the gap."""
    await asyncio.to_thread(sites.site.stop)
    small = [
        "max_queued_messages 20" if line.startswith("max_queued_messages") else line
        for line in sites.site_lines
    ]
    sites.site.write(small)
    await asyncio.to_thread(sites.site.start)
    # 58 R6 transitions: more than the bridge holds (20 in flight + max_queued_messages 20).
    batch = sites.addresses[:29]
    audit = sites.audit("audit-overflow")
    try:
        async with (
            sites.site_recorder("truth-overflow") as truth,
            sites.central_recorder("central-overflow") as central,
        ):
            await wait_until(lambda: audit.connects >= 1, within=20, what="audit subscribed")
            await wait_until(lambda: sites.bridge_metric() == 1, within=30, what="bridge up")
            # One event through before the outage: the audit's count starts below the gap.
            await transitions(sites, truth, sites.addresses[29:], lost=True)
            first = alarm_ids(truth.events())[-1]
            await wait_until(
                lambda: first in alarm_ids(central.events()), within=30, what="a first event"
            )
            await sites.central_down()
            await wait_until(lambda: sites.bridge_metric() == 0, within=30, what="bridge down")
            await transitions(sites, truth, batch, lost=True)
            await transitions(sites, truth, batch, lost=False)
            await sites.central_up(central, audit)
            # The bridge retries with a back-off of up to 30 s (restart_timeout 2 30): until it
            # is back its full queue drops every new event, the last one included.
            await wait_until(lambda: sites.bridge_metric() == 1, within=45, what="bridge back")
            await transitions(sites, truth, sites.addresses[29:], lost=False)
            last = alarm_ids(truth.events())[-1]
            await wait_until(
                lambda: last in alarm_ids(central.events()), within=60, what="the last event"
            )
            await settled(lambda: len(all_ids(central.events())), what="central's backlog")
            lost = all_ids(truth.events()) - all_ids(central.events())
            seqs = {
                str(e["event_id"]): e["events_seq"] for e in truth.events() if "events_seq" in e
            }
        code, reports = await audit.finish()
    finally:
        await asyncio.to_thread(sites.site.stop)
        sites.site.write(sites.site_lines)
        await asyncio.to_thread(sites.site.start)
    (report,) = reports
    assert lost, "the bound of 20 should have overflowed"
    missing = {n for a, b in report["gaps"] for n in range(a, b + 1)}
    assert {seqs[i] for i in lost} == missing, (report, sorted(seqs[i] for i in lost))
    assert report["missing"] == len(lost)
    assert code == 1
