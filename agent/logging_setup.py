"""Logging: structlog JSON lines on stdout (console on a TTY), stdlib routed through it, redacted.

``configure_logging()`` sets one stdlib handler on the root logger whose
``structlog.stdlib.ProcessorFormatter`` renders both our structlog events and foreign stdlib
records (pyasic, aiomqtt, aiohttp). The last step before rendering is ``redact``: values of keys
that look like secrets (pass, pwd, secret, token, auth, credential, and sign as in pyasic's
Whatsminer ``host_sign``) become ``**********``, and any string is first cut to
`MAX_VALUE_CHARS` (`bound_text`), then has URL userinfo, ``password=...``-style pairs and
``Authorization`` values masked, in linear time. The HTTP/2 libraries under grpclib (hpack, h2,
hyperframe) stay at WARNING even at debug: their debug lines carry raw headers. Python warnings
(``warnings.warn``) are logged as ``python_warning`` on the ``py.warnings`` logger: at warning
level when raised from the project's own code, at debug when raised from a library (a
third-party deprecation is the library's business, not the operator's). Under journald
(``$JOURNAL_STREAM`` matching stdout) each JSON line gets a ``<N>`` syslog priority prefix so
``journalctl -p warning`` works.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

import structlog

if TYPE_CHECKING:
    from structlog.typing import EventDict, Processor, WrappedLogger

MASK = "**********"
SECRET_KEY = re.compile(
    r"pass|pwd|secret|token|auth|credential|(?<![a-z])sign(?![a-z])", re.IGNORECASE
)
MAX_VALUE_CHARS = 4096
"""A logged string longer than this keeps its first MAX_VALUE_CHARS characters (a traceback
its last `MAX_TRACEBACK_CHARS`), cut before redaction: a hostile value (a 30,000-char MAC, an
8,000-char request path) costs the same to log as a normal one."""
MAX_TRACEBACK_CHARS = 16384
"""The ``exception`` text (a formatted traceback) keeps its last this many characters."""

# Every pattern below runs in time linear in the text, whatever it holds: each starts at the
# beginning of a maximal run (a negative lookbehind on the run's own characters, so no match is
# attempted from inside a run), and every repetition is possessive (no backtracking into it).
# The patterns they replace started a match at every character and backtracked through the
# rest of the run: 0.4-94 s for 4,000 chars (issue 15).
_URL_USERINFO = re.compile(
    r"(?<![A-Za-z0-9+.-])(?P<scheme>[A-Za-z0-9+.-]*+://)"
    r"(?P<userinfo>[^/@\s:]*+(?::[^/@\s]*+)?)@"
)
_KEY_SEP = re.compile(r"(?<!\w)(?P<key>\w++)[\"']?\s*+[:=]\s*+[\"']?")
_VALUE = re.compile(r"[^\s\"',;&)}\]]++")
_SECRET_IN_KEY = re.compile(
    # ``sign`` as a word part: pyasic's Whatsminer token is ``host_sign`` (not ``signal``)
    r"pass|pwd|secret|token|credential|(?<![a-z])sign(?![a-z])",
    re.IGNORECASE,
)
_AUTHORIZATION = re.compile(
    # ``Authorization: Bearer x`` (the rest of the line), or a header tuple as h2/hpack print
    # it, ``(b'authorization', b'x')`` / ``b'authorization': b'x'`` (up to the quote).
    r"(?<!\w)(?P<key>authorization)(?:"
    r"(?P<sep>\s*+[:=]\s*+)(?P<value>[^\r\n]++)"
    r"|(?P<qsep>[\"']\s*+[:=,]\s*+b?[\"'])(?P<qvalue>[^\"'\r\n]++))",
    re.IGNORECASE,
)
_URL_CUT = re.compile(r"[/@\s]")
_ROOT_HANDLER_NAME = "altiwatch"
_SYSLOG_PRIORITY = {"critical": 2, "exception": 3, "error": 3, "warning": 4, "info": 6, "debug": 7}
_QUIET_LIBRARIES = (
    "pyasic",
    "aiomqtt",
    "aiohttp.access",
    "httpx",
    "httpcore",
    "asyncio",
    "grpclib",
)
_SILENT_LIBRARIES = ("hpack", "h2", "hyperframe")
"""HTTP/2 internals (grpclib's, for Braiins OS+): their debug lines print raw header blocks,
the BOS+ session token included (``authorization``), so they stay at WARNING even at debug."""

_OWN_CODE = tuple(
    f"{Path(__file__).resolve().parent.parent / package}{os.sep}"
    for package in ("agent", "collectors")
)

LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]


def bound_text(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """``text`` cut to its first ``limit`` characters plus a note of how many were dropped.

    A cut inside a URL's userinfo (``mqtt://user:pass`` with the ``@`` beyond the cut) would
    leave the password's start where redaction can no longer see it is userinfo: the part
    after ``://`` is masked instead.
    """
    if len(text) <= limit:
        return text
    kept = text[:limit]
    scheme_end = kept.rfind("://")
    if scheme_end >= 0 and _URL_CUT.search(kept, scheme_end + 3) is None:
        kept = kept[: scheme_end + 3] + MASK
    return f"{kept}…[{len(text) - limit} more chars]"


def _mask_key_values(text: str) -> str:
    """Mask the value after each secret-looking ``key=`` / ``"key": "`` (one pass)."""
    parts: list[str] = []
    pos = last = 0
    while (match := _KEY_SEP.search(text, pos)) is not None:
        pos = match.end()
        if _SECRET_IN_KEY.search(match["key"]) is None:
            continue  # the value may itself hold a ``password=`` pair: scan on from here
        value = _VALUE.match(text, pos)
        if value is None:
            continue
        parts += (text[last:pos], MASK)
        last = pos = value.end()
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)


