"""The agent's configuration: pydantic models for every section and ``load_config()``.

Sources, later ones winning:

1. the YAML file (one file; unknown keys are errors);
2. environment overrides ``ALTIWATCH_<SECTION>__<KEY>`` (e.g. ``ALTIWATCH_POLLING__INTERVAL_S=60``;
   lists and mappings as JSON, e.g. ``ALTIWATCH_SITES='[{"name": "a", "altitude_m": 10}]'``),
   parsed by pydantic-settings;
3. secrets, read at load time and kept as ``SecretStr``: ``<name>_file: /path`` reads the secret
   ``<name>`` from a file (for keys named like password/secret/token; the ``_file`` key is
   consumed, so the effective config shows the masked secret), and
   ``<name>_credential: cred`` reads it from the systemd credential ``$CREDENTIALS_DIRECTORY/cred``
   (``LoadCredential=``). ``mqtt.password`` defaults to the credential ``mqtt_password`` when the
   unit loads one.

Every problem becomes a ``ConfigError`` naming the dotted field and the YAML line::

    config error: polling.timeout_s (line 12): must be less than polling.interval_s
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self, cast

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource

from agent.alarms.config import PoolAlarmSettings, SitePools, ThermalSettings
from agent.errors import ConfigError, ConfigProblem
from agent.event_loop import EventLoop
from agent.location import Location, check_pattern
from agent.logging_setup import LogFormat, LogLevel
from agent.mqtt.config import MqttSettings
from agent.shard import owns
from collectors.snapshot import Cooling
from collectors.source import Credentials, MinerTarget

if TYPE_CHECKING:
    from collections.abc import Iterator

ENV_PREFIX = "ALTIWATCH_"
ENV_DELIMITER = "__"
DEFAULT_STATE_DIR = Path("/var/lib/altiwatch")
DEFAULT_LISTEN = "127.0.0.1:9847"
MAX_DISCOVERY_ADDRESSES = 65_536  # a /16: larger scans take too long and smell like a typo
MASK = "**********"
MAX_ALIAS_EXPANSION = 100_000
"""Nodes YAML aliases may add to a config by expansion (anchors for shared settings: plenty)."""
# libyaml's parser when PyYAML has it (10× faster on a 10,000-miner file); same node tree.
_FAST_LOADER: type[yaml.SafeLoader | yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # safe in labels, MQTT topics and client ids
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_SECRET_FILE_KEY = re.compile(r"^(?P<name>\w*(password|secret|token))_file$")
_CREDENTIAL_KEY = re.compile(r"^(?P<name>\w+)_credential$")


class FieldError(ValueError):
    """A cross-field check failed on a specific field (``loc`` relative to the model)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        """Remember the field the message is about."""
        super().__init__(message)
        self.loc = loc
        self.message = message


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _default_agent_id() -> str:
    name = socket.gethostname().split(".")[0] or "altiwatch"
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:64]


class ShardSettings(_Section):
    """``agent.shard:`` — this agent polls one shard of its site(s), as Prometheus ``hashmod``.

    Every configured or discovered miner address belongs to shard ``hashmod(address, count)``
    (``agent.shard``); the agent polls only those of shard ``index``. Run ``count`` agents with
    indexes 0..count-1 and the same ``sites:`` to cover a site; they keep the same ``site`` label.
    """

    index: int = Field(ge=0, description="this agent's shard, 0 .. count-1")
    count: int = Field(
        ge=1, le=1024, description="how many agents share the site(s); 1 means no sharding"
    )

    @model_validator(mode="after")
    def _index_below_count(self) -> Self:
        if self.index >= self.count:
            raise FieldError(("index",), "must be less than agent.shard.count")
        return self

    def owns(self, address: str) -> bool:
        """True when this shard polls ``address``."""
        return owns(address, self.index, self.count)


