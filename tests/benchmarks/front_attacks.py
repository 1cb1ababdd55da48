"""The HTTP front under hostile clients (issue 15): memory, CPU and lateness under each attack.

``python -m tests.benchmarks.reliability_long front [--altiwatch PATH]`` (``PATH``: another
install's ``altiwatch``, e.g. an older checkout's, to measure it the same way).

One agent polls 300 emulated miners every 5 s behind basic auth (bcrypt cost 10). Each window
(``WINDOW_S``) runs one attack while a legitimate scraper (its own source address) scrapes
/metrics once a second; reported per window: the scraper's latencies and failures, poll
lateness and polls completed, CPU of agent and front, RSS (and peak) of both, and what the
attack itself saw. Attackers bind source addresses in 127.96.0.0/16, one address per client.

Attacks: ``half_open`` (3,000 requests whose headers never end, from 30 addresses),
``fat_headers`` (300 connections sending up to 1 MB of headers each), ``guesses_dropped`` (400
distinct wrong passwords sent and dropped by 20 clients, then a new user's first scrape),
``dot_path`` (40 clients looping on ``/./metrics``), ``api_clients`` (8 clients looping on
``/api/v1/fleet``).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import resource
import socket
import statistics
import threading
import time
from typing import TYPE_CHECKING, Any

import bcrypt

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

WINDOW_S = 20.0
MINERS = 300
USER, PASSWORD = "prometheus", "bench-Pw-15"
SECOND_USER, SECOND_PASSWORD = "grafana", "bench-Pw-16"


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _auth(user: str, password: str) -> bytes:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"Authorization: Basic {token}\r\n".encode()


def _connect(address: tuple[str, int], source: str, timeout: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(timeout)
    sock.connect(address)
    return sock


def _get(
    address: tuple[str, int], path: str, source: str, auth: bytes = b"", timeout: float = 10.0
) -> int:
    """One GET with ``path`` sent as is; the status (0: no answer)."""
    try:
        with _connect(address, source, timeout) as sock:
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n".encode() + auth + b"\r\n"
            )
            head = b""
            while chunk := sock.recv(1 << 16):
                head += chunk[:64] if not head else b""
            return int(head.split(b" ", 2)[1]) if head else 0
    except (OSError, ValueError, IndexError):
        return 0


class Scraper:
    """A legitimate Prometheus: GET /metrics once a second, latencies recorded."""

    def __init__(self, address: tuple[str, int], source: str) -> None:
        """Not running until used as a context manager."""
        self._address = address
        self._source = source
        self._stop = threading.Event()
        self.latencies: list[float] = []
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)

    def _run(self) -> None:
        auth = _auth(USER, PASSWORD)
        while not self._stop.is_set():
            began = time.monotonic()
            status = _get(self._address, "/metrics", self._source, auth)
            if status == 200:
                self.latencies.append(time.monotonic() - began)
            else:
                self.failed += 1
            self._stop.wait(max(0.0, 1.0 - (time.monotonic() - began)))

    @contextlib.contextmanager
    def running(self) -> Iterator[Scraper]:
        """Scrape while inside the block."""
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=30)

    def summary(self) -> dict[str, Any]:
        """Scrapes answered and their latency (s)."""
        lat = sorted(self.latencies)
        return {
            "ok": len(lat),
            "failed": self.failed,
            "median_s": round(statistics.median(lat), 4) if lat else None,
            "max_s": round(lat[-1], 4) if lat else None,
        }


def _closed(sock: socket.socket) -> bool:
    sock.setblocking(False)  # noqa: FBT003 - socket's own API
    try:
        return sock.recv(1 << 16) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def half_open(address: tuple[str, int], seconds: float) -> dict[str, Any]:
    """3,000 requests whose headers never end (30 clients); how many the front keeps open."""
    held: list[socket.socket] = []
    refused_at_connect = 0
    try:
        for index in range(3000):
            try:
                sock = _connect(address, f"127.96.1.{index % 30 + 1}", timeout=2.0)
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: a\r\n")
                held.append(sock)
            except OSError:
                refused_at_connect += 1
        time.sleep(seconds)
        still_open = sum(not _closed(s) for s in held)
    finally:
        for sock in held:
            sock.close()
    return {"sent": 3000, "refused_at_connect": refused_at_connect, "open_at_end": still_open}


def fat_headers(address: tuple[str, int], seconds: float) -> dict[str, Any]:
    """300 connections each sending up to 1 MB of headers that never end (30 clients)."""
    held: list[socket.socket] = []
    sent_total = 0
    try:
        for index in range(300):
            try:
                sock = _connect(address, f"127.96.2.{index % 30 + 1}", timeout=0.5)
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: a\r\n")
                for line in range(125):
                    sock.sendall(f"X-F{line}: ".encode() + b"a" * 8000 + b"\r\n")
                    sent_total += 8000
                held.append(sock)
            except OSError:
                continue
        time.sleep(seconds)
        still_open = sum(not _closed(s) for s in held)
    finally:
        for sock in held:
            sock.close()
    return {"connections": 300, "header_bytes_sent": sent_total, "open_at_end": still_open}


def guesses_dropped(address: tuple[str, int], seconds: float) -> dict[str, Any]:
    """400 distinct wrong passwords sent and dropped (20 clients); then a new user's first scrape."""
    for index in range(400):
        with (
            contextlib.suppress(OSError),
            _connect(address, f"127.96.3.{index % 20 + 1}", timeout=2.0) as sock,
        ):
            sock.sendall(
                b"GET /metrics HTTP/1.1\r\nHost: a\r\n" + _auth(USER, f"guess-{index}") + b"\r\n"
            )
    began = time.monotonic()
    status = _get(address, "/metrics", "127.96.3.200", _auth(SECOND_USER, SECOND_PASSWORD), 60.0)
    first_scrape_s = time.monotonic() - began
    time.sleep(max(0.0, seconds - first_scrape_s))
    return {
        "dropped": 400,
        "new_user_status": status,
        "new_user_first_scrape_s": round(first_scrape_s, 3),
    }


