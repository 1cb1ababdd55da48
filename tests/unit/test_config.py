"""Specification of agent/config.py: loading, defaults, env overrides, secrets, errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agent.config import (
    AgentConfig,
    dump_effective,
    iter_secret_paths,
    load_config,
    load_config_text,
    parse_cidr,
    parse_listen,
)
from agent.errors import ConfigError

MINIMAL = """\
sites:
  - name: golmud
    altitude_m: 2800
miners:
  - address: 127.60.0.1
"""


def _load(text: str, env: dict[str, str] | None = None) -> AgentConfig:
    return load_config_text(textwrap.dedent(text), env=env or {})


def _error(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        _load(text, env)
    return str(info.value)


def test_config_minimal_gets_documented_defaults():
    """A file with one site and one miner gets every documented default."""
    config = _load(MINIMAL)
    assert config.polling.interval_s == 30
    assert config.polling.timeout_s == pytest.approx(24.0)
    assert config.polling.slow_interval_s == 300
    assert config.polling.concurrency == 200
    assert config.polling.stale_after_s == 600
    assert config.http.listen == "127.0.0.1:9847"
    assert (config.http.host, config.http.port) == ("127.0.0.1", 9847)
    assert config.agent.state_dir == Path("/var/lib/altiwatch")
    assert config.agent.shutdown_grace_s == 10
    assert config.agent.id
    assert config.miners[0].site == "golmud"


def test_config_timeout_defaults_to_four_fifths_of_interval():
    """Without timeout_s the per-poll deadline is 0.8 × interval_s."""
    config = _load(MINIMAL + "polling:\n  interval_s: 10\n")
    assert config.polling.timeout_s == pytest.approx(8.0)


def test_config_state_dir_defaults_to_systemd_state_directory():
    """$STATE_DIRECTORY (first entry) is the default state dir; an explicit one wins."""
    config = _load(MINIMAL, {"STATE_DIRECTORY": "/var/lib/private/altiwatch:/other"})
    assert config.agent.state_dir == Path("/var/lib/private/altiwatch")
    explicit = _load(MINIMAL + "agent:\n  state_dir: /srv/aw\n", {"STATE_DIRECTORY": "/x"})
    assert explicit.agent.state_dir == Path("/srv/aw")


def test_config_env_overrides_nested_keys_and_wins_over_yaml():
    """ALTIWATCH_<SECTION>__<KEY> overrides the YAML value; JSON works for lists."""
    env = {
        "ALTIWATCH_POLLING__INTERVAL_S": "60",
        "ALTIWATCH_HTTP__LISTEN": "127.60.0.9:9000",
        "ALTIWATCH_SITES": '[{"name": "xining", "altitude_m": 2275}]',
        "ALTIWATCH_MINERS": "[]",
        "UNRELATED": "1",
    }
    config = _load(MINIMAL + "polling:\n  interval_s: 20\n", env)
    assert config.polling.interval_s == 60
    assert config.polling.timeout_s == pytest.approx(48.0)
    assert config.http.port == 9000
    assert [s.name for s in config.sites] == ["xining"]


def test_config_env_error_names_the_variable():
    """A bad env override is reported with the variable it came from."""
    message = _error(MINIMAL, {"ALTIWATCH_POLLING__CONCURRENCY": "many"})
    assert "polling.concurrency (from ALTIWATCH_POLLING__CONCURRENCY)" in message


def test_config_error_names_field_and_line():
    """Validation errors name the dotted field and its YAML line."""
    message = _error(MINIMAL + "polling:\n  interval_s: 10\n  timeout_s: 12\n")
    assert message == (
        "config error: polling.timeout_s (line 8): must be less than polling.interval_s"
    )


def test_config_unknown_key_is_an_error_with_its_line():
    """Unknown keys are rejected (extra=forbid), at their line."""
    message = _error(MINIMAL + "    nmae: typo\n")
    assert "miners.0.nmae (line 6): unknown key" in message


def test_config_duplicate_yaml_key_is_an_error():
    """A key given twice in one mapping is an error rather than silently last-wins."""
    message = _error(MINIMAL + "polling:\n  interval_s: 10\n  interval_s: 20\n")
    assert "polling.interval_s (line 8): duplicate key" in message


def test_config_miner_site_must_exist_and_is_required_with_several_sites():
    """A miner's site must be configured; with several sites it must be given."""
    two_sites = """\
    sites:
      - {name: golmud, altitude_m: 2800}
      - {name: xining, altitude_m: 2275}
    miners:
      - {address: 127.60.0.1, site: lhasa}
      - {address: 127.60.0.2}
    """
    message = _error(two_sites)
    assert "miners.0.site (line 5): unknown site 'lhasa'" in message
    fixed = two_sites.replace("site: lhasa", "site: xining")
    assert "miners.1.site (line 6): required when more than one site" in _error(fixed)


