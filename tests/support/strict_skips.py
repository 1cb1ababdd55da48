"""A skip is a failure where the set-up promises every tool: in CI, and under ``make test``.

The suite skips a test only when the machine lacks what it needs: root (mounts), a Debian tool
(promtool, systemd-analyze, mkfs.ext4, curl) or a kernel feature (PR_SET_MDWE). ``make setup``
installs the tools and CI runs as root, so there a skip means a broken set-up, and a green run
would hide that the test never ran. With ``CI`` true (as GitHub Actions and GitLab set it) or
``ALTIWATCH_STRICT_SKIPS=1`` (set by ``make test``), each such skip is reported as a failure
that names the reason. xfail is not affected. Locally (plain ``pytest``) skips stay skips.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Generator

TRUTHY = frozenset({"1", "true", "yes", "on"})


def strict() -> bool:
    """True in CI or under ``make test``."""
    return (
        os.environ.get("CI", "").strip().lower() in TRUTHY
        or os.environ.get("ALTIWATCH_STRICT_SKIPS", "").strip().lower() in TRUTHY
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """Turn a skip (not an xfail) into a failure when :func:`strict`."""
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and strict()) or hasattr(report, "wasxfail"):
        return
    reason = call.excinfo.exconly() if call.excinfo is not None else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"{item.nodeid} was skipped where every prerequisite must be present"
        f" (CI or make test): {reason}"
    )
