"""The many-sites kit's engines for tests, started directly on loopback with data under tmp.

Debian's VictoriaMetrics, vmagent, vmauth, vmalert, Alertmanager and mosquitto.

The site and central kits' own files are used, with only what a test must change replaced:
``kit_env(path, **overrides)`` reads a ``deploy/*/*.env`` file of ``-envflag.enable`` flags;
``kit_text(path, replace, append)`` adapts any other kit file by exact substitutions.
Every :class:`Service` is a subprocess with its own log; ``stop()`` sends SIGTERM (and waits),
``kill()`` SIGKILL; ``start()`` again reuses port and data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import aiomqtt
import pytest

from tests.support.mosquitto import MOSQUITTO, Mosquitto, Received
from tests.support.ports import free_port

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

REPO = Path(__file__).resolve().parents[2]
SITE_KIT = REPO / "deploy" / "site"
CENTRAL_KIT = REPO / "deploy" / "central"
BINARIES = ("victoria-metrics", "vmagent", "vmalert", "vmauth", "prometheus-alertmanager")


def require_binaries(*names: str) -> None:
    """Fail (not skip) when a Debian binary the kit needs is missing: `make setup` installs them."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run `make setup` as root (Debian packages)")


def kit_env(path: Path, **overrides: str | None) -> dict[str, str]:
    """``NAME=value`` lines of a kit env file (comments skipped), with overrides (None drops)."""
    env: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, text = line.partition("=")
        env[key.strip()] = text.strip().strip('"')
    for key, override in overrides.items():
        if override is None:
            env.pop(key, None)
        else:
            env[key] = override
    return env


def kit_text(path: Path, replace: Mapping[str, str], append: Sequence[str] = ()) -> list[str]:
    """A kit config file's lines with exact substrings replaced (each must occur) and lines added."""
    text = path.read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in text, f"{old!r} not in {path}"
        text = text.replace(old, new)
    return [*text.splitlines(), *append]