class AgentSection(_Section):
    """``agent:`` — who this agent is and where it keeps state."""

    id: str = Field(
        default_factory=_default_agent_id,
        pattern=_NAME,
        description="Stable agent id: the MQTT client id (`altiwatch-<id>`) and the agent status "
        "topic. Default: the host name.",
    )
    state_dir: Path = Field(
        default=DEFAULT_STATE_DIR,
        description="Alarm state (`alarms.sqlite3`) and the MQTT outbox. Default: systemd's "
        "`$STATE_DIRECTORY` when set, else `/var/lib/altiwatch`.",
    )
    shutdown_grace_s: float = Field(
        default=10.0, gt=0, le=300, description="Seconds allowed for a clean stop."
    )
    log_format: LogFormat = Field(
        default="auto",
        description="`auto` (console on a TTY, JSON lines otherwise), `json` or `console`.",
    )
    log_level: LogLevel = Field(default="info", description="Lowest level logged.")
    event_loop: EventLoop = Field(
        default="uvloop",
        description="Event loop of the agent and its HTTP front: `uvloop` (less CPU per poll) or "
        "`asyncio` (the standard library's); the logs `agent_ready` and `http_front_serving` "
        "say which one runs.",
    )
    shard: ShardSettings | None = Field(
        default=None,
        description="Poll only the miners of one shard (`{index, count}`), assigned as "
        "Prometheus `hashmod` over the miner address; unset: every miner.",
    )


class SiteConfig(_Section):
    """One mine site: its name, altitude and optional station-pressure source."""

    name: str = Field(pattern=_NAME, description="Site name, used in labels and MQTT topics.")
    altitude_m: float = Field(
        ge=-500, le=6000, description="Site altitude; drives δ and every derated threshold."
    )
    station_pressure_kpa: float | None = Field(
        default=None,
        gt=30,
        le=110,
        description="Measured station pressure (QFE); used when within ±5 % of ISA for the "
        "altitude, else R9 warns.",
    )
    pressure_file: Path | None = Field(
        default=None,
        description="File holding the current station pressure in kPa (its first number, "
        "30-110), re-read every 60 s; unreadable: ISA pressure for the altitude.",
    )
    pools: SitePools = Field(
        default_factory=SitePools,
        description="Pools the site's miners may mine on (allow-list for rule R14).",
    )
    location_pattern: str | None = Field(
        default=None,
        description="Miner locations spelled by their addresses: placeholders `{container}`, "
        "`{rack}`, `{shelf}`, `{slot}` each match one address segment, e.g. "
        "`10.28.{rack}.{slot}`; lowest precedence (after `miners[].location` and the "
        "inventory CSV).",
    )
    inventory_csv: Path | None = Field(
        default=None,
        description="Inventory CSV of the site's miners, read at start and on reload: a header "
        "row naming `address` and/or `mac`, then any of `name`, `container`, `rack`, `shelf`, "
        "`slot`; a row matched by MAC wins over one matched by address.",
    )

    @field_validator("location_pattern")
    @classmethod
    def _valid_pattern(cls, value: str | None) -> str | None:
        return None if value is None else check_pattern(value)


def _check_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        if _HOSTNAME.match(value) and not value.replace(".", "").isdigit():
            return value.lower()
    msg = f"not an IP address or host name: {value!r}"
    raise ValueError(msg)


class MinerConfig(_Section):
    """One statically configured miner."""

    address: str = Field(description="IP address or host name (resolved at each detection).")
    site: str | None = Field(
        default=None,
        description="Site the miner belongs to. Default: the only site; required when there "
        "are several.",
    )
    name: str | None = Field(
        default=None,
        pattern=_NAME,
        description="Display name, shown before the MAC wherever the miner is named for "
        "people; also its id when it reports neither MAC nor serial.",
    )
    location: Location | None = Field(
        default=None,
        description="Where the miner stands: `{container, rack, shelf, slot}`, free-form "
        "strings, each optional; wins field by field over the site's inventory CSV and "
        "`location_pattern`.",
    )
    model: str | None = Field(
        default=None,
        description="Model hint, skips detection: `S19j Pro`, `M30S+ VE40`, `BM1366`, or with "
        "a firmware prefix `vnish:Antminer S19j Pro`, `braiins:S19j Pro`, `luxos:Antminer S19 XP`, "
        "`whatsminer-v3:M60S_VK30` (Whatsminer API v3 on 4433).",
    )
    cooling: Literal["air", "hydro", "immersion"] | None = Field(
        default=None,
        description="How the miner is cooled, when its model and fan mode do not say (e.g. an "
        "air-cooled model in an immersion tank). Default: hydro for Hydro models, immersion "
        "for Braiins OS+ in immersion fan mode, else air.",
    )
    username: str | None = Field(
        default=None,
        description="Web/API user for this miner, set on its own client. Default: pyasic's.",
    )
    password: SecretStr | None = Field(
        default=None,
        description="Web/API password for this miner (or `password_file: PATH`, "
        "`password_credential: NAME`). Default: pyasic's.",
    )

    @field_validator("address")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        return _check_address(value)


