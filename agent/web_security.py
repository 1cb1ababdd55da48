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
unknown user is checked against a dummy hash of the highest configured cost so timing does not
reveal which users exist; one bcrypt comparison runs at a time (in a worker thread, so the event
loop keeps polling), and its outcome is cached in memory under an HMAC of (user, hash, password)
with a per-process random key, so bcrypt's ~70 ms are paid once per credential, not per scrape.
The comparisons waiting are bounded, in all (503 beyond) and per client (429 beyond, with a
per-client rate), and dropped when their client leaves. Failures are logged once per client a
minute (``agent.http_guard.ThrottledLog``). The plain password is never stored or logged.

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
import math
import re
import secrets
import ssl
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import bcrypt
import structlog
import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.errors import ConfigError, ConfigProblem
from agent.http_api import AUTH_USER_KEY
from agent.http_guard import ThrottledLog, client_key

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from aiohttp.typedefs import Handler, Middleware

__all__ = [
    "AuthBusy",
    "BasicAuthVerifier",
    "ClientGone",
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
_BUCKETS_MAX = 4096
BCRYPT_QUEUE = 16
"""Distinct credentials that may wait for a bcrypt comparison (~1 s at cost 10); then 503."""
BCRYPT_QUEUE_PER_CLIENT = 2
"""Of those, from one client (an IPv4 address or an IPv6 /64); then 429."""
BCRYPT_CLIENT_BURST = 10
"""Comparisons a client may ask for at once (a scraper needs one per credential, ever)."""
BCRYPT_CLIENT_RATE = 1.0
"""Comparisons a client may ask for per second after its burst; then 429."""

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


class AuthBusy(Exception):  # noqa: N818 - a refusal, not an error
    """A bcrypt comparison cannot be queued now: answer ``status`` with ``Retry-After``."""

    def __init__(self, status: int, retry_after_s: int, reason: str) -> None:
        """429 (this client asked too much) or 503 (the queue is full)."""
        super().__init__(reason)
        self.status = status
        self.retry_after_s = retry_after_s
        self.reason = reason


class ClientGone(Exception):  # noqa: N818 - a condition, not an error
    """The client left before its credentials were checked: the check was skipped."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


def hash_cost(hashed: str | bytes) -> int:
    """The cost (log2 rounds) of a bcrypt hash: 10 for ``$2y$10$...``."""
    text = hashed.decode("ascii") if isinstance(hashed, bytes) else hashed
    return int(text.split("$")[2])


class BasicAuthVerifier:
    """Checks basic-auth credentials against bcrypt hashes, caching outcomes (not passwords).

    The cache maps HMAC-SHA256(key, user ‖ hash ‖ password) (``key`` random per process) to the
    outcome; it is bounded (least recently used entries go first). A cache hit costs one HMAC;
    a miss costs one bcrypt comparison, run in a worker thread, one at a time.

    Misses are bounded, so a flood of guesses costs a legitimate client at most a short wait:
    at most ``max_queue`` distinct credentials wait for bcrypt (beyond: :class:`AuthBusy` 503),
    at most ``per_client_queue`` of them from one client, and each client gets ``client_burst``
    comparisons then ``client_rate`` a second (beyond either: 429). Requests with credentials
    already waiting share that check and count once. A request whose client left
    (``alive()`` false, or its task cancelled) leaves the queue without a comparison.

    An unknown user is compared with a dummy hash of the highest cost configured, so the time
    a failure takes does not tell whether the user exists.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        max_queue: int = BCRYPT_QUEUE,
        per_client_queue: int = BCRYPT_QUEUE_PER_CLIENT,
        client_burst: int = BCRYPT_CLIENT_BURST,
        client_rate: float = BCRYPT_CLIENT_RATE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Keep the users' hashes; the dummy hash is made here when its cost is not 10."""
        self._users = {user: hashed.encode("ascii") for user, hashed in users.items()}
        self._key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._bcrypt_lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bcrypt")
        self._max_queue = max_queue
        self._per_client_queue = per_client_queue
        self._client_burst = client_burst
        self._client_rate = client_rate
        self._clock = clock
        self._waiting: dict[bytes, int] = {}  # credential key -> requests waiting on its check
        self._queued = 0  # distinct credentials waiting
        self._queued_by_client: dict[str, int] = {}
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        cost = max((hash_cost(h) for h in self._users.values()), default=hash_cost(_DUMMY_HASH))
        #: The hash unknown users are compared with (cost: the highest configured).
        self.dummy_hash = (
            _DUMMY_HASH
            if cost == hash_cost(_DUMMY_HASH)
            else bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))
        )
        self.bcrypt_checks = 0
        #: Requests refused with 429/503, and checks skipped because the client left.
        self.refused = 0
        self.skipped = 0

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

    def _take_token(self, client: str) -> float:
        """Take one comparison from ``client``'s bucket; 0, or the seconds until one is due."""
        now = self._clock()
        bucket = self._buckets.pop(client, None) or _Bucket(float(self._client_burst), now)
        bucket.tokens = min(
            float(self._client_burst), bucket.tokens + (now - bucket.at) * self._client_rate
        )
        bucket.at = now
        self._buckets[client] = bucket
        while len(self._buckets) > _BUCKETS_MAX:
            self._buckets.popitem(last=False)
        if bucket.tokens < 1.0:
            return (1.0 - bucket.tokens) / self._client_rate
        bucket.tokens -= 1.0
        return 0.0

    def _admit(self, client: str) -> None:
        if self._queued_by_client.get(client, 0) >= self._per_client_queue:
            self.refused += 1
            raise AuthBusy(429, 1, "client_queue_full")
        if self._queued >= self._max_queue:
            self.refused += 1
            raise AuthBusy(503, 1, "queue_full")
        wait_s = self._take_token(client)
        if wait_s > 0:
            self.refused += 1
            raise AuthBusy(429, math.ceil(wait_s), "client_rate")

    def _checked(self, key: bytes, done: asyncio.Future[bool], *, known: bool) -> None:
        """Cache a comparison's outcome, even when the request that asked for it left."""
        if not done.cancelled() and done.exception() is None:
            self._remember(key, outcome=known and done.result())

    async def verify(
        self,
        user: str,
        password: str,
        *,
        client: str = "",
        alive: Callable[[], bool] = lambda: True,
    ) -> bool:
        """Return True when ``user`` exists and ``password`` matches its bcrypt hash.

        Raises:
            AuthBusy: the comparison cannot be queued (429 for this ``client``, 503 for all).
            ClientGone: ``alive()`` turned false while the request waited.
        """
        known = user in self._users
        hashed = self._users.get(user, self.dummy_hash)
        pw = password.encode("utf-8")
        key = self._cache_key(user, hashed, pw)
        outcome = self._cached(key)
        if outcome is None:
            outcome = await self._queued_check(key, pw, hashed, client, alive, known=known)
        return outcome and known

    async def _queued_check(
        self,
        key: bytes,
        pw: bytes,
        hashed: bytes,
        client: str,
        alive: Callable[[], bool],
        *,
        known: bool,
    ) -> bool:
        first = key not in self._waiting  # later ones share the first one's check
        if first:
            self._admit(client)
            self._queued += 1
            self._queued_by_client[client] = self._queued_by_client.get(client, 0) + 1
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            async with self._bcrypt_lock:
                outcome = self._cached(key)
                if outcome is not None:
                    return outcome
                if not alive():
                    self.skipped += 1
                    raise ClientGone
                self.bcrypt_checks += 1
                # One worker thread: a cancelled request never lets two comparisons overlap.
                check = asyncio.get_running_loop().run_in_executor(
                    self._executor, self._checkpw, pw, hashed
                )
                check.add_done_callback(partial(self._checked, key, known=known))
                return known and await check
        finally:
            left = self._waiting.pop(key) - 1
            if left:
                self._waiting[key] = left
            if first:
                self._queued -= 1
                count = self._queued_by_client.pop(client) - 1
                if count:
                    self._queued_by_client[client] = count


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


