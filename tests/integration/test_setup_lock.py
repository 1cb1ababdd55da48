"""``make setup`` installs exactly uv.lock, and refuses a lock that is stale against pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".tools" / "bin" / "uv"


def _project_copy(tmp_path: Path) -> Path:
    """What ``make setup`` reads: the Makefile, pyproject.toml, uv.lock, README and packages."""
    copy = tmp_path / "project"
    copy.mkdir()
    for name in ("Makefile", "pyproject.toml", "uv.lock", "README.md"):
        shutil.copy2(ROOT / name, copy / name)
    for package in ("agent", "collectors"):
        (copy / package).mkdir()
        (copy / package / "__init__.py").write_text('"""Stand-in."""\n')
    return copy


def _make_setup(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-C", str(project), f"UV={UV}", "SYNCED=.venv/.synced", ".venv/.synced"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_setup_stale_lock_fails_with_a_clear_message(tmp_path):
    """A dependency added to pyproject.toml without `make lock`: setup stops, says what to do."""
    project = _project_copy(tmp_path)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(text.replace('    "h11>=0.14",', '    "h11>=0.14",\n    "six>=1.16",', 1))
    result = _make_setup(project)
    assert result.returncode != 0
    assert "uv.lock is stale against pyproject.toml" in result.stderr
    assert "make lock" in result.stderr
    assert not (project / ".venv" / ".synced").exists()
    assert (project / "uv.lock").read_bytes() == (ROOT / "uv.lock").read_bytes()  # not rewritten


def test_setup_installs_exactly_the_lock(tmp_path):
    """With a fresh lock, setup installs every locked package at its locked version, no other."""
    project = _project_copy(tmp_path)
    result = _make_setup(project)
    assert result.returncode == 0, result.stderr
    frozen = subprocess.run(
        [str(UV), "pip", "freeze", "--python", str(project / ".venv" / "bin" / "python")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    exported = subprocess.run(
        [
            str(UV),
            "export",
            "--frozen",
            "--all-extras",
            "--no-emit-project",
            "--no-hashes",
            "--no-header",
            "--no-annotate",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    locked = {line.split(";")[0].strip().lower() for line in exported if "==" in line}
    installed = {line.lower() for line in frozen if not line.startswith(("altiwatch", "-e"))}
    assert installed == locked
