"""Hostile HTTP clients against the real front of the real agent (issue 15, findings 4-8 and Low).

Every client is a real socket on loopback. Attackers and the legitimate scraper come from
different source addresses in 127.94.0.0/16 (one address is one client to the front's limits).
Counts are bounded (a few hundred connections at most) and every wait has a deadline.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bcrypt
import pytest

from tests.support.agent import agent_config, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.support.agent import AgentProcess

MINER = "127.94.255.1"  # nothing listens here: the miner is down, the agent is up
ATTACKER = "127.94.0.1"
SCRAPER = "127.94.0.2"
PASSWORD = "scrape-Pw-15"  # noqa: S105 - test credential
SCRAPE_TIMEOUT_S = 10.0  # Prometheus' default scrape_timeout: a scrape slower than this failed


def bcrypt_hash(password: str, rounds: int = 4) -> str:
    """Hash ``password`` (cost 4 unless given: the front's behaviour, not bcrypt's, is tested)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()


def _events(agent: AgentProcess, name: str) -> list[dict[str, Any]]:
    out = []
    for line in agent.output().splitlines():
        if f'"{name}"' not in line:
            continue
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if event.get("event") == name:
                out.append(event)
    return out


def _address(agent: AgentProcess) -> tuple[str, int]:
    host, _, port = agent.url.removeprefix("http://").rpartition(":")
    return host, int(port)


