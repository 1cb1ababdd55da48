"""The emulator CLI: ready line, clean exit on SIGTERM and when its parent goes away."""

from __future__ import annotations

import time

import pytest

SCENARIO = {
    "name": "cli",
    "site": {"name": "lab", "altitude_m": 0},
    "miners": [{"model": "bitaxe-ultra", "count": 3}],
}


def wait_exit(process, timeout: float = 15.0) -> int:
    """Poll the process every 100 ms until it exits; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if time.monotonic() > deadline:
            pytest.fail(f"emulator still running {timeout}s later")
        time.sleep(0.1)
    return int(process.returncode)


def test_emulator_cli_ready_line_and_sigterm_exit(emulator_factory):
    """The ready line reports the miner count and control URL; SIGTERM exits 0."""
    handle = emulator_factory(SCENARIO, base_address="127.20.8.1")
    assert handle.count == 3
    assert handle.control_url.startswith("http://127.0.0.1:")
    assert [m["address"] for m in handle.miners()] == ["127.20.8.1", "127.20.8.2", "127.20.8.3"]
    handle.process.terminate()
    assert wait_exit(handle.process) == 0


def test_emulator_cli_exits_when_stdin_closes(emulator_factory):
    """If the process that started it dies (stdin EOF), the emulator stops by itself."""
    handle = emulator_factory(SCENARIO, base_address="127.20.8.11")
    assert handle.process.stdin is not None
    handle.process.stdin.close()
    assert wait_exit(handle.process) == 0
