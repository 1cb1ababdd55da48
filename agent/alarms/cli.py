"""``altiwatch thresholds``: print the derated thresholds for an altitude, sea level beside them.

The table is meant to be checked by hand: it prints δ, M(δ) and c(δ) with their formulas, then
for each preset (or the one ``--model`` selects) the sea-level value, the value in force at the
site and the shift altitude causes::

    altiwatch thresholds --altitude 3000 --pressure-kpa 70.1 --model S19jPro
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.alarms.air import site_air
from agent.alarms.presets import PRESETS, apply_overrides, derate, normalise_model, select_preset
from collectors import air
from collectors.snapshot import Family

if TYPE_CHECKING:
    import argparse

    from agent.alarms.air import SiteAir
    from agent.alarms.presets import MinerThresholds, Preset

EX_OK = 0
EX_USAGE = 64
EX_CONFIG = 78


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``thresholds`` subcommand."""
    parser = subparsers.add_parser(
        "thresholds",
        help="print the altitude-derated alarm thresholds, sea level beside them",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--altitude",
        type=float,
        default=None,
        help="site altitude in metres (required unless --config gives the site)",
    )
    parser.add_argument(
        "--pressure-kpa",
        type=float,
        default=None,
        help="measured station pressure (QFE, not sea-level QNH); used when within ±5 %% of ISA",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="a model (S19jPro, S21, M30S+, Avalon 1566, Bitaxe Ultra) or a preset name",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="agent config: take the site's altitude/pressure and apply thermal.overrides",
    )
    parser.add_argument("--site", default=None, help="site in --config (default: the only one)")
    parser.add_argument("--miner", default=None, help="miner id, for per-miner overrides")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run)


def _presets(model: str | None) -> list[Preset]:
    if model is None:
        return [p for name, p in PRESETS.items() if name != "generic"]
    if model.lower() in PRESETS:
        return [PRESETS[model.lower()]]
    key = normalise_model(model)
    return [PRESETS[select_preset(Family.UNKNOWN, key, reports_chips=True)]]


def _row(label: str, rule: str, sea: float, here: float) -> str:
    return f"  {label:<12} {rule:<34} {sea:>9.1f} {here:>9.1f} {here - sea:>+8.1f}"


def _table(site: SiteAir, rows: list[tuple[Preset, MinerThresholds]]) -> str:
    d, m = site.delta, site.cooling_multiplier
    c_k = air.board_chip_underestimate_k(d)
    where = "" if site.site == "cli" else f"{site.site}, "
    lines = [f"Site: {where}altitude {site.altitude_m:,.0f} m"]
    if site.measured_pressure_kpa is not None:
        lines.append(
            f"  station pressure {site.measured_pressure_kpa:.2f} kPa "
            f"(ISA {site.isa_pressure_kpa:.2f} kPa): "
            + (
                f"used, pressure altitude h_p = {site.pressure_altitude_m:,.0f} m"
                if not site.pressure_implausible
                else "IMPLAUSIBLE (more than 5 % from ISA; a sea-level QNH?): ISA used, R9 warns"
            )
        )
    isa_formula = (
        " = (1 − 2.25577e-5·h)^5.25588" if site.pressure_source.value != "measured" else ""
    )
    lines += [
        f"  δ = p/p0{isa_formula} = {d:.4f}",
        f"  M(δ) = 0.35/δ + 0.45·δ^-0.8 + 0.20 = {m:.4f}",
        f"  c(δ) = 7.5·(δ^-0.8 − 1) = {c_k:.2f} K (stock S19 board-estimated chips only)",
        "",
        f"  {'preset':<12} {'threshold (rule)':<34} {'sea level':>9} {'here':>9} {'shift K':>8}",
    ]
    for preset, th in rows:
        h_label = "h_p" if site.pressure_source.value == "measured" else "h"
        inlet_rule = (
            f"{preset.inlet_max_c:g} − ({h_label}−{preset.inlet_derate_from_m:g})"
            f"/{preset.inlet_derate_m_per_k:g}"
        )
        crit_rule = "C0 − c(δ)" if preset.board_estimated_chip else "C0"
        lines += [
            f"  {preset.name} — {preset.sensor} sensor"
            + (" (operator overrides applied)" if th.critical_source == "override" else ""),
            _row("", f"R1 critical = {crit_rule}", th.critical_sea_level_c, th.critical_c),
            _row(
                "",
                f"R1 warning = crit − {preset.hysteresis_k:g}·M",
                th.warning_sea_level_c,
                th.warning_c,
            ),
            _row("", f"R2 inlet max = {inlet_rule}", th.inlet_max_sea_level_c, th.inlet_max_c),
            _row(
                "",
                "R2 inlet warning = max − 3",
                th.inlet_max_sea_level_c - 3.0,
                th.inlet_warning_c,
            ),
            _row("", "R8 cold start below T_min", th.t_min_c, th.t_min_c),
        ]
    return "\n".join(lines)


def _from_config(args: argparse.Namespace) -> tuple[str, float, float | None, tuple[Any, ...]]:
    """Site name, altitude, pressure and overrides from ``--config`` (ConfigError, KeyError)."""
    from agent.config import load_config  # noqa: PLC0415 - only this option needs the loader

    cfg = load_config(args.config)
    names = [s.name for s in cfg.sites]
    name = args.site or (names[0] if len(names) == 1 else None)
    site = next((s for s in cfg.sites if s.name == name), None)
    if site is None:
        msg = f"--site must be one of {', '.join(names)}"
        raise KeyError(msg)
    altitude = site.altitude_m if args.altitude is None else args.altitude
    pressure = site.station_pressure_kpa if args.pressure_kpa is None else args.pressure_kpa
    return site.name, altitude, pressure, cfg.thermal.overrides


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON); 64 on bad arguments, 78 on a bad config."""
    from agent.errors import ConfigError  # noqa: PLC0415 - keep the module import light

    name, altitude, pressure, overrides = "cli", args.altitude, args.pressure_kpa, ()
    if args.config is not None:
        try:
            name, altitude, pressure, overrides = _from_config(args)
        except ConfigError as exc:
            sys.stderr.write(f"{exc}\n")
            return EX_CONFIG
        except KeyError as exc:
            sys.stderr.write(f"altiwatch thresholds: {exc.args[0]}\n")
            return EX_USAGE
    if altitude is None or not -500 <= altitude <= 11_000:  # noqa: PLR2004 - ISA troposphere
        sys.stderr.write("altiwatch thresholds: --altitude must be between -500 and 11000 m\n")
        return EX_USAGE
    site = site_air(name, altitude, pressure)
    model_key = normalise_model(args.model) if args.model else None
    rows = []
    for base in _presets(args.model):
        preset, applied = apply_overrides(
            base, overrides, site=name, miner=args.miner or "", model_key=model_key
        )
        rows.append((preset, derate(preset, site, overridden=applied)))
    if args.json:
        out = {"site": site.as_dict(), "presets": [th.as_dict() for _, th in rows]}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        sys.stdout.write(_table(site, rows) + "\n")
    return EX_OK
