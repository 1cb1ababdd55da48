"""Local stand-ins for the alert vendors: one aiohttp server verifying each vendor's signature.

``AlertReceivers`` serves, on 127.0.0.1 and a free port, the endpoints ``altiwatch notify``
talks to (DingTalk, WeCom, Feishu, Telegram, Slack, the generic webhook), each checking its
credential exactly as the vendor documents it and answering as the vendor does; every request
is recorded as a :class:`Hit` (``ok`` False when the check failed). ``down()``/``up()`` close and
reopen the port (connection refused in between: an uplink outage). ``SmtpReceiver`` is a real
aiosmtpd server that requires STARTTLS before AUTH and records each mail.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import ssl
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.ports import free_port

if TYPE_CHECKING:
    from email.message import Message
    from pathlib import Path

HOST = "127.0.0.1"
TOKEN = "tok-3f9a"  # noqa: S105 - a test receiver's token
SECRET = "SEC7c1e0b2d4f"  # noqa: S105 - DingTalk secrets start with SEC
ONE_HOUR_S = 3600


@dataclass
class Hit:
    """One request a vendor endpoint received."""

    vendor: str
    ok: bool
    reason: str
    body: Any


@dataclass
class AlertReceivers:
    """The vendor endpoints on one local port."""

    port: int = field(default_factory=lambda: free_port(HOST))
    hits: list[Hit] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _site: web.TCPSite | None = None

    @property
    def base(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{HOST}:{self.port}"

    def accepted(self, vendor: str) -> list[Hit]:
        """The requests of ``vendor`` whose signature/credential checked out."""
        return [h for h in self.hits if h.vendor == vendor and h.ok]

    def rejected(self) -> list[Hit]:
        """Every request whose check failed."""
        return [h for h in self.hits if not h.ok]

    async def start(self) -> None:
        """Serve."""
        app = web.Application()
        app.router.add_post("/dingtalk/robot/send", self._dingtalk)
        app.router.add_post("/wecom/cgi-bin/webhook/send", self._wecom)
        app.router.add_post("/feishu/open-apis/bot/v2/hook/{token}", self._feishu)
        app.router.add_post("/telegram/bot{token}/sendMessage", self._telegram)
        app.router.add_post("/slack/services/T0/B0/{token}", self._slack)
        app.router.add_post("/webhook", self._webhook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await self.up()

    async def up(self) -> None:
        """(Re)open the port."""
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, HOST, self.port, reuse_address=True)
        await self._site.start()

    async def down(self) -> None:
        """Close the port: every connection is refused until ``up()``."""
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def stop(self) -> None:
        """Stop serving."""
        await self.down()
        if self._runner is not None:
            await self._runner.cleanup()

    def _good(self, vendor: str, body: Any) -> None:
        self.hits.append(Hit(vendor, ok=True, reason="", body=body))

    def _bad(self, vendor: str, reason: str, body: Any) -> None:
        self.hits.append(Hit(vendor, ok=False, reason=reason, body=body))

    async def _dingtalk(self, request: web.Request) -> web.Response:
        # DingTalk: sign = urlEncode(base64(HmacSHA256(key=secret, "timestamp\nsecret"))), ts ms.
        body = await request.json()
        ts = request.query.get("timestamp", "")
        expected = base64.b64encode(
            hmac.new(SECRET.encode(), f"{ts}\n{SECRET}".encode(), hashlib.sha256).digest()
        ).decode()
        fresh = ts.isdigit() and abs(time.time() * 1000 - int(ts)) < ONE_HOUR_S * 1000
        if request.query.get("access_token") != TOKEN:
            self._bad("dingtalk", "token", body)
            return web.json_response({"errcode": 300001, "errmsg": "token is not exist"})
        # aiohttp's query is URL-decoded once: what remains must be the Base64 signature.
        if not fresh or not hmac.compare_digest(request.query.get("sign", ""), expected):
            self._bad("dingtalk", "sign", body)
            return web.json_response({"errcode": 310000, "errmsg": "sign not match"})
        self._good("dingtalk", body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _wecom(self, request: web.Request) -> web.Response:
        body = await request.json()
        if request.query.get("key") != TOKEN:
            self._bad("wecom", "key", body)
            return web.json_response({"errcode": 93000, "errmsg": "invalid webhook url"})
        self._good("wecom", body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _feishu(self, request: web.Request) -> web.Response:
        # Feishu: sign = base64(HmacSHA256(key="timestamp\nsecret", msg="")), ts seconds.
        body = await request.json()
        ts = str(body.get("timestamp", ""))
        expected = base64.b64encode(
            hmac.new(f"{ts}\n{SECRET}".encode(), b"", hashlib.sha256).digest()
        ).decode()
        fresh = ts.isdigit() and abs(time.time() - int(ts)) < ONE_HOUR_S
        if request.match_info["token"] != TOKEN:
            self._bad("feishu", "token", body)
            return web.json_response(
                {"code": 19001, "msg": "param invalid: incoming webhook access token invalid"}
            )
        if not fresh or not hmac.compare_digest(str(body.get("sign", "")), expected):
            self._bad("feishu", "sign", body)
            return web.json_response(
                {
                    "code": 19021,
                    "msg": "sign match fail or timestamp is not within one hour from current time",
                }
            )
        self._good("feishu", body)
        return web.json_response({"code": 0, "data": {}, "msg": "success"})

    async def _telegram(self, request: web.Request) -> web.Response:
        body = await request.json()
        if request.match_info["token"] != f"123456:{TOKEN}" or body.get("chat_id") != "-1001":
            self._bad("telegram", "token", body)
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        self._good("telegram", body)
        return web.json_response({"ok": True, "result": {"message_id": len(self.hits)}})

    async def _slack(self, request: web.Request) -> web.Response:
        body = await request.json()
        if request.match_info["token"] != TOKEN:
            self._bad("slack", "token", body)
            return web.Response(status=403, text="invalid_token")
        self._good("slack", body)
        return web.Response(text="ok")

    async def _webhook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        ts = request.headers.get("X-Altiwatch-Timestamp", "")
        mac = hmac.new(SECRET.encode(), f"{ts}.".encode() + raw, hashlib.sha256).hexdigest()
        signed = hmac.compare_digest(
            request.headers.get("X-Altiwatch-Signature", ""), f"sha256={mac}"
        )
        fresh = ts.isdigit() and abs(time.time() - int(ts)) < 300  # a 5-minute replay window
        body = json.loads(raw)
        if not (signed and fresh):
            self._bad("webhook", "signature", body)
            return web.Response(status=401)
        self._good("webhook", body)
        return web.Response(status=204)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp.crt", directory / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class SmtpReceiver:
    """A real SMTP server (aiosmtpd) on 127.0.0.1: STARTTLS required, then AUTH, then mail."""

    USER = "altiwatch"
    PASSWORD = "smtp-pw-5d1"  # noqa: S105 - a test server's password

    def __init__(self, directory: Path) -> None:
        """Make a certificate; ``start()`` serves."""
        self.cert, key = self_signed(directory)
        self.port = free_port(HOST)
        self.mails: list[Message] = []
        self.tls_seen: list[bool] = []
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        self._controller = Controller(
            self,
            hostname=HOST,
            port=self.port,
            tls_context=context,
            require_starttls=True,
            auth_require_tls=True,
            authenticator=self._authenticate,
        )

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        del server, session, envelope, mechanism
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode() == self.USER and auth_data.password.decode() == self.PASSWORD
        )
        return AuthResult(success=ok)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        """Record the mail and whether it came over TLS."""
        del server
        self.tls_seen.append(session.ssl is not None)
        self.mails.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"

    def start(self) -> None:
        """Serve (in aiosmtpd's thread)."""
        self._controller.start()

    def stop(self) -> None:
        """Stop serving."""
        self._controller.stop()
