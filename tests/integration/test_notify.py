"""`altiwatch notify` against a real mosquitto, real local vendor receivers and a real SMTP server.

The agent's own EventPublisher puts alarm events on the events stream; `altiwatch notify` runs
as a real process (so it can be killed and restarted) and delivers to the receivers of
tests/support/alert_receivers.py, which check each vendor's signature as its documentation
specifies. Grouping windows and retry delays are shortened to keep the module fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from agent.alarms.model import Severity, TransitionKind
from tests.support import events
from tests.support.alert_receivers import SECRET, TOKEN, AlertReceivers, SmtpReceiver
from tests.support.mosquitto import wait_until
from tests.support.notify import Notify, all_channels, delivered_ids, publisher, write_config

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator


pytestmark = pytest.mark.broker
SITE = "delingha"


@pytest.fixture
def notifies() -> Iterator[list[Notify]]:
    """Notify processes started by a test, stopped at teardown."""
    started: list[Notify] = []
    yield started
    for n in started:
        n.stop()
        for line in n.lines[-40:]:  # shown by pytest when the test failed
            print(f"{n.config.parent.name}: {json.dumps(line, ensure_ascii=False)}")


@pytest.fixture
async def receivers() -> AsyncIterator[AlertReceivers]:
    """The vendor endpoints, serving."""
    rx = AlertReceivers()
    await rx.start()
    yield rx
    await rx.stop()


@pytest.fixture
def smtp(tmp_path) -> Iterator[SmtpReceiver]:
    """A STARTTLS-only SMTP server with a login."""
    server = SmtpReceiver(tmp_path)
    server.start()
    yield server
    server.stop()


def transition(
    n: int, *, rule: str = "R1", kind: TransitionKind = TransitionKind.RAISED, **fields: Any
):
    """An alarm transition of miner ``n`` at the test site."""
    return events.transition(
        kind, site=SITE, miner=f"02:a1:55:77:{n // 256:02x}:{n % 256:02x}", rule=rule,
        severity=Severity.CRITICAL, summary=f"event-{n:03d}", value=91.0 + n / 10,
        threshold=78.0, sea_level_threshold=85.0, altitude_m=2980.0, delta=0.70, **fields,
    )  # fmt: skip


async def test_notify_delivers_to_every_channel_with_valid_signatures(
    mosquitto, receivers, smtp, tmp_path, notifies
):
    """One alarm reaches all seven channels once; every vendor's signature/credential checks out; mail came over STARTTLS."""
    config = write_config(
        tmp_path / "n", mosquitto, all_channels(tmp_path, receivers, smtp), client_id="notify-all"
    )
    notify = Notify(config)
    notifies.append(notify)
    await notify.subscribed()
    async with publisher(mosquitto, tmp_path / "pub", SITE) as pub:
        pub.alarm_transitions([transition(7)])
        await wait_until(
            lambda: len({h.vendor for h in receivers.hits if h.ok}) == 6 and smtp.mails,
            within=30, what="all channels delivered",
        )  # fmt: skip
    assert receivers.rejected() == []
    for vendor in ("dingtalk", "wecom", "feishu", "telegram", "slack", "webhook"):
        assert len(receivers.accepted(vendor)) == 1, vendor
    assert smtp.tls_seen == [True]
    zh = receivers.accepted("dingtalk")[0].body["markdown"]["text"]
    assert "严重" in zh
    assert "02:a1:55:77:00:07" in zh
    assert "数值 91.7" in zh
    assert "阈值 78.0（海平面 85.0，按海拔 2980 米降额）" in zh
    en = receivers.accepted("feishu")[0].body["content"]["text"]
    assert "threshold 78.0 (85.0 at sea level, derated for 2980 m)" in en
    mail = smtp.mails[0]
    assert mail["Subject"].startswith("【严重】R1 告警触发")
    assert "02:a1:55:77:00:07" in mail.get_content()
    assert notify.stop() == 0


async def test_notify_receivers_outage_and_restart_deliver_each_alarm_once(
    mosquitto, receivers, tmp_path, notifies
):
    """Receivers down, notify SIGKILLed and restarted mid-outage, receivers back: every alarm arrives exactly once; no secret logged."""
    channels = [c for c in all_channels(tmp_path, receivers)
                if c["type"] in {"webhook", "dingtalk"}]  # fmt: skip
    config = write_config(tmp_path / "n", mosquitto, channels, client_id="notify-outage")
    notify = Notify(config)
    notifies.append(notify)
    await notify.subscribed()
    await receivers.down()
    async with publisher(mosquitto, tmp_path / "pub", SITE) as pub:
        pub.alarm_transitions([transition(i, rule=f"R{i % 5}") for i in range(10)])
        await wait_until(
            lambda: len(notify.events("alert_delivery_failed")) >= 4, within=20, what="retries"
        )
        notify.kill()
        # Published while notify is dead: the broker keeps them in its persistent session.
        pub.alarm_transitions([transition(i, rule=f"R{i % 5}") for i in range(10, 20)])
    restarted = Notify(config)
    notifies.append(restarted)
    await restarted.subscribed()
    await wait_until(
        lambda: len(restarted.events("alert_queued")) >= 10, within=20, what="backlog received"
    )
    await receivers.up()
    await wait_until(
        lambda: sum(delivered_ids(receivers).values()) >= 20, within=30, what="20 delivered"
    )
    macs = [transition(i).miner for i in range(20)]

    def dingtalk_mentions() -> Counter[str]:
        texts = [h.body["markdown"]["text"] for h in receivers.accepted("dingtalk")]
        return Counter(m for m in macs for text in texts if m in text)

    await wait_until(lambda: len(dingtalk_mentions()) == 20, within=30, what="dingtalk caught up")
    ids = delivered_ids(receivers)
    assert len(ids) == 20
    assert set(ids.values()) == {1}, ids
    assert set(dingtalk_mentions().values()) == {1}, dingtalk_mentions()
    logged = json.dumps(notify.lines + restarted.lines)
    assert "alert_delivery_failed" in logged
    assert TOKEN not in logged  # the robot token lives in the URL: failures never quote it
    assert SECRET not in logged
    assert receivers.rejected() == []


