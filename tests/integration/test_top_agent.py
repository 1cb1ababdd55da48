import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from tests.integration.test_dashboards_deploy_kit import make_certs
from tests.support.agent import agent_config, wait_until
from tests.support.ports import free_port

pytestmark = pytest.mark.slow

ALTIWATCH = Path(sys.executable).with_name("altiwatch")
# Polls every 5 s with a 4 s timeout: slow enough that a loaded CI machine does not flap miners.
POLL_INTERVAL_S = 5.0
SCENARIO = {
    "name": "golmud-top",
    "description": "Three S19j Pro and a Bitaxe at Golmud for the terminal view.",
    "site": {
        "name": "golmud",
        "altitude_m": 2800,
        "ambient": {"mean_c": 18, "amplitude_k": 4, "peak_hour": 15, "utc_offset_h": 8},
    },
    "miners": [
        {"model": "antminer-s19jpro", "count": 3, "hostname_prefix": "s19"},
        {"model": "bitaxe-ultra", "count": 1, "hostname_prefix": "bitaxe"},
    ],
}


def _top(url: str, *args: str) -> str:
    """Run the real CLI like an operator would (stdout is a pipe, so plain text)."""
    result = subprocess.run(
        [str(ALTIWATCH), "top", "--once", "--url", url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stdout  # no colour codes into a pipe
    return result.stdout


def test_top_once_renders_a_real_agents_fleet(emulator_factory, agent_factory):
    """`altiwatch top --once` shows the site air, every miner, thresholds and a raised alarm."""
    emulator = emulator_factory(SCENARIO, base_address="127.70.3.1")
    miners = emulator.miners()
    agent = agent_factory(
        agent_config(
            [{"address": m["address"]} for m in miners], site="golmud", interval_s=POLL_INTERVAL_S
        )
    )
    lost = next(m for m in miners if m["family"] == "antminer")
    emulator.inject(lost["address"], "board_lost", board=1)

    def fleet_with_alarm() -> list[dict[str, Any]]:
        status, body = agent.fetch("/api/v1/fleet")
        fleet = json.loads(body) if status == 200 else []
        has_alarm = any(m["miner"] == lost["mac"] and m["alarms"] for m in fleet)
        return fleet if len(fleet) == 4 and all(m["model"] for m in fleet) and has_alarm else []

    fleet = agent.wait_for(fleet_with_alarm, "4 identified miners and the board-lost alarm", 90)
    alarm_rules = {a["rule"] for m in fleet if m["miner"] == lost["mac"] for a in m["alarms"]}

    frame = _top(agent.url)
    print(frame)  # the README's sample frame comes from here (pytest -s)
    assert "Site golmud" in frame
    assert "altitude 2,800 m" in frame
    assert "δ 0.710" in frame
    assert "M(δ) 1.285" in frame
    for miner in miners:
        assert miner["mac"] in frame
    lines = {line.split()[0]: line for line in frame.splitlines() if line[:3] == "02:"}
    s19_line = lines[next(m["mac"] for m in miners if m is not lost and m["family"] == "antminer")]
    assert "S19j Pro" in s19_line
    assert "TH/s" in s19_line
    assert "59.8/72.6" in s19_line  # the S19 preset derated for 2,800 m
    assert " board " in s19_line  # the stock S19's alarm sensor is the board
    for rule in alarm_rules:
        assert f"{rule}:" in lines[lost["mac"]]
    assert f"{lost['mac']}  " in frame.split("sorted by")[1]  # the explanation line


def test_top_sort_by_hashrate_puts_the_degraded_miner_first(emulator_factory, agent_factory):
    """With --sort hashrate the miner that lost a board (≈ 2/3 of expected) is listed first."""
    emulator = emulator_factory(SCENARIO, base_address="127.70.4.1")
    miners = emulator.miners()
    agent = agent_factory(
        agent_config(
            [{"address": m["address"]} for m in miners], site="golmud", interval_s=POLL_INTERVAL_S
        )
    )
    lost = miners[1]
    emulator.inject(lost["address"], "board_lost", board=0)

    def degraded() -> bool:
        status, body = agent.fetch("/api/v1/fleet")
        if status != 200:
            return False
        fleet = {m["miner"]: m for m in json.loads(body)}
        entry = fleet.get(lost["mac"])
        if len(fleet) != 4 or entry is None or not entry["hashrate_hs"]:
            return False
        return bool(entry["hashrate_hs"] < 0.8 * entry["expected_hashrate_hs"])

    wait_until(degraded, "the board-lost miner's hashrate to drop", timeout=90)
    frame = _top(agent.url, "--sort", "hashrate")
    order = [line.split()[0] for line in frame.splitlines() if line[:3] == "02:"]
    assert order[0] == lost["mac"], frame
    assert len(order) == 4


def test_top_reads_an_agent_behind_tls_and_basic_auth(tmp_path, emulator_factory, agent_factory):
    """With the agent's web config (TLS + bcrypt basic auth), --ca-file and --user get through."""
    host = "127.70.7.1"
    ca_file, cert_file, key_file = make_certs(tmp_path, host)
    password = "top-secret-4b1d"  # noqa: S105 - a throwaway test credential
    web_config = {
        "tls_server_config": {
            "cert_file": str(cert_file),
            "key_file": str(key_file),
        },
        "basic_auth_users": {"ops": bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()},
    }
    (tmp_path / "web.yml").write_text(yaml.safe_dump(web_config), encoding="utf-8")

    emulator = emulator_factory(SCENARIO, base_address="127.70.8.1")
    miners = emulator.miners()
    config = agent_config(
        [{"address": m["address"]} for m in miners],
        site="golmud",
        interval_s=POLL_INTERVAL_S,
        http={"listen": f"{host}:{free_port(host)}", "web_config_file": str(tmp_path / "web.yml")},
    )
    agent = agent_factory(config, wait_ready=False)
    url = agent.url.replace("http://", "https://")
    ca = ["--ca-file", str(ca_file)]

    def frame(*extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ALTIWATCH), "top", "--once", "--url", url, *ca, *extra],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "200", **(env or {})},
            check=False,
        )

    def shows_all_miners() -> str:
        result = frame("--user", "ops", env={"ALTIWATCH_TOP_PASSWORD": password})
        ok = result.returncode == 0 and all(m["mac"] in result.stdout for m in miners)
        return result.stdout if ok else ""

    text = agent.wait_for(shows_all_miners, "top over TLS with basic auth to show 4 miners", 90)
    assert "Site golmud" in text
    denied = frame()  # no credentials
    assert denied.returncode == 69
    assert "401" in denied.stderr
    assert "--user" in denied.stderr
    wrong = frame("--user", "ops", env={"ALTIWATCH_TOP_PASSWORD": "nope"})
    assert wrong.returncode == 69
    assert password not in wrong.stderr + wrong.stdout
    untrusted = subprocess.run(
        [str(ALTIWATCH), "top", "--once", "--url", url, "--user", "ops"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ALTIWATCH_TOP_PASSWORD": password},
        check=False,
    )
    assert untrusted.returncode == 69  # the system CAs do not know the agent's certificate
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr

    def maintenance(
        *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ALTIWATCH), "maintenance", *args, "--url", url, *ca],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **(env or {})},
            check=False,
        )

    anonymous = maintenance("start", miners[0]["address"], "--reason", "x")
    assert anonymous.returncode == 69  # the write path is behind the same basic auth
    assert "401" in anonymous.stderr
    as_ops = {"ALTIWATCH_TOP_PASSWORD": password}
    started = maintenance(
        "start",
        miners[0]["address"],
        "--reason",
        "psu",
        "--by",
        "mallory",
        "--user",
        "ops",
        env=as_ops,
    )
    assert started.returncode == 0, started.stderr
    listed = maintenance("list", "--json", "--user", "ops", env=as_ops)
    assert [w["by"] for w in json.loads(listed.stdout)] == ["ops"]  # the authenticated user
