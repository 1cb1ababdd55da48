import io
import socket
from collections.abc import Sequence
from typing import Any

import pytest
from rich.console import Console

from agent import cli, top

GOLMUD_AIR = {
    "altitude_m": 2800.0,
    "pressure_altitude_m": 2800.0,
    "delta": 0.7097,
    "cooling_multiplier": 1.285,
    "pressure_source": "isa",
}


def _s19(
    miner: str,
    *,
    board: float,
    hashrate: float = 1.04e14,
    alarms: Sequence[dict[str, Any]] = (),
    up: bool = True,
) -> dict[str, Any]:
    """A fleet entry shaped like agent.http_api.miner_json for a stock S19 at Golmud."""
    return {
        "miner": miner,
        "site": "golmud",
        "address": "127.70.0.2",
        "name": None,
        "up": up,
        "last_error": None if up else "timeout",
        "model": "S19j Pro",
        "make": "AntMiner",
        "hashrate_hs": hashrate if up else None,
        "expected_hashrate_hs": 1.04e14 if up else None,
        "max_chip_temp_c": board + 15 if up else None,
        "max_board_temp_c": board if up else None,
        "inlet_temp_c": 18.0 if up else None,
        "power_w": 3068.0 if up else None,
        "fans": [{"index": i, "rpm": 5400} for i in range(4)] if up else [],
        "boards": [],
        "thresholds": {
            "preset": "s19",
            "sensor": "board",
            "critical_c": 72.03,
            "warning_c": 59.18,
            "critical_sea_level_c": 75.0,
            "warning_sea_level_c": 65.0,
            "rpm_max": 6000,
            **GOLMUD_AIR,
        },
        "alarms": list(alarms),
        "site_air": GOLMUD_AIR,
    }


def _frame(fleet: list[dict[str, Any]], **kwargs: Any) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=170, no_color=True)
    console.print(top.render(fleet, source="http://agent:9847", now=0.0, **kwargs))
    return buffer.getvalue()


def test_top_site_header_shows_altitude_delta_and_cooling_multiplier():
    """The site header carries altitude, δ and M(δ) from the agent's site air."""
    text = _frame([_s19("AA", board=60.0)])
    assert "Site golmud" in text
    assert "altitude 2,800 m" in text
    assert "δ 0.710" in text
    assert "M(δ) 1.285" in text


def test_top_row_shows_hashrate_vs_expected_and_derated_thresholds():
    """A miner's row shows hashrate, its share of expected, hottest sensor and derated limits."""
    text = _frame([_s19("AA", board=61.0, hashrate=0.936e14)])
    line = next(line for line in text.splitlines() if line.startswith("AA"))
    assert "93.6 TH/s" in line
    assert "90.0%" in line
    assert "61.0 board" in line  # the S19 preset's sensor is the board, not the estimated chip
    assert "59.2/72.0" in line
    assert "-1.8" in line  # headroom to the derated warning
    assert "5400 rpm (90%)" in line  # fan load against the preset's rpm_max
    assert "3,068 W" in line


def test_top_shows_active_alarms_and_counts_them_in_the_header():
    """Alarms appear in the miner's row and in the site header's severity counts."""
    alarm = {
        "miner": "AA",
        "site": "golmud",
        "rule": "chip_temperature",
        "severity": "critical",
        "summary": "R1 chip/board temperature critical: board 73.0 °C ≥ 72.6 °C",
    }
    text = _frame(
        [_s19("AA", board=73.0, alarms=[alarm]), _s19("BB", board=50.0)],
        alarms=[{"miner": None, "site": "golmud", "rule": "altitude_psu", "severity": "info"}],
    )
    assert "chip_temperature:crit" in text
    assert "alarms: 1 critical, 0 warning, 1 info" in text
    assert "site altitude_psu:info" in text
    assert "crit AA  R1 chip/board temperature critical: board 73.0 °C ≥ 72.6 °C" in text


def test_top_down_miner_shows_reason_and_dashes():
    """A miner whose last poll failed shows DOWN with the reason and no made-up numbers."""
    text = _frame([_s19("CC", board=0.0, up=False)])
    line = next(line for line in text.splitlines() if line.startswith("CC"))
    assert "DOWN timeout" in line
    assert "TH/s" not in line
    assert "0/1 up" in text


def test_top_tolerates_missing_and_malformed_fields():
    """Entries missing every optional field, or with wrong types, render as dashes."""
    fleet: list[dict[str, Any]] = [
        {"miner": "bare"},
        {"miner": "odd", "site": "x", "hashrate_hs": "fast", "fans": "none", "thresholds": 3},
        {"miner": "nan", "site": "x", "hashrate_hs": float("nan"), "alarms": [{"severity": 3}]},
    ]
    text = _frame(fleet)
    assert "bare" in text
    assert "odd" in text
    assert "nan " in text
    assert "hashrate - of - expected" in text


