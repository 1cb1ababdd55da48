"""Fleet state: the latest merged snapshot, up/down and identity of every miner in inventory.

One ``MinerRecord`` per inventory address. Poll outcomes come in through ``record_success`` /
``record_failure``; the slow tier's identity, pools, errors, fault light and power limit are
merged into every fast snapshot; a nominal-efficiency power estimate fills in where the
firmware reports none (``PowerSource.ESTIMATED``).

The stable miner id is the MAC, else the serial, else the configured name, else the address. A
slow poll that lost identity fields keeps the ones read before while the miner stayed up
(``keep_known_identity``), so a flaky web API never renames a miner. An exported miner whose
id does change (its first MAC read late, other hardware at the address) lists its old id in
``renamed``: the service drops that id's alarms and retained MQTT topics. A
miner that moves to another address keeps its id: the record at the old address hands the id
over and stops being rendered (it would duplicate the series). Records removed from inventory
or down for longer than ``stale_after_s`` are pruned (their series disappear).

A device that reports the id of a miner that is up at another address (a cloned or spoofed MAC)
does not take it over: while both answer, the holder keeps the id and the newcomer is kept
under its configured name or address, with ``duplicate_of`` naming the id it claims (its
metric flag) and its record listed once in ``duplicates`` (warning log and MQTT event). Once
the holder stops answering, the id moves as for a miner that changed address.

Each record carries its display ``name`` and ``location`` (`agent.location`), placed by the
fleet's ``placer`` when added, after each poll (the inventory may match the MAC once read) and
on ``replace_placer`` (config reload).

``generation`` increases on every change; each record has its own ``version`` so renderers can
cache per-miner output and rebuild only what changed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from agent.location import NOWHERE, Placement
from agent.power import estimate_power_w
from collectors.snapshot import Identity, MinerSnapshot, PowerSource, Tier

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from agent.location import Location
    from collectors.source import MinerTarget

    Placer = Callable[[str, str, str | None], Placement]
    """(site, address, MAC or None) → the miner's display name and location."""


@dataclass(slots=True)
class MinerRecord:
    """What the agent knows about one inventory address."""

    site: str
    target: MinerTarget
    miner_id: str
    added_at: float
    snapshot: MinerSnapshot | None = None  # merged: latest fast + latest slow identity
    slow: MinerSnapshot | None = None
    up: bool | None = None  # None until the first poll finished
    last_error: str | None = None
    last_error_detail: str | None = None
    last_success_at: float | None = None
    last_poll_at: float | None = None
    last_poll_duration_s: float | None = None
    down_since: float | None = None
    removed_at: float | None = None
    moved_to: str | None = None  # address that now carries this miner's id
    hidden: bool = False  # gone longer than stale_after_s: series dropped until it answers
    duplicate_of: str | None = None  # the id it reports, held by the miner at duplicate_holder
    duplicate_holder: str | None = None
    version: int = 0
    placement: Placement = NOWHERE

    @property
    def name(self) -> str | None:
        """Display name (``miners[].name`` or the inventory's), None when unknown."""
        return self.placement.name or self.target.name

    @property
    def location(self) -> Location | None:
        """Where the miner stands, None when nothing is known."""
        return self.placement.location

    @property
    def mac(self) -> str | None:
        """The MAC read on the slow tier, if any."""
        snap = self.slow or self.snapshot
        return snap.identity.mac if snap is not None else None

    @property
    def address(self) -> str:
        """The inventory address."""
        return self.target.address

    @property
    def visible(self) -> bool:
        """Whether this record's series are exported (not stale, not handed over)."""
        return self.moved_to is None and not self.hidden and self.removed_at is None


def stable_id(identity: Identity | None, target: MinerTarget) -> str:
    """MAC, else serial, else configured name, else address."""
    if identity is not None and identity.mac:
        return identity.mac.upper()
    if identity is not None and identity.serial:
        return identity.serial
    return target.name or target.address


def keep_known_identity(previous: Identity | None, new: Identity) -> Identity:
    """``new`` with its missing MAC, serial and hostname taken from ``previous``, same hardware.

    A slow poll can lose single fields (a stock Antminer's web API timing out leaves MAC,
    serial and hostname empty while the RPC port answers). Without the carry-over the miner id
    would fall back to the address for a slow interval: every series renamed, phantom miners on
    dashboards and MQTT. Nothing is carried when the two readings disagree on family, model,
    MAC or serial: that may be other hardware.
    """
    if previous is None:
        return new
    if (new.family, new.model) != (previous.family, previous.model):
        return new
    for field in ("mac", "serial"):
        now, before = getattr(new, field), getattr(previous, field)
        if now is not None and before is not None and now != before:
            return new
    return replace(
        new,
        mac=new.mac if new.mac is not None else previous.mac,
        serial=new.serial if new.serial is not None else previous.serial,
        hostname=new.hostname if new.hostname is not None else previous.hostname,
    )


