"""No secret leaks: planted passwords never appear in logs, metrics, API, MQTT or check-config.

One real agent runs with everything secret it can have: a miner password inline, another from a
``password_file``, an MQTT password against a Mosquitto that requires it (``password_file`` +
``allow_anonymous false``), and /metrics + the JSON API behind TLS and basic auth (web-config).
An alarm fires, a SIGHUP reload with an invalid file is attempted (the running config must stay
and the error be reported), ``check-config`` runs on the valid and on an invalid file. Then every
artifact is scanned for the planted secrets (and the basic-auth header's base64).
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml

from tests.integration.test_reliability_miners import log_events
from tests.support.agent import agent_config, wait_until
from tests.support.ports import free_port
from tests.unit.test_web_security import bcrypt_hash, make_pki

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.support.agent import AgentProcess

pytestmark = pytest.mark.broker

MINER_SECRET = "planted-miner-Pw-41c9"  # noqa: S105 - planted on purpose
MINER_FILE_SECRET = "planted-file-Pw-77ab"  # noqa: S105
MQTT_SECRET = "planted-mqtt-Pw-3e0d"  # noqa: S105
BASIC_SECRET = "planted-basic-Pw-9f12"  # noqa: S105
POOL_SECRET = "planted-pool-Pw-2d6e"  # noqa: S105 - in a hijacked pool URL (user:pass@host)
SECRETS = (MINER_SECRET, MINER_FILE_SECRET, MQTT_SECRET, BASIC_SECRET, POOL_SECRET)
BASIC_B64 = base64.b64encode(f"prometheus:{BASIC_SECRET}".encode()).decode()
ALTIWATCH = Path(sys.executable).with_name("altiwatch")

SCENARIO = {
    "name": "secrets",
    "site": {"name": "golmud", "altitude_m": 2800},
    "miners": [
        {"model": "antminer-s19jpro", "count": 2},
        {"model": "bitaxe-ultra", "count": 2},
    ],
}


def _broker_with_password(mosquitto_factory: Any, tmp_path: Path) -> Any:
    passwd = tmp_path / "mosquitto.passwd"
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    for user, password in (("altiwatch", MQTT_SECRET), ("reader", "reader-pw")):
        argv = [tool, "-b", *(["-c"] if not passwd.exists() else []), str(passwd), user, password]
        subprocess.run(argv, check=True, capture_output=True, timeout=30)
    # Test-only: stay root (Debian's broker switches to its user, which cannot read tmp_path).
    return mosquitto_factory(
        extra=["allow_anonymous false", f"password_file {passwd}", "user root"]
    )


class Subscriber:
    """``mosquitto_sub -v`` on every altiwatch topic as user ``reader``."""

    def __init__(self, broker: Any, path: Path) -> None:
        """Start it."""
        self.path = path
        self._file = path.open("wb")
        sub = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
        self.proc = subprocess.Popen(
            [
                *(sub, "-h", broker.host, "-p", str(broker.port)),
                *("-u", "reader", "-P", "reader-pw", "-t", "altiwatch/#", "-v", "-q", "1"),
            ],
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    def text(self) -> str:
        """Everything received."""
        return self.path.read_text(errors="replace")

    def close(self) -> None:
        """Stop it."""
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._file.close()


@pytest.fixture
def broker(mosquitto_factory, tmp_path) -> Any:
    """A Mosquitto that requires a password."""
    return _broker_with_password(mosquitto_factory, tmp_path)


@pytest.fixture
def subscriber(broker, tmp_path) -> Iterator[Subscriber]:
    """A subscriber on every altiwatch topic."""
    sub = Subscriber(broker, tmp_path / "mqtt.log")
    yield sub
    sub.close()


def _check_config(path: Path) -> str:
    result = subprocess.run(
        [str(ALTIWATCH), "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def _setup(tmp_path: Path, emulator: Any, broker: Any) -> tuple[dict[str, Any], Path, str]:
    """Write the web config, a secret file and the agent config; return (config, CA, s19)."""
    pki = make_pki(tmp_path, server_ip="127.0.0.1")
    web_config = tmp_path / "web-config.yml"
    web_config.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {
                    "cert_file": str(pki.server_cert),
                    "key_file": str(pki.server_key),
                },
                "basic_auth_users": {"prometheus": bcrypt_hash(BASIC_SECRET, rounds=10)},
            }
        )
    )
    secret_file = tmp_path / "bitaxe.pw"
    secret_file.write_text(MINER_FILE_SECRET + "\n")
    secret_file.chmod(0o600)
    s19, s19_wrong_password = emulator.addresses("antminer")
    bitaxe, bitaxe_file = emulator.addresses("bitaxe")
    config = agent_config(
        [
            {"address": s19},
            # The emulator's stock web wants root/root: this one fails auth on every request,
            # so the failure paths are exercised with the planted secret too.
            {"address": s19_wrong_password, "username": "root", "password": MINER_SECRET},
            {"address": bitaxe, "password": MINER_SECRET},  # AxeOS ignores it
            {"address": bitaxe_file, "password_file": str(secret_file)},
        ],
        interval_s=1.0,
        polling={"slow_interval_s": 2.0},  # pools (R14's input) are slow-tier data
        agent={"log_level": "debug"},
        http={"listen": f"127.0.0.1:{free_port()}", "web_config_file": str(web_config)},
        mqtt={
            "enabled": True,
            "host": broker.host,
            "port": broker.port,
            "username": "altiwatch",
            "password": MQTT_SECRET,
        },
    )
    config["sites"][0]["pools"] = {"allowed": [{"url": "*.emulated-pool.example:*"}]}
    return config, pki.ca_cert, s19


def _reload_invalid(agent: AgentProcess, get: Callable[[str], httpx.Response | None]) -> str:
    """SIGHUP with an invalid file: the error is logged, the running config keeps serving."""
    valid_text = agent.config_path.read_text()
    broken = yaml.safe_load(valid_text)
    broken["polling"]["timeout_s"] = 99.0  # >= interval_s: invalid
    broken["mqtt"]["port"] = "not-a-port"
    agent.rewrite_config(yaml.safe_dump(broken))
    agent.signal(signal.SIGHUP)
    agent.wait_for(
        lambda: any(e.get("event") == "config_reload_failed" for e in log_events(agent)),
        "config_reload_failed in the log",
        timeout=30,
    )
    failure = next(e for e in log_events(agent) if e.get("event") == "config_reload_failed")
    assert "timeout_s" in failure["error"]
    assert "mqtt.port" in failure["error"]
    before = get("/metrics")
    assert before is not None
    polls = _polls(before.text)
    agent.wait_for(
        lambda: (r := get("/metrics")) is not None and _polls(r.text) > polls + 2,
        "polling to go on with the running config",
        timeout=30,
    )
    assert agent.proc.poll() is None
    return valid_text


def _polls(metrics_text: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("altiwatch_polls_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_security_planted_secrets_appear_nowhere(
    tmp_path, emulator_factory, agent_factory, broker, subscriber
):
    """Miner, MQTT and basic-auth passwords are absent from every output the agent makes.

    1. Agent with secrets inline and in files, TLS + basic auth, MQTT with a password.
    2. A hashboard is lost (alarm R6); the JSON API, /metrics and MQTT carry it.
    3. SIGHUP with an invalid config: the agent reports it and keeps its running config.
    4. check-config on an invalid and on the valid file.
    5. Logs, /metrics, API responses, MQTT payloads and check-config output are scanned.
    """
    emulator = emulator_factory(SCENARIO, base_address="127.90.6.1")
    config, ca_file, s19 = _setup(tmp_path, emulator, broker)
    agent = agent_factory(config, wait_ready=False)
    base = "https://" + config["http"]["listen"]
    context = ssl.create_default_context(cafile=str(ca_file))
    artifacts: dict[str, str] = {}

    with httpx.Client(verify=context, timeout=10.0, auth=("prometheus", BASIC_SECRET)) as client:

        def get(path: str) -> httpx.Response | None:
            with contextlib.suppress(httpx.HTTPError):
                return client.get(base + path)
            return None

        def ready() -> bool:
            if agent.proc.poll() is not None:
                pytest.fail(f"agent exited:\n{agent.output()[-3000:]}")
            response = get("/readyz")
            return response is not None and response.status_code == 200

        wait_until(ready, "the agent ready over TLS with basic auth", timeout=60)
        denied = httpx.get(base + "/metrics", verify=context, timeout=10.0)
        assert denied.status_code == 401
        artifacts["401 response"] = denied.text + json.dumps(dict(denied.headers))

        mac = emulator.truth(s19)["mac"].upper()
        emulator.inject(s19, "board_lost", board=1)
        # A hijacked pool whose URL embeds a password: R14 names it, without the password.
        hijack = f"stratum+tcp://thief:{POOL_SECRET}@evil-pool.example:3333"
        emulator.inject(s19, "pool_hijack", url=hijack, worker="thief.rig1")
        wait_until(
            lambda: (r := get("/api/v1/alarms")) is not None and mac in r.text,
            "R6 on /api/v1/alarms",
            timeout=60,
        )
        wait_until(lambda: "/alarm/r6" in subscriber.text().lower(), "R6 on MQTT", timeout=60)
        wait_until(lambda: "/alarm/r14" in subscriber.text().lower(), "R14 on MQTT", timeout=60)
        wait_until(lambda: "/telemetry" in subscriber.text(), "telemetry on MQTT", timeout=30)

        valid_text = _reload_invalid(agent, get)

        for path in ("/metrics", "/api/v1/fleet", "/api/v1/alarms", "/healthz", "/readyz"):
            response = get(path)
            assert response is not None
            assert response.status_code == 200, path
            artifacts[path] = response.text

    artifacts["check-config (invalid)"] = _check_config(agent.config_path)
    assert "exit 78" in artifacts["check-config (invalid)"]
    agent.rewrite_config(valid_text)
    artifacts["check-config (valid)"] = _check_config(agent.config_path)
    assert "exit 0" in artifacts["check-config (valid)"]

    assert agent.stop() == 0
    artifacts["agent log"] = agent.output()
    artifacts["mqtt payloads"] = subscriber.text()

    assert "/alarm/r6" in artifacts["mqtt payloads"].lower()
    assert 'url="stratum+tcp://evil-pool.example:3333"' in artifacts["/metrics"]
    assert "evil-pool.example" in artifacts["/api/v1/alarms"]
    assert mac in artifacts["/api/v1/alarms"]
    leaks = [
        f"{secret!r} in {name}"
        for name, text in artifacts.items()
        for secret in (*SECRETS, BASIC_B64)
        if secret in text
    ]
    assert not leaks, leaks
    sizes = {name: len(text) for name, text in artifacts.items()}
    print(f"scanned for {len(SECRETS)} secrets: {sizes}")