def test_config_duplicate_miner_address_is_an_error():
    """Two miners with one address are refused, naming the second."""
    message = _error(MINIMAL + "  - address: 127.60.0.1\n")
    assert "miners.1.address (line 6): duplicate address 127.60.0.1" in message


def test_config_targets_pair_each_miner_with_its_site():
    """targets() gives (SiteConfig, MinerTarget) with name, model hint and credentials."""
    config = _load(
        MINIMAL
        + "    name: rig-1\n    model: S19j Pro\n    username: root\n    password: hunter2\n"
    )
    [(site, target)] = config.targets()
    assert site.name == "golmud"
    assert site.altitude_m == 2800
    assert target.address == "127.60.0.1"
    assert target.name == "rig-1"
    assert target.model_hint == "S19j Pro"
    assert target.credentials is not None
    assert target.credentials.username == "root"
    assert target.credentials.password is not None
    assert target.credentials.password.get_secret_value() == "hunter2"


def test_config_password_file_is_read_as_secret(tmp_path):
    """password_file is read at load time into a SecretStr, newline stripped."""
    secret = tmp_path / "pw"
    secret.write_text("s3cr3t-file\n")
    config = _load(MINIMAL + f"    password_file: {secret}\n")
    password = config.miners[0].password
    assert password is not None
    assert password.get_secret_value() == "s3cr3t-file"
    assert list(iter_secret_paths(config)) == ["miners.0.password"]


def test_config_credential_is_read_from_credentials_directory(tmp_path):
    """<name>_credential reads $CREDENTIALS_DIRECTORY/<credential> (systemd LoadCredential)."""
    (tmp_path / "miner_pw").write_text("from-systemd")
    config = _load(
        MINIMAL + "    password_credential: miner_pw\n",
        {"CREDENTIALS_DIRECTORY": str(tmp_path)},
    )
    password = config.miners[0].password
    assert password is not None
    assert password.get_secret_value() == "from-systemd"


def test_config_credential_without_credentials_directory_is_an_error():
    """A *_credential outside systemd (no $CREDENTIALS_DIRECTORY) is a config error."""
    message = _error(MINIMAL + "    password_credential: miner_pw\n")
    assert "miners.0.password_credential (line 6): no $CREDENTIALS_DIRECTORY" in message


def test_config_mqtt_password_defaults_to_systemd_credential(tmp_path):
    """With a username and no password, mqtt.password comes from the mqtt_password credential."""
    (tmp_path / "mqtt_password").write_text("broker-pw\n")
    config = _load(
        MINIMAL + "mqtt:\n  enabled: true\n  username: aw\n",
        {"CREDENTIALS_DIRECTORY": str(tmp_path)},
    )
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "broker-pw"


def test_config_missing_secret_file_names_field():
    """An unreadable secret file is a config error naming the field and line."""
    message = _error(MINIMAL + "    password_file: /nonexistent/altiwatch/pw\n")
    assert "miners.0.password_file (line 6): cannot read secret file" in message


def test_config_effective_dump_masks_secrets(tmp_path):
    """The effective YAML shows secrets as ********** and never their value."""
    config = _load(MINIMAL + "    password: hunter2\n")
    text = dump_effective(config)
    assert "hunter2" not in text
    assert "password: '**********'" in text
    assert load_config_text(text, env={}).polling == config.polling


def test_config_yaml_syntax_error_has_line():
    """A YAML syntax error is a ConfigError with its line."""
    message = _error("sites:\n  - name: a\n    altitude_m: [1,\n")
    assert message.startswith("config error: <config> (line 4): YAML syntax error: ")


