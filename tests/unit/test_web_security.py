"""Specification of agent.web_security: web-config parsing, SSLContext, bcrypt verification."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

import bcrypt
import pytest
import structlog.testing
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.errors import ConfigError
from agent.web_security import (
    AuthBusy,
    BasicAuthVerifier,
    ClientGone,
    WebConfigError,
    basic_auth_middleware,
    hash_cost,
    load_web_config,
    ssl_context,
    web_security_middlewares,
)

if TYPE_CHECKING:
    from pathlib import Path


# --- test PKI (shared with tests/integration/test_security_*.py) -----------------------------


@dataclass(frozen=True)
class Pki:
    """Files of a throwaway CA, a server certificate and a client certificate."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer if issuer is not None else (name, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    builder = builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def make_pki(directory: Path, *, server_ip: str = "127.0.0.1") -> Pki:
    """Generate a CA, a server certificate for ``server_ip``/localhost and a client certificate."""
    ca_key = _key()
    ca = _cert("altiwatch test CA", ca_key, None, ca=True)
    server_key = _key()
    server = _cert(
        "altiwatch test server",
        server_key,
        (ca.subject, ca_key),
        sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(server_ip))],
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )
    client_key = _key()
    client = _cert(
        "prometheus",
        client_key,
        (ca.subject, ca_key),
        sans=[x509.DNSName("prometheus.test")],
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    other_key = _key()
    other = _cert("some other CA", other_key, None, ca=True)
    return Pki(
        ca_cert=_write_cert(ca, directory / "ca.crt"),
        server_cert=_write_cert(server, directory / "server.crt"),
        server_key=_write_key(server_key, directory / "server.key"),
        client_cert=_write_cert(client, directory / "client.crt"),
        client_key=_write_key(client_key, directory / "client.key"),
        other_ca_cert=_write_cert(other, directory / "other-ca.crt"),
    )


def bcrypt_hash(password: str, rounds: int = 4) -> str:
    """Hash ``password`` with a low cost (tests only; operators use cost ≥ 10)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()


# --- parsing ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway PKI shared by this module's tests."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "web-config.yml"
    path.write_text(text)
    return path


def test_load_web_config_resolves_relative_paths_against_the_file(tmp_path, pki):
    """Relative cert/key/CA paths are resolved against the web config's directory."""
    for source in (pki.server_cert, pki.server_key, pki.ca_cert):
        (tmp_path / source.name).write_bytes(source.read_bytes())
    path = _write(
        tmp_path,
        "tls_server_config:\n"
        "  cert_file: server.crt\n"
        "  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        "  client_ca_file: ca.crt\n",
    )
    cfg = load_web_config(path)
    assert cfg.tls_server_config is not None
    assert cfg.tls_server_config.cert_file == tmp_path / "server.crt"
    assert cfg.tls_server_config.key_file == tmp_path / "server.key"
    assert cfg.tls_server_config.client_ca_file == tmp_path / "ca.crt"
    assert cfg.tls_server_config.min_version == "TLS12"


def test_load_web_config_empty_file_means_no_tls_and_no_auth(tmp_path):
    """An empty file is valid and asks for nothing (as in exporter-toolkit)."""
    cfg = load_web_config(_write(tmp_path, ""))
    assert cfg.tls_server_config is None
    assert cfg.basic_auth_users == {}
    assert ssl_context(cfg) is None
    assert basic_auth_middleware(cfg) is None
    assert web_security_middlewares(cfg) == []


@pytest.mark.parametrize(
    ("text", "field", "line"),
    [
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  bogus: 1\n",
            "tls_server_config.bogus",
            4,
        ),
        ("basic_auth_users:\n  alice: not-a-hash\n", "basic_auth_users.alice", 2),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: b\n",
            "tls_server_config.cert_file",
            2,
        ),
        ("tls_server_config:\n  key_file: b\n", "tls_server_config.cert_file", None),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
            "http_server_config.headers",
            2,
        ),
        ("http_server_config:\n  headers:\n    Server: x\n", "http_server_config.headers", 2),
        ("rate_limit:\n  burst: 3\n", "rate_limit", 1),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequestClientCert\n",
            "tls_server_config.client_auth_type",
            4,
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: SSL3\n",
            "tls_server_config.min_version",
            4,
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
            "tls_server_config.cipher_suites",
            4,
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  curve_preferences: [X25519]\n",
            "tls_server_config.curve_preferences",
            4,
        ),
    ],
)
def test_load_web_config_invalid_field_is_named_with_its_line(tmp_path, text, field, line):
    """An invalid web config raises WebConfigError naming the dotted field and its YAML line."""
    with pytest.raises(WebConfigError) as caught:
        load_web_config(_write(tmp_path, text))
    problems = caught.value.problems
    assert any(p.path == field for p in problems), str(caught.value)
    if line is not None:
        assert any(p.line == line for p in problems if p.path == field), str(caught.value)
    assert str(tmp_path) in str(caught.value)
    assert isinstance(caught.value, ConfigError)


