import asyncio

import httpx
import pytest
from pyasic import settings as pyasic_settings
from pyasic.miners.antminer import BMMinerS19jPro
from pyasic.miners.avalonminer import CGMinerAvalon1566
from pyasic.miners.bitaxe import BitAxeUltra
from pyasic.miners.whatsminer import BTMinerM30SPlusVE40
from pyasic.rpc.antminer import AntminerRPCAPI
from pyasic.rpc.avalonminer import AvalonMinerRPCAPI
from pyasic.rpc.base import BaseMinerRPCAPI
from pyasic.rpc.btminer import BTMinerRPCAPI
from pyasic.web.antminer import AntminerModernWebAPI
from pyasic.web.espminer import ESPMinerWebAPI

from collectors import pyasic_tuning
from collectors.pyasic_tuning import (
    MAX_BODY_BYTES,
    DigestChallenge,
    _class_commands,
    _encode_request,
    _read_response,
    tune,
    tuning_of,
)


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=pyasic_tuning.MAX_HEADER_BYTES)
    reader.feed_data(data)
    reader.feed_eof()
    return reader


@pytest.fixture(autouse=True)
def restore_transport():
    """Put pyasic's transport hook back after the test."""
    original = pyasic_settings.transport
    yield
    pyasic_tuning.uninstall()
    pyasic_settings.transport = original


async def test_read_response_content_length():
    """A Content-Length body is read exactly, headers kept in order."""
    reader = _reader(
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}trailing'
    )
    status, headers, body = await _read_response(reader, "GET")
    assert status == 200
    assert headers == [(b"Content-Type", b"application/json"), (b"Content-Length", b"7")]
    assert body == b'{"a":1}'


async def test_read_response_chunked():
    """A chunked body is decoded, extensions and trailers dropped, Transfer-Encoding removed."""
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4;ext=1\r\n{"a"\r\n3\r\n:1}\r\n0\r\nX-Trailer: y\r\n\r\n'
    )
    status, headers, body = await _read_response(_reader(raw), "GET")
    assert (status, headers, body) == (200, [], b'{"a":1}')


async def test_read_response_until_eof():
    """Without a length the body runs to the end of the stream (HTTP/1.0 style)."""
    raw = b'HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Digest realm="x"\r\n\r\n401'
    status, _, body = await _read_response(_reader(raw), "GET")
    assert (status, body) == (401, b"401")


async def test_read_response_skips_interim_and_empty_bodies():
    """100 Continue is skipped; a 204 and a HEAD reply have no body."""
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nabcde"
    assert await _read_response(_reader(raw), "GET") == (204, [(b"Content-Length", b"5")], b"")
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    assert (await _read_response(_reader(raw), "HEAD"))[2] == b""


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", ValueError),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", ValueError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", asyncio.IncompleteReadError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1), ValueError),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", ValueError),
        (b"HTTP/1.1 200 OK\r\nContent-Le", asyncio.IncompleteReadError),
    ],
)
async def test_read_response_rejects_malformed(raw, error):
    """Garbage, truncation and oversized lengths raise instead of returning partial data."""
    with pytest.raises(error):
        await _read_response(_reader(raw), "GET")


async def test_read_response_refuses_oversized_stream():
    """A close-delimited body over MAX_BODY_BYTES is refused."""
    raw = b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * (MAX_BODY_BYTES + 10)
    with pytest.raises(ValueError, match="body over"):
        await _read_response(_reader(raw), "GET")


def test_encode_request_closes_connection_and_keeps_headers():
    """The request line uses the raw path; Connection is forced to close; body is appended."""
    request = httpx.Request(
        "POST",
        "http://127.80.0.1:8080/cgi-bin/x.cgi?a=1",
        json={"k": 1},
        headers={"Connection": "keep-alive"},
    )
    raw = _encode_request(request, request.read())
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /cgi-bin/x.cgi?a=1 HTTP/1.1"
    assert b"Host: 127.80.0.1:8080" in lines
    assert lines[-1] == b"Connection: close"
    assert b"Connection: keep-alive" not in lines
    assert body == b'{"k":1}'


@pytest.mark.parametrize(
    "cls", [AntminerRPCAPI, BTMinerRPCAPI, AvalonMinerRPCAPI], ids=lambda c: c.__name__
)
def test_class_commands_match_pyasic(cls):
    """The per-class command cache lists exactly what pyasic's get_commands computes."""
    rpc = cls("127.80.0.1")
    assert sorted(_class_commands(cls)) == sorted(rpc.get_commands())


def test_tune_retypes_rpc_and_antminer_web():
    """tune() gives a stock S19 tuned RPC and web classes that are still pyasic's subclasses."""
    miner = BMMinerS19jPro("127.80.0.1")
    miner.web.pwd = "secret"  # noqa: S105 — test credential
    miner.rpc.port = 14028
    tune(miner)
    assert isinstance(miner.rpc, AntminerRPCAPI)
    assert isinstance(miner.web, AntminerModernWebAPI)
    assert type(miner.rpc).__name__ == "TunedAntminerRPCAPI"
    assert tuning_of(miner.rpc) is pyasic_tuning._TunedRPC
    assert tuning_of(miner.web) is pyasic_tuning._TunedAntminerWeb
    # state set before tuning is kept
    assert (miner.web.pwd, miner.rpc.port) == ("secret", 14028)


def test_tune_is_idempotent():
    """Tuning twice changes nothing more."""
    miner = BMMinerS19jPro("127.80.0.1")
    tune(miner)
    rpc_cls, web_cls = type(miner.rpc), type(miner.web)
    tune(miner)
    assert (type(miner.rpc), type(miner.web)) == (rpc_cls, web_cls)
    assert type(miner.rpc).__mro__[1] is AntminerRPCAPI