def _loop_clients(
    address: tuple[str, int], path: str, clients: int, seconds: float, subnet: int
) -> dict[str, Any]:
    stop = time.monotonic() + seconds
    counts: list[dict[int, int]] = [{} for _ in range(clients)]
    auth = _auth(USER, PASSWORD)

    def run(index: int) -> None:
        while time.monotonic() < stop:
            status = _get(address, path, f"127.96.{subnet}.{index + 1}", auth)
            counts[index][status] = counts[index].get(status, 0) + 1

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    total: dict[int, int] = {}
    for count in counts:
        for status, n in count.items():
            total[status] = total.get(status, 0) + n
    return {"clients": clients, "path": path, "statuses": total}


def dot_path(address: tuple[str, int], seconds: float) -> dict[str, Any]:
    """40 clients looping on /./metrics (a cache bypass before issue 15)."""
    return _loop_clients(address, "/./metrics", 40, seconds, 4)


def api_clients(address: tuple[str, int], seconds: float) -> dict[str, Any]:
    """8 clients looping on /api/v1/fleet."""
    return _loop_clients(address, "/api/v1/fleet", 8, seconds, 5)


ATTACKS: dict[str, Callable[[tuple[str, int], float], dict[str, Any]]] = {
    "half_open": half_open,
    "fat_headers": fat_headers,
    "guesses_dropped": guesses_dropped,
    "dot_path": dot_path,
    "api_clients": api_clients,
}


def bench_front(tmp: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Each attack in its own window against one agent; a quiet window first and last."""
    from tests.benchmarks import reliability_long as rl  # noqa: PLC0415 - avoids an import cycle
    from tests.support.agent import wait_until  # noqa: PLC0415 - bench only
    from tests.support.emulator import start_emulator  # noqa: PLC0415 - bench only

    _raise_fd_limit()
    web = tmp / "web-config.yml"
    web.write_text(
        "basic_auth_users:\n"
        f"  {USER}: '{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()}'\n"
        f"  {SECOND_USER}: "
        f"'{bcrypt.hashpw(SECOND_PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()}'\n",
        encoding="utf-8",
    )
    web.chmod(0o600)
    emulator = start_emulator(
        rl._scenario(MINERS, "reliability-front"),
        base_address="127.92.0.1",
        tmp_dir=tmp,
    )
    results: dict[str, Any] = {"miners": MINERS, "window_s": WINDOW_S, "windows": {}}
    agent = None
    try:
        config = rl._config(emulator, 5.0)
        config["http"] = {"web_config_file": str(web)}
        workdir = tmp / "agent"
        workdir.mkdir()
        agent = rl.Agent(workdir, config, basic_auth=(USER, PASSWORD))
        host, _, port = agent.process.url.removeprefix("http://").rpartition(":")
        address = (host, int(port))
        scraper_auth = _auth(USER, PASSWORD)
        wait_until(
            lambda: _get(address, "/readyz", "127.96.0.1", scraper_auth) == 200,
            "the agent ready",
            timeout=600,
        )
        rl._all_up(agent, MINERS, timeout=300)
        for name in ["quiet", *ATTACKS, "quiet_after"]:
            attack = ATTACKS.get(name)
            front = rl._children(agent.process.proc.pid)
            scraper = Scraper(address, "127.96.0.2")
            log(f"front: window {name}")
            with scraper.running():
                window = rl._window(
                    agent,
                    WINDOW_S,
                    during=functools.partial(attack, address, WINDOW_S) if attack else None,
                    others={"front": front[0]} if front else None,
                )
            window["scrapes"] = scraper.summary()
            if front:
                window["front_rss_kb"] = rl._status_kb(front[0], "VmRSS")
                window["front_peak_rss_kb"] = rl._status_kb(front[0], "VmHWM")
            window["front_pids"] = front
            results["windows"][name] = window
    finally:
        if agent is not None:
            agent.stop()
        emulator.stop()
    return results
