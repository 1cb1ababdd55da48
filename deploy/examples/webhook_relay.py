#!/usr/bin/env python3

"""Relay altiwatch alarm events from MQTT to a webhook, sharing the load between instances.

Every instance subscribes to ``$share/<group>/<prefix>/<site|+>/events`` (QoS1), so the broker
hands each event to ONE instance of the group: run two or more for redundancy and throughput.
Each alarm event (payload schema ``altiwatch.alarm/1``) is POSTed as JSON to ``--url`` with
headers ``X-Altiwatch-Event-Id`` (consumers dedupe on it: MQTT QoS1 is at-least-once) and
``X-Altiwatch-Relay`` (this instance). Failed POSTs are retried with backoff.

    python deploy/examples/webhook_relay.py --host broker.lan --url https://hooks.example/alarm \
        --group pager --severity warning

Needs only the agent's dependencies (aiomqtt, aiohttp). Stops on SIGTERM/SIGINT. Prints one
JSON line per relayed event on stdout (``{"event": "relayed", ...}``) and
``{"event": "relay_subscribed", ...}`` once subscribed.

Limitation: aiomqtt 2.x acknowledges a message as soon as it is received, so an event received
but not yet POSTed when the relay is killed is lost for this group; keep the agent's retained
alarm topics (``<prefix>/<site>/<miner>/alarm/<rule>``) as the source of truth.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt

SEVERITY_RANK = {"info": 1, "warning": 2, "critical": 3}


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _wanted(payload: dict[str, Any], severity: str | None) -> bool:
    if payload.get("schema") != "altiwatch.alarm/1":
        return False
    if severity is None:
        return True
    level = payload.get("severity")
    if payload.get("event") == "cleared" and payload.get("previous_severity"):
        level = payload["previous_severity"]
    return SEVERITY_RANK.get(str(level), 0) >= SEVERITY_RANK[severity]


async def _post(
    http: aiohttp.ClientSession, args: argparse.Namespace, payload: dict[str, Any]
) -> bool:
    headers = {
        "X-Altiwatch-Event-Id": str(payload.get("event_id")),
        "X-Altiwatch-Relay": args.client_id,
    }
    delay = 0.5
    for attempt in range(1, args.retries + 1):
        try:
            async with http.post(args.url, json=payload, headers=headers) as resp:
                if resp.status < 300:  # noqa: PLR2004 - HTTP success
                    return True
                if resp.status < 500:  # noqa: PLR2004 - client errors are not retried
                    break
        except (aiohttp.ClientError, TimeoutError) as exc:
            sys.stderr.write(f"webhook_relay: POST attempt {attempt} failed: {exc}\n")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)
    sys.stderr.write(f"webhook_relay: giving up on {payload.get('event_id')}\n")
    return False


async def relay(args: argparse.Namespace) -> None:
    """Subscribe with the shared group and POST every wanted event; reconnect forever."""
    site = args.site or "+"
    topic = f"$share/{args.group}/{args.prefix.strip('/')}/{site}/events"
    password = args.password
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    # One Client reused across reconnects keeps messages already received in its queue.
    client = aiomqtt.Client(
        args.host,
        args.port,
        identifier=args.client_id,
        username=args.username,
        password=password,
        protocol=aiomqtt.ProtocolVersion.V5,
    )
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while True:
            try:
                async with client:
                    await client.subscribe(topic, qos=1)
                    _emit({"event": "relay_subscribed", "topic": topic, "relay": args.client_id})
                    async for message in client.messages:
                        try:
                            payload = json.loads(bytes(message.payload or b""))
                        except ValueError:
                            continue
                        if isinstance(payload, dict) and _wanted(payload, args.severity):
                            ok = await _post(http, args, payload)
                            _emit(
                                {
                                    "event": "relayed" if ok else "relay_failed",
                                    "event_id": payload.get("event_id"),
                                    "relay": args.client_id,
                                }
                            )
            except aiomqtt.MqttError as exc:
                sys.stderr.write(f"webhook_relay: {exc}; reconnecting in 1 s\n")
                await asyncio.sleep(1.0)


async def _main(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await relay(args)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and relay until signalled."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--prefix", default="altiwatch/v1")
    parser.add_argument("--site", help="only this site (default: all)")
    parser.add_argument("--group", default="altiwatch-webhook", help="shared subscription group")
    parser.add_argument("--url", required=True, help="webhook URL (POST, JSON body)")
    parser.add_argument("--severity", choices=list(SEVERITY_RANK), help="minimum severity")
    parser.add_argument(
        "--client-id", default=f"webhook-relay-{socket.gethostname()}-{os.getpid()}"
    )
    parser.add_argument("--username")
    parser.add_argument("--password-file")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per POST")
    parser.add_argument("--retries", type=int, default=5)
    args = parser.parse_args(argv)
    args.password = Path(args.password_file).read_text().strip() if args.password_file else None
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