def test_load_web_config_error_never_echoes_a_password_hash(tmp_path):
    """A bad basic_auth_users entry is reported without its value (a hash is a secret)."""
    secret = "$2y$10$tooshort-but-secret-ish-material"  # noqa: S105  # planted on purpose
    with pytest.raises(WebConfigError) as caught:
        load_web_config(_write(tmp_path, f"basic_auth_users:\n  alice: '{secret}'\n"))
    assert secret not in str(caught.value)
    assert "secret-ish" not in repr(caught.value.problems)


def test_load_web_config_client_ca_without_client_auth_is_rejected(tmp_path, pki):
    """A client CA with client_auth_type NoClientCert is a mistake, as in exporter-toolkit."""
    path = _write(
        tmp_path,
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        f"  client_ca_file: {pki.ca_cert}\n",
    )
    with pytest.raises(WebConfigError, match="client_ca_file"):
        load_web_config(path)


def test_load_web_config_client_auth_without_ca_is_rejected(tmp_path, pki):
    """Verifying client certificates needs a client CA file."""
    path = _write(
        tmp_path,
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n",
    )
    with pytest.raises(WebConfigError, match="needs client_ca_file"):
        load_web_config(path)


def test_load_web_config_unreadable_or_non_yaml_file_is_a_clean_error(tmp_path):
    """A missing file, a non-mapping and broken YAML are WebConfigErrors, not crashes."""
    with pytest.raises(WebConfigError, match="cannot read"):
        load_web_config(tmp_path / "absent.yml")
    with pytest.raises(WebConfigError, match="mapping"):
        load_web_config(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(WebConfigError, match="YAML") as caught:
        load_web_config(_write(tmp_path, "basic_auth_users:\n  a: [\n"))
    assert caught.value.problems[0].line is not None


def test_web_config_repr_names_users_but_not_hashes(tmp_path):
    """repr/str of a WebConfig never contain a password hash (safe to log)."""
    hashed = bcrypt_hash("pw")
    cfg = load_web_config(_write(tmp_path, f"basic_auth_users:\n  alice: '{hashed}'\n"))
    assert "alice" in repr(cfg)
    assert hashed not in repr(cfg)
    assert hashed not in str(cfg)


def test_load_web_config_warns_when_secrets_are_readable_by_others(tmp_path, pki):
    """A world-readable key or hash file is logged (web_config_file_readable_by_others)."""
    key = tmp_path / "server.key"
    key.write_bytes(pki.server_key.read_bytes())
    key.chmod(0o644)
    path = _write(
        tmp_path,
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {key}\n"
        f"basic_auth_users:\n  alice: '{bcrypt_hash('pw')}'\n",
    )
    path.chmod(0o600)
    with structlog.testing.capture_logs() as logs:
        load_web_config(path)
    warned = [e for e in logs if e["event"] == "web_config_file_readable_by_others"]
    assert [(e["what"], e["mode"]) for e in warned] == [("key_file", "0644")]
    key.chmod(0o600)
    with structlog.testing.capture_logs() as logs:
        load_web_config(path)
    assert not [e for e in logs if e["event"] == "web_config_file_readable_by_others"]


# --- SSLContext --------------------------------------------------------------------------------


def test_ssl_context_applies_versions_and_client_verification(tmp_path, pki):
    """min/max version and RequireAndVerifyClientCert map onto the SSLContext."""
    path = _write(
        tmp_path,
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca_cert}\n"
        "  min_version: TLS13\n",
    )
    context = ssl_context(load_web_config(path))
    assert context is not None
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_ssl_context_verify_if_given_is_optional(tmp_path, pki):
    """VerifyClientCertIfGiven maps to CERT_OPTIONAL; NoClientCert to CERT_NONE."""
    base = f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
    optional = _write(
        tmp_path,
        base + f"  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: {pki.ca_cert}\n",
    )
    context = ssl_context(load_web_config(optional))
    assert context is not None
    assert context.verify_mode == ssl.CERT_OPTIONAL
    plain = ssl_context(load_web_config(_write(tmp_path, base)))
    assert plain is not None
    assert plain.verify_mode == ssl.CERT_NONE


