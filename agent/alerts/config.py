"""The ``altiwatch notify`` config file: broker, durable queue, grouping, templates, channels.

Its own YAML file (``/etc/altiwatch/notify.yaml`` by default), validated strictly. Secrets
(robot tokens, signing keys, passwords) are never written inline: each is a
``{file: PATH}`` or ``{credential: NAME}`` (systemd ``LoadCredential=``, read from
``$CREDENTIALS_DIRECTORY/NAME``), resolved when the service starts and never logged.

Example::

    broker: {host: broker.site.lan, username: notify, password: {credential: mqtt_password}}
    language: zh
    channels:
      - {type: dingtalk, name: crew, access_token: {credential: dingtalk_token},
         secret: {credential: dingtalk_secret}}
      - {type: email, name: office, host: smtp.lan, from_addr: altiwatch@site.lan,
         to: [ops@example.com], username: altiwatch, password: {file: /etc/altiwatch/smtp}}
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from agent.errors import ConfigError
from agent.mqtt.config import TlsSettings

Language = Literal["zh", "en"]
SeverityName = Literal["info", "warning", "critical"]
DEFAULT_CONFIG = Path("/etc/altiwatch/notify.yaml")
DEFAULT_STATE_DIR = Path("/var/lib/altiwatch-notify")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretSource(_Strict):
    """Where a secret is read from: a file, or a systemd credential; exactly one."""

    file: Path | None = Field(default=None, description="File holding the secret.")
    credential: str | None = Field(
        default=None,
        description="systemd credential name, read from `$CREDENTIALS_DIRECTORY/<name>`.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretSource:
        if (self.file is None) == (self.credential is None):
            msg = "give exactly one of file and credential"
            raise ValueError(msg)
        return self

    def read(self, environ: dict[str, str] | None = None) -> SecretStr:
        """Return the secret (trailing newline stripped); ``ConfigError`` when unreadable."""
        path = self.file
        if path is None:
            creds = (environ if environ is not None else dict(os.environ)).get(
                "CREDENTIALS_DIRECTORY"
            )
            if not creds:
                msg = f"credential {self.credential!r}: $CREDENTIALS_DIRECTORY is not set"
                raise ConfigError(msg)
            path = Path(creds) / str(self.credential)
        try:
            return SecretStr(path.read_text(encoding="utf-8").rstrip("\r\n"))
        except OSError as exc:
            msg = f"cannot read secret {path}: {exc.strerror}"
            raise ConfigError(msg) from exc


class BrokerSettings(_Strict):
    """The MQTT broker the events stream is read from (MQTT 5, shared subscription)."""

    host: str = Field(default="127.0.0.1", description="Broker host.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port.")
    username: str | None = Field(default=None, description="Broker user.")
    password: SecretSource | None = Field(default=None, description="Broker password.")
    tls: TlsSettings | None = Field(default=None, description="TLS towards the broker.")
    topic_prefix: str = Field(default="altiwatch/v1", description="Prefix of every topic.")
    sites: list[str] = Field(
        default_factory=list,
        description="Sites whose events are read (topic segments); empty: every site (`+`).",
    )
    group: str = Field(
        default="altiwatch-notify",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Shared-subscription group (`$share/<group>/...`): instances with the same "
        "group split the events and cover each other.",
    )
    client_id: str | None = Field(
        default=None,
        description="MQTT client id, stable across restarts (the persistent session is keyed "
        "on it). Default `altiwatch-notify-<hostname>`.",
    )
    session_expiry_s: int = Field(
        default=24 * 3600,
        ge=0,
        description="How long the broker keeps this instance's session while it is away. The "
        "broker queues the instance's share of the events meanwhile, delivered when it returns "
        "(a restart loses nothing); 0: no session, a stopped instance's share goes to the others "
        "at once, and events published while every instance is down are lost.",
    )
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keepalive.")
    reconnect_max_s: float = Field(
        default=30.0, gt=0, description="Longest delay between reconnect attempts."
    )

    def identifier(self) -> str:
        """The MQTT client id."""
        return self.client_id or f"altiwatch-notify-{socket.gethostname()}"


class _ChannelBase(_Strict):
    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Unique channel name (the durable queue's key: keep it stable).",
    )
    language: Language | None = Field(
        default=None, description="Template language for this channel; default: `language`."
    )
    min_severity: SeverityName | None = Field(
        default=None, description="Lowest alarm severity sent here; default: `min_severity`."
    )


class DingTalkChannel(_ChannelBase):
    """A DingTalk group robot (钉钉自定义机器人), signed when `secret` is set."""

    type: Literal["dingtalk"] = Field(description="`dingtalk`.")
    url: str = Field(
        default="https://oapi.dingtalk.com/robot/send", description="Robot send endpoint."
    )
    access_token: SecretSource = Field(description="The robot's `access_token`.")
    secret: SecretSource | None = Field(
        default=None, description="Signing secret (`SEC…`, 加签): sign every request."
    )


class WeComChannel(_ChannelBase):
    """A WeCom group robot (企业微信群机器人)."""

    type: Literal["wecom"] = Field(description="`wecom`.")
    url: str = Field(
        default="https://qyapi.weixin.qq.com/cgi-bin/webhook/send",
        description="Robot webhook endpoint.",
    )
    key: SecretSource = Field(description="The robot's webhook `key`.")


class FeishuChannel(_ChannelBase):
    """A Feishu / Lark custom bot (飞书自定义机器人), signed when `secret` is set."""

    type: Literal["feishu"] = Field(description="`feishu`.")
    url: str = Field(
        default="https://open.feishu.cn/open-apis/bot/v2/hook",
        description="Hook base URL (Lark: `https://open.larksuite.com/open-apis/bot/v2/hook`).",
    )
    token: SecretSource = Field(description="The hook id (last segment of the webhook URL).")
    secret: SecretSource | None = Field(
        default=None, description="Signing secret (签名校验): sign every request."
    )


class TelegramChannel(_ChannelBase):
    """A Telegram bot posting with `sendMessage`."""

    type: Literal["telegram"] = Field(description="`telegram`.")
    api_url: str = Field(default="https://api.telegram.org", description="Bot API base URL.")
    bot_token: SecretSource = Field(description="The bot token from @BotFather.")
    chat_id: str = Field(description="Chat, group or channel id (`-100…` or `@name`).")


class SlackChannel(_ChannelBase):
    """A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat…)."""

    type: Literal["slack"] = Field(description="`slack`.")
    webhook_url: SecretSource = Field(description="The incoming-webhook URL (it is the secret).")


class WebhookChannel(_ChannelBase):
    """A generic JSON webhook, signed with HMAC-SHA256 (`X-Altiwatch-Signature`)."""

    type: Literal["webhook"] = Field(description="`webhook`.")
    url: str = Field(description="Endpoint receiving a POST per grouped message.")
    secret: SecretSource = Field(description="HMAC-SHA256 key of the signature header.")


class EmailChannel(_ChannelBase):
    """E-mail through an SMTP submission server, always upgraded with STARTTLS."""

    type: Literal["email"] = Field(description="`email`.")
    host: str = Field(description="SMTP server.")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP submission port.")
    username: str | None = Field(default=None, description="SMTP login (after STARTTLS).")
    password: SecretSource | None = Field(default=None, description="SMTP password.")
    ca_file: Path | None = Field(
        default=None, description="CA bundle the server's certificate is checked against."
    )
    from_addr: str = Field(description="Sender address.")
    to: list[str] = Field(min_length=1, description="Recipients.")


Channel = Annotated[
    DingTalkChannel
    | WeComChannel
    | FeishuChannel
    | TelegramChannel
    | SlackChannel
    | WebhookChannel
    | EmailChannel,
    Field(discriminator="type"),
]


class NotifyConfig(_Strict):
    """The whole ``altiwatch notify`` config file."""

    broker: BrokerSettings = Field(
        default_factory=BrokerSettings, description="Broker and shared subscription."
    )
    state_dir: Path | None = Field(
        default=None,
        description="Directory of the durable queue (`notify-queue.sqlite3`). Default: "
        "`$STATE_DIRECTORY` (systemd), else `/var/lib/altiwatch-notify`.",
    )
    language: Language = Field(default="en", description="Template language, `zh` or `en`.")
    min_severity: SeverityName = Field(
        default="warning",
        description="Lowest alarm severity delivered (a `cleared` event counts at the level it "
        "cleared from).",
    )
    miner_status: bool = Field(
        default=False, description="Also deliver `miner_offline` / `miner_online` events."
    )
    group_window_s: float = Field(
        default=30.0,
        ge=0,
        description="Grouping window: events of one site, rule and transition arriving within "
        "this time of the first are sent as one message.",
    )
    group_max_lines: int = Field(
        default=20, ge=1, description="Miners listed in a grouped message before `… and N more`."
    )
    retry_min_s: float = Field(default=2.0, gt=0, description="First retry delay.")
    retry_max_s: float = Field(
        default=300.0, gt=0, description="Longest retry delay (exponential backoff, jittered)."
    )
    give_up_after_s: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="A message still undeliverable this long after it was grouped is dropped "
        "(logged as `alert_given_up`).",
    )
    dedupe_retention_s: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="How long an `event_id` is remembered to drop redelivered duplicates.",
    )
    http_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one delivery.")
    channels: list[Channel] = Field(min_length=1, description="Where alerts are delivered.")

    @model_validator(mode="after")
    def _consistent(self) -> NotifyConfig:
        names = [c.name for c in self.channels]
        if len(names) != len(set(names)):
            msg = "channel names must be unique"
            raise ValueError(msg)
        if self.retry_min_s > self.retry_max_s:
            msg = "retry_min_s must not exceed retry_max_s"
            raise ValueError(msg)
        return self

    def resolved_state_dir(self, environ: dict[str, str] | None = None) -> Path:
        """The durable queue's directory."""
        if self.state_dir is not None:
            return self.state_dir
        env = environ if environ is not None else dict(os.environ)
        state = env.get("STATE_DIRECTORY")
        return Path(state.split(":")[0]) if state else DEFAULT_STATE_DIR


def load_notify_config(path: Path) -> NotifyConfig:
    """Read and validate the YAML file; ``ConfigError`` names the problem."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror}"
        raise ConfigError(msg) from exc
    except yaml.YAMLError as exc:
        msg = f"{path}: not valid YAML: {exc}"
        raise ConfigError(msg) from exc
    try:
        return NotifyConfig.model_validate(data if data is not None else {})
    except ValidationError as exc:
        msg = f"{path}: {exc}"
        raise ConfigError(msg) from exc
