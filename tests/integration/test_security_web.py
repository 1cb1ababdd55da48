"""TLS, mTLS and basic auth from a web-config.yml, over real sockets with a real HTTP client."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from aiohttp import web

from agent.web_security import (
    BasicAuthVerifier,
    basic_auth_middleware,
    load_web_config,
    ssl_context,
    web_security_middlewares,
)
from tests.unit.test_web_security import Pki, bcrypt_hash, make_pki

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

ADDRESS = "127.90.0.1"
PASSWORD = "scrape-Pw-7d1f"  # noqa: S105  # test credential


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA with server and client certificates for ADDRESS."""
    return make_pki(tmp_path_factory.mktemp("pki"), server_ip=ADDRESS)


def _web_config(
    tmp_path: Path, pki: Pki, *, mtls: bool, users: bool, sans: str | None = None
) -> Path:
    lines = [
        "tls_server_config:",
        f"  cert_file: {pki.server_cert}",
        f"  key_file: {pki.server_key}",
        "  min_version: TLS12",
    ]
    if mtls:
        lines += [
            "  client_auth_type: RequireAndVerifyClientCert",
            f"  client_ca_file: {pki.ca_cert}",
        ]
    if sans:
        lines += [f"  client_allowed_sans: [{sans}]"]
    lines += ["http_server_config:", "  headers:", "    X-Content-Type-Options: nosniff"]
    if users:
        lines += ["basic_auth_users:", f"  prometheus: '{bcrypt_hash(PASSWORD, rounds=10)}'"]
    path = tmp_path / "web-config.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Server:
    """An aiohttp app serving /metrics behind the web-config, on ADDRESS:<free port>."""

    def __init__(self, runner: web.AppRunner, port: int) -> None:
        """Keep the runner (for cleanup) and the base URL."""
        self.runner = runner
        self.url = f"https://{ADDRESS}:{port}"


async def _serve(config_path: Path, verifier: BasicAuthVerifier | None = None) -> Server:
    cfg = load_web_config(config_path)
    middlewares = web_security_middlewares(cfg)
    if verifier is not None:  # swap in a verifier the test can count bcrypt calls on
        auth = basic_auth_middleware(cfg, verifier=verifier)
        assert auth is not None
        middlewares[-1] = auth

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(text="asic_up 1\n", content_type="text/plain")

    app = web.Application(middlewares=middlewares)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, ADDRESS, 0, ssl_context=ssl_context(cfg))
    await site.start()
    port = runner.addresses[0][1]
    return Server(runner, port)


@pytest.fixture
async def served(tmp_path, pki) -> AsyncIterator[list[Server]]:
    """Servers started by a test, stopped at teardown."""
    servers: list[Server] = []
    yield servers
    for server in servers:
        await server.runner.cleanup()


def _client(pki: Pki, *, client_cert: bool, ca: Path | None = None) -> httpx.AsyncClient:
    context = ssl.create_default_context(cafile=str(ca or pki.ca_cert))
    if client_cert:
        context.load_cert_chain(pki.client_cert, pki.client_key)
    return httpx.AsyncClient(verify=context, timeout=10.0)