def test_ssl_context_mismatched_key_is_a_clean_error(tmp_path, pki):
    """A key that does not belong to the certificate raises WebConfigError, naming cert_file."""
    path = _write(
        tmp_path,
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.client_key}\n",
    )
    with pytest.raises(WebConfigError, match=r"tls_server_config\.cert_file"):
        ssl_context(load_web_config(path))


def test_ssl_context_cipher_suites_use_go_names(tmp_path, pki):
    """Go cipher-suite names from the toolkit docs are translated to OpenSSL's."""
    path = _write(
        tmp_path,
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        "  max_version: TLS12\n"
        "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n",
    )
    context = ssl_context(load_web_config(path))
    assert context is not None
    names = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names == {"ECDHE-ECDSA-AES256-GCM-SHA384"}


# --- bcrypt verification -------------------------------------------------------------------------


async def test_basic_auth_verifier_accepts_only_the_right_password():
    """The right user and password pass; a wrong password, an unknown user, >72 bytes fail."""
    verifier = BasicAuthVerifier({"alice": bcrypt_hash("s3cret")})
    assert await verifier.verify("alice", "s3cret")
    assert not await verifier.verify("alice", "s3cret ")
    assert not await verifier.verify("bob", "s3cret")
    assert not await verifier.verify("alice", "x" * 100)
    assert not await verifier.verify("", "")


async def test_basic_auth_verifier_pays_bcrypt_once_per_credential():
    """Repeated verifications of one credential cost one bcrypt comparison (the cache)."""
    verifier = BasicAuthVerifier({"alice": bcrypt_hash("s3cret")})
    for _ in range(20):
        assert await verifier.verify("alice", "s3cret")
        assert not await verifier.verify("alice", "wrong")
    assert verifier.bcrypt_checks == 2


async def test_basic_auth_verifier_unknown_user_still_pays_bcrypt():
    """An unknown user is checked against a dummy hash (no user enumeration by timing)."""
    verifier = BasicAuthVerifier({"alice": bcrypt_hash("s3cret")})
    assert not await verifier.verify("mallory", "fakepassword")
    assert verifier.bcrypt_checks == 1


async def test_basic_auth_verifier_cache_is_bounded():
    """A flood of distinct wrong passwords cannot grow the cache without bound."""
    verifier = BasicAuthVerifier({"alice": bcrypt_hash("s3cret")})
    verifier._users["alice"] = b"$2y$04$" + b"." * 53  # any well-formed hash: we only count
    for i in range(1100):
        verifier._remember(verifier._cache_key("alice", b"h", str(i).encode()), outcome=False)
    assert len(verifier._cache) == 1024


