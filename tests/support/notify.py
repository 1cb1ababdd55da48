"""`altiwatch notify` for tests and benchmarks: a real process, its config, the agent's publisher.

``Notify`` runs ``python -m agent notify`` and collects its JSON log lines; ``write_config``
writes a config pointing at a test broker and ``all_channels`` one channel of each kind at the
local receivers of :mod:`tests.support.alert_receivers`; ``publisher`` is the agent's real
``EventPublisher``, connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from agent.mqtt.config import MqttSettings
from agent.mqtt.publisher import EventPublisher
from tests.support.alert_receivers import SECRET, TOKEN, AlertReceivers, SmtpReceiver
from tests.support.mosquitto import wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.support.mosquitto import Mosquitto

REPO = Path(__file__).resolve().parents[2]


class BrokerAddress(Protocol):
    """Where the broker listens (a ``Mosquitto``, or any host/port pair)."""

    host: str
    port: int


class Notify:
    """One `altiwatch notify` process and its JSON log lines."""

    def __init__(self, config: Path) -> None:
        """Start it."""
        self.config = config
        self.lines: list[dict[str, Any]] = []
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent",
                "notify",
                "--config",
                str(config),
                "--log-format",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                self.lines.append({"raw": line.rstrip()})

    def events(self, name: str) -> list[dict[str, Any]]:
        """Log records named ``name``."""
        return [ln for ln in self.lines if ln.get("event") == name]

    async def subscribed(self) -> None:
        """Wait until it has subscribed."""
        await wait_until(
            lambda: bool(self.events("notify_subscribed")), within=30, what="notify subscribed"
        )

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._close()

    def _close(self) -> None:
        self._reader.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def stop(self) -> int:
        """SIGTERM and wait; the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=10)
        self._close()
        return code


def secret_file(directory: Path, name: str, value: str) -> dict[str, str]:
    """Write a secret file; its ``{file: PATH}`` source."""
    path = directory / name
    path.write_text(value + "\n", encoding="utf-8")
    return {"file": str(path)}


def all_channels(
    d: Path, rx: AlertReceivers, smtp: SmtpReceiver | None = None
) -> list[dict[str, Any]]:
    """One channel of each kind (e-mail with ``smtp``), pointed at the local receivers."""
    channels: list[dict[str, Any]] = [
        {"type": "dingtalk", "name": "dingtalk", "url": f"{rx.base}/dingtalk/robot/send",
         "access_token": secret_file(d, "dt_token", TOKEN), "secret": secret_file(d, "dt_secret", SECRET)},
        {"type": "wecom", "name": "wecom", "url": f"{rx.base}/wecom/cgi-bin/webhook/send",
         "key": secret_file(d, "wecom_key", TOKEN)},
        {"type": "feishu", "name": "feishu", "url": f"{rx.base}/feishu/open-apis/bot/v2/hook",
         "token": secret_file(d, "fs_token", TOKEN), "secret": secret_file(d, "fs_secret", SECRET),
         "language": "en"},
        {"type": "telegram", "name": "telegram", "api_url": f"{rx.base}/telegram",
         "bot_token": secret_file(d, "tg_token", f"123456:{TOKEN}"), "chat_id": "-1001"},
        {"type": "slack", "name": "slack",
         "webhook_url": secret_file(d, "slack_url", f"{rx.base}/slack/services/T0/B0/{TOKEN}")},
        {"type": "webhook", "name": "webhook", "url": f"{rx.base}/webhook",
         "secret": secret_file(d, "wh_secret", SECRET)},
    ]  # fmt: skip
    if smtp is not None:
        channels.append(
            {"type": "email", "name": "email", "host": "127.0.0.1", "port": smtp.port,
             "ca_file": str(smtp.cert), "username": smtp.USER,
             "password": secret_file(d, "smtp_pw", smtp.PASSWORD),
             "from_addr": "altiwatch@delingha.test", "to": ["crew@delingha.test"]}
        )  # fmt: skip
    return channels


def write_config(
    directory: Path,
    broker: BrokerAddress,
    channels: list[dict[str, Any]],
    *,
    client_id: str,
    broker_extra: dict[str, Any] | None = None,
    **extra: Any,
) -> Path:
    """A notify config file in ``directory`` (its state dir beside it)."""
    directory.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "broker": {
            "host": broker.host,
            "port": broker.port,
            "group": "crew",
            "client_id": client_id,
            **(broker_extra or {}),
        },
        "state_dir": str(directory / "state"),
        "language": "zh",
        "group_window_s": 0.5,
        "retry_min_s": 0.2,
        "retry_max_s": 1.0,
        "channels": channels,
        **extra,
    }
    path = directory / "notify.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def publisher(
    broker: Mosquitto, state: Path, site: str, agent_id: str = "notify-test"
) -> AsyncIterator[EventPublisher]:
    """The agent's real publisher, connected."""
    settings = MqttSettings(enabled=True, host=broker.host, port=broker.port)
    pub = EventPublisher(settings, agent_id=agent_id, state_dir=state, sites=[site])
    task = asyncio.create_task(pub.run(), name="test.publisher")
    try:
        await wait_until(lambda: pub.stats().connected, within=20, what="publisher connected")
        yield pub
        await wait_until(lambda: pub.stats().outbox_depth == 0, within=20, what="outbox drained")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        pub.close()


def delivered_ids(rx: AlertReceivers, vendor: str = "webhook") -> Counter[str]:
    """How many times each event_id reached the signed webhook."""
    return Counter(i for hit in rx.accepted(vendor) for i in hit.body["event_ids"])
