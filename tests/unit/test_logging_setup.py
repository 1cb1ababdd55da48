"""Specification of agent/logging_setup.py: JSON/console output, stdlib routing, redaction."""

from __future__ import annotations

import io
import json
import logging
import os
import time
import warnings
from pathlib import Path

import pytest
import structlog

from agent import logging_setup
from agent.logging_setup import MASK, MAX_VALUE_CHARS, configure_logging, redact_text

SECRET = "Xq9-planted-s3cret-7781"  # noqa: S105 - the planted secret to hunt for


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    showwarning = warnings.showwarning
    yield
    warnings.showwarning = showwarning
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("pyasic", "aiomqtt", "hpack", "h2", "hyperframe", "grpclib"):
        logging.getLogger(name).setLevel(logging.NOTSET)
    logging.captureWarnings(capture=False)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def _fail_with_secret() -> None:
    msg = f"bad credential secret={SECRET}"
    raise ValueError(msg)


def _emit_everything() -> None:
    log = structlog.get_logger("agent.test")
    log.info("miner_login", address="127.60.0.1", password=SECRET, user="root")
    log.info("mqtt_connect", url=f"mqtt://altiwatch:{SECRET}@127.0.0.1:1883")
    log.info("settings", settings={"web_password": SECRET, "nested": [{"token": SECRET}]})
    log.warning("raw_text", detail=f"sent {{'password': '{SECRET}'}} and auth_token={SECRET}")
    logging.getLogger("pyasic").warning("login failed for root:%s with password=%s", "x", SECRET)
    logging.getLogger("aiomqtt").error("connect http://u:%s@broker failed", SECRET)
    try:
        _fail_with_secret()
    except ValueError:
        log.exception("poll_crashed")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_logging_planted_secret_never_appears(fmt):
    """A secret passed as a value, in a URL, nested, in stdlib records or a traceback is masked."""
    out = io.StringIO()
    configure_logging(fmt, "info", stream=out, environ={})
    _emit_everything()
    text = out.getvalue()
    assert SECRET not in text
    assert text.count(MASK) >= 7
    assert "miner_login" in text
    assert "login failed" in text  # pyasic's stdlib record came through


def test_logging_json_lines_with_level_timestamp_and_logger():
    """JSON mode writes one JSON object per line with event, level, timestamp and logger."""
    out = io.StringIO()
    configure_logging("json", "info", stream=out, environ={})
    structlog.get_logger("agent.test").info("poll_done", miner="m1", duration_s=0.12)
    logging.getLogger("aiomqtt").warning("broker gone")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["event"] == "poll_done"
    assert lines[0]["level"] == "info"
    assert lines[0]["miner"] == "m1"
    assert lines[0]["timestamp"].endswith("Z")
    assert lines[1] == lines[1] | {"event": "broker gone", "level": "warning", "logger": "aiomqtt"}


def test_logging_level_filters_and_quiets_libraries():
    """Below the configured level nothing is written; pyasic's info chatter is dropped at info."""
    out = io.StringIO()
    configure_logging("json", "warning", stream=out, environ={})
    structlog.get_logger("agent.test").info("not_shown")
    logging.getLogger("pyasic").info("chatter")
    structlog.get_logger("agent.test").warning("shown")
    events = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    assert events == ["shown"]


def test_logging_reconfigure_replaces_handler():
    """Calling configure_logging twice does not duplicate lines."""
    out = io.StringIO()
    configure_logging("json", "info", stream=out, environ={})
    configure_logging("json", "info", stream=out, environ={})
    structlog.get_logger().info("once")
    assert len(out.getvalue().splitlines()) == 1


def test_logging_journald_priority_prefix(tmp_path):
    """When $JOURNAL_STREAM names stdout, each line starts with its syslog priority."""
    path = tmp_path / "journal"
    with path.open("w+") as stream:
        st = os.fstat(stream.fileno())
        configure_logging(
            "json", "info", stream=stream, environ={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        )
        structlog.get_logger().warning("hot")
        structlog.get_logger().info("fine")
        stream.flush()
    lines = path.read_text().splitlines()
    assert lines[0].startswith("<4>{")
    assert lines[1].startswith("<6>{")
    assert json.loads(lines[0][3:])["event"] == "hot"


def test_logging_no_priority_prefix_when_journal_stream_is_elsewhere(tmp_path):
    """A $JOURNAL_STREAM for another file (e.g. inherited) adds no prefix."""
    out = io.StringIO()
    configure_logging("json", "info", stream=out, environ={"JOURNAL_STREAM": "1:2"})
    structlog.get_logger().info("plain")
    assert out.getvalue().startswith("{")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://user:pw@host/x", f"http://{MASK}@host/x"),
        ("mqtts://host:8883", "mqtts://host:8883"),
        ("password=abc other", f"password={MASK} other"),
        ('{"mqtt_password": "abc"}', f'{{"mqtt_password": "{MASK}"}}'),
        ("hashrate=100 temp=70", "hashrate=100 temp=70"),
        ("a=password=abc", f"a=password={MASK}"),
        ("1http://user:pw@host/x", f"1http://{MASK}@host/x"),
        ("Authorization: Bearer abc.def", f"Authorization: {MASK}"),
        (
            "Decoded (b'authorization', b'tok123'), total",
            f"Decoded (b'authorization', b'{MASK}'), total",
        ),
        (
            "Adding b'authorization'=b'tok123' to the table",
            f"Adding b'authorization'=b'{MASK}' to the table",
        ),
    ],
)
def test_logging_redact_text(text, expected):
    """URL userinfo and secret-looking key=value pairs are masked, other text is untouched."""
    assert redact_text(text) == expected


