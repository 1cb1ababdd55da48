"""Slack-compatible incoming webhooks (Slack, Mattermost, Rocket.Chat): ``{"text": ...}``.

The webhook URL is the credential; any 2xx answer is success.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.alerts.channels.base import dumps, post_json

if TYPE_CHECKING:
    import aiohttp
    from pydantic import SecretStr

    from agent.alerts.queue import Batch
    from agent.alerts.templates import Message


class Slack:
    """One incoming webhook."""

    def __init__(self, name: str, language: str, min_severity: str, *, url: SecretStr) -> None:
        """Keep the webhook URL."""
        self.name, self.language, self.min_severity = name, language, min_severity
        self._url = url

    async def send(self, http: aiohttp.ClientSession, message: Message, batch: Batch) -> None:
        """POST the text."""
        del batch
        await post_json(http, self._url.get_secret_value(), body=dumps({"text": message.text}))
