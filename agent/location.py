"""Where each miner stands and what people call it: ``Location``, address patterns, inventory CSV.

A miner's place is four free-form strings, ``container``, ``rack``, ``shelf`` and ``slot``, any
of them unknown (None, never guessed). It comes, field by field, from the first source that
knows it:

1. ``miners[].location`` in the config;
2. a row of the site's ``inventory_csv`` matching the miner's MAC (once read), else its address;
3. the site's ``location_pattern`` matched against the address, e.g. ``10.28.{rack}.{slot}``.

The display name is ``miners[].name``, else the inventory row's ``name``. ``Locator`` holds the
parsed sources and answers ``place(site, address, mac)``; ``walk_key`` orders places as a
technician walks them (container, rack, shelf, slot, numbers by value: rack 2 before rack 10).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.errors import ConfigError, ConfigProblem

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from pathlib import Path

    from agent.config import AgentConfig

LOCATION_FIELDS = ("container", "rack", "shelf", "slot")
INVENTORY_COLUMNS = ("address", "mac", "name", *LOCATION_FIELDS)
MAX_INVENTORY_ROWS = 200_000
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$")
_DIGITS = re.compile(r"(\d+)")


class Location(BaseModel):
    """``container``, ``rack``, ``shelf``, ``slot`` of one miner: free-form strings or unknown."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    container: str | None = Field(
        default=None, min_length=1, max_length=64, description="Container, building or hall."
    )
    rack: str | None = Field(
        default=None, min_length=1, max_length=64, description="Rack (or row) in the container."
    )
    shelf: str | None = Field(
        default=None, min_length=1, max_length=64, description="Shelf in the rack."
    )
    slot: str | None = Field(
        default=None, min_length=1, max_length=64, description="Position on the shelf."
    )

    @property
    def empty(self) -> bool:
        """True when no field is known."""
        return all(getattr(self, name) is None for name in LOCATION_FIELDS)

    def over(self, fallback: Location | None) -> Location:
        """This location with its unknown fields taken from ``fallback``."""
        if fallback is None:
            return self
        return Location(
            **{name: getattr(self, name) or getattr(fallback, name) for name in LOCATION_FIELDS}
        )

    def text(self) -> str:
        """``container C3, rack 12, shelf 2, slot 4`` (known fields only; "" when none)."""
        return ", ".join(
            f"{name} {value}"
            for name in LOCATION_FIELDS
            if (value := getattr(self, name)) is not None
        )

    def as_dict(self) -> dict[str, str | None]:
        """The four fields, unknown ones None (the JSON API's ``location``)."""
        return {name: getattr(self, name) for name in LOCATION_FIELDS}


@dataclass(frozen=True, slots=True)
class Placement:
    """What a miner is called and where it stands (either may be unknown)."""

    name: str | None = None
    location: Location | None = None


NOWHERE = Placement()


def describe(name: str | None, miner: str, location: Location | None) -> str:
    """A miner named for humans: ``name (MAC), container C3, rack 12`` (name before the id)."""
    who = f"{name} ({miner})" if name and name != miner else miner
    where = location.text() if location is not None else ""
    return f"{who}, {where}" if where else who


def _natural(value: str | None) -> tuple[int, tuple[tuple[int, int | str], ...]]:
    """Sort key: unknown last; digit runs compare by value (``R2`` before ``R10``)."""
    if value is None:
        return (1, ())
    parts = tuple(
        (0, int(part)) if part.isdigit() else (1, part.lower())
        for part in _DIGITS.split(value)
        if part
    )
    return (0, parts)


def walk_key(location: Location | None) -> tuple[Any, ...]:
    """Walking order: container, rack, shelf, slot, each in natural order, unknown last."""
    loc = location or Location()
    return tuple(_natural(getattr(loc, name)) for name in LOCATION_FIELDS)


class AddressPattern:
    """An address with ``{container}``, ``{rack}``, ``{shelf}``, ``{slot}`` placeholders.

    ``10.28.{rack}.{slot}`` gives ``10.28.12.4`` rack ``12``, slot ``4``. A placeholder matches
    one address segment (no ``.`` or ``:``); the rest must match literally. An address that
    does not match has no location from the pattern.
    """

    def __init__(self, pattern: str) -> None:
        """Compile ``pattern``; ValueError naming the problem when it is not usable."""
        self.pattern = pattern
        names = _PLACEHOLDER.findall(pattern)
        if not names:
            msg = "needs at least one placeholder: {container}, {rack}, {shelf} or {slot}"
            raise ValueError(msg)
        for name in names:
            if name not in LOCATION_FIELDS:
                msg = f"unknown placeholder {{{name}}} (use {{container}}, {{rack}}, {{shelf}}, "
                msg += "{slot})"
                raise ValueError(msg)
            if names.count(name) > 1:
                msg = f"placeholder {{{name}}} appears twice"
                raise ValueError(msg)
        regex, last = "", 0
        for match in _PLACEHOLDER.finditer(pattern):
            regex += re.escape(pattern[last : match.start()])
            regex += f"(?P<{match.group(1)}>[^.:]+)"
            last = match.end()
        regex += re.escape(pattern[last:])
        self._regex = re.compile(regex, re.IGNORECASE)

    def match(self, address: str) -> Location | None:
        """The location the address spells, or None when it does not match."""
        found = self._regex.fullmatch(address)
        return None if found is None else Location(**found.groupdict())


