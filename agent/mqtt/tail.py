"""``altiwatch events tail``: a human alert subscriber printing the site event streams.

Subscribes to ``<prefix>/<site|+>/events`` (QoS1) and prints one readable line per event
(coloured by severity on a terminal) or, with ``--json``, the payload as one JSON line.
``--severity`` keeps alarm events at or above a level (a ``cleared`` event counts at the level
it cleared from); miner and agent events are shown unless ``--alarms-only``. Reconnects by
itself when the broker goes away. Broker settings come from ``--config`` (the agent's YAML)
and/or the command-line flags, the flags winning.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiomqtt
from rich.console import Console
from rich.markup import escape

from agent.mqtt.events import Topics

if TYPE_CHECKING:
    import argparse

    from agent.mqtt.config import MqttSettings

SEVERITY_RANK = {"info": 1, "warning": 2, "critical": 3}
_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan", "cleared": "green"}


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``events tail`` (and ``events audit``) to the ``altiwatch`` command line."""
    events = subparsers.add_parser("events", help="MQTT event tools")
    sub = events.add_subparsers(dest="events_command", metavar="ACTION", required=True)
    tail = sub.add_parser("tail", help="print the site event streams as they arrive")
    tail.add_argument("--config", type=Path, help="agent config to take the mqtt: section from")
    tail.add_argument("--host", help="broker host (default from --config, else 127.0.0.1)")
    tail.add_argument("--port", type=int, help="broker port (default 1883)")
    tail.add_argument("--prefix", help="topic prefix (default altiwatch/v1)")
    tail.add_argument("--site", help="only this site (default: every site)")
    tail.add_argument("--severity", choices=list(SEVERITY_RANK), help="minimum alarm severity")
    tail.add_argument("--alarms-only", action="store_true", help="hide miner/agent events")
    tail.add_argument("--json", action="store_true", help="print payloads as JSON lines")
    tail.add_argument("--count", type=int, help="exit after printing this many events")
    tail.add_argument("--username")
    tail.add_argument("--password-file", type=Path)
    tail.add_argument("--ca-file", type=Path, help="CA bundle: connect with TLS")
    tail.add_argument("--cert-file", type=Path, help="client certificate (mutual TLS)")
    tail.add_argument("--key-file", type=Path, help="client key (mutual TLS)")
    tail.set_defaults(handler=run_tail)
    from agent.mqtt import audit  # noqa: PLC0415 - a sibling subcommand of `events`

    audit.register(sub)


def _settings(args: argparse.Namespace) -> MqttSettings:
    from agent.mqtt.config import MqttSettings, TlsSettings  # noqa: PLC0415 - CLI-only path

    base = MqttSettings()
    if args.config is not None:
        from agent.config import load_config  # noqa: PLC0415 - only with --config

        base = load_config(args.config).mqtt
    update: dict[str, Any] = {}
    for flag, field in (("host", "host"), ("port", "port"), ("prefix", "topic_prefix")):
        if getattr(args, flag) is not None:
            update[field] = getattr(args, flag)
    if args.username is not None:
        update["username"] = args.username
    if args.password_file is not None:
        update["password_file"] = args.password_file
        update["password"] = None
    if args.ca_file is not None or args.cert_file is not None:
        update["tls"] = TlsSettings(
            ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file
        )
    return MqttSettings.model_validate({**base.model_dump(), **update})


def wanted(payload: dict[str, Any], *, severity: str | None, alarms_only: bool) -> bool:
    """Whether an event passes the ``--severity`` / ``--alarms-only`` filters."""
    if "rule" not in payload:
        return not alarms_only
    if severity is None:
        return True
    level = payload.get("severity")
    if payload.get("event") == "cleared" and payload.get("previous_severity"):
        level = payload["previous_severity"]
    return SEVERITY_RANK.get(str(level), 0) >= SEVERITY_RANK[severity]


def _num(value: object, unit: str = "") -> str:
    return f"{value:.1f}{unit}" if isinstance(value, int | float) else "?"


def render(payload: dict[str, Any]) -> tuple[str, str]:
    """A one-line description of an event and its rich style."""
    ts = str(payload.get("ts", ""))[:19].replace("T", " ")
    where = f"{payload.get('site')}/{payload.get('miner') or '-'}"
    event = str(payload.get("event", "?"))
    if "rule" in payload:
        sev = str(payload.get("severity", "?"))
        style = _STYLE["cleared"] if event == "cleared" else _STYLE.get(sev, "")
        head = f"{ts} {sev.upper():<8} {event:<11} {where} {payload.get('rule')}"
        value = (
            f"{_num(payload.get('value'))} vs {_num(payload.get('threshold'))}"
            f" (sea level {_num(payload.get('sea_level_threshold'))},"
            f" {_num(payload.get('altitude_m'), ' m')}, δ {payload.get('delta')})"
        )
        summary = payload.get("summary") or ""
        return f"{head}  {value}  {summary}".rstrip(), style
    detail = payload.get("reason") or payload.get("version") or ""
    style = "red" if event == "miner_offline" else "dim"
    return f"{ts} {'EVENT':<8} {event:<11} {where} {detail}".rstrip(), style


def _tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    tls = settings.tls
    if tls is None:
        return None
    ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file is not None and tls.key_file is not None:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return ctx


async def tail(args: argparse.Namespace, settings: MqttSettings, console: Console) -> int:
    """Subscribe and print until ``--count`` events were printed (or forever)."""
    topic = Topics(settings.topic_prefix).all_events(args.site)
    password = settings.resolve_password()
    printed = 0
    while True:
        try:
            async with aiomqtt.Client(
                settings.host,
                settings.port,
                username=settings.username,
                password=password.get_secret_value() if password is not None else None,
                tls_context=_tls_context(settings),
            ) as client:
                await client.subscribe(topic, qos=1)
                sys.stderr.write(
                    f"altiwatch events tail: subscribed to {topic}"
                    f" on {settings.host}:{settings.port}\n"
                )
                sys.stderr.flush()
                async for message in client.messages:
                    if not isinstance(message.payload, bytes | bytearray) or not message.payload:
                        continue
                    try:
                        payload = json.loads(message.payload)
                    except ValueError:
                        continue
                    if not isinstance(payload, dict) or not wanted(
                        payload, severity=args.severity, alarms_only=args.alarms_only
                    ):
                        continue
                    if args.json:
                        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
                        sys.stdout.flush()
                    else:
                        line, style = render(payload)
                        console.print(escape(line), style=style, highlight=False, soft_wrap=True)
                    printed += 1
                    if args.count is not None and printed >= args.count:
                        return 0
        except aiomqtt.MqttError as exc:
            sys.stderr.write(f"altiwatch events tail: {exc}; reconnecting\n")
            await asyncio.sleep(1.0)


def run_tail(args: argparse.Namespace) -> int:
    """Entry point of ``altiwatch events tail``."""
    from agent.errors import ConfigError  # noqa: PLC0415 - CLI-only path

    try:
        settings = _settings(args)
    except (ConfigError, ValueError) as exc:
        sys.stderr.write(f"altiwatch events tail: {exc}\n")
        return 78
    return asyncio.run(tail(args, settings, Console()))