def test_config_unreadable_file_is_config_error(tmp_path):
    """A missing config file is a ConfigError, not an OSError."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml", env={})


def test_config_example_file_loads():
    """deploy/altiwatch.example.yaml is a valid config."""
    example = Path(__file__).parents[2] / "deploy" / "altiwatch.example.yaml"
    config = load_config(example, env={})
    assert any(site.altitude_m > 2000 for site in config.sites)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("127.0.0.1:9847", True),
        ("0.0.0.0:80", True),
        ("[::1]:9847", True),
        ("localhost:9847", True),
        ("127.0.0.1", False),
        ("127.0.0.1:65536", False),
        ("example.com:80", False),
        ("[127.0.0.1]:80", False),
    ],
)
def test_config_parse_listen(value, ok):
    """Listen addresses are host:port with an IP literal, [IPv6] or localhost."""
    if ok:
        parse_listen(value)
    else:
        with pytest.raises(ValueError):
            parse_listen(value)


def test_config_parse_cidr_refuses_ranges_larger_than_slash_16():
    """A /16 is allowed; a /15 or a typo is refused."""
    assert parse_cidr("10.1.0.0/16").num_addresses == 65536
    assert str(parse_cidr("10.1.2.3/24")) == "10.1.2.0/24"
    with pytest.raises(ValueError, match="at most a /16"):
        parse_cidr("10.0.0.0/15")
    with pytest.raises(ValueError, match="not a valid CIDR"):
        parse_cidr("10.0.0.0/33")


def test_config_thermal_site_must_be_configured():
    """thermal.sites entries must name a configured site."""
    message = _error(MINIMAL + "thermal:\n  sites:\n    - name: lhasa\n")
    assert "thermal.sites.0.name (line 8): unknown site 'lhasa'" in message


def _laughs(levels: int, width: int = 9) -> str:
    lines = ["a0: &a0 [lol]"]
    for level in range(1, levels + 1):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\nsites: [{name: a, altitude_m: 1}]\n"


def test_load_config_refuses_aliases_that_expand_past_the_budget():
    """Nested aliases (a "billion laughs") are refused at once, naming aliases, not expanded."""
    with pytest.raises(ConfigError, match="YAML aliases expand the document"):
        load_config_text(_laughs(6))  # 9**6 = 531,441 leaves from a 10-line file


def test_load_config_billion_laughs_is_refused_without_expanding_it():
    """The issue's 9-level bomb (387 million nodes) is refused within its own small size's work."""
    with pytest.raises(ConfigError, match="YAML aliases expand the document"):
        load_config_text(_laughs(9))


def test_load_config_still_accepts_modest_anchors_and_aliases():
    """An anchor reused a few times (shared settings) is fine."""
    text = (
        "sites: [{name: a, altitude_m: 1}]\n"
        "miners:\n"
        "  - &m {address: 10.0.0.1, username: root}\n"
        "  - {<<: *m, address: 10.0.0.2}\n"
    )
    assert len(load_config_text(text).miners) == 2


def test_warn_cleartext_passwords_names_basic_auth_and_mqtt_without_tls(tmp_path):
    """Basic auth or an MQTT password without TLS, off loopback: one warning each; on loopback none."""
    from structlog.testing import capture_logs  # noqa: PLC0415 - this test only

    from agent.service import warn_cleartext_passwords  # noqa: PLC0415 - pulls in the service

    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  p: '$2y$04$" + "a" * 53 + "'\n")
    web.chmod(0o600)
    exposed = (
        "sites: [{name: a, altitude_m: 1}]\n"
        f"http: {{listen: '0.0.0.0:9847', web_config_file: {web}}}\n"
        "mqtt: {enabled: true, host: broker.site.lan, username: u, password: pw}\n"
    )
    local = exposed.replace("0.0.0.0", "127.0.0.1").replace("broker.site.lan", "localhost")  # noqa: S104 - parsed, never bound
    with capture_logs() as logs:
        warn_cleartext_passwords(load_config_text(exposed, env={}))
    assert [e["event"] for e in logs] == [
        "http_basic_auth_without_tls",
        "mqtt_password_without_tls",
    ]
    assert "pw" not in repr(logs)
    with capture_logs() as logs:
        warn_cleartext_passwords(load_config_text(local, env={}))
    assert logs == []
