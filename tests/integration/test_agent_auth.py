"""The real agent and a miner configured with the wrong web password: down (auth), never R6.

Addresses: 127.64.1.0/24.
"""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from tests.support.agent import agent_config

SCENARIO = {
    "name": "agent-auth",
    "site": {"name": "golmud", "altitude_m": 2800},
    "miners": [{"model": "antminer-s19jpro", "count": 2}],
}


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample of ``name``."""
    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def test_agent_wrong_password_is_down_with_reason_auth_and_no_board_alarm(
    emulator_factory, agent_factory
):
    """Wrong web password: asic_up 0 with reason auth; no R6 board-missing alarm is raised."""
    emulator = emulator_factory(SCENARIO, base_address="127.64.1.1")
    good, bad = (m["address"] for m in emulator.miners())
    miners = [
        {"address": good, "name": "good", "password": "root"},
        {"address": bad, "name": "bad", "password": "not-the-password"},
    ]
    agent = agent_factory(agent_config(miners, interval_s=1.0))

    def polled_enough() -> bool:
        # R6 raises after 2 polls showing missing boards: let well over that many go by.
        text = agent.metrics()
        fast = [v for lb, v in samples(text, "altiwatch_polls_total") if lb["tier"] == "fast"]
        return bool(fast) and fast[0] >= 12

    agent.wait_for(polled_enough, "a dozen fast polls", timeout=60)
    text = agent.metrics()
    up = {labels["miner"]: v for labels, v in samples(text, "asic_up")}
    assert up.get("bad") == 0, up  # no MAC without the web API: the configured name is the id
    assert sorted(up.values()) == [0, 1], up
    errors = [labels for labels, _ in samples(text, "asic_last_poll_error_info")]
    assert [(e["miner"], e["reason"]) for e in errors] == [("bad", "auth")]
    assert not [lb for lb, _ in samples(text, "asic_board_chips") if lb["miner"] == "bad"]
    status, body = agent.fetch("/api/v1/alarms")
    assert status == 200
    assert [a for a in json.loads(body) if a["rule"] == "R6"] == []
    assert "not-the-password" not in agent.output()
