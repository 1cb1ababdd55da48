"""The deploy kit works as shipped: Mosquitto TLS/password/ACL config, site config, compose."""

import datetime as dt
import ipaddress
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
ALTIWATCH = Path(sys.executable).with_name("altiwatch")
HOST = "127.70.9.1"
PASSWORDS = {"altiwatch-golmud": "golmud-pw-7f3a", "alerts": "alerts-pw-91c2"}


def make_certs(directory: Path, ip: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for ``ip`` (SAN); (ca.crt, server.crt, server.key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "altiwatch-test-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.crt", directory / "server.crt", directory / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def _run(*argv: str | Path, cwd: Path) -> None:
    subprocess.run([str(a) for a in argv], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass
class Broker:
    """The shipped mosquitto.conf, paths and ports rewritten into a temp dir."""

    plain_port: int
    tls_port: int
    ca_file: Path


@pytest.fixture
def site_broker(tmp_path: Path) -> Iterator[Broker]:
    """Start Debian's mosquitto with deploy/mosquitto/mosquitto.conf (throwaway certs)."""
    ca_file, _, _ = make_certs(tmp_path, HOST)
    passwd = tmp_path / "passwd"
    passwd.touch()
    for user, password in PASSWORDS.items():
        _run("mosquitto_passwd", "-b", passwd, user, password, cwd=tmp_path)
    shutil.copy(DEPLOY / "mosquitto" / "acl", tmp_path / "acl")

    plain_port, tls_port = free_port(HOST), free_port(HOST)
    text = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
    replacements = {
        "/etc/mosquitto/certs/": f"{tmp_path}/",
        "/etc/mosquitto/passwd": str(passwd),
        "/etc/mosquitto/acl": str(tmp_path / "acl"),
        "listener 1883 127.0.0.1": f"listener {plain_port} {HOST}",
        "listener 8883": f"listener {tls_port} {HOST}",
    }
    for old, new in replacements.items():
        assert old in text, f"mosquitto.conf no longer contains {old!r}"
        text = text.replace(old, new)
    # Test-only additions: persistence in tmp, stay root (Debian would switch to its user).
    text += f"\npersistence_location {tmp_path}/\nuser root\nlog_dest stderr\n"
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text, encoding="utf-8")
    log = (tmp_path / "mosquitto.log").open("wb")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, (tmp_path / "mosquitto.log").read_text()
            try:
                with socket.create_connection((HOST, tls_port), timeout=0.5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not listen within 20 s"
                time.sleep(0.1)
        yield Broker(plain_port, tls_port, ca_file)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


class Client:
    """A paho MQTT v5 client whose calls wait for the broker's answer (with deadlines)."""

    def __init__(self, broker: Broker, user: str | None, password: str | None, *, tls: bool):
        """Connect (TLS verified against the test CA, or plain on loopback) and wait for CONNACK."""
        self.connected = threading.Event()
        self.reason: ReasonCode | None = None
        self.acks: dict[int, ReasonCode] = {}
        self.granted: dict[int, list[ReasonCode]] = {}
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-{user}", protocol=mqtt.MQTTv5
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        if tls:
            self.client.tls_set(ca_certs=str(broker.ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        port = broker.tls_port if tls else broker.plain_port
        self.client.connect(HOST, port)
        self.client.loop_start()
        assert self.connected.wait(20), "no CONNACK within 20 s"

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self.reason = reason
        self.connected.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        with self._lock:
            self.acks[mid] = reason

    def _on_subscribe(
        self, _c: Any, _u: Any, mid: int, reasons: list[ReasonCode], _p: Properties | None
    ) -> None:
        with self._lock:
            self.granted[mid] = reasons

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(message)

    def _wait(self, what: str, check: Any) -> Any:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with self._lock:
                value = check()
            if value is not None:
                return value
            time.sleep(0.05)
        pytest.fail(f"timed out waiting for {what}")

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> ReasonCode:
        """QoS 1 publish; the PUBACK's reason code (v5 reports ACL denials there)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        return self._wait(f"PUBACK of {topic}", lambda: self.acks.get(info.mid))

    def subscribe(self, topic: str) -> ReasonCode:
        """The SUBACK reason code for ``topic``."""
        _, mid = self.client.subscribe(topic, qos=1)
        granted = self._wait(f"SUBACK of {topic}", lambda: self.granted.get(mid))
        return granted[0]

    def received(self, topic: str) -> mqtt.MQTTMessage:
        """Wait for a message on ``topic``."""
        return self._wait(
            f"a message on {topic}",
            lambda: next((m for m in self.messages if m.topic == topic), None),
        )

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients(site_broker: Broker) -> Iterator[Any]:
    """Open clients against the site broker; all closed at teardown."""
    opened: list[Client] = []

    def connect(user: str | None, password: str | None = None, *, tls: bool = True) -> Client:
        client = Client(site_broker, user, password, tls=tls)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()


@pytest.mark.broker
def test_deploy_mosquitto_tls_listener_accepts_known_users(clients):
    """Over TLS (verified against the CA) the agent's user connects with its password."""
    agent = clients("altiwatch-golmud", PASSWORDS["altiwatch-golmud"])
    assert agent.reason is not None
    assert not agent.reason.is_failure


@pytest.mark.broker
@pytest.mark.parametrize(
    ("user", "password"),
    [("altiwatch-golmud", "wrong"), (None, None), ("intruder", "x")],
    ids=["wrong-password", "anonymous", "unknown-user"],
)
def test_deploy_mosquitto_rejects_bad_credentials(clients, user, password):
    """Wrong passwords, anonymous and unknown users are refused at CONNECT."""
    client = clients(user, password)
    assert client.reason is not None
    assert client.reason.is_failure


@pytest.mark.broker
def test_deploy_mosquitto_acl_lets_agents_write_and_consumers_read_events(clients):
    """The agent publishes its site's events and alarm state; the alert consumer reads them."""
    consumer = clients("alerts", PASSWORDS["alerts"])
    assert not consumer.subscribe("altiwatch/v1/+/events").is_failure
    agent = clients("altiwatch-golmud", PASSWORDS["altiwatch-golmud"], tls=False)
    assert not agent.publish("altiwatch/v1/golmud-north/events", b'{"kind":"raised"}').is_failure
    assert consumer.received("altiwatch/v1/golmud-north/events").payload == b'{"kind":"raised"}'
    topic = "altiwatch/v1/golmud-north/02:A1:00:00:00:01/alarm/R1"
    assert not agent.publish(topic, b'{"severity":"warning"}', retain=True).is_failure
    assert not consumer.subscribe("altiwatch/v1/+/+/alarm/#").is_failure
    assert consumer.received(topic).retain


@pytest.mark.broker
def test_deploy_mosquitto_acl_denies_what_a_user_does_not_own(clients):
    """Consumers publish nothing but their own status; an agent stays inside its own sites."""
    denied = 0x87  # MQTT 5 "Not authorized"
    consumer = clients("alerts", PASSWORDS["alerts"])
    assert consumer.publish("altiwatch/v1/golmud-north/events", b"fake").value == denied
    agent = clients("altiwatch-golmud", PASSWORDS["altiwatch-golmud"])
    assert agent.publish("altiwatch/v1/xining/events", b"fake").value == denied
    # The client-id pattern: a consumer may write only its own status topic.
    own = "altiwatch/v1/golmud-north/agent/test-alerts/status"
    assert consumer.publish(own, b"online").value in {0x00, 0x10}  # success / no subscribers
    other = "altiwatch/v1/golmud-north/agent/golmud-agent-01/status"
    assert consumer.publish(other, b"offline").value == denied
    # Mosquitto 2.0 grants every SUBSCRIBE and filters on delivery: the agent's own event is
    # not delivered back to it, while its own status (client-id pattern, readwrite) published
    # right after is; in-order delivery makes the status the end marker.
    events = "altiwatch/v1/golmud-north/events"
    own_status = "altiwatch/v1/golmud-north/agent/test-altiwatch-golmud/status"
    agent.subscribe(events)
    agent.subscribe(own_status)
    assert not agent.publish(events, b'{"kind":"raised"}').is_failure
    assert not agent.publish(own_status, b"online").is_failure
    agent.received(own_status)
    assert [m.topic for m in agent.messages] == [own_status]


def test_deploy_site_config_passes_check_config():
    """deploy/sites/qinghai-golmud.yaml is accepted by `altiwatch check-config`."""
    result = subprocess.run(
        [str(ALTIWATCH), "check-config", str(DEPLOY / "sites" / "qinghai-golmud.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "golmud-north" in result.stdout


def test_deploy_compose_stack_is_complete_and_consistent():
    """The compose file has the five parts and points at files that exist in the repo."""
    compose_dir = DEPLOY / "compose"
    compose = yaml.safe_load((compose_dir / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"emulator", "agent", "mosquitto", "prometheus", "grafana"}
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (compose_dir / source).resolve().exists(), volume
    agent_cmd = " ".join(services["agent"]["command"])
    assert "altiwatch run --config /src/deploy/compose/altiwatch.yaml" in agent_cmd
    emulator_cmd = " ".join(services["emulator"]["command"])
    scenario = emulator_cmd.split("--scenario /src/")[1].split()[0]
    assert (ROOT / scenario).is_file(), scenario
    result = subprocess.run(
        [str(ALTIWATCH), "check-config", str(compose_dir / "altiwatch.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_deploy_alertmanager_routes_reference_defined_receivers():
    """Every route and inhibit rule of the Alertmanager example refers to things that exist."""
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    receivers = {r["name"] for r in config["receivers"]}
    routes = [config["route"], *config["route"].get("routes", [])]
    assert {r["receiver"] for r in routes} <= receivers
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "altiwatch.rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    for inhibit in config["inhibit_rules"]:
        for matcher in inhibit["source_matchers"] + inhibit["target_matchers"]:
            name, _, value = matcher.partition("=")
            if name.strip() == "alertname" and "~" not in value:
                assert value.strip().strip('"') in alerts, matcher
