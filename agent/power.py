"""Nominal-efficiency power estimates for miners whose firmware reports no power.

Stock Antminer firmware exposes no power reading. An estimate (hashrate × the model's nominal
efficiency in J/TH, from the manufacturers' data sheets) is still useful for site power
budgets; it is always exported with ``source="estimated"`` and never passed off as measured.
"""

from __future__ import annotations

import re

#: Nominal efficiency in J/TH (= W per TH/s) at stock settings, keyed by normalised model.
NOMINAL_J_PER_TH: dict[str, float] = {
    "S19": 34.5,
    "S19PRO": 29.5,
    "S19J": 34.5,
    "S19JPRO": 29.5,
    "S19JPRO+": 27.5,
    "S19KPRO": 23.0,
    "S19XP": 21.5,
    "S19XPHYD": 20.8,
    "S21": 17.5,
    "S21+": 16.5,
    "S21PRO": 15.0,
    "S21XP": 13.5,
    "S21HYD": 16.0,
    "T19": 37.5,
    "T21": 19.0,
    "M30S": 38.0,
    "M30S+": 34.0,
    "M30S++": 31.0,
    "M50": 26.0,
    "M50S": 24.0,
    "M60": 19.9,
    "M60S": 18.5,
    "AVALON1246": 38.0,
    "AVALON1366": 25.0,
    "AVALON1466": 21.5,
    "AVALON1566": 18.5,
    "ULTRA": 23.0,  # Bitaxe Ultra, BM1366
    "SUPRA": 20.0,  # Bitaxe Supra, BM1368
    "GAMMA": 17.0,  # Bitaxe Gamma, BM1370
    "MAX": 40.0,  # Bitaxe Max, BM1397
}

_TERA = 1e12
_DROP = re.compile(r"[\s_\-.()]")
_WHATSMINER_VARIANT = re.compile(r"^(M\d+S?\+*)V[A-Z]?\d+$")


def normalise_model(model: str) -> str:
    """Normalise a model name across firmwares: ``"Antminer S19k Pro"`` → ``"S19KPRO"``.

    Drops the ``ANTMINER`` prefix, spaces and punctuation, and a Whatsminer chip variant
    (``M30S+VE40`` → ``M30S+``).
    """
    key = _DROP.sub("", model.upper())
    key = key.removeprefix("ANTMINER").removeprefix("BITAXE")
    key = key.replace("AVALONMINER", "AVALON")
    match = _WHATSMINER_VARIANT.match(key)
    if match:
        key = match.group(1)
    return key


def nominal_efficiency_j_per_th(model: str | None) -> float | None:
    """The nominal J/TH of ``model``, or None when the model is unknown."""
    if not model:
        return None
    return NOMINAL_J_PER_TH.get(normalise_model(model))


def estimate_power_w(model: str | None, hashrate_hs: float | None) -> float | None:
    """Estimated power draw in W from the current hashrate, or None when not estimable.

    A miner that is not hashing (hashrate 0 or unknown) gets no estimate: idle draw is not
    related to the nominal efficiency.
    """
    efficiency = nominal_efficiency_j_per_th(model)
    if efficiency is None or hashrate_hs is None or hashrate_hs <= 0:
        return None
    return round(hashrate_hs / _TERA * efficiency, 1)
