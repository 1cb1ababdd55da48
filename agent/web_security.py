"""TLS and basic auth for the agent's HTTP endpoints, from an exporter-toolkit ``web-config.yml``.

The file format is Prometheus' exporter-toolkit one (``prometheus/exporter-toolkit:
docs/web-configuration.md``), so an operator can reuse the file of node_exporter and check it with
``promtool check web-config``::

    tls_server_config:
      cert_file: server.crt            # relative paths are relative to this file's directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # optional mTLS
      client_ca_file: clients-ca.crt
      min_version: TLS12
    http_server_config:
      headers: {X-Content-Type-Options: nosniff}
    basic_auth_users:
      prometheus: $2y$10$...           # bcrypt hash: htpasswd -nBC 10 "" | tr -d ':'

Public API: ``load_web_config(path) -> WebConfig``, ``ssl_context(cfg) -> SSLContext | None``,
``basic_auth_middleware(cfg) -> Middleware | None`` and ``web_security_middlewares(cfg)`` (the
headers, client-SAN and basic-auth middlewares, in order; what the HTTP server installs).

Basic auth follows exporter-toolkit: every path needs credentials once users are configured; an
unknown user is checked against a fixed dummy hash so timing does not reveal which users exist;
one bcrypt comparison runs at a time (in a worker thread, so the event loop keeps polling), and its
outcome is cached in memory under an HMAC of (user, hash, password) with a per-process random key,
so bcrypt's ~70 ms are paid once per credential, not per scrape. The plain password is never
stored or logged.

Differences from Go's toolkit, rejected at load time with a message naming the field rather than
silently weakened: ``client_auth_type`` ``RequestClientCert``/``RequireAnyClientCert`` (request a
client certificate without verifying it; Python's ``ssl`` cannot, and the toolkit calls them
insecure), ``curve_preferences`` (Python 3.11 cannot set a group list), inline ``cert``/``key``/
``client_ca``. ``http2`` is accepted and ignored (aiohttp serves HTTP/1.1).
``client_allowed_sans`` is enforced per request (403) rather than in the handshake.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
import secrets
import ssl
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import bcrypt
import structlog
import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.errors import ConfigError, ConfigProblem

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aiohttp.typedefs import Handler, Middleware

__all__ = [
    "BasicAuthVerifier",
    "HttpServerConfig",
    "TlsServerConfig",
    "WebConfig",
    "WebConfigError",
    "basic_auth_middleware",
    "load_web_config",
    "ssl_context",
    "web_security_middlewares",
]

log = structlog.get_logger(__name__)

_BCRYPT_RE = re.compile(r"^\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}$")
# exporter-toolkit's dummy: bcrypt("fakepassword"), cost 10, compared for unknown users.
_DUMMY_HASH = b"$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"
_CACHE_MAX = 1024

_TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's names (crypto/tls CipherSuites(), TLS ≤ 1.2) → OpenSSL's names.
_GO_CIPHERS: dict[str, str] = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
}

# exporter-toolkit's allowed response headers and, where restricted, their allowed values.
_HEADER_VALUES: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

ClientAuthType = Literal["NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"]
TlsVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]


class WebConfigError(ConfigError):
    """The web config file cannot be read or is invalid; the message names field, line and file.

    ``str(error)`` is one ``config error: web config FILE: <field> (line N): <what>`` per problem.
    """

    def __init__(self, problems: list[ConfigProblem] | ConfigProblem, *, file: Path) -> None:
        """Keep the problems and the file; each message line names the file."""
        super().__init__(problems)
        self.file = file
        self.args = ("\n".join(f"config error: web config {file}: {p}" for p in self.problems),)


class TlsServerConfig(BaseModel):
    """``tls_server_config``: the server certificate, client-certificate policy, versions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cert_file: Path
    key_file: Path
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: Path | None = None
    client_allowed_sans: tuple[str, ...] = ()
    min_version: TlsVersionName = "TLS12"
    max_version: TlsVersionName = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True

    @field_validator("client_auth_type", mode="before")
    @classmethod
    def _no_unverified_client_certs(cls, value: object) -> object:
        if value in {"RequestClientCert", "RequireAnyClientCert", "RequireClientCert"}:
            msg = (
                f"{value} (a client certificate that is not verified) is not supported; "
                "use RequireAndVerifyClientCert or VerifyClientCertIfGiven with client_ca_file"
            )
            raise ValueError(msg)
        if value == "":
            return "NoClientCert"
        return value

    @field_validator("cipher_suites")
    @classmethod
    def _known_ciphers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in _GO_CIPHERS]
        if unknown:
            msg = f"unknown cipher suite(s) {unknown}; known: {sorted(_GO_CIPHERS)}"
            raise ValueError(msg)
        return value


