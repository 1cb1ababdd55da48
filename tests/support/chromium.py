"""A real headless Chromium (Debian's ``chromium``) driven over the DevTools protocol.

:func:`load_page` starts one browser with a throw-away profile, opens ``url`` in a tab, waits for
its load event and returns a :class:`PageLoad`: the console and log errors the page caused
(``console.error``, uncaught exceptions, failed or blocked loads, CSP violations: whatever
DevTools reports at level error), every URL the page requested, the final DOM, the count of
``<script>`` elements, and a PNG screenshot of the whole page. Everything the browser reports
before the load event (and before a round trip after it) is in; nothing is waited on by sleeping.

``python -m tests.support.chromium URL OUT.png`` takes the screenshot on its own (how
docs/images/site-page.png was made from ``make demo``'s agent).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
START_TIMEOUT_S = 30.0
LOAD_TIMEOUT_S = 30.0
DEVTOOLS_LINE = re.compile(r"DevTools listening on (ws://\S+)")
FLAGS = (
    "--headless",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
)


def browser() -> str | None:
    """The Chromium executable, or None when not installed."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@dataclass(slots=True)
class PageLoad:
    """What loading one page produced."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dom: str = ""
    scripts: int = 0
    png: bytes = b""


class _DevTools:
    """One websocket to the browser; commands in a flat session, events collected."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        """Send one command and return its result; events seen meanwhile are kept in order."""
        ident = next(self.ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self.ws.send_json(message)
        while True:
            reply = await self.ws.receive_json()
            if reply.get("id") == ident:
                if "error" in reply:
                    msg = f"{method}: {reply['error']}"
                    raise RuntimeError(msg)
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    async def until_event(self, method: str) -> dict[str, Any]:
        """Wait for the next event ``method`` (earlier events kept)."""
        for seen in self.events:
            if seen["method"] == method:
                return seen
        while True:
            event: dict[str, Any] = await self.ws.receive_json()
            if "method" in event:
                self.events.append(event)
                if event["method"] == method:
                    return event


def _errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in {"error", "assert"}:
            args = [str(a.get("value", a.get("description", ""))) for a in params.get("args", [])]
            out.append("console.error: " + " ".join(args))
        elif method == "Runtime.exceptionThrown":
            out.append("exception: " + str(params.get("exceptionDetails", {}).get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            out.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            out.append(f"load failed: {params.get('errorText')} {params.get('blockedReason', '')}")
    return out


async def _drive(
    ws_url: str, url: str, *, width: int, height: int, headers: dict[str, str]
) -> PageLoad:
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
        tools = _DevTools(ws)
        target = await tools.call("Target.createTarget", url="about:blank")
        attached = await tools.call(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        session = attached["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            await tools.call(f"{domain}.enable", session)
        await tools.call(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        if headers:
            await tools.call("Network.setExtraHTTPHeaders", session, headers=headers)
        tools.events.clear()
        await tools.call("Page.navigate", session, url=url)
        await tools.until_event("Page.loadEventFired")
        dom = await tools.call(
            "Runtime.evaluate",
            session,
            expression="[document.documentElement.outerHTML, document.scripts.length,"
            " document.documentElement.scrollHeight]",
            returnByValue=True,
        )
        html, scripts, full_height = dom["result"]["value"]
        await tools.call(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=width,
            height=max(height, int(full_height)),
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = await tools.call("Page.captureScreenshot", session, format="png")
        return PageLoad(
            errors=_errors(tools.events),
            requests=[
                e["params"]["request"]["url"]
                for e in tools.events
                if e["method"] == "Network.requestWillBeSent"
            ],
            dom=html,
            scripts=int(scripts),
            png=base64.b64decode(shot["data"]),
        )


async def _devtools_url(proc: asyncio.subprocess.Process) -> str:
    assert proc.stderr is not None
    seen = []
    async with asyncio.timeout(START_TIMEOUT_S):
        while line := (await proc.stderr.readline()).decode(errors="replace"):
            seen.append(line)
            if match := DEVTOOLS_LINE.search(line):
                return match.group(1)
    msg = "chromium exited before listening for DevTools:\n" + "".join(seen[-20:])
    raise RuntimeError(msg)


async def _drain(stream: asyncio.StreamReader | None) -> None:
    """Keep reading the browser's stderr so it never blocks on a full pipe."""
    if stream is not None:
        while await stream.readline():
            pass


async def load_page_async(
    url: str,
    *,
    width: int = 1280,
    height: int = 800,
    headers: dict[str, str] | None = None,
    executable: str | None = None,
) -> PageLoad:
    """Load ``url`` in a fresh headless Chromium; see the module docstring."""
    executable = executable or browser()
    if executable is None:
        msg = "chromium is not installed (make setup installs Debian's package when root)"
        raise FileNotFoundError(msg)
    with tempfile.TemporaryDirectory(prefix="altiwatch-chromium-") as profile:
        args = [*FLAGS, f"--user-data-dir={profile}"]
        if os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        proc = await asyncio.create_subprocess_exec(
            executable,
            *args,
            "about:blank",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        drain: asyncio.Task[None] | None = None
        try:
            ws_url = await _devtools_url(proc)
            drain = asyncio.create_task(_drain(proc.stderr))
            async with asyncio.timeout(LOAD_TIMEOUT_S):
                return await _drive(ws_url, url, width=width, height=height, headers=headers or {})
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)  # the browser and its renderer/GPU/zygote children
            await proc.wait()
            if drain is not None:
                drain.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await drain


def load_page(url: str, **kwargs: Any) -> PageLoad:
    """:func:`load_page_async` from synchronous code."""
    return asyncio.run(load_page_async(url, **kwargs))


def main(argv: list[str] | None = None) -> int:
    """Screenshot ``url`` into ``out`` (PNG); print the page's errors and exit 1 if any."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    args = parser.parse_args(argv)
    page = load_page(args.url, width=args.width, height=args.height)
    args.out.write_bytes(page.png)
    for error in page.errors:
        print(error, file=sys.stderr)
    return 1 if page.errors else 0


if __name__ == "__main__":
    sys.exit(main())
