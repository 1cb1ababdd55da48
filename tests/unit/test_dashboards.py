"""Lint tests mirroring grafana/dashboard-linter's rules, plus our own dashboard conventions."""

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
DS = "${datasource}"

# Units used here, each a unit id in grafana/grafana:packages/grafana-data/src/valueFormats/categories.ts.
GRAFANA_UNITS = {
    "short",
    "percentunit",
    "s",
    "dtdurations",
    "dateTimeFromNow",
    "celsius",
    "rotrpm",
    "watt",
    "Hs",
    "lengthm",
    "ops",
    "bool_on_off",
}
# Grafana's custom-unit syntax; J/TH has no built-in unit.
CUSTOM_UNIT = re.compile(r"^(suffix|prefix):\s?\S+")
RANGE_FUNCTIONS = re.compile(
    r"\b(rate|irate|increase|delta|idelta|deriv|changes|resets|\w+_over_time)\s*\(([^()]*)\)"
)
COUNTER = re.compile(r"\b[a-z_:]+_total\b")


def load_generator() -> ModuleType:
    """Import grafana/generate_dashboards.py (a script outside the packages)."""
    spec = importlib.util.spec_from_file_location(
        "generate_dashboards", GRAFANA / "generate_dashboards.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through it
    spec.loader.exec_module(module)
    return module


def _dashboards() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, json.loads(p.read_text(encoding="utf-8"))) for p in DASHBOARD_FILES]


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def _targets() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name, dashboard in _dashboards():
        for panel in _panels(dashboard):
            for target in panel.get("targets", []):
                yield name, panel["title"], target


GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$site": ".+",
    "$model": ".+",
    "$miner": ".+",
}


