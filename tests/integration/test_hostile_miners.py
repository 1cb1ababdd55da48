"""Hostile miners (issue 15): gzip bombs, endless bodies, hostile identity fields, session tokens.

Real parts only: the emulator serves each miner on its own 127.97.0.x address with the real
protocols and its hostile faults (``gzip_bomb``, ``endless``, ``identity``), injected through the
control API after a healthy first read; the real ``PyasicSource`` reads them in this process, so
``tracemalloc`` sees every byte the collector holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import json
import logging
import time
import tracemalloc
from typing import TYPE_CHECKING, Any

import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from pyasic.errors import APIError

from agent.logging_setup import configure_logging
from collectors.pyasic_source import PyasicSource
from collectors.snapshot import Tier
from collectors.source import CollectorError, FailureReason, MinerTarget
from tests.support.agent import agent_config
from tests.support.emulator import EmulatorError, start_emulator
from tests.support.mosquitto import MosquittoSub

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from collectors.snapshot import MinerSnapshot
    from tests.support.emulator import EmulatorHandle

ADDRESSES = {
    "antminer": "127.97.0.1",
    "vnish": "127.97.0.2",
    "bitaxe": "127.97.0.3",
    "braiins": "127.97.0.4",
    "whatsminer": "127.97.0.5",
}
PROFILES = {
    "antminer": "antminer-s19jpro",
    "vnish": "vnish-s19jpro",
    "bitaxe": "bitaxe-ultra",
    "braiins": "braiins-s19jpro",
    "whatsminer": "whatsminer-m30s+ve40",
}
SCENARIO = {
    "name": "hostile",
    "site": {"name": "hostile", "altitude_m": 2800},
    "miners": [
        {"model": PROFILES[name], "count": 1, "addresses": [address]}
        for name, address in ADDRESSES.items()
    ],
}
BOMB_BYTES = 128 * 1024 * 1024
"""What the gzip bomb inflates to (about 130 KB on the wire)."""
PEAK_LIMIT = 40 * 1024 * 1024
"""Most the collector may hold at once while reading one hostile miner."""


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    """One emulator with one miner per family."""
    tmp = tmp_path_factory.mktemp("emu")
    for attempt in range(3):
        try:
            handle = start_emulator(SCENARIO, base_address="127.97.0.1", tmp_dir=tmp)
            break
        except EmulatorError as exc:  # a previous run's sockets may still be closing
            if attempt == 2 or "address already in use" not in str(exc):
                raise
            time.sleep(2)
    yield handle
    handle.stop()


@pytest.fixture
def clean(emulator: EmulatorHandle) -> Iterator[EmulatorHandle]:
    """The emulator with every fault cleared after the test."""
    yield emulator
    for address in ADDRESSES.values():
        emulator.clear(address)


async def _measured(
    read: Callable[[], Awaitable[MinerSnapshot]],
) -> tuple[MinerSnapshot | CollectorError, float, int]:
    """Run ``read``: its snapshot or CollectorError, its duration and tracemalloc's peak."""
    gc.collect()
    tracemalloc.start()
    began = time.monotonic()
    try:
        result: MinerSnapshot | CollectorError = await read()
    except CollectorError as exc:  # not pytest.raises: its traceback pins pyasic's sockets
        result = exc
    finally:
        duration = time.monotonic() - began
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    await asyncio.sleep(0.2)  # let aborted transports finish closing inside this loop
    gc.collect()
    return result, duration, peak


@pytest.mark.parametrize(
    ("family", "tier"),
    [("antminer", Tier.FAST), ("vnish", Tier.SLOW), ("bitaxe", Tier.FAST)],
)
async def test_hostile_gzip_bomb_is_not_inflated(clean, family, tier):
    """A 128 MiB gzip bomb from the web API is refused after 8 MiB: the poll stays small and quick.

    The S19 reads its web API through the tuned Digest path, VNish through pyasic's httpx
    client on the lean transport, the Bitaxe likewise; before the fix each inflated the whole
    bomb (VNish and Bitaxe in httpx's decoder, the S19 in ``_json_body``).
    """
    address = ADDRESSES[family]
    source = PyasicSource(timeout_s=10.0)
    healthy = await source.fetch(MinerTarget(address=address), tier)
    assert healthy.collected_at
    clean.inject(address, "gzip_bomb", bytes=BOMB_BYTES, port="web")
    result, duration, peak = await _measured(
        lambda: source.fetch(MinerTarget(address=address), tier)
    )
    assert peak < PEAK_LIMIT, f"the poll held {peak / 1e6:.1f} MB at peak ({result!r})"
    assert duration < 5.0, f"the poll took {duration:.1f} s ({result!r})"


