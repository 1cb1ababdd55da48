"""Identity text a miner reports, validated at the collector boundary before the agent sees it.

A miner's MAC, serial, hostname, model, firmware version, error messages and pool URLs end up
in Prometheus label values, MQTT topics and log lines. Whatever the device sends: a MAC is a
MAC (six octets, normalised to ``AA:BB:CC:DD:EE:FF``) or unknown; every other field loses its
control and invisible format characters (a NUL byte never reaches a label), is trimmed, and is
cut to a length no honest firmware exceeds (`LIMITS`); an empty result is unknown (None).

Example: ``clean_mac("a0-b1-c2-d3-e4-f5") == "A0:B1:C2:D3:E4:F5"``; a 30,000-character "MAC" is
None, with one ``miner_identity_field_invalid`` warning giving its length and escaped start.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Final, Literal

import structlog

log = structlog.get_logger(__name__)

Field = Literal["serial", "hostname", "model", "firmware_version", "error", "pool_url", "pool_user"]

LIMITS: Final[dict[Field, int]] = {
    "serial": 64,
    "hostname": 253,  # a DNS name
    "model": 64,
    "firmware_version": 128,
    "error": 256,
    "pool_url": 256,
    "pool_user": 128,
}
"""Longest value kept per field, in characters."""

_MAC_MAX_CHARS = 17
_MAC = re.compile(r"[0-9A-Fa-f]{2}(?:([:-]?)[0-9A-Fa-f]{2})(?:\1[0-9A-Fa-f]{2}){4}")
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def clean_mac(value: Any) -> str | None:
    """``value`` as ``AA:BB:CC:DD:EE:FF`` if it is a MAC (``:``, ``-`` or no separators)."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if len(text) > _MAC_MAX_CHARS or _MAC.fullmatch(text) is None:
        _rejected("mac", text)
        return None
    digits = re.sub(r"[:-]", "", text).upper()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def clean_text(value: Any, field: Field) -> str | None:
    """``value`` without control/format characters, trimmed, at most ``LIMITS[field]`` long."""
    if value is None:
        return None
    text = str(value)
    limit = LIMITS[field]
    cleaned = text
    if not text.isprintable():  # fast path: nothing to remove
        cleaned = "".join(
            c if unicodedata.category(c) not in _INVISIBLE else "" for c in text[: limit * 4]
        )
    cleaned = cleaned.strip()[:limit].strip()
    if cleaned != text.strip():
        _rejected(field, text)
    return cleaned or None


def _rejected(field: str, text: str) -> None:
    """One warning per rejected or cleaned value: its length and a short, escaped start."""
    log.warning(
        "miner_identity_field_invalid",
        field=field,
        length=len(text),
        start=ascii(text[:32]),
    )
