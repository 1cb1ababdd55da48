r"""DingTalk group robots (钉钉自定义机器人): Markdown messages, signed with the robot's secret.

Signing, as DingTalk documents it: ``timestamp`` is the current time in milliseconds; the string
``"{timestamp}\n{secret}"`` is signed with HMAC-SHA256 keyed by the secret, Base64-encoded,
then URL-encoded, and sent as the ``timestamp`` and ``sign`` query parameters next to
``access_token``. The reply is ``{"errcode": 0, ...}`` on success.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
from typing import TYPE_CHECKING

from agent.alerts.channels.base import check_code, dumps, post_json

if TYPE_CHECKING:
    import aiohttp
    from pydantic import SecretStr

    from agent.alerts.queue import Batch
    from agent.alerts.templates import Message


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The ``sign`` query value (already URL-encoded) for ``timestamp_ms``."""
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest))


class DingTalk:
    """One DingTalk robot."""

    def __init__(
        self,
        name: str,
        language: str,
        min_severity: str,
        *,
        url: str,
        access_token: SecretStr,
        secret: SecretStr | None,
    ) -> None:
        """Keep the endpoint and secrets."""
        self.name, self.language, self.min_severity = name, language, min_severity
        self._url = url
        self._token = access_token
        self._secret = secret

    def request_url(self, now_ms: int | None = None) -> str:
        """The send URL with ``access_token`` (and ``timestamp`` and ``sign`` when signed)."""
        query = "access_token=" + urllib.parse.quote(self._token.get_secret_value())
        if self._secret is not None:
            ts = now_ms if now_ms is not None else round(time.time() * 1000)
            query += f"&timestamp={ts}&sign={dingtalk_sign(self._secret.get_secret_value(), ts)}"
        return f"{self._url}?{query}"

    async def send(self, http: aiohttp.ClientSession, message: Message, batch: Batch) -> None:
        """POST a Markdown message."""
        del batch
        body = {
            "msgtype": "markdown",
            "markdown": {"title": message.title, "text": message.markdown},
        }
        reply = await post_json(http, self.request_url(), body=dumps(body))
        check_code(reply, "errcode")