@pytest.mark.filterwarnings("ignore:Could not authenticate web token:UserWarning")
@pytest.mark.parametrize("family", ["vnish", "bitaxe"])
async def test_hostile_endless_body_is_cut_off(clean, family):
    """A web API streaming without end is cut at 8 MiB, not read until the poll's deadline.

    VNish is read by a source that has no web token yet: the unlock meets the endless body,
    and the failed unlock leads to the password probe, which read with httpx's own transport
    (no byte cap, and a per-read timeout a steady stream never trips).
    """
    address = ADDRESSES[family]
    source = PyasicSource(timeout_s=3.0)
    healthy = await source.fetch(MinerTarget(address=address), Tier.FAST)
    assert healthy.collected_at
    clean.inject(address, "endless", port="web")
    target = MinerTarget(address=address)
    if family == "vnish":
        source = PyasicSource(timeout_s=3.0)  # no token: pyasic unlocks first
        target = MinerTarget(address=address, model_hint="vnish:S19j Pro")
    result, duration, peak = await _measured(lambda: source.fetch(target, Tier.FAST))
    assert peak < PEAK_LIMIT, f"the poll held {peak / 1e6:.1f} MB at peak ({result!r})"
    assert not (isinstance(result, CollectorError) and result.reason is FailureReason.TIMEOUT), (
        f"the endless body held the poll until its deadline ({duration:.1f} s)"
    )


@pytest.mark.parametrize(("family", "port"), [("whatsminer", "rpc"), ("braiins", "grpc")])
async def test_hostile_endless_reply_on_other_transports_is_cut_off(clean, family, port):
    """Whatsminer's 4028 API and BOS+ gRPC streaming without end: cut at their caps, no timeout.

    The Whatsminer reply is one JSON document that never ends (2 MiB RPC cap); the BOS+ reply
    is one gRPC message declaring 4 GiB, which grpclib would buffer whole (8 MiB per
    connection cap). Before the gRPC cap the poll held the stream until its deadline.
    """
    address = ADDRESSES[family]
    source = PyasicSource(timeout_s=3.0)
    healthy = await source.fetch(MinerTarget(address=address), Tier.FAST)
    assert healthy.collected_at
    clean.inject(address, "endless", port=port)
    result, duration, peak = await _measured(
        lambda: source.fetch(MinerTarget(address=address), Tier.FAST)
    )
    assert peak < PEAK_LIMIT, f"the poll held {peak / 1e6:.1f} MB at peak ({result!r})"
    assert isinstance(result, CollectorError), f"an endless reply read as a snapshot: {result!r}"
    assert result.reason is FailureReason.OVERSIZED, f"{result!r} after {duration:.1f} s"


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """The agent's logging at debug into a buffer; the previous configuration restored after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging("json", "debug", stream=out, environ={})
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("pyasic", "aiomqtt", "httpx", "httpcore", "grpclib", "hpack", "h2", "hyperframe"):
        logging.getLogger(name).setLevel(logging.NOTSET)
    structlog.reset_defaults()


async def test_hostile_bos_session_token_never_logged_at_debug(emulator, debug_log):
    """Polling a Braiins OS+ miner at debug level never writes its gRPC session token."""
    miners: list[Any] = []
    source = PyasicSource(timeout_s=10.0, on_new_miner=miners.append)
    await source.fetch(MinerTarget(address=ADDRESSES["braiins"]), Tier.FAST)
    await source.fetch(MinerTarget(address=ADDRESSES["braiins"]), Tier.SLOW)
    (miner,) = miners
    token = miner.web.token
    assert token
    assert debug_log.getvalue(), "nothing was logged at debug"
    assert token not in debug_log.getvalue()


WHATSMINER_PASSWORD = "planted-Pw-15"  # noqa: S105 - a planted secret, looked for in the log


async def test_hostile_whatsminer_write_token_never_logged_at_debug(emulator, debug_log):
    """The Whatsminer write path of pyasic at debug: no password, token or AES key in the log.

    pyasic logs the token it derives (``host_sign``, and ``host_passwd_md5``, the AES key's
    source) through the root logger at debug; a privileged command is then sent with it.
    """
    miners: list[Any] = []
    source = PyasicSource(timeout_s=10.0, on_new_miner=miners.append)
    await source.fetch(MinerTarget(address=ADDRESSES["whatsminer"]), Tier.FAST)
    (miner,) = miners
    miner.rpc.pwd = WHATSMINER_PASSWORD
    token = await miner.rpc.get_token()
    with contextlib.suppress(APIError):  # the emulator does not decrypt write commands
        await miner.rpc.send_privileged_command("set_led", ignore_errors=True, auto=True)
    text = debug_log.getvalue()
    assert "Gathered token data" in text, "pyasic's token line was not logged at debug"
    for secret in (WHATSMINER_PASSWORD, token.host_sign, token.host_passwd_md5):
        assert secret not in text


HOSTILE_MAC = "A" * 70_000
"""Longer than MQTT's 65,535-byte topic limit once it is a miner id."""


