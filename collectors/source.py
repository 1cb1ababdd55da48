"""The boundary between the agent and miners: MinerTarget, MinerSource and CollectorError.

The agent only ever calls ``MinerSource.fetch``; anything a miner does wrong arrives as a
``CollectorError`` with a short machine-readable ``reason`` (used as a metric label) and a
human ``detail``. Tests may substitute another MinerSource here — this is a boundary we own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pydantic import SecretStr

    from collectors.snapshot import Cooling, MinerSnapshot, Tier, WorkerReading


class FailureReason(StrEnum):
    """Why a poll failed; the closed set of values of the ``reason`` label."""

    TIMEOUT = "timeout"
    REFUSED = "refused"
    RESET = "reset"
    UNREACHABLE = "unreachable"
    PARSE_ERROR = "parse_error"
    PROTOCOL_ERROR = "protocol_error"
    OVERSIZED = "oversized"
    AUTH = "auth"
    UNKNOWN_MODEL = "unknown_model"
    UNSUPPORTED_FIRMWARE = "unsupported_firmware"
    MODEL_CHANGED = "model_changed"
    ERROR = "error"


class CollectorError(Exception):
    """A poll of one miner failed; ``reason`` is a FailureReason, ``detail`` says more."""

    def __init__(self, reason: FailureReason, detail: str) -> None:
        """Keep reason and detail; the message is ``reason: detail``."""
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Credentials:
    """Per-miner credentials; secrets stay SecretStr and never reach logs."""

    username: str | None = None
    password: SecretStr | None = None


@dataclass(frozen=True, slots=True)
class MinerTarget:
    """What the agent knows about a miner before polling it."""

    address: str
    name: str | None = None
    model_hint: str | None = None
    credentials: Credentials | None = None
    cooling: Cooling | None = None
    """Configured cooling (``miners[].cooling``): wins over the model and the fan mode."""


class MinerSource(Protocol):
    """Reads one miner. Raises CollectorError (only) when the miner cannot be read."""

    async def fetch(self, target: MinerTarget, tier: Tier) -> MinerSnapshot:
        """Poll ``target`` for ``tier`` and return a snapshot."""
        ...


class PoolSource(Protocol):
    """Reads a mining pool's own API: per-worker, pool-side figures (none implemented yet).

    The room left for issue 18's point 5: an implementation (one per pool operator's API, an
    account's read-only key as a ``SecretStr`` credential) would be polled on its own slow
    cadence beside ``MinerSource``, keyed by (pool URL, worker) as ``asic_pool_info`` is, so a
    pool-side hashrate can be set against the miners'. The agent needs no internet for anything
    else, and this stays unused until a site configures one.
    """

    async def fetch_workers(self, account: str) -> Sequence[WorkerReading]:
        """The workers of ``account`` as the pool sees them; raise CollectorError on failure."""
        ...
