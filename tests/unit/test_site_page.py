"""The site page at ``/``: a pure function from fleet and alarm objects to escaped HTML."""

import re
from html.parser import HTMLParser
from typing import Any

from agent import site_page

GOLMUD_AIR = {
    "site": "golmud",
    "altitude_m": 2800.0,
    "delta": 0.7097,
    "cooling_multiplier": 1.285,
    "pressure_source": "isa",
}
NOW = 1_800_000_000.0


def _miner(
    miner: str,
    *,
    board: float | None = 50.0,
    up: bool | None = True,
    location: dict[str, Any] | None = None,
    name: str | None = None,
    alarms: list[dict[str, Any]] | None = None,
    maintenance: dict[str, Any] | None = None,
    inlet: float | None = None,
    hostname: str | None = None,
    thresholds: bool = True,
) -> dict[str, Any]:
    """A fleet entry shaped like agent.http_api.miner_json for a stock S19 at Golmud."""
    return {
        "miner": miner,
        "site": "golmud",
        "address": "127.71.0.2",
        "name": name,
        "mac": miner,
        "hostname": hostname,
        "up": up,
        "last_error": "timeout" if up is False else None,
        "model": "S19j Pro",
        "max_chip_temp_c": None if board is None or not up else board + 15,
        "max_board_temp_c": board if up else None,
        "inlet_temp_c": inlet,
        "fans": [],
        "thresholds": {
            "sensor": "board",
            "warning_c": 59.0,
            "critical_c": 72.0,
            "inlet_warning_c": 30.0,
            **GOLMUD_AIR,
        }
        if thresholds
        else None,
        "alarms": alarms or [],
        "site_air": GOLMUD_AIR,
        "location": location,
        "maintenance": maintenance,
    }


def _loc(container: str, rack: str, shelf: str, slot: str | None = None) -> dict[str, Any]:
    return {"container": container, "rack": rack, "shelf": shelf, "slot": slot}


def _alarm(miner: str | None, rule: str = "R1", severity: str = "warning") -> dict[str, Any]:
    return {
        "site": "golmud",
        "miner": miner,
        "rule": rule,
        "title": "Chip over temperature",
        "severity": severity,
        "since": NOW - 600,
        "summary": f"{rule} {severity}: board 61.0 °C ≥ 59.0 °C",
    }


class _Tiles(HTMLParser):
    """The page's tiles: (classes, tooltip, texts inside)."""

    def __init__(self) -> None:
        super().__init__()
        self.tiles: list[tuple[set[str], str, list[str]]] = []
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        classes = set((values.get("class") or "").split())
        if tag == "div" and "tile" in classes:
            self.tiles.append((classes, values.get("title") or "", []))
            self._depth = 1
        elif self._depth:
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:  # noqa: ARG002 - HTMLParser names it
        if self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.tiles[-1][2].append(data)


def _tiles(page: str) -> dict[str, tuple[set[str], list[str]]]:
    """Tiles by the first line of their tooltip (the miner's label)."""
    parser = _Tiles()
    parser.feed(page)
    return {tip.split("\n")[0]: (classes, texts) for classes, tip, texts in parser.tiles}


def test_site_page_shows_site_air_and_counts():
    """The page shows altitude, δ, M(δ) and the miners up, down, alarming and in maintenance."""
    fleet = [
        _miner("AA", alarms=[_alarm("AA")]),
        _miner("BB"),
        _miner("CC", up=False),
        _miner("DD", maintenance={"reason": "fan swap", "since": NOW, "until": None, "by": "li"}),
    ]
    page = site_page.render(fleet, [_alarm("AA")], now=NOW)
    assert "<h2>Site golmud</h2>" in page
    assert "<dd>2,800 m</dd>" in page
    assert "<dd>0.710</dd>" in page
    assert "<dd>1.285</dd>" in page
    counts = {
        label: int(value) for value, label in re.findall(r"<dd>(\d+)</dd><dt>([a-z]+)</dt>", page)
    }
    assert counts == {"miners": 4, "up": 2, "down": 1, "alarming": 1, "maintenance": 1}


def test_site_page_rack_map_places_miners_by_container_rack_and_shelf():
    """Located miners sit in their container's table at (shelf row, rack column); others unplaced."""
    fleet = [
        _miner("A1", location=_loc("C1", "2", "1", "1")),
        _miner("A2", location=_loc("C1", "10", "2", "1")),
        _miner("B1", location=_loc("C2", "1", "1")),
        _miner("U1"),
        _miner("U2", location={"container": None, "rack": None, "shelf": None, "slot": None}),
    ]
    page = site_page.render(fleet, now=NOW)
    tables = re.findall(
        r'<table class="rack"><caption>(.*?)</caption>(.*?)</table>', page, re.DOTALL
    )
    assert [caption for caption, _ in tables] == ["container C1", "container C2"]
    c1 = tables[0][1]
    assert re.findall(r"<th>(rack [^<]+)</th>", c1) == ["rack 2", "rack 10"]  # natural order
    rows = re.findall(r"<tr><th>(shelf [^<]+)</th>(.*?)</tr>", c1, re.DOTALL)
    assert [shelf for shelf, _ in rows] == ["shelf 1", "shelf 2"]
    shelf1 = re.findall(r"<td>(.*?)</td>", rows[0][1], re.DOTALL)
    shelf2 = re.findall(r"<td>(.*?)</td>", rows[1][1], re.DOTALL)
    assert "A1" in shelf1[0]
    assert shelf1[1] == ""
    assert shelf2[0] == ""
    assert "A2" in shelf2[1]
    unplaced = page.split('<div class="unplaced">', 1)[1]
    assert "unplaced (2)" in unplaced
    assert "U1" in unplaced
    assert "U2" in unplaced
    assert "A1" not in unplaced