def test_top_empty_fleet_says_so():
    """An agent with no miners yet gives a clear message instead of an empty table."""
    assert "no miners in the agent's inventory yet" in _frame([])


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("miner", ["AA", "BB", "CC", "DD"]),
        ("temp", ["CC", "AA", "BB", "DD"]),  # least headroom first, unknown temperature last
        ("hashrate", ["DD", "BB", "AA", "CC"]),  # down first, then the lowest ratio
        ("alarms", ["AA", "CC", "BB", "DD"]),  # most severe first
    ],
)
def test_top_sort_orders_rows(sort, expected):
    """Each --sort key orders the rows worst first (or by id for ``miner``)."""
    crit = {"miner": "AA", "rule": "chip_temperature", "severity": "critical"}
    warn = {"miner": "CC", "rule": "inlet_temperature", "severity": "warning"}
    fleet = [
        _s19("BB", board=40.0, hashrate=0.70e14),
        _s19("AA", board=58.0, hashrate=1.00e14, alarms=[crit]),
        _s19("DD", board=0.0, up=False),
        _s19("CC", board=66.0, hashrate=1.04e14, alarms=[warn]),
    ]
    text = _frame(fleet, sort=sort)
    lines = [line.split()[0] for line in text.splitlines() if line[:2] in {"AA", "BB", "CC", "DD"}]
    assert lines == expected


def test_top_cli_registers_top_with_options():
    """``altiwatch top`` is registered with --url, --sort and --once."""
    args = cli.build_parser().parse_args(
        ["top", "--url", "http://h:1", "--sort", "alarms", "--once"]
    )
    assert args.url == "http://h:1"
    assert args.sort == "alarms"
    assert args.once is True
    assert callable(args.handler)


def test_top_once_against_unreachable_agent_exits_69(capsys):
    """With nothing listening, --once exits 69 (EX_UNAVAILABLE) with a message, no traceback."""
    with socket.socket() as sock:
        sock.bind(("127.70.250.1", 0))
        port = sock.getsockname()[1]
    code = cli.main(["top", "--once", "--url", f"http://127.70.250.1:{port}"])
    assert code == 69
    assert "altiwatch top: cannot read" in capsys.readouterr().err


def test_top_rejects_non_http_urls(capsys):
    """Only http(s) URLs are fetched (no file:// reads through urllib)."""
    assert cli.main(["top", "--once", "--url", "file:///etc"]) == 69
    assert "unsupported URL scheme" in capsys.readouterr().err


def test_top_format_hashrate_scales_units():
    """Hashrates auto-scale like Grafana's Hs unit; unknown is a dash."""
    assert top.format_hashrate(1.04e14) == "104.0 TH/s"
    assert top.format_hashrate(2.5e15) == "2.5 PH/s"
    assert top.format_hashrate(5.0e8) == "500.0 MH/s"
    assert top.format_hashrate(None) == "-"


def test_top_live_mode_refreshes_until_interrupted(monkeypatch):
    """Live mode fetches, draws, and exits 0 on Ctrl-C; a fetch error is shown, not raised."""
    answers: list[Any] = [top.FetchError("cannot read http://agent:9847/api/v1/fleet: refused")]
    answers.append(([_s19("AA", board=60.0)], []))

    def fake_fetch(url: str, *, timeout_s: float) -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    screen = io.StringIO()
    frames: list[str] = []

    def fake_sleep(_seconds: float) -> None:
        frames.append(screen.getvalue())
        if not answers:
            raise KeyboardInterrupt

    monkeypatch.setattr(top, "fetch", fake_fetch)
    console = Console(file=screen, force_terminal=True, width=170, no_color=True)
    code = top.run_live(
        "http://agent:9847", "temp", interval_s=0.5, sleep=fake_sleep, console=console
    )
    assert code == 0
    assert len(frames) == 2
    output = frames[0] + frames[1]
    assert "refused (retrying)" in output
    assert "Site golmud" in output


def test_top_connection_moves_userinfo_out_of_the_url():
    """Credentials in the URL become basic auth; the shown URL and repr never carry them."""
    conn = top.Connection.parse("https://ops:s%40cret@agent.site:9847/")
    assert conn.url == "https://agent.site:9847"
    assert conn.username == "ops"
    assert conn.password == "s@cret"  # noqa: S105 - a throwaway test credential
    assert "s@cret" not in repr(conn)


def test_top_limit_shows_the_worst_rows_and_counts_the_rest():
    """--limit keeps the worst rows in sort order and says how many more exist."""
    fleet = [_s19(f"M{i:03d}", board=40.0 + i) for i in range(30)]
    fleet.append(_s19("DOWN", board=0.0, up=False))
    text = _frame(fleet, sort="temp", limit=5)
    shown = [line.split()[0] for line in text.splitlines() if line[:1] == "M"]
    assert shown == ["M029", "M028", "M027", "M026", "M025"]  # least headroom first
    assert "… 26 more miners not shown (1 down, 0 with alarms)" in text
    assert "30/31 up" in text  # the header still covers the whole site
    assert "M000" in _frame(fleet, sort="temp", limit=0)


def test_top_group_by_rack_shows_names_before_ids_in_walking_order():
    """``--group rack``: one table per container and rack (rack 2 before rack 10), name first."""
    fleet = [
        {**_s19("02:00:00:00:00:0A", board=50), "location": {"container": "C1", "rack": "10"}},
        {
            **_s19("02:00:00:00:00:02", board=50),
            "name": "S19-0412",
            "location": {"container": "C1", "rack": "2", "shelf": "3", "slot": None},
        },
    ]
    text = _frame(fleet, group="rack")
    assert text.index("container C1, rack 2:") < text.index("container C1, rack 10:")
    assert "S19-0412 (02:00:00:00:00:02)" in text
    assert "C1/2/3/-" in text
