r"""Feishu / Lark custom bots (飞书自定义机器人): text messages, signed with the bot's secret.

Signing, as Feishu documents it: ``timestamp`` is the current time in seconds; HMAC-SHA256 is
computed over an EMPTY message with the key ``"{timestamp}\n{secret}"``, Base64-encoded, and
sent as ``timestamp`` (a string) and ``sign`` in the JSON body. The reply is ``{"code": 0}``
(older deployments: ``{"StatusCode": 0}``) on success.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from agent.alerts.channels.base import check_code, dumps, post_json

if TYPE_CHECKING:
    import aiohttp
    from pydantic import SecretStr

    from agent.alerts.queue import Batch
    from agent.alerts.templates import Message


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """The ``sign`` body field for ``timestamp_s``."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class Feishu:
    """One Feishu / Lark bot."""

    def __init__(
        self,
        name: str,
        language: str,
        min_severity: str,
        *,
        url: str,
        token: SecretStr,
        secret: SecretStr | None,
    ) -> None:
        """Keep the endpoint and secrets."""
        self.name, self.language, self.min_severity = name, language, min_severity
        self._url = url.rstrip("/")
        self._token = token
        self._secret = secret

    def body(self, message: Message, now_s: int | None = None) -> dict[str, Any]:
        """The JSON body, signed when a secret is configured."""
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": message.text}}
        if self._secret is not None:
            ts = now_s if now_s is not None else int(time.time())
            body = {
                "timestamp": str(ts),
                "sign": feishu_sign(self._secret.get_secret_value(), ts),
                **body,
            }
        return body

    async def send(self, http: aiohttp.ClientSession, message: Message, batch: Batch) -> None:
        """POST a text message."""
        del batch
        url = f"{self._url}/{urllib.parse.quote(self._token.get_secret_value())}"
        check_code(await post_json(http, url, body=dumps(self.body(message))), "code", "StatusCode")
