"""The generic JSON webhook, signed with HMAC-SHA256 so the receiver can trust it.

Each grouped message is one POST of ``altiwatch.alert/1`` JSON: ``title``, ``text``,
``event_ids`` and the full ``events``. Headers:

* ``X-Altiwatch-Timestamp``: UNIX seconds when the request was signed;
* ``X-Altiwatch-Signature``: ``sha256=`` + hex HMAC-SHA256, keyed by the shared secret, of
  ``"{timestamp}." + body`` (the exact bytes sent): receivers recompute it and compare in
  constant time, and refuse old timestamps;
* ``X-Altiwatch-Delivery``: the first ``event_id`` of the message (an idempotency key).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import TYPE_CHECKING

from agent.alerts.channels.base import dumps, post_json

if TYPE_CHECKING:
    import aiohttp
    from pydantic import SecretStr

    from agent.alerts.queue import Batch
    from agent.alerts.templates import Message

SCHEMA = "altiwatch.alert/1"


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` over ``"{timestamp}." + body``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class Webhook:
    """One signed webhook."""

    def __init__(
        self, name: str, language: str, min_severity: str, *, url: str, secret: SecretStr
    ) -> None:
        """Keep the endpoint and key."""
        self.name, self.language, self.min_severity = name, language, min_severity
        self._url = url
        self._secret = secret

    async def send(self, http: aiohttp.ClientSession, message: Message, batch: Batch) -> None:
        """POST the signed JSON document."""
        body = dumps(
            {
                "schema": SCHEMA,
                "title": message.title,
                "text": message.text,
                "event_ids": batch.event_ids,
                "events": batch.events,
            }
        )
        ts = int(time.time())
        headers = {
            "X-Altiwatch-Timestamp": str(ts),
            "X-Altiwatch-Signature": webhook_signature(self._secret.get_secret_value(), ts, body),
            "X-Altiwatch-Delivery": batch.event_ids[0],
        }
        await post_json(http, self._url, body=body, headers=headers)