async def test_basic_auth_verifier_does_not_keep_passwords():
    """Nothing the verifier stores contains the plain password."""
    verifier = BasicAuthVerifier({"alice": bcrypt_hash("planted-Pw-123")})
    assert await verifier.verify("alice", "planted-Pw-123")
    stored = repr(vars(verifier)) + repr(list(verifier._cache))
    assert "planted-Pw-123" not in stored
    assert b"planted-Pw-123".hex() not in stored


async def test_basic_auth_verifier_dummy_hash_has_the_highest_configured_cost():
    """An unknown user is compared with a hash as costly as the costliest user's (no timing tell)."""
    verifier = BasicAuthVerifier({"a": bcrypt_hash("x", rounds=4), "b": bcrypt_hash("y", rounds=6)})
    assert hash_cost(verifier.dummy_hash) == 6
    assert hash_cost(BasicAuthVerifier({"a": bcrypt_hash("x", rounds=10)}).dummy_hash) == 10
    assert not await verifier.verify("mallory", "x")


async def test_basic_auth_verifier_refuses_a_clients_guesses_beyond_its_queue_share():
    """Concurrent distinct guesses from one client: 2 queue for bcrypt, the rest get 429."""
    verifier = BasicAuthVerifier({"alice": bcrypt_hash("s3cret")})
    results = await asyncio.gather(
        *(verifier.verify("alice", f"guess-{i}", client="10.0.0.9") for i in range(6)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, AuthBusy)]
    assert [r.status for r in refused] == [429] * 4
    assert results.count(False) == 2
    assert verifier.bcrypt_checks == 2


async def test_basic_auth_verifier_refuses_beyond_the_queue_bound_with_503():
    """More distinct credentials waiting than the queue holds (many clients): 503 for the rest."""
    verifier = BasicAuthVerifier({"alice": bcrypt_hash("s3cret")}, max_queue=4)
    results = await asyncio.gather(
        *(verifier.verify("alice", f"guess-{i}", client=f"10.0.1.{i}") for i in range(10)),
        return_exceptions=True,
    )
    assert [r.status for r in results if isinstance(r, AuthBusy)] == [503] * 6
    assert verifier.bcrypt_checks == 4


async def test_basic_auth_verifier_rate_limits_a_client_after_its_burst():
    """One client, one guess at a time: the burst passes, then 429 with the seconds to wait."""
    now = [0.0]
    verifier = BasicAuthVerifier(
        {"alice": bcrypt_hash("s3cret")}, client_burst=3, client_rate=0.5, clock=lambda: now[0]
    )
    for i in range(3):
        assert not await verifier.verify("alice", f"guess-{i}", client="10.0.0.7")
    with pytest.raises(AuthBusy) as refused:
        await verifier.verify("alice", "guess-3", client="10.0.0.7")
    assert (refused.value.status, refused.value.retry_after_s) == (429, 2)
    assert not await verifier.verify("alice", "guess-3", client="10.0.0.8")  # another client
    assert await verifier.verify("alice", "s3cret", client="10.0.0.8")
    now[0] += 2.0
    assert not await verifier.verify("alice", "guess-4", client="10.0.0.7")


async def test_basic_auth_verifier_skips_the_check_of_a_client_that_left():
    """A request whose client is gone by its turn costs no bcrypt comparison."""
    verifier = BasicAuthVerifier({"alice": bcrypt_hash("s3cret")})
    with pytest.raises(ClientGone):
        await verifier.verify("alice", "guess", client="10.0.0.6", alive=lambda: False)
    assert (verifier.bcrypt_checks, verifier.skipped) == (0, 1)
    assert await verifier.verify("alice", "s3cret", client="10.0.0.6")


async def test_basic_auth_verifier_one_credential_from_many_requests_counts_once():
    """50 concurrent requests with one credential from one client: one comparison, none refused."""
    verifier = BasicAuthVerifier({"alice": bcrypt_hash("s3cret")})
    results = await asyncio.gather(
        *(verifier.verify("alice", "s3cret", client="10.0.0.5") for _ in range(50))
    )
    assert results == [True] * 50
    assert verifier.bcrypt_checks == 1