def test_site_page_tiles_coloured_by_headroom_and_marked_offline_or_maintenance():
    """Tiles carry the headroom band; offline and maintenance tiles say so; unknown is grey."""
    fleet = [
        _miner("COOL", board=45.0),  # 59 - 45 = +14 K
        _miner("MILD", board=54.0),  # +5 K
        _miner("WARM", board=57.5),  # +1.5 K
        _miner("HOT", board=61.0),  # -2 K
        _miner("CRIT", board=73.0),  # past critical 72
        _miner("INLET", board=45.0, inlet=29.0),  # inlet 30 - 29 = +1 K is the smaller
        _miner("NOTHR", thresholds=False),
        _miner("OFF", up=False),
        _miner("MAINT", maintenance={"reason": "board swap"}),
    ]
    tiles = _tiles(site_page.render(fleet, now=NOW))
    bands = {
        miner: next(c for c in classes if c.startswith("b-"))
        for miner, (classes, _) in tiles.items()
    }
    assert bands == {
        "COOL": "b-cool",
        "MILD": "b-mild",
        "WARM": "b-warm",
        "HOT": "b-hot",
        "CRIT": "b-crit",
        "INLET": "b-warm",
        "NOTHR": "b-unknown",
        "OFF": "b-unknown",
        "MAINT": "b-mild",
    }
    assert tiles["COOL"][1][-1] == "+14 K"
    assert tiles["INLET"][1][-1] == "+1 K"
    assert tiles["NOTHR"][1][-1] == "-"  # unknown, never 0
    assert "s-offline" in tiles["OFF"][0]
    assert tiles["OFF"][1][-1] == "OFF"
    assert "s-maintenance" in tiles["MAINT"][0]
    page = site_page.render(
        [_miner("M", maintenance={"reason": "fan <swap>", "by": "li", "until": NOW + 3600})],
        now=NOW,
    )
    assert "maintenance: fan &lt;swap&gt;, by li, until 2027-01-15 09:00 UTC" in page
    assert tiles["MAINT"][1][-1] == "MAINT"


def test_site_page_lists_open_alarms_worst_first_with_location():
    """Open alarms are listed critical first, naming the miner by name and location."""
    fleet = [
        _miner("AA", name="s19-a", location=_loc("C3", "12", "2"), alarms=[_alarm("AA")]),
        _miner("BB", alarms=[_alarm("BB", "R4", "critical")]),
    ]
    alarms = [_alarm("AA"), _alarm("BB", "R4", "critical"), _alarm(None, "R7", "critical")]
    page = site_page.render(fleet, alarms, now=NOW)
    rows = re.findall(
        r'<tr class="sev-(\w+)[^"]*"><td>\w+</td><td>(\w+)</td><td>([^<]*)</td>', page
    )
    assert rows[2] == ("warning", "R1", "s19-a (container C3, rack 12, shelf 2)")
    assert sorted(rows[:2]) == [("critical", "R4", "BB"), ("critical", "R7", "site")]
    assert "Open alarms (3)" in page
    assert "<td>10 min</td>" in page


def test_site_page_alarm_of_a_miner_in_maintenance_is_shown_as_held():
    """An alarm of a miner in maintenance is listed as held back, and the miner is not alarming."""
    fleet = [_miner("AA", alarms=[_alarm("AA")], maintenance={"reason": "repair"})]
    page = site_page.render(fleet, [_alarm("AA")], now=NOW)
    assert "(held: maintenance)" in page
    assert "<dd>0</dd><dt>alarming</dt>" in page


def test_site_page_escapes_hostile_miner_strings():
    """A <script> hostname, name, location or alarm text is shown as text, never as markup."""
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    alarm = {**_alarm("AA"), "summary": evil, "rule": evil}
    fleet = [
        _miner(
            "AA",
            name=evil,
            hostname=evil,
            location=_loc(evil, evil, evil, evil),
            alarms=[alarm],
        ),
        {**_miner("BB"), "site": evil, "model": evil},
    ]
    page = site_page.render(fleet, [alarm], now=NOW)
    assert "<script" not in page
    assert "<img" not in page
    assert "onerror=alert" not in page.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    parser = _Tiles()
    parser.feed(page)  # the tooltip attribute round-trips to the hostile text, not markup
    assert any(evil in tip for _, tip, _ in parser.tiles)


def test_site_page_is_self_contained_and_refreshes_itself():
    """No script, no external asset; a meta refresh and a CSP that forbids everything else."""
    page = site_page.render([_miner("AA")], now=NOW, refresh_s=20)
    assert '<meta http-equiv="refresh" content="20">' in page
    assert f'content="{site_page.CONTENT_SECURITY_POLICY}"' in page
    assert "default-src 'none'" in site_page.CONTENT_SECURITY_POLICY
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert "url(" not in page
    assert "2027-01-15 08:00:00 UTC" in page


def test_site_page_tolerates_missing_fields_and_empty_fleet():
    """A fleet object with almost nothing, and an empty fleet, still render."""
    page = site_page.render([{"miner": "X"}], [{"junk": 1}], now=NOW)
    assert "unplaced (1)" in page
    assert "<dd>-</dd>" in page  # unknown air
    assert "No miners configured." in site_page.render([], now=NOW)
