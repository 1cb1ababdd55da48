"""Pool readings: credential-free URLs, stale counts from the raw reply, pool series."""

import io
import itertools
import json
from typing import Any

import jsonschema
import pytest
from rich.console import Console

from agent import top
from agent.fleet_state import FleetState
from agent.metrics import miner_fragments
from agent.mqtt import schemas
from agent.mqtt.discovery import DeviceInfo, device_config
from agent.mqtt.events import EventFactory, Topics
from collectors.pools import capture_raw_pools, public_url
from collectors.pyasic_source import miner_from_hint, snapshot_from_data
from collectors.snapshot import Identity, MinerSnapshot, PoolInfo, Tier
from collectors.source import MinerTarget

SECRET = "hunter2-pool-secret"  # noqa: S105 - a planted pool password that must never leak


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"stratum+tcp://user:{SECRET}@pool.example:3333", "stratum+tcp://pool.example:3333"),
        (
            f"stratum+ssl://u:{SECRET}@pool.example:443/?pw={SECRET}#x",
            "stratum+ssl://pool.example:443",
        ),
        ("stratum2+tcp://pool.example:3336/9bXiEd8b", "stratum2+tcp://pool.example:3336/9bXiEd8b"),
        (f"u:{SECRET}@pool.example:3333", "pool.example:3333"),
        ("  ", None),
        (None, None),
    ],
)
def test_public_url_strips_user_info_query_and_fragment(url, expected):
    """No password survives in a pool URL; a URL without a scheme keeps none."""
    assert public_url(url) == expected


def _cgminer_pool(index: int, url: str, **over: Any) -> dict[str, Any]:
    entry = {
        "POOL": index,
        "URL": url,
        "Status": "Alive",
        "Accepted": 1000,
        "Rejected": 7,
        "Stale": 3,
        "Get Failures": 1,
        "Remote Failures": 2,
        "User": "site.worker1",
        "Stratum Active": index == 0,
    }
    entry.update(over)
    return entry


async def test_pools_read_stale_from_the_raw_reply_pyasic_parses():
    """Pyasic parses the POOLS reply; the stale count comes from the same reply (no request)."""
    miner = miner_from_hint("10.0.0.1", "Antminer S19j Pro")
    raw = capture_raw_pools(miner)
    assert capture_raw_pools(miner) is raw, "idempotent"
    reply = {
        "POOLS": [
            _cgminer_pool(0, f"stratum+tcp://w:{SECRET}@pool.example:3333"),
            _cgminer_pool(1, "stratum+tcp://backup.example:443", Status="Dead", Stale=0),
        ]
    }
    parsed = await miner._get_pools(rpc_pools=reply)  # as pyasic's get_data calls it
    data = type(
        "Data",
        (),
        {
            "pools": parsed,
            "fw_ver": None,
            "mac": None,
            "serial_number": None,
            "hostname": None,
            "wattage_limit": None,
            "fault_light": None,
            "errors": [],
        },
    )()
    snap = snapshot_from_data("10.0.0.1", Tier.SLOW, miner, data, collected_at=1.0, raw_pools=raw)
    assert snap.pools is not None
    first, second = snap.pools
    assert (first.url, first.user, first.index) == (
        "stratum+tcp://pool.example:3333",
        "site.worker1",
        0,
    )
    assert (first.accepted, first.rejected, first.stale) == (1000, 7, 3)
    assert (first.get_failures, first.remote_failures) == (1, 2)
    assert (first.active, first.alive) == (True, True)
    assert (second.index, second.alive, second.active, second.stale) == (1, False, False, 0)