def _merge(fast: MinerSnapshot, slow: MinerSnapshot | None) -> MinerSnapshot:
    """Fast telemetry with the slow tier's identity, pools, errors, light, ATM and power limit."""
    merged = fast
    if slow is not None:
        merged = replace(
            fast,
            identity=slow.identity,
            pools=slow.pools,
            errors=slow.errors,
            fault_light=slow.fault_light,
            atm_enabled=slow.atm_enabled,
            power_limit_w=slow.power_limit_w,
            # Immersion is known from the fan mode, read on the slow tier.
            cooling=fast.cooling or slow.cooling,
        )
    if merged.power_w is None:
        estimate = estimate_power_w(merged.identity.model, merged.hashrate_hs)
        if estimate is not None:
            merged = replace(merged, power_w=estimate, power_source=PowerSource.ESTIMATED)
    return merged


class FleetState:
    """All miner records, keyed by inventory address."""

    def __init__(self, placer: Placer | None = None) -> None:
        """Start empty; ``placer`` names and places each record (none: nothing known)."""
        self._placer = placer
        self._records: dict[str, MinerRecord] = {}
        self._by_id: dict[str, str] = {}  # miner id -> address
        self._dirty: set[str] = set()
        self.generation = 0
        self.removed: list[tuple[str, str]] = []  # (site, miner id) pruned since last drained
        self.renamed: list[tuple[str, str]] = []  # (site, old id) of exported miners renamed
        self.duplicates: list[MinerRecord] = []  # newly flagged as reporting a held id

    def __len__(self) -> int:
        """Number of records (including ones pending removal)."""
        return len(self._records)

    def __iter__(self) -> Iterator[MinerRecord]:
        """Iterate over records in insertion order."""
        return iter(list(self._records.values()))

    def get(self, address: str) -> MinerRecord | None:
        """The record of ``address``, if any."""
        return self._records.get(address)

    def by_id(self, miner_id: str) -> MinerRecord | None:
        """The visible record carrying ``miner_id``, if any."""
        address = self._by_id.get(miner_id)
        return None if address is None else self._records.get(address)

    def _touch(self, record: MinerRecord) -> None:
        self.generation += 1
        record.version = self.generation
        self._dirty.add(record.address)

    def _place(self, record: MinerRecord) -> bool:
        """Name and place ``record`` anew; True when that changed anything."""
        if self._placer is None:
            return False
        placement = self._placer(record.site, record.address, record.mac)
        if placement == record.placement:
            return False
        record.placement = placement
        return True

    def replace_placer(self, placer: Placer | None) -> None:
        """Use ``placer`` from now on (config reload) and place every record again."""
        self._placer = placer
        for record in self._records.values():
            if self._place(record):
                self._touch(record)

    def changed(self, miner_id: str) -> None:
        """Re-render the miner carrying ``miner_id`` (something outside its record changed)."""
        record = self.by_id(miner_id)
        if record is not None:
            self._touch(record)

    def drain_dirty(self) -> set[str]:
        """Addresses whose record changed (or went away) since the last call (for the renderer)."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def add(self, site: str, target: MinerTarget, now: float) -> MinerRecord:
        """Add (or refresh the target of) an inventory address."""
        record = self._records.get(target.address)
        if record is not None:
            record.target = target
            record.site = site
            record.removed_at = None
            self._place(record)
            self._touch(record)
            return record
        record = MinerRecord(site=site, target=target, miner_id=target.address, added_at=now)
        record.miner_id = stable_id(None, target)
        self._place(record)
        self._records[target.address] = record
        self._claim(record)
        self._touch(record)
        return record

    def remove(self, address: str, now: float) -> None:
        """Mark ``address`` as removed from inventory; it is pruned after ``stale_after_s``."""
        record = self._records.get(address)
        if record is not None and record.removed_at is None:
            record.removed_at = now
            self._touch(record)

    def _claim(self, record: MinerRecord) -> None:
        """Give ``record`` its id; a record at another address holding the id hands it over."""
        owner = self._by_id.get(record.miner_id)
        if owner is not None and owner != record.address:
            previous = self._records.get(owner)
            if previous is not None:
                previous.moved_to = record.address
                self._touch(previous)
        record.moved_to = None
        self._by_id[record.miner_id] = record.address

    def record_success(
        self, address: str, snapshot: MinerSnapshot, duration_s: float, now: float
    ) -> MinerRecord | None:
        """Store a successful poll of ``address``; return its record (None if not in inventory)."""
        record = self._records.get(address)
        if record is None:
            return None
        exported = record.visible and record.up is not None
        record.last_poll_at = now
        record.last_poll_duration_s = duration_s
        if snapshot.tier is Tier.SLOW:
            if record.up and record.slow is not None:  # no outage since: same hardware
                identity = keep_known_identity(record.slow.identity, snapshot.identity)
                snapshot = replace(snapshot, identity=identity)
            record.slow = snapshot
            if record.snapshot is not None:
                record.snapshot = _merge(record.snapshot, snapshot)
        else:
            record.snapshot = _merge(snapshot, record.slow)
            record.hidden = False
            record.up = True
            record.last_error = None
            record.last_error_detail = None
            record.last_success_at = now
            record.down_since = None
        if record.up is None:
            record.up = True
            record.last_success_at = now
        new_id = self._unless_held(
            record, stable_id(record.slow.identity if record.slow else None, record.target)
        )
        if new_id != record.miner_id:
            if self._by_id.get(record.miner_id) == record.address:
                del self._by_id[record.miner_id]
                if exported:  # its series, alarms and retained topics go with the old id
                    self.renamed.append((record.site, record.miner_id))
            record.miner_id = new_id
        if snapshot.tier is Tier.SLOW:  # the MAC may be new: an inventory row may match it
            self._place(record)
        self._claim(record)
        self._touch(record)
        return record

    def _unless_held(self, record: MinerRecord, wanted: str) -> str:
        """``wanted``, or the record's own name/address when an answering miner holds it."""
        holder = self._records.get(self._by_id.get(wanted, record.address))
        if holder is None or holder is record or not (holder.up and holder.visible):
            record.duplicate_of = record.duplicate_holder = None
            return wanted
        if record.duplicate_of != wanted or record.duplicate_holder != holder.address:
            record.duplicate_of, record.duplicate_holder = wanted, holder.address
            self.duplicates.append(record)
        return record.target.name or record.target.address

    def drain_duplicates(self) -> list[MinerRecord]:
        """Return and clear the records newly flagged as reporting an id held elsewhere."""
        duplicates, self.duplicates = self.duplicates, []
        return duplicates

    def record_failure(
        self, address: str, reason: str, detail: str, duration_s: float, now: float, *, tier: Tier
    ) -> MinerRecord | None:
        """Store a failed poll; a fast-tier failure (or any before the first success) is down."""
        record = self._records.get(address)
        if record is None:
            return None
        record.last_poll_at = now
        record.last_poll_duration_s = duration_s
        if tier is Tier.FAST or record.up is None or record.up is False:
            if record.up is not False:
                record.down_since = now
            record.up = False
            record.last_error = reason
            record.last_error_detail = detail
        self._touch(record)
        return record

    def prune(self, now: float, stale_after_s: float) -> list[MinerRecord]:
        """Drop series of miners gone for ``stale_after_s``; return the records affected.

        A record removed from inventory that long is deleted and its (site, id) lands in
        ``removed`` (for the MQTT publisher and the alarm engine). One still in inventory but
        down that long is only hidden (no series) until it answers again: its alarms stay.
        """
        affected = []
        for record in list(self._records.values()):
            if record.removed_at is not None and now - record.removed_at >= stale_after_s:
                del self._records[record.address]
                self.removed.append((record.site, record.miner_id))
            elif (
                not record.hidden
                and record.up is False
                and record.down_since is not None
                and now - record.down_since >= stale_after_s
            ):
                record.hidden = True
                record.snapshot = None
            else:
                continue
            affected.append(record)
            if self._by_id.get(record.miner_id) == record.address:
                del self._by_id[record.miner_id]
            self._touch(record)
        return affected

    def drain_removed(self) -> list[tuple[str, str]]:
        """Return and clear the (site, miner id) pairs pruned since the last call."""
        removed, self.removed = self.removed, []
        return removed

    def drain_renamed(self) -> list[tuple[str, str]]:
        """Return and clear the (site, old id) of exported miners whose id changed since."""
        renamed, self.renamed = self.renamed, []
        return renamed

    def rendered(self) -> list[MinerRecord]:
        """Records whose series are exported: visible, polled at least once."""
        return [r for r in self._records.values() if r.visible and r.up is not None]

    def sites(self) -> dict[str, tuple[int, int]]:
        """Per site: (miners in inventory, miners up)."""
        counts: dict[str, list[int]] = {}
        for record in self._records.values():
            if record.removed_at is not None or record.moved_to is not None:
                continue
            entry = counts.setdefault(record.site, [0, 0])
            entry[0] += 1
            entry[1] += 1 if record.up else 0
        return {site: (total, up) for site, (total, up) in counts.items()}

    def first_cycle_done(self) -> bool:
        """Whether every record has finished at least one poll (READY condition)."""
        return all(r.last_poll_at is not None for r in self._records.values())
