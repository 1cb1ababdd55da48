"""Scenario files: the site, its air and its fleet, as strict pydantic models loaded from YAML.

A scenario names one site (altitude, optional station pressure, a diurnal ambient curve) and a
list of miner groups (profile key, count, optional fixed addresses, faults present at start).
``scale`` turns the mix into N miners, keeping each group's share (largest remainder).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from collectors.emulator.profiles import PROFILES

FaultKind = Literal[
    "fan_failure",
    "clogged_filter",
    "board_lost",
    "offline",
    "hang",
    "slow",
    "garbage",
    "truncated",
    "oversized",
    "reboot",
    "heatwave",
    "drip",
    "reset",
    "model_change",
    "gzip_bomb",
    "endless",
    "identity",
    "pool_latency",
    "pool_down",
    "pool_hijack",
    "unsupported_firmware",
    "coolant_flow",
]
"""Every fault the emulator can inject (shared API contract).

Hostile ones (issue 15): ``gzip_bomb`` answers every web request 200 with a ``Content-Encoding:
gzip`` body that inflates to ``bytes`` (default 1 GiB, about 1 MB on the wire); ``endless``
answers (web: 200 without a length; gRPC: one message declaring 4 GiB) and then streams bytes
until the peer hangs up; ``identity`` makes the firmware report ``mac``, ``serial`` and/or
``hostname`` as given (any text, up to 1 MiB each: oversized, malformed, NUL bytes, another
miner's MAC), until it is cleared.

``unsupported_firmware`` (issue 16): the miner runs a firmware pyasic 0.79 cannot identify. Its
4028 RPC and web page answer well-formed cgminer JSON and HTML that name no firmware pyasic
knows (`collectors.emulator.families.unsupported`); the miner's own family no longer answers.

``coolant_flow`` (liquid-cooled miners) cuts the coolant flow to ``factor`` of nominal (a
failing pump, an air lock, a clogged filter or a closed valve): the coolant ΔT rises."""

MAX_IDENTITY_CHARS = 1 << 20
"""Longest identity field an ``identity`` fault may plant."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FaultSpec(_Strict):
    """One fault with its parameters; unused parameters are ignored by the kind."""

    kind: FaultKind
    fan: int | None = Field(default=None, ge=0)
    factor: float | None = Field(default=None, gt=0, le=1)
    board: int | None = Field(default=None, ge=0)
    delay_s: float | None = Field(default=None, ge=0)
    bytes: int | None = Field(default=None, ge=1)
    k: float | None = None
    model: str | None = None
    port: Literal["rpc", "web", "grpc", "all"] = "all"
    down_s: float | None = Field(default=None, ge=0)
    mac: str | None = Field(default=None, max_length=MAX_IDENTITY_CHARS)
    serial: str | None = Field(default=None, max_length=MAX_IDENTITY_CHARS)
    hostname: str | None = Field(default=None, max_length=MAX_IDENTITY_CHARS)
    pool: int | None = Field(default=None, ge=0, le=1)
    """pool_down / pool_hijack: which pool (0 = primary, the default)."""
    url: str | None = Field(default=None, max_length=512)
    """pool_hijack: the pool URL written over the miner's (may embed user:password)."""
    worker: str | None = Field(default=None, max_length=256)
    """pool_hijack: the worker (pool user) written over the miner's."""

    @model_validator(mode="after")
    def _model_known(self) -> FaultSpec:
        if self.kind == "model_change" and self.model not in PROFILES:
            msg = f"model_change needs model, one of {sorted(PROFILES)}"
            raise ValueError(msg)
        if self.kind == "identity" and (self.mac, self.serial, self.hostname) == (None,) * 3:
            msg = "identity needs at least one of mac, serial, hostname"
            raise ValueError(msg)
        return self


class Ambient(_Strict):
    """Daily inlet curve: mean ± amplitude, warmest at ``peak_hour`` local time."""

    mean_c: float = 20.0
    amplitude_k: float = Field(default=5.0, ge=0)
    peak_hour: float = Field(default=15.0, ge=0, lt=24)
    utc_offset_h: float = Field(default=0.0, ge=-12, le=14)


class SiteSpec(_Strict):
    """The emulated site."""

    name: str = Field(min_length=1)
    altitude_m: float = Field(ge=-500, le=6000)
    station_pressure_kpa: float | None = Field(default=None, gt=30, lt=110)
    ambient: Ambient = Ambient()
    heatwave_k: float = 0.0
    inlet_override_c: float | None = None


class MinerGroup(_Strict):
    """A group of identical miners."""

    model: str
    count: int = Field(default=1, ge=1)
    addresses: list[str] | None = None
    hostname_prefix: str | None = None
    inlet_offset_k: float = 0.0
    faults: list[FaultSpec] = []

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in PROFILES:
            msg = f"unknown model {value!r}; known: {sorted(PROFILES)}"
            raise ValueError(msg)
        return value

    @field_validator("addresses")
    @classmethod
    def _loopback(cls, value: list[str] | None) -> list[str] | None:
        for address in value or []:
            if not ipaddress.IPv4Address(address).is_loopback:
                msg = f"{address} is not a loopback address"
                raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _count_matches(self) -> MinerGroup:
        if self.addresses is not None and len(self.addresses) != self.count:
            msg = "addresses must list exactly `count` addresses"
            raise ValueError(msg)
        return self


class Scenario(_Strict):
    """A whole scenario file."""

    name: str
    description: str = ""
    site: SiteSpec
    start_time: dt.datetime | None = None
    """Simulated start time; default: now."""
    whatsminer_https: bool = False
    """Serve Whatsminer's LuCI page on 443 (TLS). Off by default: pyasic's detection cancels
    its HTTPS probe mid-handshake once 4028 has answered and leaks the socket
    (ResourceWarning), which breaks test suites run with warnings as errors."""
    miners: list[MinerGroup] = Field(min_length=1)

    def scale(self, total: int) -> Scenario:
        """The same mix with ``total`` miners (fixed addresses are dropped)."""
        if total < 1:
            msg = "--miners must be at least 1"
            raise ValueError(msg)
        weights = [g.count for g in self.miners]
        whole = sum(weights)
        exact = [total * w / whole for w in weights]
        counts = [int(x) for x in exact]
        order = sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)
        for i in order[: total - sum(counts)]:
            counts[i] += 1
        groups = [
            g.model_copy(update={"count": c, "addresses": None})
            for g, c in zip(self.miners, counts, strict=True)
            if c > 0
        ]
        return self.model_copy(update={"miners": groups})


def load_scenario(source: Path | dict[str, Any]) -> Scenario:
    """Load and validate a scenario from a YAML file or an already parsed mapping."""
    data = (
        yaml.safe_load(source.read_text(encoding="utf-8")) if isinstance(source, Path) else source
    )
    return Scenario.model_validate(data)