class DiscoveryConfig(_Section):
    """A CIDR range scanned periodically for miners."""

    cidr: str = Field(description="Range scanned for miners, at most a /16.")
    site: str | None = Field(
        default=None,
        description="Site of the miners found. Default: the only site; required when there are "
        "several.",
    )
    interval_s: float = Field(default=3600.0, ge=10, description="Seconds between scans.")

    @field_validator("cidr")
    @classmethod
    def _valid_cidr(cls, value: str) -> str:
        return str(parse_cidr(value))


def parse_cidr(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parse a CIDR range, refusing ranges larger than a /16 (65,536 addresses)."""
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        msg = f"not a valid CIDR range: {value!r}"
        raise ValueError(msg) from exc
    if network.num_addresses > MAX_DISCOVERY_ADDRESSES:
        msg = f"range {network} has {network.num_addresses} addresses; at most a /16 is allowed"
        raise ValueError(msg)
    return network


class PollingSettings(_Section):
    """``polling:`` — how often and how hard miners are polled."""

    interval_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Fast tier: hashrate, boards, temperatures, fans, power, uptime.",
    )
    slow_interval_s: float = Field(
        default=300.0,
        gt=0,
        le=86400,
        description="Slow tier: identity, pools, errors, firmware. At least `interval_s`.",
    )
    timeout_s: float = Field(
        default=24.0,
        gt=0,
        description="Per-poll deadline; must be less than `interval_s`. Default: "
        "0.8 × `interval_s`.",
    )
    concurrency: int = Field(
        default=200, ge=1, le=10_000, description="Polls in flight at once, for the whole agent."
    )
    jitter_ratio: float = Field(
        default=0.1, ge=0, le=0.5, description="Per-slot jitter as a share of the interval."
    )
    stale_after_s: float = Field(
        default=600.0, gt=0, description="A miner gone this long loses its series."
    )
    backoff_max_s: float = Field(
        default=300.0, gt=0, description="Cap of the retry backoff for unreachable miners."
    )
    pyasic_tuning: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="`auto`: the CPU savings and read caps of `collectors/pyasic_tuning.py` "
        "apply only to pyasic 0.79.0, the release they were written for (another release runs "
        "as released, logged once as `pyasic_tuning_disabled`); `on` always; `off` never.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_timeout(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("timeout_s") is None:
            try:
                interval = float(data.get("interval_s", 30.0))
            except (TypeError, ValueError):
                return data  # the field validator reports the bad interval
            if math.isfinite(interval) and interval > 0:
                data = {**data, "timeout_s": round(0.8 * interval, 3)}
        return data

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> Self:
        if self.timeout_s >= self.interval_s:
            raise FieldError(("timeout_s",), "must be less than polling.interval_s")
        if self.slow_interval_s < self.interval_s:
            raise FieldError(("slow_interval_s",), "must be at least polling.interval_s")
        return self


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``host:port`` / ``[v6]:port`` into an IP literal (or ``localhost``) and a port."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        msg = f"expected host:port, got {value!r}"
        raise ValueError(msg)
    port = int(port_text)
    if port > 65535:  # noqa: PLR2004 - the TCP port range
        msg = f"port {port} out of range"
        raise ValueError(msg)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not isinstance(_ip_or_none(host), ipaddress.IPv6Address):
            msg = f"not an IPv6 address: {host!r}"
            raise ValueError(msg)
    elif host != "localhost" and not isinstance(_ip_or_none(host), ipaddress.IPv4Address):
        msg = f"host must be an IPv4 address, [IPv6] or localhost, got {host!r}"
        raise ValueError(msg)
    return host, port


def _ip_or_none(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class HttpSettings(_Section):
    """``http:`` — where /metrics and the JSON API listen."""

    listen: str = Field(
        default=DEFAULT_LISTEN,
        description="`host:port` of `/metrics`, `/healthz`, `/readyz` and `/api/v1/*` (host: an "
        "IPv4 address, `[IPv6]` or `localhost`).",
    )
    web_config_file: Path | None = Field(
        default=None,
        description="Prometheus exporter-toolkit `web-config.yml`: TLS (incl. client "
        "certificates) and bcrypt basic auth.",
    )
    max_connections: int = Field(
        default=256,
        ge=1,
        le=10_000,
        description="Open connections to the port, all clients together; when all are taken, a "
        "new one displaces the connection that has waited longest for a request.",
    )
    max_connections_per_client: int = Field(
        default=32,
        ge=1,
        le=10_000,
        description="Open connections from one client (an IPv4 address or an IPv6 /64); more "
        "are closed at once. Behind a reverse proxy, every client is the proxy.",
    )

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @property
    def host(self) -> str:
        """The address to bind."""
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        """The TCP port to bind (0 = any free port)."""
        return parse_listen(self.listen)[1]


class AgentConfig(_Section):
    """The whole agent configuration (one YAML file)."""

    agent: AgentSection = Field(
        default=AgentSection(), description="Who this agent is and where it keeps state."
    )
    sites: list[SiteConfig] = Field(min_length=1, description="The mine sites this agent watches.")
    miners: list[MinerConfig] = Field(default=[], description="Statically configured miners.")
    discovery: list[DiscoveryConfig] = Field(
        default=[],
        description="Ranges scanned for miners; those found are polled like configured ones.",
    )
    polling: PollingSettings = Field(
        default=PollingSettings(), description="How often and how hard miners are polled."
    )
    http: HttpSettings = Field(
        default=HttpSettings(), description="Where `/metrics` and the JSON API listen."
    )
    mqtt: MqttSettings = Field(
        default=MqttSettings(), description="MQTT events: broker, TLS, topics, outbox."
    )
    thermal: ThermalSettings = Field(
        default=ThermalSettings(), description="The altitude-aware thermal alarm engine."
    )
    pool_alarms: PoolAlarmSettings = Field(
        default_factory=PoolAlarmSettings,
        description="Timing and thresholds of the pool rules R12 (share health), R13 (failover).",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_site(cls, data: Any) -> Any:
        """Give miners and discovery ranges without a site the only configured site."""
        if not isinstance(data, dict):
            return data
        sites = data.get("sites")
        if not (isinstance(sites, list) and len(sites) == 1 and isinstance(sites[0], dict)):
            return data
        only = sites[0].get("name")
        data = dict(data)
        for section in ("miners", "discovery"):
            items = data.get(section)
            if isinstance(items, list):
                data[section] = [
                    {**item, "site": only}
                    if isinstance(item, dict) and item.get("site") is None
                    else item
                    for item in items
                ]
        return data

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        names = [site.name for site in self.sites]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise FieldError(("sites", index, "name"), f"duplicate site name {name!r}")
        self._check_site_references(names)
        seen: dict[str, int] = {}
        for index, miner in enumerate(self.miners):
            if miner.address in seen:
                msg = f"duplicate address {miner.address} (also miners.{seen[miner.address]})"
                raise FieldError(("miners", index, "address"), msg)
            seen[miner.address] = index
        return self

    def _check_site_references(self, names: list[str]) -> None:
        """Every miner, discovery range and thermal site entry names a configured site."""
        configured = ", ".join(names)
        placed: list[tuple[str, Sequence[MinerConfig | DiscoveryConfig]]] = [
            ("miners", self.miners),
            ("discovery", self.discovery),
        ]
        for section, items in placed:
            for index, item in enumerate(items):
                if item.site is None:
                    msg = "required when more than one site is configured"
                    raise FieldError((section, index, "site"), msg)
                if item.site not in names:
                    msg = f"unknown site {item.site!r} (configured: {configured})"
                    raise FieldError((section, index, "site"), msg)
        # thermal.sites belongs to the alarm engine's settings; read defensively.
        for index, thermal_site in enumerate(getattr(self.thermal, "sites", ())):
            thermal_name = getattr(thermal_site, "name", None)
            if thermal_name is not None and thermal_name not in names:
                msg = f"unknown site {thermal_name!r} (configured: {configured})"
                raise FieldError(("thermal", "sites", index, "name"), msg)

    def site(self, name: str) -> SiteConfig:
        """Return the site called ``name`` (KeyError if there is none)."""
        for site in self.sites:
            if site.name == name:
                return site
        raise KeyError(name)

    def owns(self, address: str) -> bool:
        """True when this agent polls ``address`` (always, unless ``agent.shard`` is set)."""
        return self.agent.shard is None or self.agent.shard.owns(address)

    def targets(self) -> list[tuple[SiteConfig, MinerTarget]]:
        """This agent's statically configured miners (its shard's) as (site, target) pairs."""
        result: list[tuple[SiteConfig, MinerTarget]] = []
        for miner in self.miners:
            if not self.owns(miner.address):
                continue
            credentials = None
            if miner.username is not None or miner.password is not None:
                credentials = Credentials(username=miner.username, password=miner.password)
            target = MinerTarget(
                address=miner.address,
                name=miner.name,
                model_hint=miner.model,
                credentials=credentials,
                cooling=None if miner.cooling is None else Cooling(miner.cooling),
            )
            result.append((self.site(miner.site or self.sites[0].name), target))
        return result


# --------------------------------------------------------------------------- loading


def load_config(path: Path, *, env: Mapping[str, str] | None = None) -> AgentConfig:
    """Read, override, resolve secrets and validate the config at ``path``.

    ``env`` defaults to ``os.environ``; it supplies ``ALTIWATCH_*`` overrides,
    ``STATE_DIRECTORY`` and ``CREDENTIALS_DIRECTORY``. Raises ``ConfigError``.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"cannot read {path}: {exc.strerror if isinstance(exc, OSError) else exc}"
        raise ConfigError(msg) from None
    return load_config_text(text, env=environ, origin=str(path))