async def test_pools_braiins_grpc_failures_are_unknown_not_zero():
    """BOS+ gRPC reports no get/remote failures: pyasic's 0 becomes None; staleShares is read."""
    miner = miner_from_hint("10.0.0.1", "braiins:S19j Pro")
    raw = capture_raw_pools(miner)
    reply = {
        "poolGroups": [
            {
                "name": "Default",
                "pools": [
                    {
                        "uid": "0",
                        "url": "stratum+tcp://pool.example:3333",
                        "user": "site.w",
                        "enabled": True,
                        "alive": True,
                        "active": True,
                        "stats": {
                            "acceptedShares": "500",
                            "rejectedShares": "4",
                            "staleShares": "6",
                        },
                    },
                    {
                        "uid": "1",
                        "url": "stratum+tcp://b.example:3333",
                        "user": "site.w",
                        "alive": True,
                        "stats": {},
                    },
                ],
            }
        ]
    }
    parsed = await miner._get_pools(grpc_pool_groups=reply)
    data = type(
        "Data",
        (),
        {
            "pools": parsed,
            "fw_ver": None,
            "mac": None,
            "serial_number": None,
            "hostname": None,
            "wattage_limit": None,
            "fault_light": None,
            "errors": [],
        },
    )()
    snap = snapshot_from_data("10.0.0.1", Tier.SLOW, miner, data, collected_at=1.0, raw_pools=raw)
    assert snap.pools is not None
    first, second = snap.pools
    assert (first.accepted, first.rejected, first.stale) == (500, 4, 6)
    assert (first.get_failures, first.remote_failures) == (None, None)
    assert (second.accepted, second.stale, second.active) == (0, 0, False)


def test_pool_series_carry_index_url_and_worker_and_skip_unknowns():
    """Counters by result/kind, active/alive 0/1, info with the worker; unknown = no series."""
    fleet = FleetState()
    target = MinerTarget(address="10.0.0.1")
    fleet.add("golmud", target, 0.0)
    pools = (
        PoolInfo(
            url="stratum+tcp://pool.example:3333",
            user="site.w1",
            alive=True,
            active=True,
            index=0,
            accepted=10,
            rejected=1,
            stale=None,
            get_failures=None,
            remote_failures=0,
        ),
        PoolInfo(url=None, user=None, alive=False, active=False, index=1),
    )
    slow = MinerSnapshot("10.0.0.1", 1.0, Tier.SLOW, Identity(mac="02:00:00:00:00:01"), pools=pools)
    fleet.record_success("10.0.0.1", slow, 0.1, now=1.0)
    fast = MinerSnapshot("10.0.0.1", 2.0, Tier.FAST, hashrate_hs=1.0)
    fleet.record_success("10.0.0.1", fast, 0.1, now=2.0)
    record = fleet.get("10.0.0.1")
    assert record is not None
    text = b"".join(miner_fragments(record, None)).decode()
    base = 'site="golmud",miner="02:00:00:00:00:01",pool="0",url="stratum+tcp://pool.example:3333"'
    assert f'asic_pool_shares_total{{{base},result="accepted"}} 10\n' in text
    assert f'asic_pool_shares_total{{{base},result="rejected"}} 1\n' in text
    assert 'result="stale"' not in text
    assert f'asic_pool_failures_total{{{base},kind="remote"}} 0\n' in text
    assert 'kind="get"' not in text
    assert f"asic_pool_active{{{base}}} 1\n" in text
    assert f'asic_pool_info{{{base},worker="site.w1"}} 1\n' in text
    other = 'pool="1",url=""'
    assert f'asic_pool_alive{{site="golmud",miner="02:00:00:00:00:01",{other}}} 0\n' in text
    assert f'asic_pool_shares_total{{site="golmud",miner="02:00:00:00:00:01",{other}' not in text