@pytest.mark.prometheus
def test_security_web_config_passes_promtool(tmp_path, pki):
    """The web-config the agent accepts is also valid for `promtool check web-config`.

    (client_allowed_sans is left out: Debian's promtool 2.42 predates it.)
    """
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    path = _web_config(tmp_path, pki, mtls=True, users=True)
    result = subprocess.run(
        [promtool, "check", "web-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_security_tls_basic_auth_admits_only_the_right_credentials(tmp_path, pki, served):
    """Over TLS: right credentials 200, none or wrong 401 + WWW-Authenticate Basic."""
    served.append(await _serve(_web_config(tmp_path, pki, mtls=False, users=True)))
    url = served[0].url + "/metrics"
    async with _client(pki, client_cert=False) as client:
        ok = await client.get(url, auth=("prometheus", PASSWORD))
        assert ok.status_code == 200
        assert ok.text == "asic_up 1\n"
        assert ok.headers["X-Content-Type-Options"] == "nosniff"
        for auth in (None, ("prometheus", "wrong"), ("nobody", PASSWORD)):
            denied = await client.get(url, auth=auth)
            assert denied.status_code == 401, auth
            assert denied.headers["WWW-Authenticate"].startswith("Basic")
            assert "asic_up" not in denied.text
        garbled = await client.get(url, headers={"Authorization": "Basic %%%not-base64"})
        assert garbled.status_code == 401


async def test_security_plain_http_to_the_tls_port_gets_nothing(tmp_path, pki, served):
    """A plain-HTTP client on the TLS listener is disconnected without any HTTP response."""
    served.append(await _serve(_web_config(tmp_path, pki, mtls=False, users=False)))
    plain_url = served[0].url.replace("https://", "http://") + "/metrics"
    async with httpx.AsyncClient(timeout=10.0) as client:
        # The TLS listener reads the request as a bad handshake and closes: no HTTP reply at all.
        with pytest.raises(
            httpx.RemoteProtocolError, match="disconnected without sending a response"
        ):
            await client.get(plain_url)


async def test_security_mtls_rejects_clients_without_a_trusted_certificate(tmp_path, pki, served):
    """RequireAndVerifyClientCert: with a client cert 200; without, the server drops the TLS link."""
    served.append(
        await _serve(_web_config(tmp_path, pki, mtls=True, users=True, sans="prometheus.test"))
    )
    url = served[0].url + "/metrics"
    async with _client(pki, client_cert=True) as client:
        response = await client.get(url, auth=("prometheus", PASSWORD))
        assert response.status_code == 200
    async with _client(pki, client_cert=False) as client:
        # TLS 1.3: the client's side of the handshake completes, then the server, refused a
        # certificate, closes before reading the request: a read error, not an HTTP status.
        with pytest.raises(httpx.ReadError):
            await client.get(url, auth=("prometheus", PASSWORD))
    tls12 = ssl.create_default_context(cafile=str(pki.ca_cert))
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    async with httpx.AsyncClient(verify=tls12, timeout=10.0) as client:
        # TLS 1.2: the certificate request is inside the handshake, which the server aborts.
        with pytest.raises(httpx.ConnectError) as refused:
            await client.get(url, auth=("prometheus", PASSWORD))
    cause: BaseException | None = refused.value
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    assert isinstance(cause, ssl.SSLEOFError), repr(refused.value)


async def test_security_client_certificate_without_an_allowed_san_is_forbidden(
    tmp_path, pki, served
):
    """client_allowed_sans: a verified client certificate with another SAN gets 403."""
    served.append(
        await _serve(_web_config(tmp_path, pki, mtls=True, users=False, sans="grafana.test"))
    )
    async with _client(pki, client_cert=True) as client:
        response = await client.get(served[0].url + "/metrics")
    assert response.status_code == 403
    assert "asic_up" not in response.text


async def test_security_client_rejects_a_server_from_another_ca(tmp_path, pki, served):
    """A client trusting only another CA refuses the agent's certificate (verification is real)."""
    served.append(await _serve(_web_config(tmp_path, pki, mtls=False, users=False)))
    async with _client(pki, client_cert=False, ca=pki.other_ca_cert) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(served[0].url + "/metrics")


async def test_security_basic_auth_pays_bcrypt_once_under_concurrent_scrapes(tmp_path, pki, served):
    """50 concurrent scrapes with one credential cost one bcrypt check (cost 10), all 200."""
    verifier_cfg = load_web_config(_web_config(tmp_path, pki, mtls=False, users=True))
    verifier = BasicAuthVerifier(verifier_cfg.basic_auth_users)
    served.append(await _serve(tmp_path / "web-config.yml", verifier=verifier))
    url = served[0].url + "/metrics"
    async with _client(pki, client_cert=False) as client:
        responses = await asyncio.gather(
            *(client.get(url, auth=("prometheus", PASSWORD)) for _ in range(50))
        )
    assert [r.status_code for r in responses] == [200] * 50
    assert verifier.bcrypt_checks == 1


def _agent_config_with_web(tmp_path: Path, web_config: Path) -> Path:
    config = tmp_path / "altiwatch.yaml"
    config.write_text(
        "agent: {state_dir: " + str(tmp_path / "state") + ", log_format: json}\n"
        "sites: [{name: golmud, altitude_m: 2800}]\n"
        f"http: {{listen: '{ADDRESS}:0', web_config_file: {web_config}}}\n"
    )
    return config


def _altiwatch(*args: str) -> subprocess.CompletedProcess[str]:
    altiwatch = Path(sys.executable).with_name("altiwatch")
    return subprocess.run(
        [str(altiwatch), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_security_agent_refuses_an_invalid_web_config_with_exit_78(tmp_path):
    """`altiwatch run` with a broken web config exits 78 naming the field, line and file."""
    web = tmp_path / "web-config.yml"
    web.write_text("basic_auth_users:\n  prometheus: plain-text-password\n")
    result = _altiwatch("run", "--config", str(_agent_config_with_web(tmp_path, web)))
    output = result.stdout + result.stderr
    assert result.returncode == 78, output
    assert "basic_auth_users.prometheus (line 2)" in output
    assert str(web) in output
    assert "plain-text-password" not in output


def test_security_check_config_validates_the_web_config(tmp_path):
    """`altiwatch check-config` fails (78) on a broken web config, as `run` would."""
    web = tmp_path / "web-config.yml"
    web.write_text("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n")
    result = _altiwatch("check-config", str(_agent_config_with_web(tmp_path, web)))
    assert result.returncode == 78, result.stdout + result.stderr


async def test_security_wrong_password_flood_does_not_delay_known_credentials(
    tmp_path, pki, served
):
    """30 concurrent wrong passwords from one client: at most 2 queue for bcrypt (others 429), a cached scraper never waits."""
    cfg = load_web_config(_web_config(tmp_path, pki, mtls=False, users=True))
    verifier = BasicAuthVerifier(cfg.basic_auth_users)
    served.append(await _serve(tmp_path / "web-config.yml", verifier=verifier))
    url = served[0].url + "/metrics"
    async with _client(pki, client_cert=False) as client:
        warm = await client.get(url, auth=("prometheus", PASSWORD))
        assert warm.status_code == 200

        async def timed(auth: tuple[str, str]) -> tuple[int, float]:
            response = await client.get(url, auth=auth)
            return response.status_code, asyncio.get_running_loop().time()

        flood = [
            asyncio.create_task(timed(("prometheus", f"guess-{i}")), name=f"guess[{i}]")
            for i in range(30)
        ]
        await asyncio.sleep(0)
        legit = await asyncio.gather(*(timed(("prometheus", PASSWORD)) for _ in range(10)))
        guesses = await asyncio.gather(*flood)
    assert [status for status, _t in legit] == [200] * 10
    statuses = [status for status, _t in guesses]
    assert set(statuses) == {401, 429}
    assert verifier.bcrypt_checks == 1 + statuses.count(401)  # one per credential compared
    # Every known-credential scrape finished before the compared guesses did.
    assert max(t for _s, t in legit) < max(t for s, t in guesses if s == 401)