def _alive(request: web.Request) -> Callable[[], bool]:
    def alive() -> bool:
        transport = request.transport
        return transport is not None and not transport.is_closing()

    return alive


def basic_auth_middleware(
    cfg: WebConfig,
    *,
    verifier: BasicAuthVerifier | None = None,
    throttled_log: ThrottledLog | None = None,
) -> Middleware | None:
    """Return an aiohttp middleware requiring basic auth, or None if no users are configured.

    ``verifier`` defaults to a new ``BasicAuthVerifier(cfg.basic_auth_users)``; failures are
    logged through ``throttled_log`` (one ``http_auth_failed`` line per client a minute).
    """
    if not cfg.basic_auth_users:
        return None
    if verifier is None:
        verifier = BasicAuthVerifier(cfg.basic_auth_users)
    if throttled_log is None:
        throttled_log = ThrottledLog()

    @web.middleware
    async def require_basic_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        client = client_key(
            request.transport.get_extra_info("peername") if request.transport else None
        )
        credentials = _parse_basic(request.headers.get("Authorization"))
        try:
            ok = credentials is not None and await verifier.verify(
                *credentials, client=client, alive=_alive(request)
            )
        except AuthBusy as busy:
            throttled_log.note(
                "http_auth_throttled",
                client,
                level="warning",
                status=busy.status,
                reason=busy.reason,
            )
            return web.Response(
                status=busy.status,
                text=f"{busy.status} busy checking credentials\n",
                headers={"Retry-After": str(busy.retry_after_s)},
            )
        except ClientGone:
            return web.Response(status=499, text="client gone\n")  # never read by anyone
        if not ok:
            throttled_log.note(
                "http_auth_failed",
                client,
                path=request.path[:64],
                user_known=credentials is not None and credentials[0] in cfg.basic_auth_users,
            )
            return _unauthorized()
        if credentials is not None:
            request[AUTH_USER_KEY] = credentials[0]  # who asked for a write (maintenance `by`)
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


def _san_middleware(allowed: tuple[str, ...], throttled_log: ThrottledLog) -> Middleware:
    allowed_set = set(allowed)

    @web.middleware
    async def require_client_san(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not (_peer_sans(request) & allowed_set):
            client = client_key(
                request.transport.get_extra_info("peername") if request.transport else None
            )
            throttled_log.note("http_client_san_rejected", client, path=request.path[:64])
            return web.Response(status=403, text="403 Forbidden: client certificate SAN\n")
        return await handler(request)

    return require_client_san


def web_security_middlewares(
    cfg: WebConfig, *, throttled_log: ThrottledLog | None = None
) -> list[Middleware]:
    """Every middleware ``cfg`` asks for, outermost first: headers, client SANs, basic auth."""
    if throttled_log is None:
        throttled_log = ThrottledLog()
    middlewares: list[Middleware] = []
    if cfg.http_server_config.headers:
        middlewares.append(_headers_middleware(cfg.http_server_config.headers))
    tls = cfg.tls_server_config
    if tls is not None and tls.client_allowed_sans:
        middlewares.append(_san_middleware(tls.client_allowed_sans, throttled_log))
    auth = basic_auth_middleware(cfg, throttled_log=throttled_log)
    if auth is not None:
        middlewares.append(auth)
    return middlewares
