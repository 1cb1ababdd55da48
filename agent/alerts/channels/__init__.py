"""One module per alert channel; ``build_channel`` makes one from its config (secrets read)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.alerts.channels.dingtalk import DingTalk
from agent.alerts.channels.email import Email
from agent.alerts.channels.feishu import Feishu
from agent.alerts.channels.slack import Slack
from agent.alerts.channels.telegram import Telegram
from agent.alerts.channels.webhook import Webhook
from agent.alerts.channels.wecom import WeCom
from agent.alerts.config import (
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    SlackChannel,
    TelegramChannel,
    WebhookChannel,
    WeComChannel,
)

if TYPE_CHECKING:
    from agent.alerts.channels.base import Channel
    from agent.alerts.config import Channel as ChannelConfig
    from agent.alerts.config import NotifyConfig


def build_channel(  # noqa: PLR0911 - one return per channel type
    cfg: ChannelConfig, root: NotifyConfig, env: dict[str, str]
) -> Channel:
    """The channel ``cfg`` describes, its secrets read now (``ConfigError`` when unreadable)."""
    common = (cfg.name, cfg.language or root.language, cfg.min_severity or root.min_severity)
    match cfg:
        case DingTalkChannel():
            return DingTalk(
                *common,
                url=cfg.url,
                access_token=cfg.access_token.read(env),
                secret=cfg.secret.read(env) if cfg.secret else None,
            )
        case WeComChannel():
            return WeCom(*common, url=cfg.url, key=cfg.key.read(env))
        case FeishuChannel():
            return Feishu(
                *common,
                url=cfg.url,
                token=cfg.token.read(env),
                secret=cfg.secret.read(env) if cfg.secret else None,
            )
        case TelegramChannel():
            return Telegram(
                *common, api_url=cfg.api_url, bot_token=cfg.bot_token.read(env), chat_id=cfg.chat_id
            )
        case SlackChannel():
            return Slack(*common, url=cfg.webhook_url.read(env))
        case WebhookChannel():
            return Webhook(*common, url=cfg.url, secret=cfg.secret.read(env))
        case EmailChannel():
            return Email(
                *common,
                host=cfg.host,
                port=cfg.port,
                username=cfg.username,
                password=cfg.password.read(env) if cfg.password else None,
                ca_file=cfg.ca_file,
                from_addr=cfg.from_addr,
                to=cfg.to,
                timeout_s=root.http_timeout_s,
            )