async def test_notify_two_instances_deliver_each_event_once(
    mosquitto, receivers, tmp_path, notifies
):
    """Two notify instances in one shared-subscription group deliver each of 20 events once between them, both working."""
    channels = [c for c in all_channels(tmp_path, receivers)
                if c["type"] == "webhook"]  # fmt: skip
    pair = [
        Notify(write_config(tmp_path / name, mosquitto, channels, client_id=name, group_window_s=0))
        for name in ("notify-a", "notify-b")
    ]
    notifies.extend(pair)
    for n in pair:
        await n.subscribed()
    async with publisher(mosquitto, tmp_path / "pub", SITE) as pub:
        pub.alarm_transitions([transition(i, rule=f"R{i}") for i in range(20)])
        await wait_until(
            lambda: sum(delivered_ids(receivers).values()) >= 20, within=30, what="20 delivered"
        )
    ids = delivered_ids(receivers)
    assert len(ids) == 20
    assert set(ids.values()) == {1}, ids
    split = [sum(len(r["event_ids"]) for r in n.events("alert_delivered")) for n in pair]
    assert sum(split) == 20
    assert min(split) > 0, split
    print(f"notify split between two instances: {split}")


async def test_notify_groups_a_burst_into_one_message(mosquitto, receivers, tmp_path, notifies):
    """50 miners raising R7 inside the grouping window become ONE message per channel, naming the count."""
    channels = [c for c in all_channels(tmp_path, receivers)
                if c["type"] in {"webhook", "wecom"}]  # fmt: skip
    config = write_config(
        tmp_path / "n", mosquitto, channels, client_id="notify-burst", group_window_s=3
    )
    notify = Notify(config)
    notifies.append(notify)
    await notify.subscribed()
    async with publisher(mosquitto, tmp_path / "pub", SITE) as pub:
        pub.alarm_transitions([transition(i, rule="R7") for i in range(50)])
        await wait_until(lambda: bool(receivers.accepted("webhook")) and bool(receivers.accepted("wecom")),
                         within=30, what="grouped delivery")  # fmt: skip
    webhook, wecom = receivers.accepted("webhook"), receivers.accepted("wecom")
    assert len(webhook) == 1
    assert len(webhook[0].body["event_ids"]) == 50
    assert len(wecom) == 1
    content = wecom[0].body["markdown"]["content"]
    assert "共 50 台矿机" in content
    assert "另有 30 台" in content


async def test_notify_survivor_takes_all_events_with_session_expiry_zero(
    mosquitto, receivers, tmp_path, notifies
):
    """With `session_expiry_s: 0`, one of two instances stopped: the other delivers all 20 events (failover)."""
    channels = [c for c in all_channels(tmp_path, receivers) if c["type"] == "webhook"]
    pair = [
        Notify(
            write_config(
                tmp_path / name, mosquitto, channels, client_id=name, group_window_s=0,
                broker_extra={"session_expiry_s": 0},
            )
        )
        for name in ("notify-a", "notify-b")
    ]  # fmt: skip
    notifies.extend(pair)
    for n in pair:
        await n.subscribed()
    assert pair[0].stop() == 0
    async with publisher(mosquitto, tmp_path / "pub", SITE) as pub:
        pub.alarm_transitions([transition(i, rule=f"R{i}") for i in range(20)])
        await wait_until(
            lambda: sum(delivered_ids(receivers).values()) >= 20, within=30, what="20 delivered"
        )
    ids = delivered_ids(receivers)
    assert len(ids) == 20
    assert set(ids.values()) == {1}, ids
    assert sum(len(r["event_ids"]) for r in pair[1].events("alert_delivered")) == 20


def test_notify_check_reads_every_secret_and_exits_78_on_a_missing_one(tmp_path):
    """`notify --check`: 0 when the file and every secret are fine; 78 naming the missing credential."""
    rx = AlertReceivers()  # not started: --check sends nothing
    channels = all_channels(tmp_path, rx)
    good = write_config(tmp_path / "good", _NoBroker(), channels, client_id="check")
    bad_channel = channels[0] | {"secret": {"credential": "absent"}}
    bad = write_config(tmp_path / "bad", _NoBroker(), [bad_channel], client_id="check")
    argv = [sys.executable, "-m", "agent", "notify", "--check", "--config"]
    env = {"PATH": "/usr/bin:/bin", "CREDENTIALS_DIRECTORY": str(tmp_path)}
    ok = subprocess.run(
        [*argv, str(good)], capture_output=True, text=True, env=env, check=False, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    assert "ok, 6 channel(s)" in ok.stdout
    failed = subprocess.run(
        [*argv, str(bad)], capture_output=True, text=True, env=env, check=False, timeout=60
    )
    assert failed.returncode == 78
    assert "absent" in failed.stderr
    assert SECRET not in failed.stderr + failed.stdout


class _NoBroker:
    """Where a config points when no broker is needed."""

    host = "127.0.0.1"
    port = 1883
