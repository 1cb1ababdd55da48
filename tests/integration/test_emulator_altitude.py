"""The altitude test end to end: the same scenario at 0 m and 3,000 m, read through pyasic."""

from __future__ import annotations

from typing import Any

import pyasic
import pytest

from collectors.air import cooling_multiplier, pressure_ratio_isa
from collectors.emulator.profiles import PROFILES

# Chip-controlled models (stock S19 reports board + 15 K, so its "chip" rise is not comparable).
KEYS = ["antminer-s21", "whatsminer-m30s+ve40", "avalon-15-194", "braiins-s19jpro", "bitaxe-ultra"]


def scenario(altitude_m: float, inlet_c: float | None) -> dict[str, Any]:
    """All KEYS at ``altitude_m``; with ``inlet_c`` None each sits just at fan saturation at 0 m."""
    groups = []
    for key in KEYS:
        p = PROFILES[key]
        offset = (p.target_c - p.rise_full_fan_k) if inlet_c is None else inlet_c
        groups.append({"model": key, "inlet_offset_k": offset})
    return {
        "name": f"altitude-{altitude_m}",
        "site": {"name": f"h{altitude_m}", "altitude_m": altitude_m, "inlet_override_c": 0.0},
        "miners": groups,
    }


async def read(handle) -> dict[str, dict[str, Any]]:
    """Per profile: duty (truth), inlet (truth) and pyasic's mean chip temperature."""
    handle.pause()
    try:
        out = {}
        for m in handle.miners():
            miner = await pyasic.get_miner(m["address"])
            data = await miner.get_data(include=["hashboards", "fans", "hashrate"])
            truth = handle.truth(m["address"])
            chips = [b.chip_temp for b in data.hashboards if b.chip_temp is not None]
            out[m["profile"]] = {
                "duty": truth["fan_duty_ratio"],
                "inlet": truth["inlet_temp_c"],
                "chip": sum(chips) / len(chips),
                "rpm": [f.speed for f in data.fans],
            }
        return out
    finally:
        handle.resume()


async def test_emulator_altitude_raises_duty_then_chip_rise_by_multiplier(emulator_factory):
    """0 m vs 3,000 m via pyasic: more fan at altitude; once saturated, chip rise × M(δ) ± 5 %."""
    m = cooling_multiplier(pressure_ratio_isa(3000))
    sea = emulator_factory(scenario(0, None), base_address="127.20.3.1")
    high = emulator_factory(scenario(3000, None), base_address="127.20.4.1")
    at_sea, at_alt = await read(sea), await read(high)
    for key in KEYS:
        s, h = at_sea[key], at_alt[key]
        ratio = (h["chip"] - h["inlet"]) / (s["chip"] - s["inlet"])
        print(
            f"{key}: duty {s['duty']:.3f}/{h['duty']:.3f} rise {s['chip'] - s['inlet']:.1f}/"
            f"{h['chip'] - h['inlet']:.1f} K ratio {ratio:.3f} (M {m:.3f})"
        )
        assert s["duty"] == pytest.approx(1.0, abs=0.01)
        assert h["duty"] == pytest.approx(1.0, abs=0.01)
        assert ratio == pytest.approx(m, rel=0.05)

    mild_sea = emulator_factory(scenario(0, 12.0), base_address="127.20.5.1")
    mild_alt = emulator_factory(scenario(3000, 12.0), base_address="127.20.6.1")
    cool_sea, cool_alt = await read(mild_sea), await read(mild_alt)
    for key in KEYS:
        print(
            f"{key}: mild inlet duty 0 m {cool_sea[key]['duty']:.3f} 3000 m {cool_alt[key]['duty']:.3f}"
        )
        assert cool_alt[key]["duty"] > cool_sea[key]["duty"]
        assert max(cool_alt[key]["rpm"]) > max(cool_sea[key]["rpm"])
