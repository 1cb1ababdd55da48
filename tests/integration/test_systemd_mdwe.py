"""The agent survives the unit's MemoryDenyWriteExecute=yes (conventions.md §3 asks for a smoke test).

No systemd runs here, so the kernel's own equivalent is used: ``prctl(PR_SET_MDWE,
PR_MDWE_REFUSE_EXEC_GAIN)`` (Linux ≥ 6.3, kept across execve) makes any writable+executable
mapping fail, as systemd's seccomp filter does. The real agent then polls an emulated fleet of
all six families (RPC, web, gRPC paths of pyasic) and publishes to a real Mosquitto.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support.ports import free_port

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
ALTIWATCH = Path(sys.executable).with_name("altiwatch")
WRAPPER = (
    "import ctypes, os, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    f"if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:\n"
    "    sys.exit(f'PR_SET_MDWE failed: errno {ctypes.get_errno()}')\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)
DEADLINE_S = 120.0


def _mdwe_supported() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", WRAPPER, "/bin/true"], capture_output=True, timeout=30, check=False
    )
    return probe.returncode == 0


def _fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback URL
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def _families_up(exposition: str, families: dict[str, str]) -> dict[str, int]:
    """Miners up per family: ``asic_up`` 1, joined to its address by ``asic_miner_info``."""
    address_of: dict[str, str] = {}
    up: set[str] = set()
    for name, labels, value in re.findall(
        r"^(asic_\w+)\{([^}]*)\} (\S+)$", exposition, re.MULTILINE
    ):
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if name == "asic_miner_info" and "address" in pairs:
            address_of[pairs["miner"]] = pairs["address"]
        elif name == "asic_up" and value == "1":
            up.add(pairs["miner"])
    counts: dict[str, int] = {}
    for miner in up:
        family = families.get(address_of.get(miner, ""))
        if family is not None:
            counts[family] = counts.get(family, 0) + 1
    return counts


def test_systemd_agent_runs_under_memory_deny_write_execute(tmp_path, emulator_factory, mosquitto):
    """Under PR_SET_MDWE the agent gets ready, has a miner of every family up, and exits 0."""
    if not _mdwe_supported():
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3)")
    # The guard really bites: a W+X mapping is refused inside the wrapper.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            WRAPPER,
            sys.executable,
            "-c",
            "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert probe.returncode != 0
    assert "Permission denied" in probe.stderr

    emulator = emulator_factory("golmud-2800", base_address="127.60.12.1")
    inventory = emulator.miners()
    assert len({m["family"] for m in inventory}) >= 6
    port = free_port()
    config = {
        "agent": {"id": "mdwe", "state_dir": str(tmp_path / "state"), "log_format": "json"},
        "sites": [{"name": "golmud", "altitude_m": 2800}],
        "miners": [{"address": m["address"]} for m in inventory],
        "polling": {"interval_s": 3, "slow_interval_s": 6, "timeout_s": 2.5},
        "http": {"listen": f"127.0.0.1:{port}"},
        "mqtt": {"enabled": True, "host": mosquitto.host, "port": mosquitto.port},
    }
    config_path = tmp_path / "altiwatch.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = tmp_path / "agent.log"
    with log_path.open("w") as log:
        agent = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, str(ALTIWATCH), "run", "--config", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    families = {m["address"]: m["family"] for m in inventory}
    try:
        deadline = time.monotonic() + DEADLINE_S
        up_families: dict[str, int] = {}
        while time.monotonic() < deadline:
            assert agent.poll() is None, log_path.read_text()[-3000:]
            status, body = _fetch(f"http://127.0.0.1:{port}/metrics")
            if status == 200:
                up_families = _families_up(body, families)
                if set(up_families) == set(families.values()):
                    break
            time.sleep(0.25)  # the poll interval of a condition checked under the deadline
        else:
            missing = sorted(set(families.values()) - set(up_families))
            pytest.fail(
                f"families with no miner up under MDWE within {DEADLINE_S} s: {missing}"
                f" (up per family: {up_families})\n{log_path.read_text()[-3000:]}"
            )
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=60) == 0, log_path.read_text()[-3000:]
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(timeout=30)
    output = log_path.read_text()
    assert "Permission denied" not in output
    assert "Traceback" not in output
    assert '"mqtt_connected"' in output  # aiomqtt/paho worked under MDWE too
