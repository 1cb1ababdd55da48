"""``altiwatch run``: a bad config exits 78; planted secrets never reach the logs; warnings stay quiet."""

from __future__ import annotations

import json
import re
import subprocess
import sys

ALTIWATCH = [sys.executable, "-m", "agent"]
MINER_SECRET = "Pq7-miner-planted-5521"  # noqa: S105 - planted to be hunted for in the logs
MQTT_SECRET = "Pq7-mqtt-planted-5522"  # noqa: S105 - likewise
INLINE_SECRET = "Pq7-inline-planted-5523"  # noqa: S105 - likewise

SCENARIO = {
    "name": "secrets",
    "site": {"name": "golmud", "altitude_m": 2800},
    "miners": [
        {"model": "antminer-s19jpro", "count": 2},
        {"model": "vnish-s19jpro", "count": 1},
    ],
}


def test_cli_run_bad_config_exits_78(tmp_path):
    """`altiwatch run` with an invalid config exits 78 naming the field, without a traceback."""
    path = tmp_path / "bad.yaml"
    path.write_text("sites:\n  - name: golmud\n    altitude_m: 9000\n")
    result = subprocess.run(
        [*ALTIWATCH, "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 78
    output = result.stdout + result.stderr
    assert "sites.0.altitude_m (line 3)" in output
    assert "Traceback" not in output


def _polls_total(metrics: str) -> float:
    return sum(
        float(m.group(1))
        for m in re.finditer(r"^altiwatch_polls_total\{[^}]*\} (\S+)$", metrics, re.MULTILINE)
    )


def test_cli_run_planted_secrets_never_logged(tmp_path, emulator_factory, agent_factory):
    """Miner passwords (file, inline) and the MQTT credential never appear in debug logs."""
    emulator = emulator_factory(SCENARIO, base_address="127.60.10.1")
    addresses = [m["address"] for m in emulator.miners()]
    secret_file = tmp_path / "miner_pw"
    secret_file.write_text(MINER_SECRET + "\n")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "mqtt_password").write_text(MQTT_SECRET)
    miners = [
        {"address": addresses[0], "username": "root", "password_file": str(secret_file)},
        {"address": addresses[1], "username": "root", "password": INLINE_SECRET},
        {"address": addresses[2], "username": "root", "password_file": str(secret_file)},
    ]
    config = {
        "agent": {"id": "secrets", "log_format": "json", "log_level": "debug"},
        "sites": [{"name": "golmud", "altitude_m": 2800}],
        "miners": miners,
        "polling": {"interval_s": 2, "slow_interval_s": 4, "timeout_s": 1.5},
        # A broker that is not there: connection errors get logged with the credentials around.
        "mqtt": {"enabled": True, "host": "127.60.10.250", "port": 1883, "username": "aw"},
    }
    agent = agent_factory(config, env={"CREDENTIALS_DIRECTORY": str(credentials)})
    agent.wait_for(
        lambda: _polls_total(agent.metrics()) >= 4 * len(miners),
        "several poll cycles (fast and slow tiers)",
        timeout=90,
    )
    assert agent.stop() == 0
    output = agent.output()
    assert '"event"' in output  # the logs were captured at all
    for secret in (MINER_SECRET, MQTT_SECRET, INLINE_SECRET):
        assert secret not in output, f"{secret} leaked into the agent's logs"
    for path in (tmp_path).rglob("*"):
        if (
            path.is_file()
            and path.name not in {"miner_pw", "mqtt_password"}
            and path.suffix != ".yaml"
        ):
            data = path.read_bytes()
            for secret in (MINER_SECRET, MQTT_SECRET, INLINE_SECRET):
                assert secret.encode() not in data, f"{secret} written to {path}"


def test_cli_run_logs_no_third_party_warning(emulator_factory, agent_factory):
    """A start that imports pyasic (asyncssh's DSA deprecation) logs no py.warnings line at info."""
    emulator = emulator_factory(SCENARIO, base_address="127.60.11.1")
    config = {
        "agent": {"id": "warnings", "log_format": "json", "log_level": "info"},
        "sites": [{"name": "golmud", "altitude_m": 2800}],
        "miners": [{"address": m["address"]} for m in emulator.miners()],
        "polling": {"interval_s": 2, "slow_interval_s": 4, "timeout_s": 1.5},
    }
    agent = agent_factory(config)
    agent.wait_for(lambda: _polls_total(agent.metrics()) >= 6, "two poll cycles", timeout=90)
    assert agent.stop() == 0
    lines = agent.output().splitlines()
    assert any('"event": "agent_stopped"' in line for line in lines)  # the log was captured
    not_json = [line for line in lines if not line.startswith("{")]
    assert not not_json, f"lines that are not JSON log lines (stderr?): {not_json[:3]}"
    warned = [json.loads(line) for line in lines if '"py.warnings"' in line]
    assert not warned, warned
