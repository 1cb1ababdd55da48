"""The real agent under miner faults: isolation of a hanging miner, staleness of a gone one."""

from __future__ import annotations

import json
import time

from prometheus_client.parser import text_string_to_metric_families

from tests.support.agent import agent_config

BASE = "127.30.6.1"
SCENARIO = {
    "name": "agent-faults",
    "site": {"name": "golmud", "altitude_m": 2800},
    "miners": [
        {"model": "antminer-s19jpro", "count": 2},
        {"model": "vnish-s19jpro", "count": 1},
        {"model": "bitaxe-ultra", "count": 1},
    ],
}


def gauge(text: str, name: str) -> dict[str, tuple[float, dict[str, str]]]:
    """{miner: (value, labels)} of one metric family."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[sample.labels["miner"]] = (sample.value, dict(sample.labels))
    return out


def test_agent_hanging_miner_does_not_delay_the_others(emulator_factory, agent_factory):
    """While one miner hangs every connection, the others keep being polled on time."""
    emulator = emulator_factory(SCENARIO, base_address=BASE)
    miners = [{"address": m["address"]} for m in emulator.miners()]
    agent = agent_factory(agent_config(miners, interval_s=2.0, polling={"timeout_s": 1.5}))
    hung = miners[0]["address"]
    hung_id = emulator.truth(hung)["mac"].upper()
    emulator.inject(hung, "hang")
    emulator.inject(miners[2]["address"], "garbage")
    agent.wait_for(
        lambda: gauge(agent.metrics(), "asic_up").get(hung_id, (1,))[0] == 0,
        "the hanging miner marked down",
        timeout=30,
    )
    since = time.time()
    healthy = {emulator.truth(m["address"])["mac"].upper() for m in (miners[1], miners[3])}

    def healthy_polled_again() -> bool:
        success = gauge(agent.metrics(), "asic_last_poll_success_timestamp_seconds")
        return all(success.get(m, (0,))[0] > since + 2 for m in healthy)

    agent.wait_for(healthy_polled_again, "fresh polls of the healthy miners", timeout=30)
    reasons = gauge(agent.metrics(), "asic_last_poll_error_info")
    assert reasons[hung_id][1]["reason"] == "timeout"
    garbage_id = emulator.truth(miners[2]["address"])["mac"].upper()
    agent.wait_for(
        lambda: garbage_id in gauge(agent.metrics(), "asic_last_poll_error_info"),
        "the garbage-speaking miner marked down with a reason",
        timeout=30,
    )


def test_agent_drops_series_of_a_miner_gone_longer_than_stale_after(
    emulator_factory, agent_factory
):
    """A miner offline for stale_after_s loses its series (not its alarms); back when it answers."""
    emulator = emulator_factory(SCENARIO, base_address="127.30.7.1")
    miners = [{"address": m["address"]} for m in emulator.miners()]
    config = agent_config(
        miners, interval_s=1.0, polling={"stale_after_s": 4.0, "backoff_max_s": 3.0}
    )
    agent = agent_factory(config)
    gone = miners[3]["address"]
    gone_id = emulator.truth(gone)["mac"].upper()
    emulator.inject(gone, "offline")
    agent.wait_for(
        lambda: gauge(agent.metrics(), "asic_up").get(gone_id, (1,))[0] == 0,
        "the offline miner marked down",
    )

    def only_alarms_left() -> bool:
        # Its firing offline alarm (R7) stays: the alarm is still true.
        lines = [line for line in agent.metrics().splitlines() if gone_id in line]
        return all(line.startswith("asic_alarm_active{") for line in lines)

    agent.wait_for(only_alarms_left, "the offline miner's series dropped", timeout=40)
    assert len(gauge(agent.metrics(), "asic_up")) == 3
    emulator.clear(gone, "offline")
    agent.wait_for(
        lambda: gauge(agent.metrics(), "asic_up").get(gone_id, (0,))[0] == 1,
        "the miner back with asic_up 1",
        timeout=60,
    )


def test_agent_miner_moving_to_another_address_keeps_its_id(emulator_factory, agent_factory):
    """A miner that comes back on another address (DHCP) keeps its series under the same id."""
    one = {**SCENARIO, "miners": [{"model": "antminer-s19jpro", "count": 1}]}
    old = emulator_factory(one, base_address="127.30.8.1", seed=7)
    mac = old.truth("127.30.8.1")["mac"].upper()
    config = agent_config(
        [{"address": "127.30.8.1"}, {"address": "127.30.9.1"}],
        interval_s=1.0,
        polling={"backoff_max_s": 2.0},
    )
    agent = agent_factory(config)
    info = gauge(agent.metrics(), "asic_miner_info")
    assert info[mac][1]["address"] == "127.30.8.1"
    old.stop()
    new = emulator_factory(one, base_address="127.30.9.1", seed=7)
    assert new.truth("127.30.9.1")["mac"].upper() == mac

    def moved() -> bool:
        text = agent.metrics()
        rows = gauge(text, "asic_miner_info")
        up = gauge(text, "asic_up")
        return rows.get(mac, (0, {}))[1].get("address") == "127.30.9.1" and up[mac][0] == 1

    agent.wait_for(moved, "the miner's id on its new address", timeout=60)
    text = agent.metrics()
    assert text.count(f'asic_up{{site="golmud",miner="{mac}"}}') == 1
    assert [line for line in text.splitlines() if 'miner="127.30.8.1"' in line] == []


def test_agent_failing_web_api_keeps_the_miner_id_and_raises_no_board_alarm(
    emulator_factory, agent_factory
):
    """A stock Antminer whose web API fails (RPC fine) keeps its id, is up, and never gets R6.

    Its MAC and boards come from the web API only. While that fails the boards are unknown
    (no board series), not missing; the MAC read before is kept, so no series is renamed.
    """
    one = {**SCENARIO, "miners": [{"model": "antminer-s19jpro", "count": 2}]}
    emulator = emulator_factory(one, base_address="127.30.10.1")
    flaky, steady = (m["address"] for m in emulator.miners())
    mac = emulator.truth(flaky)["mac"].upper()
    config = agent_config(
        [{"address": flaky}, {"address": steady}],
        interval_s=1.0,
        polling={"slow_interval_s": 2.0},
    )
    agent = agent_factory(config)
    agent.wait_for(
        lambda: gauge(agent.metrics(), "asic_miner_info").get(mac, (0, {}))[1].get("mac") == mac,
        "the miner identified by its MAC",
    )
    emulator.inject(flaky, "reset", port="web")

    def slow_polls() -> float:
        for family in text_string_to_metric_families(agent.metrics()):
            for sample in family.samples:
                if sample.name == "altiwatch_polls_total" and sample.labels["tier"] == "slow":
                    return sample.value
        return 0.0

    start = slow_polls()
    # Both miners read their slow tier at least every 2 s; R6 needs 2 polls: let 8 s go by.
    agent.wait_for(lambda: slow_polls() >= start + 8, "eight more slow polls", timeout=60)
    text = agent.metrics()
    assert gauge(text, "asic_up").get(mac, (0,))[0] == 1
    assert gauge(text, "asic_miner_info")[mac][1]["mac"] == mac
    assert [line for line in text.splitlines() if f'miner="{flaky}"' in line] == []
    boards = [line for line in text.splitlines() if line.startswith("asic_board_")]
    assert boards, "the steady miner's boards are exported"
    assert not [line for line in boards if f'miner="{mac}"' in line]
    status, body = agent.fetch("/api/v1/alarms")
    assert status == 200
    assert [a for a in json.loads(body) if a["rule"] == "R6"] == []
    emulator.clear(flaky)
    agent.wait_for(
        lambda: any(
            line.startswith("asic_board_") and f'miner="{mac}"' in line
            for line in agent.metrics().splitlines()
        ),
        "the boards back once the web API answers",
        timeout=30,
    )


def test_agent_unsupported_firmware_is_down_with_a_reason_and_raises_r7(
    emulator_factory, agent_factory
):
    """A miner whose firmware pyasic cannot identify: asic_up 0, reason, R7; no empty series."""
    emulator = emulator_factory(SCENARIO, base_address="127.30.12.1")
    miners = [{"address": m["address"]} for m in emulator.miners()]
    odd = miners[1]["address"]
    emulator.inject(odd, "unsupported_firmware")
    config = agent_config(miners, interval_s=1.0, polling={"backoff_max_s": 1.0})
    agent = agent_factory(config)

    def r7_raised() -> bool:
        return any(
            line.startswith("asic_alarm_active{")
            and f'miner="{odd}"' in line
            and 'rule="R7"' in line
            for line in agent.metrics().splitlines()
        )

    agent.wait_for(r7_raised, "R7 on the unsupported miner", timeout=40)
    text = agent.metrics()
    assert gauge(text, "asic_up")[odd][0] == 0
    assert gauge(text, "asic_last_poll_error_info")[odd][1]["reason"] == "unsupported_firmware"
    series = {line.split("{", 1)[0] for line in text.splitlines() if f'miner="{odd}"' in line}
    # Down, with its reason and alarm (and its configured limits): no reading posing as data.
    readings = {
        "asic_miner_info",
        "asic_hashrate_hashes_per_second",
        "asic_expected_hashrate_hashes_per_second",
        "asic_board_hashrate_hashes_per_second",
        "asic_chip_temperature_celsius",
        "asic_board_temperature_celsius",
        "asic_fan_speed_rpm",
        "asic_fan_duty_ratio",
        "asic_power_watts",
        "asic_uptime_seconds",
        "asic_mining",
    }
    assert {"asic_up", "asic_last_poll_error_info", "asic_alarm_active"} <= series
    assert series.isdisjoint(readings), series & readings
    up = gauge(text, "asic_up")
    assert sorted(v for v, _ in up.values()) == [0, 1, 1, 1]
