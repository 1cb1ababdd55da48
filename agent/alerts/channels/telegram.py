"""Telegram bots: ``sendMessage`` to one chat (the reply is ``{"ok": true, ...}``).

Telegram caps a message at 4096 characters; longer text is cut.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING

from agent.alerts.channels.base import DeliveryError, dumps, post_json

if TYPE_CHECKING:
    import aiohttp
    from pydantic import SecretStr

    from agent.alerts.queue import Batch
    from agent.alerts.templates import Message

MAX_CHARS = 4096


class Telegram:
    """One bot and chat."""

    def __init__(
        self,
        name: str,
        language: str,
        min_severity: str,
        *,
        api_url: str,
        bot_token: SecretStr,
        chat_id: str,
    ) -> None:
        """Keep the endpoint, token and chat."""
        self.name, self.language, self.min_severity = name, language, min_severity
        self._api = api_url.rstrip("/")
        self._token = bot_token
        self._chat = chat_id

    async def send(self, http: aiohttp.ClientSession, message: Message, batch: Batch) -> None:
        """POST ``sendMessage`` with plain text."""
        del batch
        text = (
            message.text if len(message.text) <= MAX_CHARS else message.text[: MAX_CHARS - 1] + "…"
        )
        body = {"chat_id": self._chat, "text": text, "disable_web_page_preview": True}
        token = urllib.parse.quote(self._token.get_secret_value(), safe=":")
        reply = await post_json(http, f"{self._api}/bot{token}/sendMessage", body=dumps(body))
        if not (isinstance(reply, dict) and reply.get("ok") is True):
            msg = "telegram reply not ok"
            raise DeliveryError(msg)
