"""The wheel and the sdist (``python -m build``) install into a clean venv from the lock."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".tools" / "bin" / "uv"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
ENV = {**os.environ, "PATH": f"{UV.parent}{os.pathsep}{os.environ['PATH']}"}


def _run(*argv: str | Path, cwd: Path = ROOT) -> str:
    result = subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (
        f"{argv[:3]} exited {result.returncode}:\n{result.stderr[-3000:]}"
    )
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel built from it, and the runtime requirements exported from the lock."""
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--installer", "uv", "--outdir", out, ROOT)
    _run(UV, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-header",
         "--output-file", out / "requirements.txt")  # fmt: skip
    return out


def _locked_runtime(requirements: Path) -> set[str]:
    """``name==version`` of every package the exported lock pins (hashes and markers dropped)."""
    pins = set()
    for line in requirements.read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            pins.add(line.split(";")[0].split()[0].strip().lower().replace("_", "-"))
    return pins


@pytest.mark.parametrize("pattern", ["*.whl", "*.tar.gz"], ids=["wheel", "sdist"])
def test_packaging_artifact_installs_from_the_lock(dist, pattern, tmp_path):
    """Lock's hashed requirements, then the artifact alone: ``altiwatch --version`` answers."""
    (artifact,) = dist.glob(pattern)
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    requirements = dist / "requirements.txt"
    _run(UV, "pip", "install", "--python", python, "--require-hashes", "-r", requirements)
    _run(UV, "pip", "install", "--python", python, "--no-deps", artifact)
    assert _run(venv / "bin" / "altiwatch", "--version", cwd=tmp_path).strip() == (
        f"altiwatch {VERSION}"
    )
    frozen = _run(UV, "pip", "freeze", "--python", python).lower().replace("_", "-").splitlines()
    assert {line for line in frozen if not line.startswith("altiwatch")} == _locked_runtime(
        requirements
    )
    # The installed agent imports its daemon and collectors (package data included).
    _run(python, "-c", "import agent.service, collectors.pyasic_source, collectors.emulator",
         cwd=tmp_path)  # fmt: skip
