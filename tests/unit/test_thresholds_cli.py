"""``altiwatch thresholds``: the hand-checkable table and its JSON form."""

from __future__ import annotations

import json

import pytest

from agent.cli import main


def test_thresholds_cli_table_for_s19_at_3000_m(capsys):
    """The S19 table at 3,000 m shows the note's figures with sea level beside them."""
    assert main(["thresholds", "--altitude", "3000", "--model", "S19jPro"]) == 0
    out = capsys.readouterr().out
    assert "M(δ) = 0.35/δ + 0.45·δ^-0.8 + 0.20 = 1.310" in out
    lines = {
        line.split("=")[0].strip(): line.split()
        for line in out.splitlines()
        if "R1" in line or "R2" in line
    }
    assert lines["R1 critical"][-3:] == ["75.0", "72.4", "-2.6"]
    assert lines["R1 warning"][-3:] == ["65.0", "59.3", "-5.7"]
    assert lines["R2 inlet max"][-3:] == ["40.0", "28.0", "-12.0"]
    assert "s21" not in out


def test_thresholds_cli_measured_pressure_and_pressure_altitude(capsys):
    """A plausible station pressure gives δ = p/p0 and the vendor rule at h_p (vector 3)."""
    assert (
        main(
            [
                "thresholds",
                "--altitude",
                "4500",
                "--pressure-kpa",
                "57.8",
                "--model",
                "whatsminer",
                "--json",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["site"]["pressure_source"] == "measured"
    assert data["site"]["pressure_altitude_m"] == pytest.approx(4491, abs=1)
    (wm,) = data["presets"]
    assert wm["inlet_max_c"] == pytest.approx(26.7, abs=0.05)
    assert wm["inlet_warning_c"] == pytest.approx(23.7, abs=0.05)


def test_thresholds_cli_flags_a_sea_level_pressure(capsys):
    """101 kPa at 3,000 m is called implausible and ISA is used."""
    assert (
        main(["thresholds", "--altitude", "3000", "--pressure-kpa", "101", "--model", "s21"]) == 0
    )
    out = capsys.readouterr().out
    assert "IMPLAUSIBLE" in out
    assert "= 0.6919" in out


def test_thresholds_cli_rejects_altitude_outside_isa(capsys):
    """An altitude outside the troposphere model is a usage error (64)."""
    assert main(["thresholds", "--altitude", "20000"]) == 64
    assert "--altitude" in capsys.readouterr().err


def test_thresholds_cli_reads_site_and_overrides_from_config(tmp_path, capsys):
    """--config takes the site's altitude and pressure and applies the operator's overrides."""
    cfg = tmp_path / "altiwatch.yaml"
    cfg.write_text(
        """
sites:
  - {name: golmud, altitude_m: 2800, station_pressure_kpa: 72.1}
  - {name: xining, altitude_m: 2275}
miners:
  - {address: 127.40.9.1, site: golmud}
thermal:
  overrides:
    - match: {site: golmud, model: s19}
      critical_c: 73
""",
        encoding="utf-8",
    )
    args = ["thresholds", "--config", str(cfg), "--site", "golmud", "--model", "S19jPro", "--json"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["site"]["site"] == "golmud"
    assert data["site"]["pressure_source"] == "measured"
    (s19,) = data["presets"]
    assert (s19["critical_sea_level_c"], s19["critical_source"]) == (73.0, "override")
    assert (
        main(
            ["thresholds", "--config", str(cfg), "--site", "xining", "--model", "S19jPro", "--json"]
        )
        == 0
    )
    (plain,) = json.loads(capsys.readouterr().out)["presets"]
    assert (plain["critical_sea_level_c"], plain["critical_source"]) == (75.0, "preset")


def test_thresholds_cli_config_errors(tmp_path, capsys):
    """A bad config exits 78 naming the problem; an unknown site is a usage error (64)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "sites: [{name: a, altitude_m: 100}]\nthermal: {overides: []}\n", encoding="utf-8"
    )
    assert main(["thresholds", "--config", str(bad)]) == 78
    assert "overides" in capsys.readouterr().err
    good = tmp_path / "good.yaml"
    good.write_text(
        "sites: [{name: a, altitude_m: 100}, {name: b, altitude_m: 200}]\n", encoding="utf-8"
    )
    assert main(["thresholds", "--config", str(good)]) == 64
    assert "--site must be one of a, b" in capsys.readouterr().err
