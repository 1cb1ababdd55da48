import base64
import json
import re
import urllib.error
import urllib.request
from typing import Any

import bcrypt
import pytest

from tests.support import chromium
from tests.support.agent import agent_config

pytestmark = pytest.mark.slow

PASSWORD = "site-Page-19"  # noqa: S105 - test credential
HOSTILE = '<script>console.error("injected")</script><img src=x onerror=alert(1)>'
SCENARIO = {
    "name": "golmud-site-page",
    "description": "Five miners at Golmud, one hot, one down, one with a hostile hostname.",
    "site": {
        "name": "golmud",
        "altitude_m": 2800,
        "ambient": {"mean_c": 18, "amplitude_k": 4, "peak_hour": 15, "utc_offset_h": 8},
    },
    "miners": [
        {"model": "antminer-s19jpro", "count": 2, "hostname_prefix": "s19"},
        {
            "model": "antminer-s19jpro",
            "hostname_prefix": "s19-dusty",
            "faults": [{"kind": "clogged_filter", "factor": 0.55}],
        },
        {
            "model": "antminer-s21",
            "hostname_prefix": "s21",
            "faults": [{"kind": "identity", "hostname": HOSTILE}],
        },
        {"model": "antminer-s21", "hostname_prefix": "s21-down", "faults": [{"kind": "offline"}]},
    ],
}


def _get(url: str, auth: str | None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)  # noqa: S310 - loopback test URL
    if auth is not None:
        request.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:  # not listening yet
        return 0, b""


def test_site_page_loads_in_headless_chromium_without_console_errors(
    emulator_factory, agent_factory, tmp_path
):
    """A real agent's site page, behind basic auth, loads in Chromium: no error, no other load."""
    if chromium.browser() is None:  # a failure under make test / CI (tests/support/strict_skips)
        pytest.skip("chromium not installed (make setup installs Debian's package when root)")
    emulator = emulator_factory(SCENARIO, base_address="127.126.0.1")
    miners = emulator.miners()
    places = [("C1", "1", "1"), ("C1", "2", "1"), ("C1", "1", "2"), ("C2", "1", "1"), None]
    config_miners: list[dict[str, Any]] = []
    for miner, place in zip(miners, places, strict=True):
        entry: dict[str, Any] = {"address": miner["address"]}
        if place is not None:
            entry["location"] = dict(zip(("container", "rack", "shelf"), place, strict=True))
        config_miners.append(entry)
    web_config = tmp_path / "web-config.yml"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web_config.write_text(f"basic_auth_users:\n  crew: '{hashed}'\n", encoding="utf-8")
    agent = agent_factory(
        agent_config(config_miners, interval_s=5.0, http={"web_config_file": str(web_config)}),
        wait_ready=False,
    )
    auth = "Basic " + base64.b64encode(f"crew:{PASSWORD}".encode()).decode()

    def fleet_settled() -> bool:
        status, body = _get(agent.url + "/api/v1/fleet", auth)
        if status != 200:
            return False
        ups = sorted(str(m["up"]) for m in json.loads(body))
        return ups == ["False", "True", "True", "True", "True"]

    agent.wait_for(fleet_settled, "four miners up and one down", timeout=60)
    assert _get(agent.url + "/", None)[0] == 401  # same basic auth as every other path

    page = chromium.load_page(agent.url + "/", headers={"Authorization": auth})
    (tmp_path / "site-page.png").write_bytes(page.png)  # kept for a look when the test fails

    assert page.errors == []
    assert page.requests == [agent.url + "/"]  # no asset, no favicon, nothing external
    assert page.scripts == 0  # the hostile hostname stayed text
    assert page.png.startswith(b"\x89PNG")
    dom = page.dom
    assert "<h2>Site golmud</h2>" in dom
    assert re.findall(r"<caption>([^<]+)</caption>", dom) == ["container C1", "container C2"]
    assert len(re.findall(r'<div class="tile ', dom)) == 5
    assert "unplaced (1)" in dom
    assert len(re.findall(r'<div class="tile [^"]*s-offline', dom)) == 1
    assert "2,800 m" in dom
