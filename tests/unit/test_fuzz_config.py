"""Fuzz config parsing: any YAML document is a valid AgentConfig or a clean ConfigError.

Documents come from three generators: structured documents shaped like the real config with
odd values in every slot (wrong types, NaN, huge numbers, unknown keys, YAML tags), mutations of
the shipped example config (lines dropped, duplicated, characters replaced), and arbitrary text.
Any other exception (TypeError, RecursionError, yaml's ConstructorError, ...) is a bug.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import AgentConfig, load_config, load_config_text
from agent.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "altiwatch.example.yaml"

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    st.sampled_from(
        ["", "0", "-1", "nan", ".inf", "1e999", "127.0.0.1", "::1", "10.0.0.0/8", "0.0.0.0:0"]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _section(keys: tuple[str, ...]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.fixed_dictionaries({}, optional=dict.fromkeys(keys, values)),
        values,
    )


SECTIONS = {
    "agent": ("id", "state_dir", "shutdown_grace_s", "log_format", "log_level", "bogus"),
    "polling": (
        "interval_s",
        "slow_interval_s",
        "timeout_s",
        "concurrency",
        "jitter_ratio",
        "stale_after_s",
        "backoff_max_s",
    ),
    "http": ("listen", "web_config_file"),
    "mqtt": ("enabled", "host", "port", "protocol", "username", "tls", "keepalive_s"),
    "thermal": ("enabled",),
}
site = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.sampled_from(["golmud", "xining", "a b", ""]), scalars),
        "altitude_m": values,
        "station_pressure_kpa": values,
    },
)
miner = st.fixed_dictionaries(
    {},
    optional={
        "address": st.one_of(st.sampled_from(["127.90.0.1", "host.lan", "999.1.1.1"]), scalars),
        "site": st.one_of(st.sampled_from(["golmud", "xining"]), scalars),
        "name": scalars,
        "model": scalars,
        "username": scalars,
        "password": scalars,
        # Secret references only to paths that cannot hold anything readable by accident.
        "password_file": st.sampled_from(["/nonexistent/pw", "/", "", "relative/pw"]),
        "password_credential": st.sampled_from(["mqtt_password", "../x", ""]),
    },
)
documents = st.fixed_dictionaries(
    {},
    optional={
        **{name: _section(keys) for name, keys in SECTIONS.items()},
        "sites": st.one_of(st.lists(site, max_size=3), values),
        "miners": st.one_of(st.lists(miner, max_size=3), values),
        "discovery": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {"cidr": st.one_of(st.sampled_from(["10.0.0.0/24", "0.0.0.0/0"]), scalars)},
                    optional={"site": scalars, "interval_s": scalars},
                ),
                max_size=2,
            ),
            values,
        ),
        "unknown_section": values,
    },
)


# No escape is tolerated any more: a recursive alias is a ConfigError since it was fixed.
KNOWN_ESCAPES: tuple[type[BaseException], ...] = ()


def _check(text: str, *, tolerate_known: bool = True) -> None:
    try:
        config = load_config_text(text, env={})
    except KNOWN_ESCAPES:
        if not tolerate_known:
            raise
        return
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("config error")
        assert "Traceback" not in message
        return
    assert isinstance(config, AgentConfig)
    assert config.sites
    assert 0 < config.polling.timeout_s < config.polling.interval_s
    assert math.isfinite(config.polling.interval_s)
    for _site, target in config.targets():
        assert target.address


@FUZZ
@given(document=documents)
def test_fuzz_config_structured_documents_load_or_raise_config_error(document: dict[str, Any]):
    """A config-shaped document with odd values is a valid config or a ConfigError."""
    _check(yaml.safe_dump(document, allow_unicode=True))


def _example_lines() -> list[str]:
    return EXAMPLE.read_text(encoding="utf-8").splitlines()


@st.composite
def mutated_example(draw: st.DrawFn) -> str:
    """The shipped example with a few lines dropped, duplicated or corrupted."""
    lines = _example_lines()
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "dup", "replace", "indent", "tag"]))
        if action == "drop":
            del lines[index]
        elif action == "dup":
            lines.insert(index, lines[index])
        elif action == "replace":
            line = lines[index]
            if line:
                at = draw(st.integers(0, len(line) - 1))
                char = draw(st.sampled_from([*":-[]{}&*!?|>'\"%@` \t#", "\x00", "é"]))
                lines[index] = line[:at] + char + line[at + 1 :]
        elif action == "indent":
            lines[index] = "  " + lines[index]
        else:
            tag = draw(st.sampled_from(["!!python/object:os.system", "!!binary", "&a", "*a", "!x"]))
            lines[index] = lines[index].replace(": ", f": {tag} ", 1)
        if not lines:
            break
    return "\n".join(lines) + "\n"


@FUZZ
@given(text=mutated_example())
def test_fuzz_config_mutated_example_loads_or_raises_config_error(text: str):
    """The example config with corrupted lines is a valid config or a ConfigError."""
    _check(text)


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=200),
        st.sampled_from(
            [
                "[" * 20,
                "{a: " * 20,
                "- " * 50,
                "a: &x [*x]\n",
                "? [a, b]\n: c\n",
                "sites: 2024-01-01\n",
                "sites:\n  - {name: a, altitude_m: 1}\nsites: []\n",
                "\ufeffsites: [{name: a, altitude_m: 1}]\n",
                "sites: [{name: a, altitude_m: .nan}]\n",
            ]
        ),
    )
)
def test_fuzz_config_arbitrary_text_loads_or_raises_config_error(text: str):
    """Arbitrary text (incl. deep nesting, aliases, tags) is a valid config or a ConfigError."""
    _check(text)


@pytest.mark.parametrize(
    "text",
    [
        "x: !!python/name:os.system\n",
        "sites: !custom x\n",
        "agent: {state_dir: !!binary not-base64}\n",
        "? [a, b]\n: c\n",
        "[" * 2000,
        "{a: " * 500,
        "- " * 1000,
    ],
)
def test_fuzz_config_yaml_tags_and_deep_nesting_are_config_errors(text: str):
    """Unknown YAML tags, unhashable keys and 1,000-deep nesting give a ConfigError."""
    _check(text, tolerate_known=False)


@pytest.mark.parametrize("text", ["0: &0 [*0]\n", "sites: &s [{name: a, altitude_m: 1, x: *s}]\n"])
def test_fuzz_config_recursive_alias_is_a_config_error(text: str):
    """A recursive alias (a list containing itself) gives a ConfigError."""
    _check(text, tolerate_known=False)


def test_fuzz_config_example_itself_is_valid(tmp_path):
    """The shipped example loads (the fuzzers' starting point is a valid document)."""
    config = load_config(EXAMPLE, env={})
    assert config.sites


def test_fuzz_config_non_utf8_file_is_a_config_error(tmp_path):
    """A file that is not UTF-8 is a ConfigError, not a UnicodeDecodeError."""
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"sites: [\xff\xfe]\n")
    try:
        load_config(path, env={})
    except ConfigError:
        return
    msg = "a non-UTF-8 file was accepted"
    raise AssertionError(msg)