def load_config_text(
    text: str, *, env: Mapping[str, str] | None = None, origin: str = "<config>"
) -> AgentConfig:
    """Like ``load_config`` for YAML text already in memory."""
    try:
        return _load_text(text, env=env, origin=origin)
    except RecursionError:
        # A recursive alias (``a: &x [*x]``) or absurd nesting: not a config anyone meant.
        problem = ConfigProblem(origin, "YAML nesting too deep (or an alias that contains itself)")
        raise ConfigError(problem) from None


def _load_text(text: str, *, env: Mapping[str, str] | None, origin: str) -> AgentConfig:
    environ: Mapping[str, str] = os.environ if env is None else env
    root = _compose(text, origin)
    data: Any = {} if root is None else _construct(root, origin)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        line = root.start_mark.line + 1 if root is not None else None
        raise ConfigError(
            ConfigProblem(origin, "the top level must be a mapping of sections", line)
        )
    overrides, env_paths = _env_overrides(environ)
    data = _deep_merge(data, overrides)
    _apply_state_directory(data, environ)
    data = _resolve_secrets(data, environ, root, env_paths)
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(error, root, env_paths) for error in exc.errors(include_url=False)]
        raise ConfigError(problems) from None


def dump_effective(config: AgentConfig) -> str:
    """The effective config as YAML, secrets masked as ``**********``."""
    data = config.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _construct(root: yaml.Node, origin: str) -> Any:
    """Python data from the composed node tree (parsed once, constructed safely)."""
    try:
        return yaml.SafeLoader("").construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError(ConfigProblem(origin, f"YAML error: {what}", line)) from None