def _connect(agent: AgentProcess, source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(SCRAPE_TIMEOUT_S)
    sock.connect(_address(agent))
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed (or reset) ``sock``; False while it is open."""
    sock.setblocking(False)  # noqa: FBT003 - socket's own API
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True


def _request(
    agent: AgentProcess,
    raw_path: str,
    *,
    source: str = SCRAPER,
    method: str = "GET",
    auth: tuple[str, str] | None = None,
) -> tuple[int, bytes]:
    """One HTTP/1.1 request with ``raw_path`` sent exactly as given; (status, body).

    Status 0: the connection was closed without an answer (a front being replaced at SIGHUP
    closes the connections it accepted that had not sent a request yet).
    """
    headers = [f"{method} {raw_path} HTTP/1.1", "Host: altiwatch", "Connection: close"]
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers.append(f"Authorization: Basic {token}")
    with _connect(agent, source) as sock:
        sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    reply = b"".join(chunks)
    head, _, body = reply.partition(b"\r\n\r\n")
    if not head:
        return 0, b""
    return int(head.split(b" ", 2)[1]), body


@contextlib.contextmanager
def _sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        yield opened
    finally:
        for sock in opened:
            sock.close()


def _start(agent_factory: Callable[..., AgentProcess], **sections: Any) -> AgentProcess:
    agent = agent_factory(agent_config([{"address": MINER}], interval_s=2.0, **sections))
    agent.wait_for(lambda: _events(agent, "http_front_serving"), "the front's serving line")
    return agent


# ---------------------------------------------------------------------------------- finding 4


def test_http_front_closes_a_half_sent_request_at_the_header_deadline(agent_factory):
    """A request whose headers never end is closed by the front (header deadline), not kept open."""
    agent = _start(agent_factory)
    with _connect(agent, ATTACKER) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: altiwatch\r\nX-Slow: 1\r\n")
        started = time.monotonic()
        wait_until(lambda: _closed_by_server(sock), "the front to close the half-sent request")
        print(f"half-sent request closed after {time.monotonic() - started:.1f} s")
    assert _events(agent, "http_connection_timed_out")[0]["phase"] == "headers"


def test_http_front_closes_a_connection_sending_endless_headers(agent_factory):
    """Headers beyond the front's byte budget close the connection (logged), before any deadline."""
    agent = _start(agent_factory)
    with _connect(agent, ATTACKER) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: altiwatch\r\n")
        with contextlib.suppress(OSError):  # the reset may come while sending
            for index in range(100):  # up to 800 KB of headers, each within aiohttp's limits
                sock.sendall(f"X-Fat-{index}: ".encode() + b"a" * 8000 + b"\r\n")
        wait_until(lambda: _closed_by_server(sock), "the front to close the fat-header connection")
    agent.wait_for(lambda: _events(agent, "http_headers_too_large"), "http_headers_too_large")


def test_http_front_limits_connections_per_client_and_a_scraper_still_gets_200(agent_factory):
    """One client holding 40 half-sent requests keeps 8 (the limit); another client scrapes 200."""
    agent = _start(agent_factory, http={"max_connections_per_client": 8})
    with _sockets() as held:
        for _ in range(40):
            sock = _connect(agent, ATTACKER)
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")
            held.append(sock)

        def closed() -> int:
            return sum(_closed_by_server(s) for s in held)

        wait_until(lambda: closed() >= 32, "32 of the 40 connections refused")
        assert closed() == 32
        assert _request(agent, "/metrics")[0] == 200
    refused = _events(agent, "http_connection_refused")
    assert refused[0]["limit"] == "max_connections_per_client"
    assert len(refused) == 1  # one line for the client (the rest counted in the next one)


def test_http_front_limits_connections_in_all_and_a_new_client_displaces_a_waiting_one(
    agent_factory,
):
    """Ten clients holding 5 half-sent requests each against max_connections 30: 30 stay, and a scraper still gets 200."""
    agent = _start(agent_factory, http={"max_connections": 30})
    with _sockets() as held:
        for client in range(10):
            for _ in range(5):
                sock = _connect(agent, f"127.94.1.{client + 1}")
                sock.sendall(b"GET /metrics HTTP/1.1\r\n")
                held.append(sock)
        wait_until(lambda: sum(_closed_by_server(s) for s in held) >= 20, "20 closed")
        assert sum(_closed_by_server(s) for s in held) == 20
        assert _request(agent, "/metrics")[0] == 200  # displaces the longest-waiting one
        wait_until(lambda: sum(_closed_by_server(s) for s in held) == 21, "one more displaced")
    assert _events(agent, "http_connection_evicted")[0]["phase"] == "headers"
    assert _events(agent, "http_connection_refused") == []


# ---------------------------------------------------------------------------------- finding 7


@pytest.fixture(scope="module")
def shared_agent(module_agent_factory: Callable[..., AgentProcess]) -> AgentProcess:
    """One agent for the tests that only read from it."""
    return _start(module_agent_factory)


@pytest.mark.parametrize(
    "raw_path",
    [
        "/./metrics",
        "/%2E/metrics",
        "/%2e/metrics",
        "//metrics",
        "/metrics/",
        "/api/v1/../../metrics",
        "/x/../metrics",
        "/no-such-page",
    ],
)
def test_http_front_answers_only_its_exact_paths(shared_agent, raw_path):
    """Any spelling of a path other than the allow-listed one is a 404 from the front."""
    status, body = _request(shared_agent, raw_path)
    assert status == 404, body[:200]
    assert b"altiwatch_build_info" not in body


def test_http_front_refuses_methods_other_than_get_and_head(shared_agent):
    """POST and DELETE on /metrics get 405; HEAD gets 200 without a body."""
    agent = shared_agent
    assert _request(agent, "/metrics", method="POST")[0] == 405
    assert _request(agent, "/api/v1/fleet", method="DELETE")[0] == 405
    assert _request(agent, "/metrics", method="HEAD") == (200, b"")


# ---------------------------------------------------------------------------------- finding 8


def _agent_requests(agent: AgentProcess) -> dict[str, float]:
    text = agent.metrics()
    prefix = "altiwatch_http_api_requests_total{path="
    return {
        line[len(prefix) :].split("}")[0].strip('"'): float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


def test_http_front_caches_the_api_so_clients_do_not_reach_the_polling_loop(shared_agent):
    """300 requests to /api/v1/fleet and /api/v1/alarms in a row: the agent answers about one a second."""
    agent = shared_agent
    before = _agent_requests(agent)
    started = time.monotonic()
    for _ in range(150):
        assert _request(agent, "/api/v1/fleet")[0] == 200
        assert _request(agent, "/api/v1/alarms")[0] == 200
    first = _agent_requests(agent)
    # An exposition counting a /metrics fetch made after `first` was rendered after the loop.
    after = agent.wait_for(
        lambda: (r := _agent_requests(agent))["/metrics"] > first["/metrics"] and r,
        "an exposition rendered after the requests",
    )
    elapsed = time.monotonic() - started
    counts = {
        p: after.get(p, 0.0) - before.get(p, 0.0) for p in ("/api/v1/fleet", "/api/v1/alarms")
    }
    print(f"300 API requests in {elapsed:.1f} s reached the agent {counts}")
    for count in counts.values():
        assert 1 <= count <= elapsed + 2  # one fetch per second at most (+ rounding at both ends)


# ---------------------------------------------------------------------------------- finding 5, 6


def _web_config(path: Path, users: dict[str, str]) -> Path:
    lines = ["basic_auth_users:"] + [f"  {u}: '{h}'" for u, h in users.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def _auth_agent(
    agent_factory: Callable[..., AgentProcess], tmp_path: Path, users: dict[str, str]
) -> AgentProcess:
    web = _web_config(tmp_path / "web-config.yml", users)
    agent = agent_factory(
        agent_config([{"address": MINER}], interval_s=2.0, http={"web_config_file": str(web)}),
        wait_ready=False,
    )
    agent.wait_for(lambda: _events(agent, "http_front_serving"), "the front's serving line")
    return agent


def test_http_front_dropped_guesses_do_not_lock_out_a_new_scraper(agent_factory, tmp_path):
    """400 guesses sent and dropped by 20 clients: an uncached scraper still gets 200 within a scrape timeout."""
    agent = _auth_agent(agent_factory, tmp_path, {"prometheus": bcrypt_hash(PASSWORD, rounds=10)})
    for index in range(400):
        token = base64.b64encode(f"prometheus:guess-{index}".encode()).decode()
        with _connect(agent, f"127.94.2.{index % 20 + 1}") as sock:
            sock.sendall(
                b"GET /metrics HTTP/1.1\r\nHost: altiwatch\r\n"
                + f"Authorization: Basic {token}\r\n\r\n".encode()
            )
    started = time.monotonic()
    status, _body = _request(agent, "/metrics", auth=("prometheus", PASSWORD))
    print(f"uncached scrape after 400 dropped guesses: {time.monotonic() - started:.2f} s")
    assert status == 200


def test_http_front_guesses_beyond_the_queue_get_429(agent_factory, tmp_path):
    """One client with 20 concurrent distinct guesses: the ones beyond its share get 429 + Retry-After."""
    agent = _auth_agent(agent_factory, tmp_path, {"prometheus": bcrypt_hash(PASSWORD, rounds=10)})
    with _sockets() as held:
        for index in range(20):
            token = base64.b64encode(f"prometheus:guess-{index}".encode()).decode()
            sock = _connect(agent, ATTACKER)
            sock.sendall(
                b"GET /metrics HTTP/1.1\r\nHost: altiwatch\r\nConnection: close\r\n"
                + f"Authorization: Basic {token}\r\n\r\n".encode()
            )
            held.append(sock)
        replies = []
        for sock in held:
            sock.settimeout(SCRAPE_TIMEOUT_S)
            head = sock.recv(4096).split(b"\r\n")
            replies.append(
                (int(head[0].split()[1]), any(h.startswith(b"Retry-After:") for h in head))
            )
    assert {status for status, _ in replies} == {401, 429}
    assert all(retry for status, retry in replies if status == 429)


def test_http_front_sighup_applies_a_rotated_password_and_a_removed_user(agent_factory, tmp_path):
    """After SIGHUP the old password and a removed user get 401; the new password 200."""
    old, new = "old-Pw-15", "new-Pw-15"
    agent = _auth_agent(
        agent_factory,
        tmp_path,
        {"prometheus": bcrypt_hash(old), "grafana": bcrypt_hash("grafana-Pw")},
    )
    assert _request(agent, "/metrics", auth=("prometheus", old))[0] == 200
    assert _request(agent, "/metrics", auth=("grafana", "grafana-Pw"))[0] == 200
    _web_config(tmp_path / "web-config.yml", {"prometheus": bcrypt_hash(new)})
    agent.signal(signal.SIGHUP)
    agent.wait_for(
        lambda: _request(agent, "/metrics", auth=("prometheus", old))[0] == 401,
        "the old password refused",
    )
    assert _request(agent, "/metrics", auth=("prometheus", new))[0] == 200
    assert _request(agent, "/metrics", auth=("grafana", "grafana-Pw"))[0] == 401
    assert _events(agent, "http_front_reloaded")


def test_http_front_sighup_with_a_broken_web_config_keeps_the_running_one(agent_factory, tmp_path):
    """A web config broken on disk at SIGHUP is reported; the front keeps answering as before."""
    agent = _auth_agent(agent_factory, tmp_path, {"prometheus": bcrypt_hash(PASSWORD)})
    (tmp_path / "web-config.yml").write_text("basic_auth_users:\n  prometheus: plain\n")
    agent.signal(signal.SIGHUP)
    agent.wait_for(lambda: _events(agent, "config_reload_failed"), "config_reload_failed")
    assert _request(agent, "/metrics", auth=("prometheus", PASSWORD))[0] == 200
    assert _events(agent, "http_front_reloaded") == []


# ---------------------------------------------------------------------------------- Low


def test_http_front_logs_auth_failures_once_per_client_a_minute(agent_factory, tmp_path):
    """300 failed requests from one client write one http_auth_failed line, not 300."""
    agent = _auth_agent(agent_factory, tmp_path, {"prometheus": bcrypt_hash(PASSWORD)})
    for _ in range(300):
        assert _request(agent, "/metrics", source=ATTACKER, auth=("prometheus", "nope"))[0] == 401
    assert _request(agent, "/metrics", auth=("prometheus", "nope"))[0] == 401  # another client
    lines = _events(agent, "http_auth_failed")
    assert [e["client"] for e in lines] == [ATTACKER, SCRAPER]
    assert PASSWORD not in agent.output()


def test_http_front_environment_holds_no_agent_secret(agent_factory):
    """The front's /proc/<pid>/environ has no ALTIWATCH_* variable (the MQTT password among them)."""
    secret = "planted-Mqtt-Pw-15"  # noqa: S105 - test credential
    agent = agent_factory(
        agent_config([{"address": MINER}], interval_s=2.0, mqtt={"username": "agent"}),
        env={"ALTIWATCH_MQTT__PASSWORD": secret},
    )
    agent.wait_for(lambda: _events(agent, "http_front_serving"), "the front's serving line")
    pid = _events(agent, "http_front_serving")[0]["pid"]
    agent_env = Path(f"/proc/{agent.proc.pid}/environ").read_bytes()
    front_env = Path(f"/proc/{pid}/environ").read_bytes()
    assert secret.encode() in agent_env  # the planted secret is real
    assert secret.encode() not in front_env
    assert b"ALTIWATCH_" not in front_env
    assert os.environ.get("PATH", "").encode() in front_env