def check_pattern(pattern: str) -> str:
    """Validate a ``location_pattern`` (for the config model); ValueError when unusable."""
    AddressPattern(pattern)
    return pattern


def normalise_mac(value: str) -> str:
    """``02a155778df5`` / ``02-a1-55-77-8d-f5`` → ``02:A1:55:77:8D:F5`` (the miner id form)."""
    digits = re.sub(r"[^0-9A-Fa-f]", "", value).upper()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


@dataclass(frozen=True, slots=True)
class Inventory:
    """An inventory CSV's rows, by address and by MAC (``normalise_mac`` form)."""

    by_address: Mapping[str, Placement]
    by_mac: Mapping[str, Placement]


def read_inventory(path: Path) -> Inventory:
    """Read an inventory CSV; ``ConfigError`` naming the file and line for any bad row.

    Header row required; columns (any order, unknown ones refused): ``address`` and/or ``mac``
    (each row needs one), ``name``, ``container``, ``rack``, ``shelf``, ``slot``. Empty cells
    are unknown.
    """
    origin = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(ConfigProblem(origin, f"cannot read inventory: {reason}")) from None
    reader = csv.DictReader(text.splitlines())
    reader.fieldnames = _header(reader.fieldnames, origin)
    by_address: dict[str, Placement] = {}
    by_mac: dict[str, Placement] = {}
    for number, row in enumerate(reader, start=2):
        if number > MAX_INVENTORY_ROWS:
            raise ConfigError(ConfigProblem(origin, f"more than {MAX_INVENTORY_ROWS} rows"))
        cells = {k: (v or "").strip() or None for k, v in row.items() if isinstance(k, str)}
        if not any(cells.values()):
            continue
        placement = _row_placement(cells, origin, number)
        address, mac = cells.get("address"), cells.get("mac")
        if address is None and mac is None:
            raise ConfigError(ConfigProblem(origin, "row needs an address or a mac", number))
        if mac is not None:
            if not _MAC.match(mac):
                raise ConfigError(ConfigProblem(origin, f"not a MAC address: {mac!r}", number))
            by_mac[normalise_mac(mac)] = placement
        if address is not None:
            by_address[address.lower()] = placement
    return Inventory(by_address, by_mac)


def _header(fieldnames: Sequence[str] | None, origin: str) -> list[str]:
    header = [h.strip().lower() for h in fieldnames or ()]
    unknown = [h for h in header if h not in INVENTORY_COLUMNS]
    if unknown or not ({"address", "mac"} & set(header)):
        msg = f"header must name address and/or mac, then any of {', '.join(INVENTORY_COLUMNS)}"
        if unknown:
            msg += f" (unknown: {', '.join(unknown)})"
        raise ConfigError(ConfigProblem(origin, msg, 1))
    return header


def _row_placement(cells: Mapping[str, str | None], origin: str, line: int) -> Placement:
    try:
        location = Location(**{name: cells.get(name) for name in LOCATION_FIELDS})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(ConfigProblem(origin, f"{where}: {first['msg']}", line)) from None
    name = cells.get("name")
    if name is not None and len(name) > 64:  # noqa: PLR2004 - the config's name limit
        raise ConfigError(ConfigProblem(origin, "name longer than 64 characters", line))
    return Placement(name, None if location.empty else location)


class Locator:
    """Every configured source of names and places, ready to answer ``place``."""

    def __init__(self, config: AgentConfig) -> None:
        """Read each site's inventory CSV (``ConfigError`` when unreadable or malformed)."""
        self._patterns: dict[str, AddressPattern] = {}
        self._inventories: dict[str, Inventory] = {}
        self._configured: dict[str, Placement] = {}
        for site in config.sites:
            if site.location_pattern is not None:
                self._patterns[site.name] = AddressPattern(site.location_pattern)
            if site.inventory_csv is not None:
                self._inventories[site.name] = read_inventory(site.inventory_csv)
        for miner in config.miners:
            location = miner.location if miner.location and not miner.location.empty else None
            self._configured[miner.address.lower()] = Placement(miner.name, location)

    def place(self, site: str, address: str, mac: str | None = None) -> Placement:
        """Name and location of the miner at ``address`` (MAC once known), field by field."""
        key = address.lower()
        layers: list[Placement] = []
        configured = self._configured.get(key)
        if configured is not None:
            layers.append(configured)
        inventory = self._inventories.get(site)
        if inventory is not None:
            if mac and (row := inventory.by_mac.get(normalise_mac(mac))) is not None:
                layers.append(row)
            if (row := inventory.by_address.get(key)) is not None:
                layers.append(row)
        pattern = self._patterns.get(site)
        if pattern is not None and (spelled := pattern.match(address)) is not None:
            layers.append(Placement(None, spelled))
        return merge(layers)


def merge(layers: Iterable[Placement]) -> Placement:
    """The first known name, and each location field from the first layer that knows it."""
    name: str | None = None
    location: Location | None = None
    for layer in layers:
        name = name or layer.name
        if layer.location is not None:
            location = layer.location if location is None else location.over(layer.location)
    if location is not None and location.empty:
        location = None
    return Placement(name, location) if name or location else NOWHERE