def _compose(text: str, origin: str) -> yaml.Node | None:
    try:
        root = yaml.compose(text, Loader=_FAST_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError(ConfigProblem(origin, f"YAML syntax error: {what}", line)) from None
    except yaml.YAMLError as exc:
        msg = f"YAML error in {origin}: {exc}"
        raise ConfigError(msg) from None
    if root is not None:
        _check_alias_expansion(root, origin)
        _check_duplicate_keys(root, ())
    return root


def _check_alias_expansion(root: yaml.Node, origin: str) -> None:
    """Refuse aliases that expand far beyond the file (a "billion laughs" of nested aliases).

    Every later step (duplicate keys, secrets, validation) walks the document as expanded, so a
    475-byte file of nested aliases took 23 s and 488 MB. Here each distinct node is visited
    once (sizes memoised), so the check is linear in the file whatever the aliases.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            msg = "a YAML alias that contains itself"
            raise ConfigError(ConfigProblem(origin, msg, node.start_mark.line + 1))
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        open_nodes.discard(key)
        sizes[key] = total
        return total

    expanded = size(root)
    if expanded > len(sizes) + MAX_ALIAS_EXPANSION:
        msg = (
            f"YAML aliases expand the document to {expanded:,} nodes from {len(sizes):,} "
            f"(at most {MAX_ALIAS_EXPANSION:,} more are allowed)"
        )
        raise ConfigError(ConfigProblem(origin, msg))


def _check_duplicate_keys(node: yaml.Node, path: tuple[str | int, ...]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            if name in seen:
                dotted = ".".join(str(p) for p in (*path, name))
                msg = "duplicate key (the earlier value would be silently ignored)"
                raise ConfigError(ConfigProblem(dotted, msg, key.start_mark.line + 1))
            seen.add(name)
            _check_duplicate_keys(value, (*path, name))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_duplicate_keys(item, (*path, index))


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' env source reading a given mapping instead of ``os.environ``."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(
            cast("type[BaseSettings]", AgentConfig),
            case_sensitive=False,
            env_prefix=ENV_PREFIX,
            env_nested_delimiter=ENV_DELIMITER,
        )

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in self._environ.items()}


def _env_overrides(
    environ: Mapping[str, str],
) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """Return (nested overrides, {dotted path of each override: env var name})."""
    relevant = {k: v for k, v in environ.items() if k.upper().startswith(ENV_PREFIX)}
    if not relevant:
        return {}, {}
    paths = {
        tuple(part.lower() for part in name[len(ENV_PREFIX) :].split(ENV_DELIMITER)): name
        for name in relevant
    }
    try:
        overrides = _MappingEnvSource(relevant)()
    except ValueError as exc:  # pydantic-settings' SettingsError (bad JSON in a complex value)
        msg = f"environment override: {exc}"
        raise ConfigError(msg) from None
    return overrides, paths


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _apply_state_directory(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Default ``agent.state_dir`` to systemd's ``$STATE_DIRECTORY`` (first entry)."""
    state_directory = environ.get("STATE_DIRECTORY")
    agent = data.get("agent")
    if not state_directory or (isinstance(agent, dict) and "state_dir" in agent):
        return
    if agent is None:
        data["agent"] = agent = {}
    if isinstance(agent, dict):
        agent["state_dir"] = state_directory.split(":")[0]


def _resolve_secrets(
    data: dict[str, Any],
    environ: Mapping[str, str],
    root: yaml.Node | None,
    env_paths: Mapping[tuple[str, ...], str],
) -> dict[str, Any]:
    """Read ``*_file`` and ``*_credential`` secrets into their fields (on a copy of ``data``)."""
    resolver = _SecretResolver(environ.get("CREDENTIALS_DIRECTORY"), root, env_paths)
    resolved = cast("dict[str, Any]", resolver.walk(data, ()))
    resolver.default_mqtt_password(resolved)
    if resolver.problems:
        raise ConfigError(resolver.problems)
    return resolved


class _SecretResolver:
    """Walks the raw config, replacing secret references by the secrets they name."""

    def __init__(
        self,
        credentials_dir: str | None,
        root: yaml.Node | None,
        env_paths: Mapping[tuple[str, ...], str],
    ) -> None:
        self.credentials_dir = Path(credentials_dir) if credentials_dir else None
        self.root = root
        self.env_paths = env_paths
        self.problems: list[ConfigProblem] = []

    def complain(self, path: tuple[str | int, ...], message: str) -> None:
        self.problems.append(_locate(path, message, self.root, self.env_paths))

    def read(self, file: Path, path: tuple[str | int, ...], what: str) -> str | None:
        try:
            return file.read_text(encoding="utf-8").strip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.complain(path, f"cannot read {what} {file}: {reason}")
            return None

    def walk(self, node: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(node, list):
            return [self.walk(item, (*path, index)) for index, item in enumerate(node)]
        if not isinstance(node, dict):
            return node
        result = {key: self.walk(value, (*path, key)) for key, value in node.items()}
        for key, value in node.items():
            if not isinstance(key, str) or value is None:
                continue
            if match := _SECRET_FILE_KEY.match(key):
                del result[key]  # consumed here; the models only hold the secret itself
                self.resolve(result, path, key, match["name"], Path(str(value)), "secret file")
            elif match := _CREDENTIAL_KEY.match(key):
                del result[key]
                if self.credentials_dir is None:
                    msg = "no $CREDENTIALS_DIRECTORY (load it with LoadCredential= in the unit)"
                    self.complain((*path, key), msg)
                    continue
                file = self.credentials_dir / str(value)
                self.resolve(result, path, key, match["name"], file, "credential")
        return result

    def resolve(  # noqa: PLR0917 - a private helper, called twice with everything positional
        self,
        mapping: dict[str, Any],
        path: tuple[str | int, ...],
        key: str,
        name: str,
        file: Path,
        what: str,
    ) -> None:
        if mapping.get(name) is not None:
            self.complain((*path, key), f"set {name} or {key}, not both")
            return
        secret = self.read(file, (*path, key), what)
        if secret is not None:
            mapping[name] = secret

    def default_mqtt_password(self, data: dict[str, Any]) -> None:
        """Use the credential ``mqtt_password`` when a username but no password is configured."""
        mqtt = data.get("mqtt")
        if (
            self.credentials_dir is None
            or not isinstance(mqtt, dict)
            or "password" not in MqttSettings.model_fields
            or mqtt.get("username") is None
            or mqtt.get("password") is not None
        ):
            return
        default = self.credentials_dir / "mqtt_password"
        if default.is_file():
            secret = self.read(default, ("mqtt",), "credential")
            if secret:
                data["mqtt"] = {**mqtt, "password": secret}


def _with_message(problem: ConfigProblem, message: str) -> ConfigProblem:
    return ConfigProblem(problem.path, message, problem.line, problem.source)


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required",
}


def _problem(
    error: Mapping[str, Any], root: yaml.Node | None, env_paths: Mapping[tuple[str, ...], str]
) -> ConfigProblem:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    message = str(error["msg"])
    ctx = error.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, FieldError):
        loc = (*loc, *cause.loc)
        message = cause.message
    elif error["type"] in _MESSAGES:
        message = _MESSAGES[error["type"]]
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    return _locate(loc, message, root, env_paths)