def substitute(expr: str) -> str:
    """Replace Grafana variables the way a query with "All" selected would look."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def dashboard_queries() -> list[tuple[str, str]]:
    """(id, expression with variables substituted) for every target of every dashboard."""
    return [
        (f"{name}:{title}:{t['refId']}", substitute(t["expr"])) for name, title, t in _targets()
    ]


def _expr_ids() -> list[str]:
    return [f"{name}:{title}:{t['refId']}" for name, title, t in _targets()]


def test_dashboards_four_exist_with_stable_unique_uids():
    """The four dashboards exist, each with its stable uid, id null and a title/description."""
    found = {d["uid"]: name for name, d in _dashboards()}
    assert found == {
        "altiwatch-fleet-overview": "fleet-overview.json",
        "altiwatch-thermal-altitude": "thermal-altitude.json",
        "altiwatch-miner-detail": "miner-detail.json",
        "altiwatch-agent-health": "agent-health.json",
    }
    for _, dashboard in _dashboards():
        assert dashboard["id"] is None
        assert dashboard["title"].startswith("altiwatch / ")
        assert dashboard["description"]


def test_dashboards_committed_json_matches_generator():
    """grafana/dashboards/*.json is exactly what grafana/generate_dashboards.py writes."""
    generator = load_generator()
    assert sorted(generator.DASHBOARDS) == [p.name for p in DASHBOARD_FILES]
    for path in DASHBOARD_FILES:
        assert path.read_text(encoding="utf-8") == generator.render(path.name), (
            f"{path.name} is stale: run .venv/bin/python grafana/generate_dashboards.py"
        )


def test_dashboards_panel_ids_unique_and_panels_fit_the_grid():
    """Panel ids are unique within a dashboard and every panel lies inside the 24-column grid."""
    for name, dashboard in _dashboards():
        ids = [p["id"] for p in _panels(dashboard)]
        assert len(ids) == len(set(ids)), name
        for panel in _panels(dashboard):
            grid = panel["gridPos"]
            assert grid["x"] >= 0
            assert grid["x"] + grid["w"] <= 24, (name, panel["title"])
            assert grid["h"] > 0


def test_dashboards_template_datasource_rule():
    """Each dashboard has a ``datasource`` variable of type datasource for Prometheus."""
    for name, dashboard in _dashboards():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        ds = variables.get("datasource")
        assert ds is not None, name
        assert ds["type"] == "datasource"
        assert ds["query"] == "prometheus"
        assert ds["label"] == "Data source"


def test_dashboards_panel_and_target_datasource_rule():
    """Every panel, target and query variable uses ``${datasource}``, never a fixed uid."""
    for name, dashboard in _dashboards():
        for panel in _panels(dashboard):
            assert panel["datasource"] == {"type": "prometheus", "uid": DS}, (name, panel["title"])
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"] == {"type": "prometheus", "uid": DS}
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                assert variable["datasource"]["uid"] == DS, (name, variable["name"])


def test_dashboards_panel_title_description_rule():
    """Every panel has a non-empty title and description; titles are unique per dashboard."""
    for name, dashboard in _dashboards():
        titles = [p["title"] for p in _panels(dashboard)]
        assert len(titles) == len(set(titles)), name
        for panel in _panels(dashboard):
            assert panel["title"].strip(), name
            assert len(panel["description"].strip()) >= 10, (name, panel["title"])


def test_dashboards_panel_units_rule():
    """Every panel sets a valid Grafana unit (a known unit id or a custom suffix/prefix)."""
    for name, dashboard in _dashboards():
        for panel in _panels(dashboard):
            unit = panel["fieldConfig"]["defaults"].get("unit")
            assert unit, (name, panel["title"])
            assert unit in GRAFANA_UNITS or CUSTOM_UNIT.match(unit), (name, panel["title"], unit)


def test_dashboards_units_match_metric_kinds():
    """Panels over hashrate, temperature, fan speed and power use Hs, celsius, rotrpm, watt."""
    expected = {
        "asic_hashrate_hashes_per_second": "Hs",
        "asic_chip_temperature_celsius": "celsius",
        "asic_fan_speed_rpm": "rotrpm",
    }
    for name, dashboard in _dashboards():
        for panel in _panels(dashboard):
            exprs = [t["expr"] for t in panel["targets"]]
            unit = panel["fieldConfig"]["defaults"]["unit"]
            for metric, want in expected.items():
                if all(e.lstrip().startswith(f"{metric}{{") for e in exprs):
                    assert unit == want, (name, panel["title"])
            if exprs and all("asic_power_watts" in e for e in exprs) and "1e12" not in exprs[0]:
                assert unit == "watt", (name, panel["title"])


@pytest.mark.parametrize(("name", "title", "target"), list(_targets()), ids=_expr_ids())
def test_dashboards_target_rate_interval_rule(name, title, target):
    """Every range function uses ``$__rate_interval``, never a fixed window."""
    for match in RANGE_FUNCTIONS.finditer(target["expr"]):
        assert "[$__rate_interval]" in match.group(2), (name, title, match.group(0))


@pytest.mark.parametrize(("name", "title", "target"), list(_targets()), ids=_expr_ids())
def test_dashboards_target_counter_agg_rule(name, title, target):
    """Counters (``*_total``) and histogram buckets appear only inside rate()/increase()."""
    expr = target["expr"]
    for match in re.finditer(r"\b[a-z_:]+(_total|_bucket)\b", expr):
        before = expr[: match.start()]
        assert re.search(r"\b(rate|irate|increase)\(\s*$", before), (name, title, match.group(0))


@pytest.mark.parametrize(("name", "title", "target"), list(_targets()), ids=_expr_ids())
def test_dashboards_target_label_promql_rule(name, title, target):
    """Every per-miner ``asic_*`` selector filters on the site and miner variables."""
    for match in re.finditer(r"\basic_[a-z_]+\{([^}]*)\}", target["expr"]):
        matchers = match.group(1)
        assert 'site=~"$site"' in matchers, (name, title, match.group(0))
        assert 'miner=~"$miner"' in matchers, (name, title, match.group(0))
    bare = re.findall(r"\basic_[a-z_]+\b(?!\{|_)", target["expr"])
    assert not bare, (name, title, bare)


@pytest.mark.parametrize(("name", "title", "target"), list(_targets()), ids=_expr_ids())
def test_dashboards_target_brackets_and_quotes_balance(name, title, target):
    """Every expression has balanced brackets and quotes (promtool parses them in integration)."""
    expr = target["expr"]
    for open_, close in ("()", "{}", "[]"):
        assert expr.count(open_) == expr.count(close), (name, title)
    assert expr.count('"') % 2 == 0, (name, title)
    assert target["refId"]
    assert target["legendFormat"]


def test_dashboards_variables_are_chained_from_miner_info():
    """Site → model → miner are query variables over asic_miner_info, each filtered by the previous."""
    for name, dashboard in _dashboards():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert list(variables)[:4] == ["datasource", "site", "model", "miner"], name
        assert variables["site"]["query"] == "label_values(asic_miner_info, site)"
        assert variables["model"]["query"] == (
            'label_values(asic_miner_info{site=~"$site"}, model)'
        )
        assert variables["miner"]["query"] == (
            'label_values(asic_miner_info{site=~"$site", model=~"$model"}, miner)'
        )
        for var in ("site", "model", "miner"):
            assert variables[var]["refresh"] == 2, (name, var)  # on time range change
            if variables[var]["includeAll"]:
                assert variables[var]["allValue"] == ".*"


def test_dashboards_miner_detail_selects_one_miner():
    """The miner-detail dashboard's miner variable is single-valued, the others multi-valued."""
    for name, dashboard in _dashboards():
        miner = next(v for v in dashboard["templating"]["list"] if v["name"] == "miner")
        assert miner["multi"] is (name != "miner-detail.json")


def test_dashboards_selection_uses_model_join():
    """Model filtering joins asic_miner_info, the only series with a model label."""
    generator = load_generator()
    assert generator.f("x") == (
        '(x) and on (site, miner) asic_miner_info{site=~"$site", model=~"$model", miner=~"$miner"}'
    )


def test_dashboards_lint_exclusions_have_reasons():
    """grafana/dashboards/.lint excludes only job/instance rules, each with a reason."""
    lint = yaml.safe_load((GRAFANA / "dashboards" / ".lint").read_text(encoding="utf-8"))
    assert set(lint["exclusions"]) == {
        "template-job-rule",
        "template-instance-rule",
        "target-job-rule",
        "target-instance-rule",
    }
    for rule in lint["exclusions"].values():
        assert len(rule["reason"]) > 10


def test_dashboards_provisioning_datasource_has_fixed_uid():
    """The provisioned datasource is Prometheus with uid altiwatch-prometheus."""
    text = (GRAFANA / "provisioning" / "datasources" / "altiwatch.yml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert data["apiVersion"] == 1
    (ds,) = data["datasources"]
    assert ds["uid"] == "altiwatch-prometheus"
    assert ds["type"] == "prometheus"
    assert ds["url"].startswith("http")


def test_dashboards_provisioning_file_provider():
    """The dashboard provider loads JSON files from disk into the altiwatch folder."""
    text = (GRAFANA / "provisioning" / "dashboards" / "altiwatch.yml").read_text(encoding="utf-8")
    (provider,) = yaml.safe_load(text)["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "altiwatch"
    assert provider["options"]["path"]


def test_dashboards_panels_do_not_overlap():
    """No two panels of a dashboard share a grid cell."""
    for name, dashboard in _dashboards():
        taken: dict[tuple[int, int], str] = {}
        for panel in _panels(dashboard):
            g = panel["gridPos"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in taken, (name, panel["title"], taken[(x, y)])
                    taken[(x, y)] = panel["title"]


def test_dashboards_status_stats_have_colour_thresholds():
    """Stats an operator scans for trouble (down, throttled, ratio) are coloured by threshold."""
    fleet = dict(_dashboards())["fleet-overview.json"]
    panels = {p["title"]: p for p in _panels(fleet)}
    for title in ("Miners down", "Miners throttled", "Hashrate vs expected"):
        steps = panels[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[0]["value"] is None
        assert [s["value"] for s in steps[1:]] == sorted(s["value"] for s in steps[1:])


def test_dashboards_thermal_rack_heat_map_is_headroom_by_rack_and_shelf():
    """The thermal dashboard's rack heat-map: per-miner headroom joined to location labels."""
    generator = load_generator()
    thermal = dict(_dashboards())["thermal-altitude.json"]
    panels = {p["title"]: p for p in _panels(thermal)}
    heat = panels["Rack heat-map: headroom by rack × shelf"]
    (target,) = heat["targets"]
    expr = target["expr"]
    assert generator.headroom_by_miner() in expr  # the headroom panel's per-miner figure
    assert (
        generator.headroom_by_miner() in panels["Headroom to derated warning"]["targets"][0]["expr"]
    )
    assert "group_left (container, rack, shelf) asic_miner_info{" in expr
    assert expr.startswith("label_join(min by (site, container, rack, shelf) (")
    assert target["instant"] is True
    assert target["format"] == "table"
    matrix = heat["transformations"][0]
    assert matrix["id"] == "groupingToMatrix"
    assert (matrix["options"]["rowField"], matrix["options"]["columnField"]) == ("rack", "shelf")
    defaults = heat["fieldConfig"]["defaults"]
    assert defaults["custom"]["cellOptions"]["type"] == "color-background"
    assert [s["value"] for s in defaults["thresholds"]["steps"]] == [None, 0, 3, 10]
