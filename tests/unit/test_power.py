"""Nominal-efficiency power estimates."""

import pytest

from agent.power import estimate_power_w, nominal_efficiency_j_per_th, normalise_model


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("S19j Pro", "S19JPRO"),
        ("Antminer S19k Pro", "S19KPRO"),
        ("S19K Pro", "S19KPRO"),
        ("M30S+ VE40", "M30S+"),
        ("Avalon 1566", "AVALON1566"),
        ("AvalonMiner 1566", "AVALON1566"),
        ("Ultra", "ULTRA"),
    ],
)
def test_normalise_model_matches_across_firmwares(model, key):
    """Model names from different firmwares normalise to one key."""
    assert normalise_model(model) == key


def test_estimate_power_uses_hashrate_times_nominal_efficiency():
    """104 TH/s on an S19j Pro (29.5 J/TH) is about 3068 W."""
    assert estimate_power_w("S19j Pro", 104e12) == pytest.approx(3068.0)


@pytest.mark.parametrize(
    ("model", "hashrate"),
    [(None, 1e14), ("Unknown 9000", 1e14), ("S19j Pro", None), ("S19j Pro", 0.0)],
)
def test_estimate_power_is_none_when_not_estimable(model, hashrate):
    """Unknown model, unknown hashrate or a miner not hashing gives no estimate."""
    assert estimate_power_w(model, hashrate) is None


def test_nominal_efficiency_unknown_model_is_none():
    """An unknown model has no nominal efficiency."""
    assert nominal_efficiency_j_per_th("Z15") is None
