import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_dashboards import dashboard_queries, load_generator, substitute

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "rules" / "altiwatch.rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "rules" / "altiwatch.rules.test.yml"

pytestmark = pytest.mark.prometheus


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool not found: install Debian's prometheus (make sysdeps)"
    return subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def _ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"


def test_promtool_check_config_accepts_the_example_prometheus_config():
    """Promtool check config passes on deploy/prometheus/prometheus.yml (rules and file_sd)."""
    result = _promtool("check", "config", PROMETHEUS_DIR / "prometheus.yml")
    _ok(result)
    assert "1 rule files found" in result.stdout


def test_promtool_check_config_catches_a_broken_file_sd_file(tmp_path):
    """The config check reads the file_sd target files too, so a broken one fails it."""
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, copy)
    (copy / "file_sd" / "altiwatch-broken.yml").write_text("- targets: {not: a list}\n")
    result = _promtool("check", "config", copy / "prometheus.yml")
    assert result.returncode != 0, result.stdout


def test_promtool_check_config_accepts_the_compose_prometheus_config(tmp_path):
    """The evaluation stack's prometheus.yml is valid with the rules mounted beside it."""
    shutil.copy(ROOT / "deploy" / "compose" / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copytree(PROMETHEUS_DIR / "rules", tmp_path / "rules")
    _ok(_promtool("check", "config", tmp_path / "prometheus.yml"))


def test_promtool_check_rules_accepts_the_alerting_rules():
    """Promtool check rules passes on the alerting and recording rules."""
    result = _promtool("check", "rules", RULES)
    _ok(result)
    assert "SUCCESS" in result.stdout


def test_promtool_test_rules_pass_including_for_durations():
    """The promtool unit tests of every alert (pending vs firing at the `for` boundary) pass."""
    _ok(_promtool("test", "rules", RULE_TESTS))


def test_promtool_rule_tests_notice_a_changed_for_duration(tmp_path):
    """Shortening AltiwatchAgentDown's `for` from 2m to 1m makes the rule tests fail."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    agent_rules = next(g for g in rules["groups"] if g["name"] == "altiwatch-agent")
    down = next(r for r in agent_rules["rules"] if r.get("alert") == "AltiwatchAgentDown")
    assert down["for"] == "2m"
    down["for"] = "1m"
    (tmp_path / "altiwatch.rules.yml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    shutil.copy(RULE_TESTS, tmp_path / "altiwatch.rules.test.yml")
    result = _promtool("test", "rules", tmp_path / "altiwatch.rules.test.yml")
    assert result.returncode != 0
    assert "AltiwatchAgentDown" in result.stdout + result.stderr


def test_promtool_every_alert_rule_is_unit_tested():
    """Each alert in altiwatch.rules.yml appears in at least one promtool alert_rule_test."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    tested = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts - tested == set()


def test_promtool_parses_every_dashboard_expression(tmp_path):
    """Every dashboard query (variables substituted) is valid PromQL to Prometheus's own parser."""
    queries = dashboard_queries()
    assert len(queries) > 40
    rules = {
        "groups": [
            {
                "name": "dashboard-expressions",
                "rules": [
                    {"record": f"dashboard:expr_{i}:check", "expr": expr}
                    for i, (_, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-exprs.rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    result = _promtool("check", "rules", path)
    _ok(result)
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def _promql_case(
    tmp_path: Path, series: dict[str, str], expr: str, expected: list[dict[str, Any]]
) -> None:
    """Evaluate ``expr`` over ``series`` with promtool's rule-test engine and compare samples."""
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": k, "values": v} for k, v in series.items()],
                "promql_expr_test": [{"expr": expr, "eval_time": "1m", "exp_samples": expected}],
            }
        ],
    }
    path = tmp_path / "case.test.yml"
    path.write_text(yaml.safe_dump(tests), encoding="utf-8")
    _ok(_promtool("test", "rules", path))


def s19_s21_series(*, s21_board: str) -> dict[str, str]:
    """Input series for promtool: a stock S19 (board-sensor thresholds) and an S21 (die sensor)."""
    info = 'asic_miner_info{site="g",miner="%s",model="m"}'
    return {
        info % "s19": "1 1",
        'asic_chip_temperature_celsius{site="g",miner="s19",board="0"}': "76 76",
        'asic_board_temperature_celsius{site="g",miner="s19",board="0"}': "61 61",
        'asic_temperature_threshold_celsius{site="g",miner="s19",kind="warning",sensor="board"}': "59.8 59.8",
        info % "s21": "1 1",
        'asic_chip_temperature_celsius{site="g",miner="s21",board="0"}': "80 80",
        'asic_board_temperature_celsius{site="g",miner="s21",board="0"}': f"{s21_board} {s21_board}",
        'asic_temperature_threshold_celsius{site="g",miner="s21",kind="warning",sensor="die"}': "81.9 81.9",
    }


def test_promtool_alarm_sensor_query_picks_the_thresholds_sensor(tmp_path):
    """The hottest-sensor query uses the board for a board-threshold miner, else the chip."""
    generator = load_generator()
    info = 'asic_miner_info{site="g",miner="%s",model="m"}'
    series = {
        **s19_s21_series(s21_board="65"),
        info % "old": "1 1",  # an agent without the sensor label: chip, else board
        'asic_chip_temperature_celsius{site="g",miner="old",board="0"}': "70 70",
        'asic_board_temperature_celsius{site="g",miner="old",board="0"}': "55 55",
        'asic_temperature_threshold_celsius{site="g",miner="old",kind="warning"}': "59.8 59.8",
    }
    expected = [
        {"labels": '{site="g",miner="s19"}', "value": 61},
        {"labels": '{site="g",miner="s21"}', "value": 80},
        {"labels": '{site="g",miner="old"}', "value": 70},
    ]
    _promql_case(tmp_path, series, substitute(generator.alarm_sensor_by_miner()), expected)


def test_promtool_count_or_zero_is_zero_only_for_known_inputs(tmp_path):
    """Counts are 0 when nothing matches but the input exists, and absent when it does not."""
    generator = load_generator()
    expr = substitute(
        generator.count_or_zero('asic_up{site=~"$site", miner=~"$miner"} == 0', "asic_up")
    )
    _promql_case(
        tmp_path, {'asic_up{site="g",miner="a"}': "1 1"}, expr, [{"labels": "{}", "value": 0}]
    )
    _promql_case(
        tmp_path, {'asic_up{site="g",miner="a"}': "0 0"}, expr, [{"labels": "{}", "value": 1}]
    )
    _promql_case(tmp_path, {'asic_hashrate_hashes_per_second{site="g",miner="a"}': "1 1"}, expr, [])


def test_promtool_alarm_count_adds_site_alarms_and_is_zero_when_none_fires(tmp_path):
    """The alarm panels count per-miner plus site-level alarms of a severity; 0 when none fires."""
    generator = load_generator()
    series = {
        'asic_up{site="g",miner="a"}': "1 1",
        'asic_up{site="g",miner="b"}': "1 1",
        'asic_alarm_active{site="g",miner="a",rule="R1",severity="critical"}': "1 1",
        'asic_alarm_active{site="g",miner="b",rule="R6",severity="critical"}': "1 1",
        'altiwatch_site_alarm_active{site="g",rule="R7",severity="critical"}': "1 1",
        'altiwatch_site_alarm_active{site="g",rule="R9",severity="info"}': "1 1",
    }
    for sev, count in (("critical", 3), ("warning", 0), ("info", 1)):
        expr = substitute(generator.alarm_count(sev))
        _promql_case(tmp_path, series, expr, [{"labels": "{}", "value": count}])
    # No miner known (agent not scraped): no data rather than a reassuring 0.
    _promql_case(tmp_path, {}, substitute(generator.alarm_count("critical")), [])


def test_promtool_site_alarm_rule_fires_for_warning_and_critical_only(tmp_path):
    """AltiwatchSiteAlarm mirrors firing site alarms of warning/critical severity, not info."""
    rules_copy = tmp_path / "altiwatch.rules.yml"
    shutil.copy(RULES, rules_copy)
    tests = {
        "rule_files": [rules_copy.name],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'altiwatch_site_alarm_active{site="g",rule="R9",severity="info"}',
                        "values": "1 1 1",
                    }
                ],
                "alert_rule_test": [
                    {"eval_time": "2m", "alertname": "AltiwatchSiteAlarm", "exp_alerts": []}
                ],
            }
        ],
    }
    path = tmp_path / "site.test.yml"
    path.write_text(yaml.safe_dump(tests), encoding="utf-8")
    _ok(_promtool("test", "rules", path))
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    site_rule = next(
        r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "AltiwatchSiteAlarm"
    )
    assert "altiwatch_site_alarm_active" in site_rule["expr"]


def test_promtool_sensor_panels_read_the_thresholds_sensor(tmp_path):
    """Board-sensor panel: stock S19's hottest board only; die panel: the S21's hottest chip."""
    generator = load_generator()
    series = s19_s21_series(s21_board="66")
    board = generator.f(generator.m("asic_board_temperature_celsius"))
    chip = generator.f(generator.m("asic_chip_temperature_celsius"))
    for sensor, reading, want in (("board", board, 61), ("die", chip, 80)):
        expr = substitute(generator.hottest_on_sensor(sensor, reading))
        _promql_case(tmp_path, series, expr, [{"labels": '{site="g"}', "value": want}])
