"""The pure parts of `altiwatch notify`: config, grouping, templates, durable queue, backoff."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.alerts import grouping, templates
from agent.alerts.config import NotifyConfig, SecretSource, load_notify_config
from agent.alerts.queue import AlertQueue
from agent.alerts.service import backoff_s
from agent.errors import ConfigError


def alarm(n: int = 1, **fields):
    """An altiwatch.alarm/1 payload (only the fields notify reads)."""
    payload = {
        "schema": "altiwatch.alarm/1", "event_id": f"01JDX5R8Q4M3ZK2V9T7B6N1C{n:02d}",
        "ts": "2026-07-14T06:12:30.000Z", "site": "golmud", "miner": "02:a1:55:77:8d:f5",
        "event": "raised", "rule": "R1", "severity": "critical", "previous_severity": None,
        "value": 91.25, "threshold": 78.0, "sea_level_threshold": 85.0, "altitude_m": 2800.0,
        "details": {"unit": "°C"}, "summary": "chip hot",
    }  # fmt: skip
    return payload | fields


WHERE = {"container": "C3", "rack": "12", "shelf": "2", "slot": None}


def test_alert_template_en_names_miner_location_value_threshold_altitude():
    """English: name before MAC, location, value, derated threshold with its sea-level value and altitude."""
    text = templates.render([alarm(name="S19-C3-12-2", location=WHERE)], "en").text
    assert text.splitlines()[0] == "[CRITICAL] R1 raised — site golmud"
    assert (
        "S19-C3-12-2 (02:a1:55:77:8d:f5) — container C3, rack 12, shelf 2: value 91.2 °C, "
        "threshold 78.0 °C (85.0 °C at sea level, derated for 2800 m)"
    ) in text
    assert "Site altitude 2800 m" in text


def test_alert_template_zh_names_miner_location_value_threshold_altitude():
    """Chinese: 名称 (MAC) — 集装箱/机架/层, 数值, 阈值（海平面…，按海拔…降额）."""
    text = templates.render([alarm(name="S19-C3-12-2", location=WHERE)], "zh").text
    assert text.splitlines()[0] == "【严重】R1 告警触发 — 站点 golmud"
    assert (
        "S19-C3-12-2 (02:a1:55:77:8d:f5) — 集装箱 C3，机架 12，层 2："
        "数值 91.2 °C，阈值 78.0 °C（海平面 85.0 °C，按海拔 2800 米降额）"
    ) in text


def test_alert_template_leaves_unknown_values_out():
    """No value, no threshold, no location: nothing invented (no 0, no empty labels)."""
    text = templates.render(
        [alarm(value=None, threshold=None, sea_level_threshold=None, details={})], "en"
    ).text
    assert "value" not in text
    assert "threshold" not in text
    assert "container" not in text
    assert " 0" not in text


def test_alert_template_group_counts_and_truncates():
    """A group names its size and lists at most max_lines miners, then `… and N more`."""
    burst = [alarm(i, miner=f"m{i:03d}", rule="R7") for i in range(30)]
    en = templates.render(burst, "en", max_lines=5).text
    assert "site golmud, 30 miners" in en
    assert "m004" in en
    assert "m005" not in en
    assert "… and 25 more" in en
    assert "另有 25 台" in templates.render(burst, "zh", max_lines=5).markdown


def test_alert_grouping_cleared_counts_at_its_previous_severity():
    """A cleared alarm passes the filter at the level it cleared from."""
    cleared = alarm(event="cleared", severity="info", previous_severity="critical")
    assert grouping.passes(cleared, "critical")
    assert not grouping.passes(alarm(severity="warning"), "critical")
    assert grouping.group_key(cleared) != grouping.group_key(alarm())
    status = {"schema": "altiwatch.miner_status/1", "event": "miner_offline", "site": "g"}
    assert not grouping.is_alert(status, min_severity="info", miner_status=False)
    assert grouping.is_alert(status, min_severity="info", miner_status=True)


def test_alert_queue_drops_a_duplicate_event_id_after_reopening(tmp_path):
    """An event_id accepted once is refused again, also after the queue is closed and reopened."""
    queue = AlertQueue(tmp_path)
    assert queue.accept(alarm(), ["a", "b"], "k", now=100.0)
    queue.close()
    queue = AlertQueue(tmp_path)
    assert not queue.accept(alarm(), ["a", "b"], "k", now=101.0)
    assert queue.depth() == (2, 0)
    queue.close()


def test_alert_queue_closes_a_group_only_after_its_window(tmp_path):
    """Events sharing a key become one batch per channel once the first is window_s old."""
    queue = AlertQueue(tmp_path)
    for i in range(5):
        queue.accept(alarm(i), ["a"], "golmud|R7", now=100.0 + i / 10)
    queue.accept(alarm(9, rule="R2"), ["a"], "golmud|R2", now=100.2)
    assert queue.close_groups(10.0, now=109.0) == 0
    assert queue.next_wakeup(10.0) == pytest.approx(110.0)
    assert queue.close_groups(10.0, now=110.1) == 1
    (batch,) = queue.due(110.1)
    assert batch.event_ids == [alarm(i)["event_id"] for i in range(5)]
    queue.close()


def test_alert_queue_keeps_a_failed_batch_and_its_schedule_across_restart(tmp_path):
    """A failed batch stays queued with its attempt count and next try, across a reopen."""
    queue = AlertQueue(tmp_path)
    queue.accept(alarm(), ["a"], "k", now=100.0)
    queue.close_groups(0.0, now=100.0)
    (batch,) = queue.due(100.0)
    queue.retry_at(batch.id, 130.0)
    queue.close()
    queue = AlertQueue(tmp_path)
    assert queue.due(129.0) == []
    (again,) = queue.due(130.0)
    assert again.attempts == 1
    queue.delivered(again.id)
    assert queue.depth() == (0, 0)
    queue.close()


def test_alert_backoff_doubles_and_is_capped():
    """retry_min_s doubling per failure, capped at retry_max_s, within ±20 % jitter."""
    assert 1.6 <= backoff_s(0, 2.0, 300.0) <= 2.4
    assert 12.8 <= backoff_s(3, 2.0, 300.0) <= 19.2
    assert 240.0 <= backoff_s(40, 2.0, 300.0) <= 360.0


def test_alert_config_is_strict_and_secrets_are_not_inline():
    """Unknown keys fail; a secret must be a file or a credential, not a string."""
    channel = {"type": "webhook", "name": "w", "url": "http://x", "secret": {"file": "/s"}}
    NotifyConfig.model_validate({"channels": [channel]})
    with pytest.raises(ValidationError):
        NotifyConfig.model_validate({"channels": [channel | {"secret": "hunter2"}]})
    with pytest.raises(ValidationError):
        NotifyConfig.model_validate({"channels": [channel], "colour": "red"})
    with pytest.raises(ValidationError):
        NotifyConfig.model_validate({"channels": [channel, channel]})  # duplicate names


def test_alert_secret_source_reads_a_systemd_credential(tmp_path):
    """`{credential: NAME}` reads $CREDENTIALS_DIRECTORY/NAME, newline stripped; missing → ConfigError."""
    (tmp_path / "dingtalk_secret").write_text("SECabc\n")
    source = SecretSource(credential="dingtalk_secret")
    value = source.read({"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert value.get_secret_value() == "SECabc"
    assert "SECabc" not in repr(value)
    with pytest.raises(ConfigError):
        SecretSource(credential="absent").read({"CREDENTIALS_DIRECTORY": str(tmp_path)})


def test_alert_example_config_validates():
    """deploy/examples/notify.yaml is a valid notify config with one channel of five kinds."""
    config = load_notify_config(Path(__file__).resolve().parents[2] / "deploy/examples/notify.yaml")
    assert [c.type for c in config.channels] == ["dingtalk", "wecom", "feishu", "telegram", "email"]
    assert config.language == "zh"


def test_alert_queue_hurry_makes_a_channels_backlog_due_now(tmp_path):
    """After a channel answers again, its backed-off batches are due at once; other channels keep theirs."""
    queue = AlertQueue(tmp_path)
    for i, channel in enumerate(["a", "a", "b"]):
        queue.accept(alarm(i, rule=f"R{i}"), [channel], f"k{i}", now=100.0)
    queue.close_groups(0.0, now=100.0)
    for batch in queue.due(100.0):
        queue.retry_at(batch.id, 400.0)
    assert queue.hurry("a", now=150.0) == 2
    assert sorted(b.channel for b in queue.due(150.0)) == ["a", "a"]
    queue.close()