class HttpServerConfig(BaseModel):
    """``http_server_config``: extra response headers (``http2`` accepted, ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    http2: bool = True
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _allowed_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, header_value in value.items():
            if name not in _HEADER_VALUES:
                msg = f"HTTP header {name!r} can not be configured"
                raise ValueError(msg)
            allowed = _HEADER_VALUES[name]
            if allowed and header_value not in allowed:
                msg = f"invalid value for {name}: expected one of {allowed}, got {header_value!r}"
                raise ValueError(msg)
        return value


BcryptHash = Annotated[str, Field(pattern=_BCRYPT_RE.pattern)]


class WebConfig(BaseModel):
    """A parsed web-config.yml. Paths are absolute (resolved against the file's directory)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tls_server_config: TlsServerConfig | None = None
    http_server_config: HttpServerConfig = Field(default_factory=HttpServerConfig)
    basic_auth_users: dict[str, BcryptHash] = Field(default_factory=dict)

    def __repr__(self) -> str:
        """Name the users, never their hashes."""
        users = sorted(self.basic_auth_users)
        return f"WebConfig(tls={self.tls_server_config is not None}, users={users})"

    __str__ = __repr__


def _yaml_line(document: str, location: tuple[int | str, ...]) -> int | None:
    """Return the 1-based line of ``location`` (a pydantic loc) in ``document``, if found."""
    try:
        node: yaml.Node | None = yaml.compose(document)
    except yaml.YAMLError:
        return None
    line = None
    for part in location:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    line = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _error(path: Path, field: str | None, message: str, line: int | None = None) -> WebConfigError:
    return WebConfigError(ConfigProblem(path=field, message=message, line=line), file=path)


def _resolve(base: Path, value: Path | None) -> Path | None:
    if value is None or value.is_absolute():
        return value
    return base / value


def load_web_config(path: Path | str) -> WebConfig:
    """Parse and validate an exporter-toolkit web config file.

    Relative certificate paths are resolved against the file's directory (as the toolkit does)
    and checked to be readable, like ``promtool check web-config``.

    Raises:
        WebConfigError: the file is unreadable, not YAML, or invalid; the message names the
            dotted field, its YAML line and the file. Never contains a password hash.
    """
    path = Path(path)
    try:
        document = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(path, None, f"cannot read web config: {exc}") from exc
    try:
        raw: Any = yaml.safe_load(document)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise _error(path, None, "not valid YAML", line) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _error(path, None, "must be a YAML mapping")
    try:
        cfg = WebConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            loc = tuple(err["loc"])
            dotted = ".".join(str(p) for p in loc)
            message = err["msg"]
            if loc[:1] == ("basic_auth_users",) and err["type"] == "string_pattern_mismatch":
                message = "is not a bcrypt hash ($2y$10$...)"
            problems.append(
                ConfigProblem(
                    path=dotted,
                    message=message,
                    line=_yaml_line(document, loc),
                )
            )
        raise WebConfigError(problems, file=path) from exc
    cfg = _finish(path, document, cfg)
    _warn_if_readable_by_others(path, cfg)
    return cfg


def _warn_if_readable_by_others(path: Path, cfg: WebConfig) -> None:
    """Log (never fail) when the private key or the password hashes are group/world-readable.

    Like OpenSSH's check on private keys, but a warning: the unit's ``UMask=0077`` and
    ``ConfigurationDirectory`` usually make this moot, and a read-only deployment may not be able
    to change modes.
    """
    private = []
    if cfg.basic_auth_users:
        private.append(("web_config_file", path))
    if cfg.tls_server_config is not None:
        private.append(("key_file", cfg.tls_server_config.key_file))
    for what, file in private:
        try:
            mode = file.stat().st_mode & 0o777
        except OSError:
            continue
        if mode & 0o077:
            log.warning(
                "web_config_file_readable_by_others", what=what, path=str(file), mode=f"{mode:04o}"
            )


def _finish(path: Path, document: str, cfg: WebConfig) -> WebConfig:
    tls = cfg.tls_server_config
    if tls is None:
        return cfg
    base = path.parent
    resolved = tls.model_copy(
        update={
            "cert_file": _resolve(base, tls.cert_file),
            "key_file": _resolve(base, tls.key_file),
            "client_ca_file": _resolve(base, tls.client_ca_file),
        }
    )
    for name in ("cert_file", "key_file", "client_ca_file"):
        file = getattr(resolved, name)
        if file is not None and not file.is_file():
            loc = ("tls_server_config", name)
            raise _error(
                path, ".".join(loc), f"{file} is not a readable file", _yaml_line(document, loc)
            )
    if resolved.client_ca_file is not None and resolved.client_auth_type == "NoClientCert":
        loc = ("tls_server_config", "client_ca_file")
        raise _error(
            path,
            ".".join(loc),
            "client CA configured without a client_auth_type",
            _yaml_line(document, loc),
        )
    if resolved.client_auth_type != "NoClientCert" and resolved.client_ca_file is None:
        loc = ("tls_server_config", "client_auth_type")
        raise _error(
            path,
            ".".join(loc),
            f"{resolved.client_auth_type} needs client_ca_file",
            _yaml_line(document, loc),
        )
    if _TLS_VERSIONS[resolved.min_version] > _TLS_VERSIONS[resolved.max_version]:
        loc = ("tls_server_config", "min_version")
        raise _error(path, ".".join(loc), "is above max_version", _yaml_line(document, loc))
    return cfg.model_copy(update={"tls_server_config": resolved})


def ssl_context(cfg: WebConfig) -> ssl.SSLContext | None:
    """Build the server-side SSLContext, or None when the config has no ``tls_server_config``.

    Raises:
        WebConfigError: a certificate or key cannot be loaded (wrong format, key mismatch).
    """
    tls = cfg.tls_server_config
    if tls is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _TLS_VERSIONS[tls.min_version]
    context.maximum_version = _TLS_VERSIONS[tls.max_version]
    if tls.cipher_suites:
        context.set_ciphers(":".join(_GO_CIPHERS[name] for name in tls.cipher_suites))
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        problem = ConfigProblem(
            path="tls_server_config.cert_file",
            message=f"cannot load certificate/key: {exc.__class__.__name__}: {exc}",
        )
        raise WebConfigError(problem, file=tls.cert_file) from exc
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            problem = ConfigProblem(
                path="tls_server_config.client_ca_file",
                message=f"cannot load client CA: {exc.__class__.__name__}: {exc}",
            )
            raise WebConfigError(problem, file=tls.client_ca_file) from exc
    context.verify_mode = {
        "NoClientCert": ssl.CERT_NONE,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }[tls.client_auth_type]
    return context


class BasicAuthVerifier:
    """Checks basic-auth credentials against bcrypt hashes, caching outcomes (not passwords).

    The cache maps HMAC-SHA256(key, user ‖ hash ‖ password) (``key`` random per process) to the
    outcome; it is bounded (least recently used entries go first). A cache hit costs one HMAC;
    a miss costs one bcrypt comparison, run in a thread, one at a time.
    """

    def __init__(self, users: Mapping[str, str]) -> None:
        """Keep the users' hashes; nothing is verified yet."""
        self._users = {user: hashed.encode("ascii") for user, hashed in users.items()}
        self._key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._bcrypt_lock = asyncio.Lock()
        self.bcrypt_checks = 0

    def _cache_key(self, user: str, hashed: bytes, password: bytes) -> bytes:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in (user.encode("utf-8"), hashed, password):
            mac.update(len(part).to_bytes(4, "big"))
            mac.update(part)
        return mac.digest()

    def _cached(self, key: bytes) -> bool | None:
        # The lookup key is a keyed HMAC the client cannot predict, so the dict lookup's timing
        # says nothing about the password; bcrypt.checkpw itself compares in constant time.
        outcome = self._cache.get(key)
        if outcome is not None:
            self._cache.move_to_end(key)
        return outcome

    def _remember(self, key: bytes, *, outcome: bool) -> None:
        self._cache[key] = outcome
        self._cache.move_to_end(key)
        while len(self._cache) > _CACHE_MAX:
            self._cache.popitem(last=False)

    @staticmethod
    def _checkpw(password: bytes, hashed: bytes) -> bool:
        try:
            return bcrypt.checkpw(password, hashed)
        except ValueError:  # > 72 bytes (bcrypt ≥ 5) or a malformed hash: not a match
            return False

    async def verify(self, user: str, password: str) -> bool:
        """Return True when ``user`` exists and ``password`` matches its bcrypt hash."""
        known = user in self._users
        hashed = self._users.get(user, _DUMMY_HASH)
        pw = password.encode("utf-8")
        key = self._cache_key(user, hashed, pw)
        outcome = self._cached(key)
        if outcome is None:
            async with self._bcrypt_lock:
                outcome = self._cached(key)
                if outcome is None:
                    self.bcrypt_checks += 1
                    matched = await asyncio.to_thread(self._checkpw, pw, hashed)
                    outcome = known and matched
                    self._remember(key, outcome=outcome)
        return outcome and known


def _parse_basic(header: str | None) -> tuple[str, str] | None:
    if header is None:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password


def _unauthorized() -> web.Response:
    return web.Response(
        status=401,
        text="401 Unauthorized\n",
        headers={"WWW-Authenticate": 'Basic realm="altiwatch", charset="UTF-8"'},
    )


def basic_auth_middleware(
    cfg: WebConfig, *, verifier: BasicAuthVerifier | None = None
) -> Middleware | None:
    """Return an aiohttp middleware requiring basic auth, or None if no users are configured.

    ``verifier`` defaults to a new ``BasicAuthVerifier(cfg.basic_auth_users)``.
    """
    if not cfg.basic_auth_users:
        return None
    if verifier is None:
        verifier = BasicAuthVerifier(cfg.basic_auth_users)

    @web.middleware
    async def require_basic_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        credentials = _parse_basic(request.headers.get("Authorization"))
        if credentials is None or not await verifier.verify(*credentials):
            log.info(
                "http_auth_failed",
                path=request.path,
                remote=request.remote,
                user_known=credentials is not None and credentials[0] in cfg.basic_auth_users,
            )
            return _unauthorized()
        return await handler(request)

    return require_basic_auth


def _headers_middleware(headers: Mapping[str, str]) -> Middleware:
    @web.middleware
    async def add_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(headers)
            raise
        response.headers.update(headers)
        return response

    return add_headers


def _peer_sans(request: web.Request) -> set[str]:
    transport = request.transport
    peercert = transport.get_extra_info("peercert") if transport is not None else None
    if not peercert:
        return set()
    sans: set[str] = set()
    for _kind, value in peercert.get("subjectAltName", ()):
        sans.add(str(value).strip())
    return sans


def _san_middleware(allowed: tuple[str, ...]) -> Middleware:
    allowed_set = set(allowed)

    @web.middleware
    async def require_client_san(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not (_peer_sans(request) & allowed_set):
            log.info("http_client_san_rejected", path=request.path, remote=request.remote)
            return web.Response(status=403, text="403 Forbidden: client certificate SAN\n")
        return await handler(request)

    return require_client_san


def web_security_middlewares(cfg: WebConfig) -> list[Middleware]:
    """Every middleware ``cfg`` asks for, outermost first: headers, client SANs, basic auth."""
    middlewares: list[Middleware] = []
    if cfg.http_server_config.headers:
        middlewares.append(_headers_middleware(cfg.http_server_config.headers))
    tls = cfg.tls_server_config
    if tls is not None and tls.client_allowed_sans:
        middlewares.append(_san_middleware(tls.client_allowed_sans))
    auth = basic_auth_middleware(cfg)
    if auth is not None:
        middlewares.append(auth)
    return middlewares