def test_pool_telemetry_names_the_active_pool_and_share_health_schema_valid():
    """Telemetry carries the active pool (no credentials) and R12's ratio; the schema accepts it."""
    counter = itertools.count(1)
    factory = EventFactory(
        agent_id="a1", prefix="altiwatch/v1", version="0", next_seq=lambda: next(counter)
    )
    pools = (
        PoolInfo(url="stratum+tcp://pool.example:3333", user="site.w1", alive=False, index=0),
        PoolInfo(
            url="stratum+tcp://b.example:443", user="site.w1", alive=True, active=True, index=1
        ),
    )
    snap = MinerSnapshot("10.0.0.1", 1.0, Tier.FAST, pools=pools)
    msg = factory.telemetry(
        "s", "m", snap, alarm_severity="none", expiry_s=60, bad_share_ratio=0.02
    )
    body = json.loads(msg.payload)
    jsonschema.validate(body, schemas.load(body["schema"]))
    assert body["pool"] == {
        "index": 1,
        "url": "stratum+tcp://b.example:443",
        "worker": "site.w1",
        "alive": True,
    }
    assert body["bad_share_ratio"] == 0.02
    none = json.loads(
        factory.telemetry(
            "s", "m", MinerSnapshot("x", 1.0), alarm_severity="none", expiry_s=60
        ).payload
    )
    assert (none["pool"], none["bad_share_ratio"]) == (None, None)
    leaky = {**body, "pool": {**body["pool"], "url": f"stratum+tcp://u:{SECRET}@b.example:443"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(leaky, schemas.load(body["schema"]))


def test_pool_home_assistant_sensors_read_pool_and_bad_shares():
    """The HA device gets Bad shares (%), Pool and Pool worker sensors from telemetry."""
    info = DeviceInfo("s", "m", "S19j Pro", (0,), (0,))
    config = device_config(info, topics=Topics(), status_topic="st", version="0")
    cmps = config["cmps"]
    assert isinstance(cmps, dict)
    names = {c["name"]: c for c in cmps.values()}
    assert names["Bad shares"]["unit_of_measurement"] == "%"
    assert "bad_share_ratio" in names["Bad shares"]["value_template"]
    assert "pool.url" in names["Pool"]["value_template"]
    assert "pool.worker" in names["Pool worker"]["value_template"]


def test_pool_top_shows_bad_shares_column_coloured_by_r12():
    """`altiwatch top` shows the windowed bad-share ratio per miner, '-' when unknown."""
    row = top.Row.parse({"miner": "AA", "site": "s", "share_health": {"bad_ratio": 0.021}})
    assert row.bad_shares == 0.021
    assert top.Row.parse({"miner": "BB", "site": "s"}).bad_shares is None
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, no_color=True)
    fleet = [
        {"miner": "AA", "site": "s", "up": True, "share_health": {"bad_ratio": 0.021}},
        {"miner": "BB", "site": "s", "up": True},
    ]
    console.print(top.render(fleet, source="http://agent", now=0.0))
    text = buffer.getvalue()
    assert "bad shares" in text
    assert "2.10%" in next(line for line in text.splitlines() if line.startswith("AA"))


async def test_pools_unknown_scheme_does_not_fail_the_poll_and_keeps_the_url():
    """An unknown scheme ('stratum+tls://') raises in pyasic; the pool is still read, its URL from the raw reply."""
    miner = miner_from_hint("10.0.0.1", "Antminer S19j Pro")
    raw = capture_raw_pools(miner)
    reply = {"POOLS": [_cgminer_pool(0, f"stratum+tls://thief:{SECRET}@evil.example:3333")]}
    parsed = await miner._get_pools(rpc_pools=reply)
    data = type(
        "Data",
        (),
        {
            "pools": parsed,
            "fw_ver": None,
            "mac": None,
            "serial_number": None,
            "hostname": None,
            "wattage_limit": None,
            "fault_light": None,
            "errors": [],
        },
    )()
    snap = snapshot_from_data("10.0.0.1", Tier.SLOW, miner, data, collected_at=1.0, raw_pools=raw)
    assert snap.pools is not None
    (only,) = snap.pools
    assert (only.url, only.user, only.accepted, only.stale) == (
        "stratum+tls://evil.example:3333",
        "site.worker1",
        1000,
        3,
    )
    assert SECRET not in repr(snap)
