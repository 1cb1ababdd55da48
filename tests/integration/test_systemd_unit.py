"""The systemd unit: ``systemd-analyze verify`` is silent and ``security`` scores ≤ 2.0.

``verify`` insists that ExecStart's binary exists, so each test copies the unit into a temp
directory with ExecStart pointed at this checkout's ``altiwatch`` console script (the venv's
``bin/altiwatch``) — the only line that differs from the shipped file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "altiwatch.service"
DROP_IN_EXAMPLE = REPO / "systemd" / "altiwatch.service.d" / "10-site.conf.example"
SHIPPED_EXEC = "/opt/altiwatch/venv/bin/altiwatch"
MAX_EXPOSURE = 2.0

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def _local_unit(directory: Path, extra_drop_in: str | None = None) -> Path:
    altiwatch = Path(sys.executable).parent / "altiwatch"
    assert altiwatch.exists(), f"{altiwatch} missing: run make setup"
    text = UNIT.read_text()
    assert SHIPPED_EXEC in text
    unit = directory / "altiwatch.service"
    unit.write_text(text.replace(SHIPPED_EXEC, str(altiwatch)))
    if extra_drop_in is not None:
        drop_ins = directory / "altiwatch.service.d"
        drop_ins.mkdir()
        (drop_ins / "10-site.conf").write_text(extra_drop_in)
    return unit


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=unit.parent,
    )


def _directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_systemd_verify_prints_nothing(tmp_path):
    """`systemd-analyze verify` on the unit exits 0 and prints nothing at all."""
    result = _verify(_local_unit(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == ""


def test_systemd_verify_with_drop_in_example_prints_nothing(tmp_path):
    """The shipped drop-in example, installed as a .conf, also verifies silently."""
    result = _verify(_local_unit(tmp_path, DROP_IN_EXAMPLE.read_text()))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_systemd_verify_check_catches_a_typo(tmp_path):
    """A misspelt directive makes verify print a warning (so the silence check can fail)."""
    result = _verify(_local_unit(tmp_path, "[Service]\nTyp=notify\n"))
    assert "Unknown key 'Typ'" in result.stderr


def test_systemd_security_exposure_is_ok(tmp_path):
    """`systemd-analyze security --offline=true` rates the unit ≤ 2.0 (OK)."""
    unit = _local_unit(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    exposure = float(match.group(1))
    print(f"systemd-analyze security exposure: {exposure} {match.group(2)}")
    assert exposure <= MAX_EXPOSURE, result.stdout


def test_systemd_unit_has_the_service_contract():
    """Type=notify with watchdog, restart on failure, dynamic user, state/config dirs, credential."""
    directives = _directives(UNIT.read_text())
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30s",
        "Restart": "on-failure",
        "DynamicUser": "yes",
        "StateDirectory": "altiwatch",
        "ConfigurationDirectory": "altiwatch",
        "ExecStart": f"{SHIPPED_EXEC} run --config /etc/altiwatch/altiwatch.yaml",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "RestartPreventExitStatus": "78",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
    }
    for key, value in expected.items():
        assert directives.get(key) == [value], key
    assert directives["LoadCredential"] == ["mqtt_password:/etc/altiwatch/secrets/mqtt_password"]
    assert directives["CapabilityBoundingSet"] == [""]
