"""The receivers' outage of issue 19 at full length: ``altiwatch notify`` loses and repeats nothing.

``python -m tests.benchmarks.notify_outage [--outage-s 600] [--rate 1.0] [--out FILE.json]``

A real mosquitto, the agent's real publisher and one ``altiwatch notify`` process delivering to
two channels (the signed webhook and a signed DingTalk robot) on local receivers. The receivers
refuse connections for ``--outage-s`` seconds while alarms are raised at ``--rate`` per second
(distinct miners, five rules); half-way through, ``notify`` is killed with SIGKILL and started
again. Then the receivers come back. Reported: alarms published, alarms delivered per channel,
duplicates, lost, the number of messages (bursts grouped) and the time to drain after the
receivers' return. The integration test runs the same scenario in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from agent.alarms.model import Severity, TransitionKind
from tests.support import events
from tests.support.alert_receivers import AlertReceivers
from tests.support.mosquitto import Mosquitto, wait_until
from tests.support.notify import Notify, all_channels, delivered_ids, publisher, write_config

SITE = "delingha"


def _transition(n: int) -> Any:
    return events.transition(
        TransitionKind.RAISED, site=SITE, miner=f"02:a1:55:{n // 65536:02x}:{n // 256 % 256:02x}:{n % 256:02x}",
        rule=f"R{n % 5 + 1}", severity=Severity.CRITICAL, summary=f"event-{n:05d}",
    )  # fmt: skip


async def run(outage_s: float, rate: float, workdir: Path) -> dict[str, Any]:
    """The scenario; the figures."""
    broker_dir = workdir / "broker"
    broker_dir.mkdir()
    broker = Mosquitto(broker_dir)
    broker.start()
    rx = AlertReceivers()
    await rx.start()
    channels = [c for c in all_channels(workdir, rx) if c["type"] in {"webhook", "dingtalk"}]
    config = write_config(
        workdir / "notify", broker, channels, client_id="notify-bench", group_window_s=5.0,
        retry_min_s=1.0, retry_max_s=30.0,
    )  # fmt: skip
    notifies = [Notify(config)]
    try:
        await notifies[0].subscribed()
        await rx.down()
        published = 0
        started = time.monotonic()
        killed = False
        async with publisher(broker, workdir / "pub", SITE) as pub:
            while (elapsed := time.monotonic() - started) < outage_s:
                pub.alarm_transitions([_transition(published)])
                published += 1
                if not killed and elapsed >= outage_s / 2:
                    notifies[-1].kill()
                    killed = True
                    await asyncio.sleep(2.0)  # dead for a moment, alarms keep coming
                    notifies.append(Notify(config))
                    await notifies[-1].subscribed()
                await asyncio.sleep(1.0 / rate)
        back = time.monotonic()
        await rx.up()
        await wait_until(
            lambda: len(delivered_ids(rx)) >= published, within=outage_s + 120, what="drained"
        )
        drain_s = time.monotonic() - back
        await asyncio.sleep(3.0)  # let any duplicate surface before counting
        ids = delivered_ids(rx)
        macs = [_transition(i).miner for i in range(published)]
        texts = [h.body["markdown"]["text"] for h in rx.accepted("dingtalk")]
        ding = Counter(m for m in macs for t in texts if m in t)
        return {
            "outage_s": outage_s,
            "published": published,
            "webhook_delivered_unique": len(ids),
            "webhook_duplicates": sum(v - 1 for v in ids.values()),
            "webhook_lost": published - len(ids),
            "webhook_messages": len(rx.accepted("webhook")),
            "dingtalk_delivered_unique": len(ding),
            "dingtalk_duplicates": sum(v - 1 for v in ding.values()),
            "dingtalk_messages": len(texts),
            "rejected_signatures": len(rx.rejected()),
            "drain_after_return_s": round(drain_s, 2),
        }
    finally:
        for n in notifies:
            if n.proc.poll() is None:
                n.stop()
        await rx.stop()
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    """Run and print (and optionally write) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--outage-s", type=float, default=600.0, help="receivers down this long")
    parser.add_argument("--rate", type=float, default=1.0, help="alarms raised per second")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="notify-outage-") as tmp:
        result = asyncio.run(run(args.outage_s, args.rate, Path(tmp)))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    ok = result["webhook_lost"] == 0 and result["webhook_duplicates"] == 0
    return 0 if ok and result["dingtalk_duplicates"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
