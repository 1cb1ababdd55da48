"""Identity fields from a miner, validated at the collector boundary (collectors/identity.py)."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from collectors.identity import LIMITS, clean_mac, clean_text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("02:a1:00:00:00:01", "02:A1:00:00:00:01"),
        ("02-A1-00-00-00-01", "02:A1:00:00:00:01"),
        ("02a100000001", "02:A1:00:00:00:01"),
        (" 02:A1:00:00:00:01 ", "02:A1:00:00:00:01"),
        ("02:A1-00:00:00:01", None),
        ("02:A1:00:00:00", None),
        ("02:A1:00:00:00:01:02", None),
        ("02:A1:00:00:00:0G", None),
        ("02:A1:00:00:00:01\x00", None),
        ("A" * 30_000, None),
        ("", None),
        (None, None),
    ],
)
def test_identity_clean_mac_accepts_only_a_mac(value, expected):
    """A MAC in any usual spelling is normalised; anything else is unknown."""
    assert clean_mac(value) == expected


def test_identity_clean_text_removes_control_characters_and_caps_length():
    """NUL and other control or format characters go, the value is trimmed and cut to its limit."""
    assert clean_text("s19\x00-00\u200b01\n", "hostname") == "s19-0001"
    assert clean_text("SN" + "x" * 100_000, "serial") == "SN" + "x" * (LIMITS["serial"] - 2)
    assert clean_text("\x00\x01 ", "serial") is None
    assert clean_text("Antminer S19j Pro", "model") == "Antminer S19j Pro"


def test_identity_rejected_value_is_logged_bounded():
    """A rejected value is logged once with its length and a short escaped start, not in full."""
    with capture_logs() as logs:
        assert clean_mac("\x00" + "A" * 70_000) is None
        assert clean_text("ok", "serial") == "ok"
    assert len(logs) == 1
    assert logs[0]["event"] == "miner_identity_field_invalid"
    assert logs[0]["length"] == 70_001
    assert len(logs[0]["start"]) < 200
