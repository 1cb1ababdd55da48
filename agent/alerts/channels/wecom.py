"""WeCom group robots (企业微信群机器人): Markdown messages to ``webhook/send?key=KEY``.

The key in the URL is the robot's only credential (WeCom robots have no signature); the reply is
``{"errcode": 0, "errmsg": "ok"}`` on success. WeCom caps Markdown content at 4096 bytes.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING

from agent.alerts.channels.base import check_code, dumps, post_json

if TYPE_CHECKING:
    import aiohttp
    from pydantic import SecretStr

    from agent.alerts.queue import Batch
    from agent.alerts.templates import Message

MAX_BYTES = 4096


def clip_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, on a character boundary."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode(errors="ignore") + "…"


class WeCom:
    """One WeCom robot."""

    def __init__(
        self, name: str, language: str, min_severity: str, *, url: str, key: SecretStr
    ) -> None:
        """Keep the endpoint and key."""
        self.name, self.language, self.min_severity = name, language, min_severity
        self._url = url
        self._key = key

    async def send(self, http: aiohttp.ClientSession, message: Message, batch: Batch) -> None:
        """POST a Markdown message."""
        del batch
        body = {
            "msgtype": "markdown",
            "markdown": {"content": clip_utf8(message.markdown, MAX_BYTES)},
        }
        url = f"{self._url}?key={urllib.parse.quote(self._key.get_secret_value())}"
        check_code(await post_json(http, url, body=dumps(body)), "errcode")
