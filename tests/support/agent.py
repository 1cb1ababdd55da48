"""Fixtures for the agent: the REAL ``altiwatch run`` in a subprocess, on a free loopback port.

``agent_factory(config: dict, *, env=None, wait_ready=True) -> AgentProcess`` writes the config
(YAML) into a temp dir, fills in ``agent.state_dir`` and ``http.listen`` (a free port) unless
given, starts ``.venv/bin/altiwatch run --config ...`` and waits for ``/readyz`` with a
deadline. ``AgentProcess`` has ``.url``, ``.fetch(path) -> (status, bytes)``, ``.metrics()``,
``.wait_for(predicate, what)``, ``.signal(sig)``, ``.stop() -> exit code``, ``.kill()`` and
``.output()`` (everything it logged). Processes are stopped at teardown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.support.ports import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

ALTIWATCH = Path(sys.executable).with_name("altiwatch")
READY_TIMEOUT_S = 60.0


def wait_until(
    predicate: Callable[[], Any], what: str, *, timeout: float = 30.0, every: float = 0.1
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


class AgentProcess:
    """One running agent."""

    def __init__(self, workdir: Path, config: dict[str, Any], env: Mapping[str, str]) -> None:
        """Write the config and start the process."""
        self.workdir = workdir
        self.config = config
        self.config_path = workdir / "altiwatch.yaml"
        self.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        host, _, port = config["http"]["listen"].rpartition(":")
        self.url = f"http://{host}:{port}"
        self.log_path = workdir / "agent.log"
        full_env = {**os.environ, **env}
        if "NOTIFY_SOCKET" not in env:
            full_env.pop("NOTIFY_SOCKET", None)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(ALTIWATCH), "run", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=workdir,
            )

    def rewrite_config(self, config: dict[str, Any] | str) -> None:
        """Replace the config file (for SIGHUP reload tests)."""
        text = config if isinstance(config, str) else yaml.safe_dump(config)
        self.config_path.write_text(text, encoding="utf-8")

    def output(self) -> str:
        """Everything the agent wrote to stdout/stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def fetch(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """GET ``path``; (status, body), status 0 when nothing answers."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:  # noqa: S310 - loopback test URL
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def metrics(self) -> str:
        """The /metrics body as text (fails the test on a non-200)."""
        status, body = self.fetch("/metrics")
        assert status == 200, f"/metrics answered {status}"
        return body.decode()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait until /readyz answers 200 (fail early if the process exits)."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"agent exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            return self.fetch("/readyz", timeout=2.0)[0] == 200

        wait_until(ready, "the agent's /readyz", timeout=timeout)

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
        """``wait_until`` bound to this agent (fails with its log tail)."""
        try:
            return wait_until(predicate, what, timeout=timeout)
        except pytest.fail.Exception:
            print(self.output()[-3000:], file=sys.stderr)
            raise

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the agent."""
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; return the exit code (kill and fail on timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"agent did not stop within {timeout:g} s after SIGTERM")
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def agent_config(
    miners: list[dict[str, Any]],
    *,
    site: str = "golmud",
    altitude_m: float = 2800.0,
    interval_s: float = 5.0,
    **sections: Any,
) -> dict[str, Any]:
    """A minimal agent config dict for ``miners`` at one site (sections override)."""
    config: dict[str, Any] = {
        "agent": {"id": "test-agent", "log_format": "json", "shutdown_grace_s": 10},
        "sites": [{"name": site, "altitude_m": altitude_m}],
        "miners": miners,
        "polling": {"interval_s": interval_s, "slow_interval_s": max(60.0, interval_s)},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    return config


def _factory(root: Path) -> tuple[Callable[..., AgentProcess], list[AgentProcess]]:
    started: list[AgentProcess] = []

    def start(
        config: dict[str, Any],
        *,
        env: Mapping[str, str] | None = None,
        wait_ready: bool = True,
    ) -> AgentProcess:
        workdir = root / f"agent{len(started)}"
        workdir.mkdir()
        config = {**config}
        config["agent"] = {"state_dir": str(workdir / "state"), **config.get("agent", {})}
        config["http"] = {"listen": f"127.0.0.1:{free_port()}", **config.get("http", {})}
        agent = AgentProcess(workdir, config, env or {})
        started.append(agent)
        if wait_ready:
            agent.wait_ready()
        return agent

    return start, started


def _teardown(started: list[AgentProcess]) -> None:
    for agent in started:
        if agent.proc.poll() is None:
            agent.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                agent.proc.wait(timeout=15)
        agent.kill()


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    """Start real agents; every one is stopped (then killed) at teardown."""
    start, started = _factory(tmp_path)
    yield start
    _teardown(started)


@pytest.fixture(scope="module")
def module_agent_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., AgentProcess]]:
    """Module-scoped ``agent_factory`` (one agent shared by a test module)."""
    start, started = _factory(tmp_path_factory.mktemp("agent"))
    yield start
    _teardown(started)
