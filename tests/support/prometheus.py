"""Fixtures for Prometheus: Debian's ``prometheus`` on a free loopback port, and ``promtool``.

``prometheus_factory(targets, *, scrape_interval_s=1.0) -> PrometheusServer`` writes a config
scraping ``targets`` (``host:port`` strings, path /metrics) into a temp dir, starts Prometheus
with a temp TSDB and waits for ``/-/ready``. ``PrometheusServer.query(expr)`` runs an instant
query through the HTTP API and returns the result vector; ``.wait_for_series(expr, n)`` polls
until at least ``n`` series exist. ``promtool_check_metrics(text)`` returns (exit code, output).
Servers are stopped at teardown.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.support.ports import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
START_TIMEOUT_S = 60.0


def promtool_check_metrics(text: str) -> tuple[int, str]:
    """Run ``promtool check metrics`` on an exposition; (exit code, combined output)."""
    proc = subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    return proc.returncode, (proc.stdout + proc.stderr).decode(errors="replace")


class PrometheusServer:
    """One Prometheus process with its own config and TSDB."""

    def __init__(self, workdir: Path, targets: Sequence[str], scrape_interval_s: float) -> None:
        """Write the config and start the server."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        interval = f"{max(1, round(scrape_interval_s * 1000))}ms"
        config = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval},
            "scrape_configs": [
                {"job_name": "altiwatch", "static_configs": [{"targets": list(targets)}]}
            ],
        }
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log_path = workdir / "prometheus.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--web.enable-lifecycle",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )

    def _get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as resp:  # noqa: S310 - loopback test URL
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Wait for ``/-/ready`` (fail with the log if the process dies)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
            if self._get("/-/ready")[0] == 200:
                return
            time.sleep(0.1)
        pytest.fail(f"prometheus not ready within {timeout:g} s")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query through the HTTP API; the result vector."""
        status, body = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert status == 200, f"query {expr!r} answered {status}: {body[:300]!r}"
        payload = json.loads(body)
        assert payload["status"] == "success", payload
        result: list[dict[str, Any]] = payload["data"]["result"]
        return result

    def wait_for_series(
        self, expr: str, count: int, *, timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """Poll ``expr`` until it returns at least ``count`` series; fail at the deadline."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if len(result) >= count:
                return result
            time.sleep(0.2)
        pytest.fail(f"{expr!r}: {len(result)} series after {timeout:g} s, wanted {count}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., PrometheusServer]]:
    """Start Prometheus servers scraping given targets; stopped at teardown."""
    servers: list[PrometheusServer] = []

    def start(targets: Sequence[str], *, scrape_interval_s: float = 1.0) -> PrometheusServer:
        workdir = tmp_path / f"prometheus{len(servers)}"
        workdir.mkdir()
        server = PrometheusServer(workdir, targets, scrape_interval_s)
        servers.append(server)
        server.wait_ready()
        return server

    yield start
    for server in servers:
        with contextlib.suppress(OSError):
            server.stop()