def _pyasic_root_record(level: int, msg: str) -> logging.LogRecord:
    """A record as pyasic makes it: through the root logger, from a file in its package."""
    path = "/venv/lib/python3.11/site-packages/pyasic/rpc/base.py"
    return logging.LogRecord("root", level, path, 1, msg, None, None)


def test_logging_pyasic_root_records_are_named_and_held_to_library_level():
    """Pyasic's root-logger records are labelled 'pyasic'; below WARNING they show only at debug."""
    out = io.StringIO()
    configure_logging("json", "info", stream=out, environ={})
    root = logging.getLogger()
    root.handle(_pyasic_root_record(logging.INFO, "Send Bytes chatter"))
    root.handle(_pyasic_root_record(logging.WARNING, "miner went away"))
    root.handle(_pyasic_root_record(logging.WARNING, ""))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["logger"], line["event"]) for line in lines] == [("pyasic", "miner went away")]

    out = io.StringIO()
    configure_logging("json", "debug", stream=out, environ={})
    logging.getLogger().handle(_pyasic_root_record(logging.DEBUG, "Send Bytes chatter"))
    assert json.loads(out.getvalue())["event"] == "Send Bytes chatter"


def test_logging_library_warnings_are_debug_own_warnings_are_warning():
    """A Python warning raised in a library's file logs at debug; one in the agent's code at warning."""
    out = io.StringIO()
    library_file = str(Path("/venv/site-packages/asyncssh/crypto/misc.py"))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        configure_logging("json", "debug", stream=out)
        warnings.warn_explicit("DSA is deprecated", UserWarning, library_file, 32)
        warnings.warn_explicit("own code warns", UserWarning, logging_setup.__file__, 1)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["warning"], line["level"]) for line in lines] == [
        ("DSA is deprecated", "debug"),
        ("own code warns", "warning"),
    ]
    assert {line["logger"] for line in lines} == {"py.warnings"}
    assert lines[0]["source"] == f"{library_file}:32"


def test_logging_library_warning_absent_at_info():
    """At the default info level a library's warning prints nothing, on the log or elsewhere."""
    out = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        configure_logging("json", "info", stream=out)
        warnings.warn_explicit("DSA is deprecated", UserWarning, "/venv/asyncssh/misc.py", 32)
    assert out.getvalue() == ""


HOSTILE_TEXTS = {
    "word_run": "a" * 20_000,
    "secret_words": "pass" * 400,
    "scheme_run": "http://" + "a" * 20_000,
    "keys_without_value": ("password" + "x" * 10) * 100,
}


@pytest.mark.parametrize("shape", sorted(HOSTILE_TEXTS))
def test_logging_redact_text_is_linear_on_hostile_text(shape):
    """Hostile text redacts in under 0.1 s (the old patterns: 2-9 s for these 1,600-20,000 chars)."""
    text = HOSTILE_TEXTS[shape]
    began = time.perf_counter()
    redact_text(text)
    assert time.perf_counter() - began < 0.1


def test_logging_long_value_is_cut_before_redaction():
    """A 30,000-char MAC logs as its first 4,096 chars and a count of the rest, in milliseconds."""
    out = io.StringIO()
    configure_logging("json", "info", stream=out, environ={})
    mac = "0A:" * 10_000
    began = time.perf_counter()
    structlog.get_logger("agent.test").warning("miner_identity_invalid", mac=mac)
    assert time.perf_counter() - began < 0.25
    line = json.loads(out.getvalue())
    assert line["mac"] == mac[:MAX_VALUE_CHARS] + f"…[{len(mac) - MAX_VALUE_CHARS} more chars]"


def test_logging_cut_inside_url_userinfo_masks_the_rest():
    """A value cut between a URL's ``user:pass`` and its ``@`` does not leak the password's start."""
    out = io.StringIO()
    configure_logging("json", "info", stream=out, environ={})
    value = "x" * (MAX_VALUE_CHARS - 20) + f"mqtt://altiwatch:{SECRET}@broker"
    structlog.get_logger("agent.test").info("long_url", detail=value)
    assert SECRET[:4] not in out.getvalue()
    assert "mqtt://" + MASK in out.getvalue()


def test_logging_http2_internals_stay_quiet_at_debug():
    """At debug, hpack/h2 header dumps are not written; grpclib's own debug lines still are."""
    out = io.StringIO()
    configure_logging("json", "debug", stream=out, environ={})
    logging.getLogger("hpack.hpack").debug("Decoded %s", (b"authorization", SECRET.encode()))
    logging.getLogger("h2.connection").debug("headers %s", SECRET)
    logging.getLogger("grpclib.protocol").debug("stream opened")
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["stream opened"]
