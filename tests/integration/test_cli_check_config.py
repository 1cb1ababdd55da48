"""The real ``altiwatch check-config`` subprocess: exit 78 naming field and line, or the config."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

ALTIWATCH = [sys.executable, "-m", "agent"]
EX_CONFIG = 78

GOOD = """\
sites:
  - name: golmud
    altitude_m: 2800
miners:
  - address: 127.60.1.1
polling:
  interval_s: 30
http:
  listen: 127.0.0.1:9847
"""


def _check(
    tmp_path: Path, text: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "altiwatch.yaml"
    path.write_text(textwrap.dedent(text))
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("ALTIWATCH_")}
    return subprocess.run(
        [*ALTIWATCH, "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env | (env or {}),
        check=False,
    )


# (id, YAML text or a (text, env) pair, expected fragment of stderr)
BAD_CONFIGS = [
    (
        "unknown-key",
        GOOD.replace("  interval_s: 30", "  interval_s: 30\n  intervall_s: 5"),
        "polling.intervall_s (line 8): unknown key",
    ),
    (
        "wrong-type",
        GOOD.replace("interval_s: 30", "interval_s: often"),
        "polling.interval_s (line 7): Input should be a valid number",
    ),
    (
        "timeout-not-below-interval",
        GOOD.replace("interval_s: 30", "interval_s: 30\n  timeout_s: 30"),
        "polling.timeout_s (line 8): must be less than polling.interval_s",
    ),
    (
        "unknown-site",
        GOOD.replace("127.60.1.1", "127.60.1.1\n    site: lhasa"),
        "miners.0.site (line 6): unknown site 'lhasa'",
    ),
    (
        "duplicate-address",
        GOOD.replace("  - address: 127.60.1.1", "  - address: 127.60.1.1\n  - address: 127.60.1.1"),
        "miners.1.address (line 6): duplicate address 127.60.1.1",
    ),
    (
        "bad-address",
        GOOD.replace("127.60.1.1", "127.60.1.300"),
        "miners.0.address (line 5): not an IP address or host name",
    ),
    (
        "bad-cidr",
        GOOD + "discovery:\n  - cidr: 10.0.0.0/33\n",
        "discovery.0.cidr (line 11): not a valid CIDR range",
    ),
    (
        "huge-cidr",
        GOOD + "discovery:\n  - cidr: 10.0.0.0/8\n",
        "discovery.0.cidr (line 11): range 10.0.0.0/8 has 16777216 addresses; at most a /16",
    ),
    (
        "bad-listen",
        GOOD.replace("127.0.0.1:9847", "127.0.0.1:http"),
        "http.listen (line 9): expected host:port",
    ),
    (
        "listen-port-range",
        GOOD.replace("127.0.0.1:9847", "127.0.0.1:70000"),
        "http.listen (line 9): port 70000 out of range",
    ),
    ("missing-sites", "miners: []\n", "sites (line 1): required"),
    (
        "empty-sites",
        GOOD.replace("sites:\n  - name: golmud\n    altitude_m: 2800\n", "sites: []\n"),
        "sites (line 1): List should have at least 1 item",
    ),
    (
        "yaml-syntax",
        GOOD.replace("altitude_m: 2800", "altitude_m: [2800"),
        "(line 4): YAML syntax error",
    ),
    (
        "missing-secret-file",
        GOOD.replace("127.60.1.1", "127.60.1.1\n    password_file: /nonexistent/altiwatch/pw"),
        "miners.0.password_file (line 6): cannot read secret file /nonexistent/altiwatch/pw",
    ),
    (
        "altitude-below-minus-500",
        GOOD.replace("2800", "-600"),
        "sites.0.altitude_m (line 3): Input should be greater than or equal to -500",
    ),
    (
        "altitude-above-6000",
        GOOD.replace("2800", "6500"),
        "sites.0.altitude_m (line 3): Input should be less than or equal to 6000",
    ),
    (
        "duplicate-key",
        GOOD.replace("  interval_s: 30", "  interval_s: 30\n  interval_s: 60"),
        "polling.interval_s (line 8): duplicate key",
    ),
    (
        "slow-below-fast",
        GOOD.replace("interval_s: 30", "interval_s: 30\n  slow_interval_s: 10"),
        "polling.slow_interval_s (line 8): must be at least polling.interval_s",
    ),
    (
        "site-required-with-two-sites",
        GOOD.replace("miners:", "  - name: xining\n    altitude_m: 2275\nminers:"),
        "miners.0.site (line 7): required when more than one site",
    ),
    ("top-level-list", "- sites\n", "(line 1): the top level must be a mapping"),
    (
        "bad-agent-id",
        "agent:\n  id: golmud north\n" + GOOD,
        "agent.id (line 2): String should match pattern",
    ),
    (
        "credential-outside-systemd",
        GOOD.replace("127.60.1.1", "127.60.1.1\n    password_credential: miner_pw"),
        "miners.0.password_credential (line 6): no $CREDENTIALS_DIRECTORY",
    ),
    (
        "env-override",
        (GOOD, {"ALTIWATCH_POLLING__CONCURRENCY": "0"}),
        "polling.concurrency (from ALTIWATCH_POLLING__CONCURRENCY): Input should be greater than or equal to 1",
    ),
]


@pytest.mark.parametrize(
    ("case", "config", "expected"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS]
)
def test_cli_check_config_bad_config_exits_78_naming_field(tmp_path, case, config, expected):
    """Each bad config makes the real CLI exit 78 with the field and line on stderr."""
    text, env = config if isinstance(config, tuple) else (config, None)
    result = _check(tmp_path, text, env)
    assert result.returncode == EX_CONFIG, (case, result.stdout, result.stderr)
    assert expected in result.stderr, result.stderr
    assert result.stderr.startswith("config error: ")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_cli_check_config_unreadable_file_exits_78(tmp_path):
    """A config file that does not exist is a config error (78), not a crash."""
    result = subprocess.run(
        [*ALTIWATCH, "check-config", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == EX_CONFIG
    assert "cannot read" in result.stderr
    assert "No such file or directory" in result.stderr


def test_cli_check_config_prints_effective_config_with_secrets_masked(tmp_path):
    """A good config exits 0 and prints every section with defaults, secrets as **********."""
    secret = tmp_path / "pw"
    secret.write_text("Vx-miner-secret-991\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt_password").write_text("Vx-mqtt-secret-992")
    text = (
        GOOD.replace("127.60.1.1", f"127.60.1.1\n    password_file: {secret}")
        + "mqtt:\n  enabled: true\n  username: aw\n"
    )
    result = _check(
        tmp_path, text, {"CREDENTIALS_DIRECTORY": str(creds), "ALTIWATCH_POLLING__INTERVAL_S": "60"}
    )
    assert result.returncode == 0, result.stderr
    assert "Vx-miner-secret" not in result.stdout
    assert "Vx-mqtt-secret" not in result.stdout
    assert result.stdout.count("'**********'") == 2
    for section in (
        "agent:",
        "sites:",
        "miners:",
        "discovery:",
        "polling:",
        "http:",
        "mqtt:",
        "thermal:",
    ):
        assert f"\n{section}" in result.stdout
    assert "interval_s: 60.0" in result.stdout
    assert "timeout_s: 48.0" in result.stdout


def test_cli_version_and_usage():
    """--version prints the version; no subcommand prints usage and exits 64."""
    version = subprocess.run(
        [*ALTIWATCH, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert version.returncode == 0
    assert version.stdout.startswith("altiwatch ")
    bare = subprocess.run(ALTIWATCH, capture_output=True, text=True, timeout=60, check=False)
    assert bare.returncode == 64
    assert "check-config" in bare.stderr
