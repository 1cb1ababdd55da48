"""The real daemon serves its port from a child process: priority, pass-through, restarts, exit."""

from __future__ import annotations

import gzip
import json
import os
import signal
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.http_front import FRONT_NICE
from tests.support.agent import agent_config, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.support.agent import AgentProcess

MINER = "127.30.20.1"  # nothing listens here: the miner is down, the agent is up


def _events(agent: AgentProcess, name: str) -> list[dict[str, Any]]:
    out = []
    for line in agent.output().splitlines():
        if f'"{name}"' in line:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return [e for e in out if e.get("event") == name]


def _front_pids(agent: AgentProcess) -> list[int]:
    """Pids of the fronts the agent started, oldest first (from their own log lines)."""
    return [int(e["pid"]) for e in _events(agent, "http_front_serving")]


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name; None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def _gone(pid: int) -> bool:
    fields = _stat(pid)
    return fields is None or fields[0] in {"Z", "X"}  # a zombie has exited


def _get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback test URL
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - loopback test URL
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _start(agent_factory: Callable[..., AgentProcess]) -> AgentProcess:
    agent = agent_factory(agent_config([{"address": MINER}], interval_s=2.0))
    agent.wait_for(lambda: _front_pids(agent), "the front's http_front_serving line")
    return agent


def test_http_front_serves_the_port_from_a_lower_priority_child(agent_factory):
    """The agent's port is served by its child at nice 19: /metrics plain and gzip, the API passed through."""
    agent = _start(agent_factory)
    (pid,) = _front_pids(agent)
    fields = _stat(pid)
    assert fields is not None
    assert int(fields[1]) == agent.proc.pid  # ppid
    assert int(fields[16]) == FRONT_NICE  # nice
    listening = _events(agent, "http_listening")[0]
    assert listening["front_pid"] == pid

    status, headers, plain = _get(f"{agent.url}/metrics")
    assert status == 200
    assert "Content-Encoding" not in headers
    assert b"\naltiwatch_build_info{" in plain
    status, headers, packed = _get(f"{agent.url}/metrics", **{"Accept-Encoding": "gzip"})
    assert (status, headers["Content-Encoding"]) == (200, "gzip")
    assert b"\naltiwatch_build_info{" in gzip.decompress(packed)

    status, headers, body = _get(f"{agent.url}/api/v1/fleet")
    assert (status, headers["Content-Type"].split(";")[0]) == (200, "application/json")
    assert [m["address"] for m in json.loads(body)] == [MINER]
    assert _get(f"{agent.url}/readyz")[0] == 200
    assert _get(f"{agent.url}/no-such-page")[0] == 404


def test_http_front_and_agent_run_on_the_configured_event_loop(agent_factory):
    """Both processes run on uvloop by default and on asyncio's loop with event_loop: asyncio."""
    for kind in ("uvloop", "asyncio"):
        config = agent_config([{"address": MINER}], interval_s=2.0)
        if kind == "asyncio":
            config["agent"] = {**config.get("agent", {}), "event_loop": "asyncio"}
        agent = agent_factory(config)
        agent.wait_for(lambda a=agent: _events(a, "agent_ready"), "the agent_ready line")
        agent.wait_for(lambda a=agent: _front_pids(a), "the front's http_front_serving line")
        assert _events(agent, "agent_ready")[0]["loop"] == kind
        assert _events(agent, "http_front_serving")[0]["loop"] == kind
        assert agent.stop() == 0


def test_http_front_killed_is_restarted_and_serves_again(agent_factory):
    """A front killed with SIGKILL is logged (http_front_exited) and replaced; scrapes come back."""
    agent = _start(agent_factory)
    (first,) = _front_pids(agent)
    os.kill(first, signal.SIGKILL)
    agent.wait_for(lambda: len(_front_pids(agent)) == 2, "a second front")
    exited = _events(agent, "http_front_exited")
    assert [e["code"] for e in exited] == [-signal.SIGKILL]
    assert agent.proc.poll() is None
    agent.wait_for(
        lambda: "\naltiwatch_http_front_restarts_total 1.0\n" in agent.metrics(),
        "altiwatch_http_front_restarts_total 1 from the new front",
    )


def test_http_front_exits_by_itself_when_the_agent_is_sigkilled(agent_factory):
    """When the agent dies by SIGKILL, its front sees stdin close and exits: no orphan holds the port."""
    agent = _start(agent_factory)
    (pid,) = _front_pids(agent)
    agent.kill()
    wait_until(lambda: _gone(pid), "the orphaned front to exit", timeout=15)


def test_http_front_sigterm_to_every_process_stops_both_cleanly(agent_factory):
    """SIGTERM to the agent and its front at once (systemd's stop) exits 0 with no front restart."""
    agent = _start(agent_factory)
    (pid,) = _front_pids(agent)
    os.kill(pid, signal.SIGTERM)
    agent.signal(signal.SIGTERM)
    assert agent.proc.wait(timeout=30) == 0
    wait_until(lambda: _gone(pid), "the front to exit", timeout=15)
    assert _events(agent, "http_front_exited") == []
    assert len(_front_pids(agent)) == 1
