"""In CI and under make test a skipped test fails the run (tests/support/strict_skips.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = """
import shutil
import pytest

@pytest.mark.skipif(shutil.which("no-such-debian-tool") is None, reason="needs no-such-debian-tool")
def test_needs_a_tool():
    pass

def test_needs_root():
    pytest.skip("cannot mount a tmpfs here (needs root)")

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    raise AssertionError

def test_runs():
    pass
"""


def run_sample(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run pytest on SAMPLE with the strict-skips plugin and ``env`` on top of a clean one."""
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    base = {k: v for k, v in os.environ.items() if k not in {"CI", "ALTIWATCH_STRICT_SKIPS"}}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "-p",
            "tests.support.strict_skips",
            "-c",
            os.devnull,
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_sample.py"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**base, "PYTHONPATH": str(REPO), **env},
        timeout=120,
        check=False,
    )


def test_strict_skips_off_locally(tmp_path: Path):
    """Plain pytest: skips stay skips, the run passes."""
    done = run_sample(tmp_path)
    assert done.returncode == 0, done.stdout
    assert "2 skipped" in done.stdout


@pytest.mark.parametrize("env", [{"CI": "true"}, {"ALTIWATCH_STRICT_SKIPS": "1"}])
def test_strict_skips_fail_in_ci_and_make_test(tmp_path: Path, env: dict[str, str]):
    """CI=true or make test: each skip fails with its reason; xfail and passes are untouched."""
    done = run_sample(tmp_path, **env)
    assert done.returncode == 1, done.stdout
    # skipif acts in setup, so that skip is reported as an error; pytest.skip in the test, a failure.
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in done.stdout
    assert "needs no-such-debian-tool" in done.stdout
    assert "cannot mount a tmpfs here (needs root)" in done.stdout


def test_strict_skips_make_test_sets_the_switch():
    """`make test` runs pytest with ALTIWATCH_STRICT_SKIPS=1."""
    recipe = (REPO / "Makefile").read_text().split("\ntest: ", 1)[1].split("\n\n", 1)[0]
    assert "ALTIWATCH_STRICT_SKIPS=1" in recipe