def test_tune_keeps_family_multicommand():
    """A family with its own multicommand (Whatsminer) only gets the command cache."""
    miner = BTMinerM30SPlusVE40("127.80.0.1", version="20230720.14.Rel")
    tune(miner)
    assert tuning_of(miner.rpc) is pyasic_tuning._TunedRPCCommandsOnly
    assert type(miner.rpc).multicommand is BTMinerRPCAPI.multicommand


def test_tune_leaves_other_web_apis():
    """Bitaxe's web API is pyasic's own class; Avalon's RPC gets the generic tuning."""
    bitaxe = BitAxeUltra("127.80.0.1")
    avalon = CGMinerAvalon1566("127.80.0.2")
    tune(bitaxe)
    tune(avalon)
    assert type(bitaxe.web) is ESPMinerWebAPI
    assert tuning_of(avalon.rpc) is pyasic_tuning._TunedRPC


def test_digest_is_reused_until_credentials_change():
    """The tuned Antminer web keeps one DigestAuth per (username, password)."""
    miner = BMMinerS19jPro("127.80.0.1")
    tune(miner)
    first = miner.web._digest()
    assert miner.web._digest() is first
    miner.web.pwd = "other"  # noqa: S105 — test credential
    assert miner.web._digest() is not first


def test_install_swaps_and_restores_transport():
    """install() points pyasic's transport hook at the lean transport; uninstall() restores it."""
    pyasic_tuning.uninstall()
    original = pyasic_settings.transport
    pyasic_tuning.install()
    pyasic_tuning.install()
    assert pyasic_tuning.installed()
    assert isinstance(pyasic_settings.transport(), pyasic_tuning.LeanHTTPTransport)
    assert isinstance(pyasic_settings.transport(verify=False), pyasic_tuning.LeanHTTPTransport)
    pyasic_tuning.uninstall()
    assert pyasic_settings.transport is original
    assert not pyasic_tuning.installed()


def test_tuned_rpc_is_still_a_base_rpc():
    """The tuned RPC passes pyasic's own isinstance checks."""
    miner = BMMinerS19jPro("127.80.0.1")
    tune(miner)
    assert isinstance(miner.rpc, BaseMinerRPCAPI)


def test_tune_installs_the_transport():
    """The first tune() also installs the lean transport process-wide."""
    pyasic_tuning.uninstall()
    tune(BitAxeUltra("127.80.0.1"))
    assert pyasic_tuning.installed()


def test_tuned_class_copies_mixin_bases():
    """Attributes a mixin inherits from its own bases reach the tuned class too."""

    class Base:
        def inherited(self) -> str:
            return "base"

    class Mixin(Base):
        def own(self) -> str:
            return "own"

    tuned = pyasic_tuning._tuned_class(Mixin, AntminerRPCAPI)
    rpc = tuned("127.80.0.1")
    assert (rpc.own(), rpc.inherited()) == ("own", "base")
    assert tuned.__mro__[1] is AntminerRPCAPI


def test_digest_challenge_answers_rfc2617_example():
    """The Authorization header reproduces RFC 2617 §3.5's worked example."""
    challenge = DigestChallenge.parse(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    assert challenge is not None
    header = challenge.authorization(
        "Mufasa", "Circle Of Life", "GET", "/dir/index.html", cnonce="0a4f113b"
    )
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert "nc=00000001" in header
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header


def test_digest_challenge_counts_nonce_uses():
    """Each request on the same nonce carries the next nc."""
    challenge = DigestChallenge.parse(
        'Digest realm="antMiner Configuration", nonce="abc", qop="auth"'
    )
    assert challenge is not None
    first = challenge.authorization("root", "root", "GET", "/cgi-bin/stats.cgi")
    second = challenge.authorization("root", "root", "GET", "/cgi-bin/stats.cgi")
    assert "nc=00000001" in first
    assert "nc=00000002" in second


def test_digest_challenge_matches_httpx_without_qop():
    """Without qop (RFC 2069) the response is MD5(HA1:nonce:HA2), as httpx computes it."""
    challenge = DigestChallenge.parse('Digest realm="r", nonce="n"')
    assert challenge is not None
    request = httpx.Request("GET", "http://127.80.0.1/cgi-bin/x.cgi")
    auth = httpx.DigestAuth("root", "root")
    expected = auth._build_auth_header(
        request,
        auth._parse_challenge(
            request, httpx.Response(401, request=request), 'Digest realm="r", nonce="n"'
        ),
    )
    ours = challenge.authorization("root", "root", "GET", "/cgi-bin/x.cgi")
    response = next(p for p in ours.split(", ") if p.startswith("response="))
    assert response in expected
    assert "nc=" not in ours


@pytest.mark.parametrize(
    "header",
    [
        'Basic realm="x"',
        'Digest realm="x", nonce="n", algorithm=SHA-256',
        'Digest realm="x", nonce="n", qop="auth-int"',
        'Digest nonce="n"',
    ],
)
def test_digest_challenge_refuses_what_it_cannot_answer(header):
    """Other schemes, algorithms and qops are left to httpx (parse returns None)."""
    assert DigestChallenge.parse(header) is None


def test_digest_challenge_from_headers_picks_digest():
    """Among several WWW-Authenticate headers the Digest one is used."""
    headers = [
        (b"WWW-Authenticate", b'Basic realm="x"'),
        (b"www-authenticate", b'Digest realm="y", nonce="n"'),
    ]
    challenge = DigestChallenge.from_headers(headers)
    assert challenge is not None
    assert challenge.realm == "y"