def _locate(
    loc: tuple[str | int, ...],
    message: str,
    root: yaml.Node | None,
    env_paths: Mapping[tuple[str, ...], str],
) -> ConfigProblem:
    """Turn a pydantic ``loc`` into a dotted path, the YAML line, or the env var it came from."""
    parts: list[str | int] = []
    line: int | None = None
    node = root
    for part in loc:
        if node is None:
            parts.append(part)
            continue
        child, key_line = _child(node, part)
        if child is None:
            if isinstance(node, yaml.ScalarNode):
                continue  # a union member tag or similar: not a config key
            parts.append(part)
            line = node.start_mark.line + 1 if line is None else line
            node = None
            continue
        parts.append(part)
        line = key_line
        node = child
    dotted = ".".join(str(p) for p in parts) or None
    text_parts = tuple(str(p).lower() for p in parts)
    for env_path, name in env_paths.items():
        if text_parts[: len(env_path)] == env_path:
            return ConfigProblem(dotted, message, None, name)
    return ConfigProblem(dotted, message, line)


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node | None, int | None]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if str(key.value) == str(part):
                return value, key.start_mark.line + 1
        return None, None
    if (
        isinstance(node, yaml.SequenceNode)
        and isinstance(part, int)
        and 0 <= part < len(node.value)
    ):
        item = node.value[part]
        return item, item.start_mark.line + 1
    return None, None


def iter_secret_paths(config: AgentConfig) -> Iterator[str]:
    """Dotted paths of every secret that is set (for tests and ``check-config``)."""
    yield from _secret_paths(config, ())


def _secret_paths(value: Any, path: tuple[str | int, ...]) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield ".".join(str(p) for p in path)
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secret_paths(getattr(value, name), (*path, name))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _secret_paths(item, (*path, index))