def _mask_authorization(match: re.Match[str]) -> str:
    if match["sep"] is not None:
        return f"{match['key']}{match['sep']}{MASK}"
    return f"{match['key']}{match['qsep']}{MASK}"


def redact_text(text: str) -> str:
    """Mask URL userinfo, ``password=...``-style pairs and Authorization values in free text.

    Linear in ``len(text)`` (about 1 µs per 10 characters); callers logging untrusted text
    bound it first (`bound_text`).
    """
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _AUTHORIZATION.sub(_mask_authorization, text)
    return _mask_key_values(text)


def _redact_value(key: object, value: Any) -> Any:
    if isinstance(key, str) and key != "event" and SECRET_KEY.search(key) and value is not None:
        return MASK
    if isinstance(value, str):
        if key == "exception":  # a traceback: its end says what failed
            if len(value) > MAX_TRACEBACK_CHARS:
                cut = len(value) - MAX_TRACEBACK_CHARS
                value = f"[{cut} chars before]…{value[cut:]}"
            return redact_text(value)
        return redact_text(bound_text(value))
    if isinstance(value, Mapping):
        return {k: _redact_value(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(None, v) for v in value]
    return value


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Structlog processor: mask secrets in keys and in every string value."""
    for key, value in list(event_dict.items()):
        if key.startswith("_"):
            continue  # structlog's own bookkeeping (_record, _from_structlog)
        event_dict[key] = _redact_value(key, value)
    return event_dict


def _journal_stream_matches(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """True when ``stream`` is the journald stream systemd gave us ($JOURNAL_STREAM dev:ino)."""
    value = environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return stat.st_dev == int(dev) and stat.st_ino == int(ino)


class _PriorityPrefixed:
    """Wrap a renderer so each line starts with journald's ``<N>`` priority."""

    def __init__(self, renderer: Processor) -> None:
        self._renderer = renderer

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
        level = str(event_dict.get("level", method)).lower()
        rendered = self._renderer(logger, method, event_dict)
        text = rendered.decode() if isinstance(rendered, bytes) else str(rendered)
        return f"<{_SYSLOG_PRIORITY.get(level, 6)}>{text}"


class _RootLibraryFilter(logging.Filter):
    """pyasic logs through the *root* logger: name its records and hold them to the library level.

    Empty messages (pyasic emits some at debug) carry nothing and are dropped.
    """

    _PYASIC_DIR = f"{os.sep}pyasic{os.sep}"

    def __init__(self, library_level: int) -> None:
        super().__init__()
        self.library_level = library_level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "root" and self._PYASIC_DIR in record.pathname:
            record.name = "pyasic"
            if record.levelno < self.library_level:
                return False
        return record.msg != ""  # structlog's own records carry a dict here, never ""


def _show_warning(  # noqa: PLR0917 — warnings.showwarning's signature
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,  # noqa: ARG001 — always the log, never a file
    line: str | None = None,  # noqa: ARG001 — the source line is not logged
) -> None:
    """``warnings.showwarning``: own code's warnings at WARNING, libraries' at DEBUG."""
    own = os.path.abspath(filename).startswith(_OWN_CODE)  # noqa: PTH100 — a plain string test
    logging.getLogger("py.warnings").log(
        logging.WARNING if own else logging.DEBUG,
        "python_warning",
        extra={
            "category": category.__name__,
            "warning": str(message),
            "source": f"{filename}:{lineno}",
        },
    )


def _drop_color_message(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("color_message", None)  # uvicorn-style duplicates of the message
    return event_dict


def configure_logging(
    fmt: LogFormat = "auto",
    level: str = "info",
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Route structlog and stdlib logging to ``stream`` (stdout) as JSON or console lines.

    ``fmt="auto"`` renders for humans when ``stream`` is a TTY, JSON lines otherwise. Safe to
    call again (e.g. after a config reload): the previous handler is replaced.
    """
    out = stream if stream is not None else sys.stdout
    env: Mapping[str, str] = os.environ if environ is None else environ
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    is_tty = bool(getattr(out, "isatty", lambda: False)())
    console = fmt == "console" or (fmt == "auto" and is_tty)

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor
    if console:
        renderer = structlog.dev.ConsoleRenderer(colors=is_tty)
    else:
        renderer = structlog.processors.JSONRenderer()
        if _journal_stream_matches(out, env):
            renderer = _PriorityPrefixed(renderer)

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_color_message,
            # Plain-text tracebacks (no locals: a local may hold a secret), then redaction.
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
    )
    library_level = (
        numeric_level if numeric_level <= logging.DEBUG else max(numeric_level, logging.WARNING)
    )
    handler = logging.StreamHandler(out)
    handler.set_name(_ROOT_HANDLER_NAME)
    handler.setFormatter(formatter)
    handler.addFilter(_RootLibraryFilter(library_level))

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _ROOT_HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name in _QUIET_LIBRARIES:
        # Libraries speak at WARNING and above unless we debug.
        logging.getLogger(name).setLevel(library_level)
    for name in _SILENT_LIBRARIES:
        logging.getLogger(name).setLevel(max(library_level, logging.WARNING))
    warnings.showwarning = _show_warning

    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Calls below the level return at once (~1 µs) without building an event.
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        # Not cached: a SIGHUP reload may change the level, and loggers made at import time
        # must follow the configuration done later.
        cache_logger_on_first_use=False,
    )


def bind_context(values: MutableMapping[str, Any]) -> None:
    """Bind ``values`` to every log line of the current task (structlog contextvars)."""
    structlog.contextvars.bind_contextvars(**values)
