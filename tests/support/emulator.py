"""Pytest support for the emulated mine site: ``emulator_factory`` and ``EmulatorHandle``.

``emulator_factory(scenario, base_address=..., miners=None, speedup=1.0)`` starts
``python -m collectors.emulator`` in a subprocess, waits (with a deadline) for its ready line and
returns an :class:`EmulatorHandle`; every handle is stopped at teardown. A scenario may be a
path, the name of a file in ``deploy/scenarios/`` or a dict (written to a temporary YAML).
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "deploy" / "scenarios"
READY_DEADLINE_S = 60.0
STOP_DEADLINE_S = 15.0


class EmulatorError(RuntimeError):
    """The emulator did not start or a control call failed."""


class EmulatorHandle:
    """A running emulator subprocess and its control API."""

    def __init__(self, process: subprocess.Popen[str], control_url: str, miners: int) -> None:
        """Wrap a started process."""
        self.process = process
        self.control_url = control_url
        self.count = miners

    def _call(self, method: str, path: str, body: object | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - loopback control URL we started
            self.control_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            msg = f"{method} {path} -> {exc.code}: {exc.read().decode(errors='replace')}"
            raise EmulatorError(msg) from exc

    def stats(self) -> dict[str, Any]:
        """Requests answered per protocol and the emulator's CPU seconds."""
        result: dict[str, Any] = self._call("GET", "/stats")
        return result

    def miners(self) -> list[dict[str, Any]]:
        """Inventory: address, family, model, mac, serial, hostname, site per miner."""
        result: list[dict[str, Any]] = self._call("GET", "/miners")
        return result

    def addresses(self, family: str | None = None) -> list[str]:
        """Addresses of all miners (or of one family)."""
        return [m["address"] for m in self.miners() if family is None or m["family"] == family]

    def truth(self, address: str) -> dict[str, Any]:
        """What the miner's firmware reports now."""
        result: dict[str, Any] = self._call("GET", f"/miners/{address}")
        return result

    def inject(self, address: str, kind: str, **params: Any) -> list[dict[str, Any]]:
        """Inject a fault; returns the miner's active faults."""
        result: list[dict[str, Any]] = self._call(
            "POST", f"/miners/{address}/faults", {"kind": kind, **params}
        )
        return result

    def clear(self, address: str, kind: str | None = None) -> list[str]:
        """Clear one fault kind or all faults; returns the kinds cleared."""
        path = f"/miners/{address}/faults" + (f"/{kind}" if kind else "")
        result: dict[str, list[str]] = self._call("DELETE", path)
        return result["cleared"]

    def site(self) -> dict[str, Any]:
        """Current site conditions."""
        result: dict[str, Any] = self._call("GET", "/site")
        return result

    def set_site(self, **fields: Any) -> dict[str, Any]:
        """Change site conditions (heatwave_k, inlet_override_c, altitude_m, ...)."""
        result: dict[str, Any] = self._call("POST", "/site", fields)
        return result

    def pause(self) -> None:
        """Freeze physics so truth stays stable."""
        self._call("POST", "/clock", {"paused": True})

    def resume(self) -> None:
        """Let physics run again."""
        self._call("POST", "/clock", {"paused": False})

    def clock(self) -> float:
        """Simulated unix time."""
        return float(self._call("GET", "/clock")["sim_time"])

    def stop(self) -> None:
        """Terminate the subprocess (SIGTERM, then SIGKILL after a deadline)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_DEADLINE_S)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


def _close_pipes(process: subprocess.Popen[str]) -> None:
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            pipe.close()


def _scenario_path(scenario: str | Path | dict[str, Any], tmp_dir: Path) -> Path:
    if isinstance(scenario, dict):
        path = tmp_dir / f"scenario-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump(scenario), encoding="utf-8")
        return path
    path = Path(scenario)
    if not path.exists() and (SCENARIOS / path).exists():
        path = SCENARIOS / path
    if not path.exists() and (SCENARIOS / f"{path}.yaml").exists():
        path = SCENARIOS / f"{path}.yaml"
    return path


def start_emulator(
    scenario: str | Path | dict[str, Any],
    *,
    base_address: str,
    tmp_dir: Path,
    miners: int | None = None,
    speedup: float = 1.0,
    seed: int = 0,
) -> EmulatorHandle:
    """Start an emulator subprocess and wait for its ready line (deadline READY_DEADLINE_S)."""
    path = _scenario_path(scenario, tmp_dir)
    argv = [
        sys.executable,
        "-m",
        "collectors.emulator",
        "--scenario",
        str(path),
        "--base-address",
        base_address,
        "--control",
        "127.0.0.1:0",
        "--speedup",
        str(speedup),
        "--seed",
        str(seed),
        "--stop-on-stdin-eof",
    ]
    if miners is not None:
        argv += ["--miners", str(miners)]
    stderr_path = tmp_dir / f"emulator-{time.monotonic_ns()}.log"
    stderr = stderr_path.open("w", encoding="utf-8")
    # stdin is a pipe we never write: if this process dies, the emulator sees EOF and exits.
    process = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        cwd=REPO,
        env=dict(os.environ),
    )
    stderr.close()
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + READY_DEADLINE_S
    line = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if selector.select(timeout=0.1):
            line = process.stdout.readline()
            break
    selector.close()
    if not line:
        process.kill()
        process.wait(timeout=STOP_DEADLINE_S)
        _close_pipes(process)
        log = stderr_path.read_text(encoding="utf-8")[-4000:]
        msg = f"emulator not ready within {READY_DEADLINE_S}s (exit {process.returncode}):\n{log}"
        raise EmulatorError(msg)
    ready = json.loads(line)
    if ready.get("event") != "emulator_ready":
        process.kill()
        process.wait(timeout=STOP_DEADLINE_S)
        _close_pipes(process)
        msg = f"unexpected first line from emulator: {line!r}"
        raise EmulatorError(msg)
    return EmulatorHandle(process, ready["control_url"], int(ready["miners"]))


def _emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., EmulatorHandle]]:
    """Yield a ``start(scenario, *, base_address, miners, speedup, seed)``; stop all at the end."""
    handles: list[EmulatorHandle] = []
    tmp_dir = tmp_path_factory.mktemp("emulator")

    def start(
        scenario: str | Path | dict[str, Any],
        *,
        base_address: str,
        miners: int | None = None,
        speedup: float = 1.0,
        seed: int = 0,
    ) -> EmulatorHandle:
        handle = start_emulator(
            scenario,
            base_address=base_address,
            tmp_dir=tmp_dir,
            miners=miners,
            speedup=speedup,
            seed=seed,
        )
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()


@pytest.fixture
def emulator_factory(tmp_path_factory: pytest.TempPathFactory):
    """Start emulators on demand; all are stopped at teardown."""
    yield from _emulators(tmp_path_factory)


@pytest.fixture(scope="module")
def module_emulator_factory(tmp_path_factory: pytest.TempPathFactory):
    """Module-scoped variant of ``emulator_factory`` (one emulator shared by a test module)."""
    yield from _emulators(tmp_path_factory)
