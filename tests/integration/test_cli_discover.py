"""The real ``altiwatch discover`` against the emulated site over real sockets."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from typing import Any

ALTIWATCH = [sys.executable, "-m", "agent"]
BASE = "127.60.3.1"

SCENARIO: dict[str, Any] = {
    "name": "discover",
    "site": {"name": "golmud", "altitude_m": 2800},
    "miners": [
        {"model": "antminer-s19jpro", "count": 2},
        {"model": "antminer-s21", "count": 1},
        {"model": "antminer-s19jpro", "count": 1, "faults": [{"kind": "hang"}]},
    ],
}


def _discover(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ALTIWATCH, "discover", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_cli_discover_json_matches_emulator_truth(emulator_factory):
    """--json lists every answering miner with make, model, MAC and hostname; a hang costs one deadline."""
    emulator = emulator_factory(SCENARIO, base_address=BASE)
    inventory = {m["address"]: m for m in emulator.miners()}
    hanging = {"127.60.3.4"}  # the fourth miner: groups take consecutive addresses
    started = time.monotonic()
    result = _discover("127.60.3.0/28", "--json", "--timeout", "5", "--concurrency", "16")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    found = {m["address"]: m for m in json.loads(result.stdout)}
    assert hanging <= set(inventory)
    healthy = set(inventory) - hanging
    assert healthy <= set(found), (sorted(found), result.stderr)
    assert set(found) <= set(inventory)
    for address in healthy:
        truth = inventory[address]
        miner = found[address]
        assert miner["mac"].upper() == truth["mac"].upper()
        assert miner["hostname"] == truth["hostname"]
        assert miner["make"]
        assert miner["model"]
    assert elapsed < 60, f"scan took {elapsed:.1f}s"


def test_cli_discover_table_output(emulator_factory):
    """Without --json (not a TTY) a table with one row per miner is printed."""
    emulator = emulator_factory(
        SCENARIO | {"miners": SCENARIO["miners"][:1]}, base_address="127.60.4.1"
    )
    addresses = [m["address"] for m in emulator.miners()]
    result = _discover("127.60.4.0/29", "--timeout", "5")
    assert result.returncode == 0, result.stderr
    assert "2 miners found (6 addresses scanned)" in result.stdout
    for address in addresses:
        assert address in result.stdout


def test_cli_discover_refuses_ranges_larger_than_slash_16():
    """A /15 is refused with exit 64 before any packet is sent."""
    result = _discover("10.0.0.0/15", "--json", timeout=60)
    assert result.returncode == 64
    assert "at most a /16" in result.stderr
    assert result.stdout == ""


def test_cli_discover_on_a_terminal_shows_progress_then_table(emulator_factory):
    """On a TTY the scan runs under a rich progress bar and ends with the table."""
    emulator = emulator_factory(
        SCENARIO | {"miners": SCENARIO["miners"][:1]}, base_address="127.60.6.1"
    )
    addresses = [m["address"] for m in emulator.miners()]
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [*ALTIWATCH, "discover", "127.60.6.0/29", "--timeout", "5"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "COLUMNS": "160", "TERM": "xterm"},
    )
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
        assert process.wait(timeout=60) == 0, output.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        os.close(controller)
    text = output.decode(errors="replace")
    assert "scanning 127.60.6.0/29" in text  # the progress bar was drawn
    assert "2 miners found (6 addresses scanned)" in text
    for address in addresses:
        assert address in text
