"""What every channel shares: the ``Channel`` interface, ``DeliveryError`` and a JSON POST.

A channel turns one rendered message (and its batch of events) into one request to a vendor.
``send`` returns when the vendor accepted the message and raises ``DeliveryError`` otherwise;
the reason is safe to log (a status or error class: never a URL, since tokens live in URLs).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp

if TYPE_CHECKING:
    from agent.alerts.queue import Batch
    from agent.alerts.templates import Message

HTTP_OK_MAX = 299


class DeliveryError(Exception):
    """A channel did not accept a message; ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        """Keep the loggable reason."""
        super().__init__(reason)
        self.reason = reason


class Channel(Protocol):
    """One configured destination."""

    name: str
    language: str
    min_severity: str

    async def send(self, http: aiohttp.ClientSession, message: Message, batch: Batch) -> None:
        """Deliver ``message``; raise ``DeliveryError`` unless the vendor accepted it."""


async def post_json(
    http: aiohttp.ClientSession,
    url: str,
    *,
    body: bytes,
    headers: dict[str, str] | None = None,
) -> Any:
    """POST ``body`` as JSON; return the decoded reply (None when not JSON) or raise."""
    try:
        async with http.post(
            url, data=body, headers={"Content-Type": "application/json", **(headers or {})}
        ) as resp:
            text = await resp.text()
            if resp.status > HTTP_OK_MAX:
                msg = f"HTTP {resp.status}"
                raise DeliveryError(msg)
    except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError) as exc:
        # str(exc) of a response error quotes the URL, and the URL may hold a token.
        raise DeliveryError(type(exc).__name__) from exc
    try:
        return json.loads(text)
    except ValueError:
        return None


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as sent on the wire (and signed)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def check_code(reply: Any, *keys: str) -> None:
    """Raise unless ``reply`` (a vendor's JSON answer) has 0 under the first key present."""
    if isinstance(reply, dict):
        for key in keys:
            if key in reply:
                if reply[key] == 0:
                    return
                msg = f"{key} {reply[key]}"
                raise DeliveryError(msg)
    msg = "unexpected reply"
    raise DeliveryError(msg)
