"""The `altiwatch notify` systemd unit: `systemd-analyze verify` is silent, `security` scores ≤ 2.0.

As in test_systemd_unit.py, ExecStart is pointed at this checkout's `altiwatch` (verify insists
that the binary exists); nothing else differs from the shipped file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "altiwatch-notify.service"
SHIPPED_EXEC = "/opt/altiwatch/venv/bin/altiwatch"

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def _local_unit(directory: Path, extra: str = "") -> Path:
    altiwatch = Path(sys.executable).parent / "altiwatch"
    text = UNIT.read_text()
    assert SHIPPED_EXEC in text
    unit = directory / UNIT.name
    unit.write_text(text.replace(SHIPPED_EXEC, str(altiwatch)) + extra)
    return unit


def _analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def test_notify_unit_verify_prints_nothing(tmp_path):
    """`systemd-analyze verify` on the notify unit exits 0 and prints nothing."""
    result = _analyze("verify", str(_local_unit(tmp_path)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == ""


def test_notify_unit_verify_catches_a_typo(tmp_path):
    """A misspelt directive is reported (the silence check can fail)."""
    result = _analyze("verify", str(_local_unit(tmp_path, "Restat=always\n")), cwd=tmp_path)
    assert "Unknown key" in result.stderr


def test_notify_unit_security_exposure_is_ok(tmp_path):
    """`systemd-analyze security --offline=true` rates the notify unit ≤ 2.0 (OK)."""
    result = _analyze(
        "security", "--offline=true", "--no-pager", str(_local_unit(tmp_path)), cwd=tmp_path
    )
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    print(f"altiwatch-notify.service exposure: {match.group(1)} {match.group(2)}")
    assert float(match.group(1)) <= 2.0, result.stdout


def test_notify_unit_runs_notify_with_state_and_credentials():
    """ExecStart runs `altiwatch notify`; state dir, credentials and no restart on a config error."""
    text = UNIT.read_text()
    assert f"ExecStart={SHIPPED_EXEC} notify --config /etc/altiwatch/notify.yaml" in text
    assert "StateDirectory=altiwatch-notify\n" in text
    assert "LoadCredential=notify:/etc/altiwatch/notify-secrets\n" in text
    assert "RestartPreventExitStatus=78\n" in text