@pytest.mark.parametrize("family", ["antminer", "whatsminer", "bitaxe"])
async def test_hostile_identity_fields_are_cleaned_at_the_collector(clean, family):
    """An oversized MAC is unknown; a serial and hostname with NULs come back cleaned and capped."""
    address = ADDRESSES[family]
    clean.inject(
        address,
        "identity",
        mac=HOSTILE_MAC,
        serial="SN\x00" + "9" * 100_000,
        hostname="rig\x00-\u200b01" + "h" * 10_000,
    )
    source = PyasicSource(timeout_s=10.0)
    began = time.monotonic()
    snapshot = await source.fetch(MinerTarget(address=address), Tier.SLOW)
    assert time.monotonic() - began < 5.0
    ident = snapshot.identity
    assert ident.mac is None
    assert ident.serial is None or (len(ident.serial) <= 64 and "\x00" not in ident.serial)
    assert ident.hostname is not None
    assert ident.hostname.startswith("rig-01")
    assert len(ident.hostname) <= 253


def _events(sub: MosquittoSub, event: str) -> list[dict[str, Any]]:
    return [e for e in sub.events() if e.get("event") == event]


@pytest.mark.broker
def test_hostile_identities_neither_stop_the_agent_nor_take_over_a_miner(
    emulator_factory, agent_factory, mosquitto, tmp_path
):
    """A 70,000-char MAC, NULs in identity fields and a cloned MAC, with MQTT on.

    1. Three healthy S19s are identified by their MACs.
    2. One starts reporting a 70,000-char MAC and a serial and hostname with NULs; another
       reports the first one's MAC.
    3. The agent keeps running and polling: every miner stays up on /metrics under its own id,
       no NUL byte reaches the exposition, and the clone is flagged
       (``asic_duplicate_id_info``, a ``miner_duplicate_id`` warning and MQTT event).
    """
    scenario = {
        "name": "hostile-identity",
        "site": {"name": "golmud", "altitude_m": 2800},
        "miners": [{"model": "antminer-s19jpro", "count": 3, "hostname_prefix": "s19"}],
    }
    emulator = emulator_factory(scenario, base_address="127.97.1.1")
    victim, hostile, clone = emulator.addresses()
    mqtt = {"enabled": True, "host": mosquitto.host, "port": mosquitto.port}
    sub = MosquittoSub(mosquitto.host, mosquitto.port, tmp_path / "mqtt.log")
    try:
        agent = agent_factory(
            agent_config(
                [{"address": a} for a in (victim, hostile, clone)],
                interval_s=3.0,
                mqtt=mqtt,
                polling={"slow_interval_s": 6.0, "timeout_s": 2.5},
            )
        )
        mac = emulator.truth(victim)["mac"].upper()
        agent.wait_for(lambda: f'miner="{mac}"' in agent.metrics(), "the victim by its MAC", 60)
        emulator.inject(
            hostile, "identity", mac=HOSTILE_MAC, serial="SN\x00evil", hostname="h\x00" * 5000
        )
        emulator.inject(clone, "identity", mac=mac)

        def flagged() -> bool:
            text = agent.metrics()
            return f'asic_duplicate_id_info{{site="golmud",miner="{clone}"' in text

        agent.wait_for(flagged, "the clone flagged under its address", 60)
        agent.wait_for(lambda: _events(sub, "miner_duplicate_id"), "the MQTT event", 30)
        agent.wait_for(
            lambda: 'serial="SNevil"' in agent.metrics(), "the hostile miner's cleaned serial", 30
        )
        since = time.time()

        def polled_since() -> dict[str, str] | None:
            ids, _up, last = _per_address(agent.metrics())
            fresh = all(last.get(ids.get(a, ""), 0) > since for a in (victim, hostile, clone))
            return ids if fresh and len(ids) == 3 else None

        ids = agent.wait_for(polled_since, "every miner polled again since", 30)
        text = agent.metrics()
        assert agent.proc.poll() is None, "the agent exited"
        assert "\x00" not in text
        _ids, up, _last = _per_address(text)
        assert ids[victim] == mac
        assert len(set(ids.values())) == 3, f"ids: {ids}"
        assert {a: up.get(ids[a]) for a in ids} == dict.fromkeys(ids, 1.0)
        warnings = [
            e
            for e in log_events(agent.output())
            if e.get("event") == "miner_duplicate_id" and e.get("level") == "warning"
        ]
        assert warnings
        assert warnings[0]["claimed"] == mac
        assert warnings[0]["holder_address"] == victim
        assert agent.stop() == 0
    finally:
        sub.close()


def _per_address(text: str) -> tuple[dict[str, str], dict[str, float], dict[str, float]]:
    """Address -> miner id (asic_miner_info), and asic_up and last success per miner id."""
    ids: dict[str, str] = {}
    up: dict[str, float] = {}
    last: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "asic_miner_info" and "address" in labels:
                ids[labels["address"]] = labels["miner"]
            elif sample.name == "asic_up":
                up[labels["miner"]] = sample.value
            elif sample.name == "asic_last_poll_success_timestamp_seconds":
                last[labels["miner"]] = sample.value
    return ids, up, last


def log_events(output: str) -> list[dict[str, Any]]:
    """JSON log lines of an agent's output as dicts."""
    events = []
    for line in output.splitlines():
        start = line.find("{")
        if start >= 0:
            with contextlib.suppress(json.JSONDecodeError):
                events.append(json.loads(line[start:]))
    return events