class Service:
    """One server process started directly, with its log in ``workdir``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        workdir: Path,
        *,
        ready_url: str,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Remember how to start it; :meth:`start` does."""
        self.name = name
        self.argv = list(argv)
        self.workdir = workdir
        self.ready_url = ready_url
        self.env = dict(env or {})
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Self:
        """Start and wait until ``ready_url`` answers 200."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.env},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited {self.proc.returncode}: {self.tail()}")
            if http_get(self.ready_url)[0] == 200:
                return self
            time.sleep(0.1)
        pytest.fail(f"{self.name} not ready within {timeout:g} s: {self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        """The end of the log."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM and wait (SIGKILL after ``timeout``)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def http_get(url: str, *, timeout: float = 10.0) -> tuple[int, bytes]:
    """GET ``url``: (status, body); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback test URL
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


class VictoriaMetrics(Service):
    """Single-node VictoriaMetrics: the central store (remote_write receiver, query API)."""

    def __init__(self, workdir: Path) -> None:
        """Data under ``workdir``; queries see samples 1 s old (tests, not the kit's 30 s)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            "victoria-metrics",
            [
                "victoria-metrics",
                f"-storageDataPath={workdir / 'vm-data'}",
                f"-httpListenAddr=127.0.0.1:{self.port}",
                "-retentionPeriod=1",
                "-search.latencyOffset=1s",
                "-search.disableCache",
                "-dedup.minScrapeInterval=1ms",
                "-loggerLevel=WARN",
            ],
            workdir,
            ready_url=f"{self.url}/health",
        )

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; the result vector."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        status, body = http_get(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}")
        assert status == 200, f"query {expr!r}: {status} {body[:300]!r}"
        result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
        return result

    def export(self, match: str, start: float, end: float) -> list[dict[str, Any]]:
        """Raw samples (``/api/v1/export``): one dict per series with values and timestamps (ms)."""
        params = urllib.parse.urlencode(
            {"match[]": match, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        )
        status, body = http_get(f"{self.url}/api/v1/export?{params}", timeout=30)
        assert status == 200, f"export {match!r}: {status} {body[:300]!r}"
        return [json.loads(line) for line in body.splitlines() if line.strip()]


class VmAgent(Service):
    """vmagent configured from the site kit's vmagent.env (``-envflag.enable``) with overrides."""

    def __init__(
        self, workdir: Path, scrape_config: Path, remote_write_url: str, **overrides: str | None
    ) -> None:
        """Kit flags, this scrape config, this central URL and a disk queue under ``workdir``."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = kit_env(
            SITE_KIT / "vmagent.env",
            promscrape_config=str(scrape_config),
            httpListenAddr=f"127.0.0.1:{self.port}",
            remoteWrite_url=remote_write_url,
            remoteWrite_tmpDataPath=str(workdir / "queue"),
            **overrides,
        )
        super().__init__(
            "vmagent",
            ["vmagent", "-envflag.enable"],
            workdir,
            ready_url=f"{self.url}/health",
            env=env,
        )

    def metric(self, name: str) -> float:
        """Sum of a vmagent self-metric's samples (0 when absent)."""
        status, body = http_get(f"{self.url}/metrics")
        assert status == 200
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith(name) and line[len(name) : len(name) + 1] in {" ", "{"}:
                total += float(line.rsplit(" ", 1)[1])
        return total


class VmAlert(Service):
    """vmalert from the central kit's vmalert.env with rule files and URLs replaced."""

    def __init__(
        self, workdir: Path, *, datasource: str, rules: Iterable[Path], notifier: str | None
    ) -> None:
        """Evaluate ``rules`` every second against ``datasource``."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = kit_env(
            CENTRAL_KIT / "vmalert.env",
            datasource_url=datasource,
            remoteWrite_url=datasource,
            remoteRead_url=datasource,
            notifier_url=notifier,
            rule=",".join(str(r) for r in rules),
            evaluationInterval="1s",
            httpListenAddr=f"127.0.0.1:{self.port}",
        )
        argv = ["vmalert", "-envflag.enable", "-loggerLevel=WARN"]
        if notifier is None:
            argv.append("-notifier.blackhole")
        super().__init__("vmalert", argv, workdir, ready_url=f"{self.url}/health", env=env)

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing)."""
        status, body = http_get(f"{self.url}/api/v1/alerts")
        assert status == 200, body[:300]
        alerts: list[dict[str, Any]] = json.loads(body)["data"]["alerts"]
        return alerts


class VmAuth(Service):
    """vmauth with TLS and the given users in front of ``backend``."""

    def __init__(
        self, workdir: Path, *, users: Mapping[str, str], backend: str, cert: Path, key: Path
    ) -> None:
        """One user per site, write path only (as deploy/central/vmauth.yml)."""
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        config = workdir / "vmauth.yml"
        lines = ["users:"]
        for user, password in users.items():
            lines += [
                f"  - username: {user}",
                f"    password: {json.dumps(password)}",
                "    url_map:",
                '      - src_paths: ["/api/v1/write"]',
                f"        url_prefix: {json.dumps(backend)}",
            ]
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        super().__init__(
            "vmauth",
            [
                "vmauth",
                f"-auth.config={config}",
                f"-httpListenAddr=127.0.0.1:{self.port}",
                "-tls",
                f"-tlsCertFile={cert}",
                f"-tlsKeyFile={key}",
                "-loggerLevel=WARN",
            ],
            workdir,
            # vmauth's own /health is served over TLS too; urllib checks our test CA below.
            ready_url=f"http://127.0.0.1:{self.port}/health",
        )

    def start(self, timeout: float = 30.0) -> Self:
        """Start and wait until the TLS port accepts connections."""
        import socket  # noqa: PLC0415 - only here

        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"vmauth exited: {self.tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return self
            time.sleep(0.1)
        pytest.fail(f"vmauth not listening: {self.tail()}")


class Alertmanager(Service):
    """Debian's Alertmanager with the central kit's config (receivers unreachable: fine)."""

    def __init__(self, workdir: Path) -> None:
        """Listen on a free loopback port, no clustering."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            "alertmanager",
            [
                "prometheus-alertmanager",
                f"--config.file={CENTRAL_KIT / 'alertmanager.yml'}",
                f"--storage.path={workdir / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            workdir,
            ready_url=f"{self.url}/-/ready",
        )

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """``/api/v2/alerts`` with filters (e.g. inhibited="false")."""
        status, body = http_get(f"{self.url}/api/v2/alerts?{urllib.parse.urlencode(filters)}")
        assert status == 200, body[:300]
        alerts: list[dict[str, Any]] = json.loads(body)
        return alerts


class KitMosquitto(Mosquitto):
    """Debian's mosquitto with a kit config (its lines adapted by the test); can be SIGKILLed."""

    def __init__(self, workdir: Path, lines: Sequence[str]) -> None:
        """Write ``lines`` as the config (``self.port`` is free for the caller to put in them)."""
        super().__init__(workdir)
        self.write(lines)

    def write(self, lines: Sequence[str]) -> None:
        """Replace the config (takes effect at the next start)."""
        self.conf.write_text(
            "\n".join(
                [
                    *lines,
                    # Stay the test's user: the files live in a private temp dir.
                    f"user {getpass.getuser()}",
                    "log_dest stderr",
                    "log_type all",
                    "log_timestamp true",
                ]
            )
            + "\n",
            encoding="utf-8",
        )

    def kill(self) -> None:
        """SIGKILL: no save of the persistence file."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            import socket  # noqa: PLC0415 - only here

            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    time.sleep(0.05)
            except OSError:
                return


def mosquitto_passwd(path: Path, users: Mapping[str, str]) -> Path:
    """A mosquitto password file with ``users``."""
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    for index, (user, password) in enumerate(users.items()):
        flags = ["-b", "-c"] if index == 0 else ["-b"]
        subprocess.run([tool, *flags, str(path), user, password], check=True)
    return path


class Recorder:
    """An MQTT subscriber (optionally with credentials and a persistent session) recording all.

    ``async with Recorder(host, port, topics, username=..., password=...) as rec``; messages are
    recorded on arrival (aiomqtt 2.x would drop queued ones when the link drops).
    """

    def __init__(
        self,
        host: str,
        port: int,
        topics: Sequence[str],
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
    ) -> None:
        """Persistent session when ``client_id`` is given."""
        self.host, self.port, self.topics = host, port, list(topics)
        self.username, self.password = username, password
        self.client_id = client_id
        self.messages: list[Received] = []
        self.connects = 0
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def __aenter__(self) -> Self:
        """Subscribe (wait for the first SUBACK)."""
        self._task = asyncio.create_task(self._run(), name="recorder")
        async with asyncio.timeout(20):
            await self._subscribed.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Disconnect."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        received = self.messages

        class Sink(asyncio.Queue[aiomqtt.Message]):
            def put_nowait(self, item: aiomqtt.Message) -> None:
                payload = item.payload if isinstance(item.payload, bytes) else b""
                received.append(Received(str(item.topic), payload, item.retain, item.qos, {}))

        while True:
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=self.client_id or f"rec-{uuid.uuid4().hex[:8]}",
                    clean_session=self.client_id is None,
                    username=self.username,
                    password=self.password,
                    max_inflight_messages=100,
                    queue_type=Sink,
                ) as client:
                    for topic in self.topics:
                        await client.subscribe(topic, qos=1)
                    self.connects += 1
                    self._subscribed.set()
                    async for _ in client.messages:
                        pass
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    def events(self) -> list[dict[str, Any]]:
        """JSON payloads of messages on an events topic, in arrival order."""
        return [
            json.loads(m.payload)
            for m in self.messages
            if m.topic.endswith("/events") and m.payload
        ]

    def retained(self) -> dict[str, bytes]:
        """Latest payload per topic (empty payloads remove the topic)."""
        out: dict[str, bytes] = {}
        for m in self.messages:
            if m.payload:
                out[m.topic] = m.payload
            else:
                out.pop(m.topic, None)
        return out


def mosquitto_binary_ok() -> None:
    """Fail when Debian's mosquitto is missing."""
    if not Path(MOSQUITTO).exists():
        pytest.fail(f"Debian's mosquitto is required at {MOSQUITTO}")


class Gate:
    """The WAN: a TCP forwarder to ``port`` run by its own thread's event loop, open or shut.

    Shutting it cuts every forwarded connection and refuses new ones, as a dropped link does.
    """

    def __init__(self, port: int, *, host: str = "127.0.0.1") -> None:
        """Forward ``host:<free port>`` to ``127.0.0.1:port`` once opened."""
        import threading  # noqa: PLC0415 - only here

        from tests.support.mosquitto import TcpGate  # noqa: PLC0415 - reuse its forwarder

        class _Target:
            def __init__(self) -> None:
                self.host, self.port = "127.0.0.1", port

        self._gate = TcpGate(_Target(), host=host)  # type: ignore[arg-type]
        self.host, self.port = host, self._gate.port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="wan-gate", daemon=True)
        self._thread.start()

    def _run(self, coro: Any) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def open(self) -> None:
        """Let connections through."""
        self._run(self._gate.open())

    def shut(self) -> None:
        """Cut the link."""
        self._run(self._gate.shut())

    def close(self) -> None:
        """Shut and stop the thread."""
        self.shut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
