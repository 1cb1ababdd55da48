"""``NotifyService``: consumer → durable queue → grouping → channels, with retries and backoff.

Two named tasks in one TaskGroup: the consumer commits each wanted event to the queue (one
pending row per channel whose severity filter it passes); the dispatcher closes groups whose
window has passed into batches, renders each batch in its channel's language and sends it,
rescheduling a failure with exponential, jittered backoff (``retry_min_s`` doubling up to
``retry_max_s``) from the queue itself, so retries survive a restart; the first success after
a failure makes the rest of that channel's backlog due at once. Channels are independent:
one vendor down delays only its own messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog

from agent.alerts import grouping, templates
from agent.alerts.channels import build_channel
from agent.alerts.channels.base import DeliveryError
from agent.alerts.consumer import EventConsumer
from agent.alerts.queue import AlertQueue

if TYPE_CHECKING:
    from agent.alerts.channels.base import Channel
    from agent.alerts.config import NotifyConfig
    from agent.alerts.queue import Batch

log = structlog.get_logger("agent.alerts.service")
PRUNE_EVERY_S = 3600.0


def backoff_s(attempts: int, low: float, high: float) -> float:
    """Delay before try ``attempts + 1``: ``low`` doubling per failure, capped, jittered ±20 %."""
    base = min(high, low * 2 ** min(attempts, 30))
    jitter: float = random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography
    return float(base) * jitter


class NotifyService:
    """One ``altiwatch notify`` instance."""

    def __init__(self, config: NotifyConfig, env: dict[str, str]) -> None:
        """Read the secrets and open the durable queue (``ConfigError`` on a missing secret)."""
        self.config = config
        self.channels: dict[str, Channel] = {
            c.name: build_channel(c, config, env) for c in config.channels
        }
        password = config.broker.password.read(env) if config.broker.password else None
        self.queue = AlertQueue(config.resolved_state_dir(env))
        self.consumer = EventConsumer(
            config.broker,
            self.accept,
            password=password.get_secret_value() if password else None,
        )
        self._wake = asyncio.Event()

    def accept(self, payload: dict[str, Any]) -> None:
        """Queue one event from the stream (a duplicate ``event_id`` is dropped)."""
        cfg = self.config
        if not grouping.is_alert(payload, min_severity="info", miner_status=cfg.miner_status):
            return
        targets = [
            name for name, ch in self.channels.items() if grouping.passes(payload, ch.min_severity)
        ]
        if not targets:
            return
        event_id = payload["event_id"]
        if self.queue.accept(payload, targets, grouping.group_key(payload), time.time()):
            log.info(
                "alert_queued",
                event_id=event_id,
                site=payload.get("site"),
                rule=payload.get("rule"),
                transition=payload.get("event"),
                channels=targets,
            )
            self._wake.set()
        else:
            log.info("alert_duplicate", event_id=event_id)

    async def run(self) -> None:
        """Consume and dispatch until cancelled."""
        timeout = aiohttp.ClientTimeout(total=self.config.http_timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http, asyncio.TaskGroup() as tg:
                tg.create_task(self.consumer.run(), name="notify.consumer")
                tg.create_task(self._dispatch(http), name="notify.dispatcher")
        finally:
            self.queue.close()

    async def _dispatch(self, http: aiohttp.ClientSession) -> None:
        cfg = self.config
        last_prune = 0.0
        while True:
            now = time.time()
            if now - last_prune > PRUNE_EVERY_S:
                self.queue.prune_seen(now - cfg.dedupe_retention_s)
                last_prune = now
            self.queue.close_groups(cfg.group_window_s, now)
            due = self.queue.due(now)
            if due:
                await asyncio.gather(*(self._send(http, b) for b in due))
                continue
            wake_at = self.queue.next_wakeup(cfg.group_window_s)
            wait = None if wake_at is None else max(0.0, wake_at - time.time())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _send(self, http: aiohttp.ClientSession, batch: Batch) -> None:
        cfg = self.config
        channel = self.channels.get(batch.channel)
        if channel is None:  # a channel removed from the config: its backlog is dropped
            log.warning("alert_channel_gone", channel=batch.channel, events=len(batch.events))
            self.queue.delivered(batch.id)
            return
        message = templates.render(batch.events, channel.language, max_lines=cfg.group_max_lines)
        try:
            await channel.send(http, message, batch)
        except DeliveryError as exc:
            now = time.time()
            if now - batch.created_at > cfg.give_up_after_s:
                log.error(  # noqa: TRY400 - an expected outcome: the traceback says nothing
                    "alert_given_up",
                    channel=batch.channel,
                    event_ids=batch.event_ids,
                    attempts=batch.attempts + 1,
                    reason=exc.reason,
                )
                self.queue.delivered(batch.id)
                return
            delay = backoff_s(batch.attempts, cfg.retry_min_s, cfg.retry_max_s)
            self.queue.retry_at(batch.id, now + delay)
            log.warning(
                "alert_delivery_failed",
                channel=batch.channel,
                reason=exc.reason,
                attempt=batch.attempts + 1,
                retry_in_s=round(delay, 2),
                events=len(batch.events),
            )
            return
        self.queue.delivered(batch.id)
        if batch.attempts > 0 and self.queue.hurry(batch.channel, time.time()):
            self._wake.set()  # the vendor is back: send its backlog now
        log.info(
            "alert_delivered",
            channel=batch.channel,
            event_ids=batch.event_ids,
            events=len(batch.events),
            attempts=batch.attempts + 1,
        )
