"""Storage faults under the real agent: a full state dir, a read-only one, corrupt databases.

The state directory is a real file system mounted for the test (as root): a 2 MB tmpfs that is
filled up (ENOSPC), or a loop-mounted ext4 image that is forced read-only with
``mount -o remount,abort`` (what ``errors=remount-ro`` does on an I/O error; a plain
``remount,ro`` is refused while the agent holds its databases open). Alarms are raised by
removing hashboards in the emulator (rule R6, two polls), events are read with a real
``mosquitto_sub`` from a real Mosquitto.
"""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import signal
import sqlite3
import subprocess
import uuid
from typing import TYPE_CHECKING, Any, BinaryIO

import pytest

from tests.integration.test_reliability_miners import log_events, parse_metrics
from tests.support.agent import agent_config
from tests.support.mosquitto import MosquittoSub

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.support.agent import AgentProcess

pytestmark = pytest.mark.broker

SCENARIO = {
    "name": "storage",
    "site": {"name": "golmud", "altitude_m": 2800},
    "miners": [{"model": "antminer-s19jpro", "count": 4, "hostname_prefix": "s19"}],
}


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def mounts() -> Iterator[list[Path]]:
    """Mount points made by a test; lazily unmounted at teardown (after the agent stopped)."""
    made: list[Path] = []
    yield made
    for point in reversed(made):
        _run("umount", "-l", str(point))


def mount_tmpfs(point: Path, size: str, mounts: list[Path]) -> None:
    """Mount a tmpfs of ``size`` at ``point`` (skip the test when this machine cannot)."""
    point.mkdir(parents=True, exist_ok=True)
    result = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(point))
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    mounts.append(point)


def mount_ext4(image: Path, point: Path, mounts: list[Path]) -> None:
    """Mount a fresh 16 MB ext4 image with errors=remount-ro (skip when loop mounts fail)."""
    point.mkdir(parents=True, exist_ok=True)
    with image.open("wb") as f:
        f.truncate(16 * 1024 * 1024)
    mkfs = shutil.which("mkfs.ext4") or "/usr/sbin/mkfs.ext4"
    made = _run(mkfs, "-q", "-F", str(image))
    if made.returncode != 0:
        pytest.skip(f"mkfs.ext4 unavailable: {made.stderr.strip()}")
    result = _run("mount", "-o", "loop,errors=remount-ro", str(image), str(point))
    if result.returncode != 0:
        pytest.skip(f"cannot loop-mount an ext4 image here: {result.stderr.strip()}")
    mounts.append(point)


def _write_until_error(f: BinaryIO, chunk: bytes) -> OSError:
    try:
        while True:
            f.write(chunk)
            f.flush()
    except OSError as exc:
        return exc


def fill(directory: Path) -> Path:
    """Write a file until the file system says ENOSPC; return it (delete it to free space)."""
    filler = directory / f"filler-{uuid.uuid4().hex}"
    chunk = b"\0" * 65536
    # Unbuffered: a buffered file keeps the part of a chunk that did not fit and raises
    # ENOSPC again when `with` closes it (a flaky failure of the test itself).
    with filler.open("wb", buffering=0) as f:
        error = _write_until_error(f, chunk)
    assert error.errno == errno.ENOSPC, error
    # Also use up the last blocks smaller than a chunk.
    with contextlib.suppress(OSError), filler.open("ab") as f:
        while True:
            f.write(b"\0" * 512)
            f.flush()
    return filler


@pytest.fixture
def subscription(mosquitto: Any, tmp_path: Path) -> Iterator[MosquittoSub]:
    """A subscriber on the test broker's event streams."""
    sub = MosquittoSub(
        mosquitto.host, mosquitto.port, tmp_path / "events.log", "altiwatch/v1/+/events"
    )
    yield sub
    sub.close()


def _config(addresses: list[str], state_dir: Path, mosquitto: Any) -> dict[str, Any]:
    mqtt = {"enabled": True, "host": mosquitto.host, "port": mosquitto.port}
    return agent_config(
        [{"address": a} for a in addresses],
        interval_s=1.0,
        agent={"state_dir": str(state_dir)},
        polling={"slow_interval_s": 30.0},
        mqtt=mqtt,
    )


def _active(agent: AgentProcess) -> set[tuple[str, str]]:
    status, body = agent.fetch("/api/v1/alarms")
    assert status == 200, f"/api/v1/alarms answered {status}"
    return {(a["miner"], a["rule"]) for a in json.loads(body)}


def _metric(agent: AgentProcess, name: str) -> float:
    samples = parse_metrics(agent.metrics()).get(name, [])
    return sum(value for _labels, value in samples)


def _stored_alarms(path: Path) -> set[tuple[str, str]]:
    """(miner, rule) rows of the alarm store, read with a separate connection."""
    if not path.exists():
        return set()
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return {(m, r) for m, r in conn.execute("SELECT miner, rule FROM alarm")}
    except sqlite3.Error:
        return set()


def _macs(emulator: Any, addresses: list[str]) -> dict[str, str]:
    return {a: emulator.truth(a)["mac"].upper() for a in addresses}


def _raised(sub: MosquittoSub, mac: str) -> list[dict[str, Any]]:
    return [e for e in sub.alarm_events() if e["miner"] == mac and e["event"] == "raised"]


def test_reliability_full_state_dir_keeps_agent_working_and_persists_later(
    tmp_path, mounts, emulator_factory, agent_factory, mosquitto, subscription
):
    """ENOSPC while alarms fire: polling, /metrics and MQTT go on; state is written after.

    1. The agent runs with its state on a 2 MB tmpfs; the tmpfs is filled to ENOSPC.
    2. Two miners lose a hashboard: R6 fires (API), the events reach MQTT from memory.
    3. altiwatch_state_write_failures_total counts the failed writes; polling goes on.
    4. Space returns: the firing alarms are persisted in alarms.sqlite3.
    5. SIGKILL + restart: the alarms are still active and are not raised a second time.
    """
    state = tmp_path / "state"
    mount_tmpfs(state, "2m", mounts)
    emulator = emulator_factory(SCENARIO, base_address="127.90.2.1")
    addresses = emulator.addresses()
    macs = _macs(emulator, addresses)
    config = _config(addresses, state, mosquitto)
    agent = agent_factory(config)

    filler = fill(state)
    polls_before = _metric(agent, "altiwatch_polls_total")
    hot = addresses[:2]
    for address in hot:
        emulator.inject(address, "board_lost", board=1)
    wanted = {(macs[a], "R6") for a in hot}
    agent.wait_for(lambda: wanted <= _active(agent), "R6 active for both miners", timeout=60)
    agent.wait_for(
        lambda: all(_raised(subscription, macs[a]) for a in hot),
        "raised events on MQTT while the disk is full",
        timeout=60,
    )
    agent.wait_for(
        lambda: _metric(agent, "altiwatch_state_write_failures_total") > 0,
        "altiwatch_state_write_failures_total > 0",
        timeout=60,
    )
    failures = _metric(agent, "altiwatch_state_write_failures_total")
    agent.wait_for(
        lambda: _metric(agent, "altiwatch_polls_total") > polls_before + 3 * len(addresses),
        "polling to go on with a full disk",
        timeout=30,
    )
    up = parse_metrics(agent.metrics())["asic_up"]
    assert all(value == 1 for _labels, value in up), up
    assert _stored_alarms(state / "alarms.sqlite3") != wanted  # nothing could be written

    filler.unlink()
    agent.wait_for(
        lambda: wanted <= _stored_alarms(state / "alarms.sqlite3"),
        "the firing alarms persisted once space returned",
        timeout=60,
    )
    events = [e["event"] for e in log_events(agent)]
    print(
        f"state write failures counted: {failures:g}; storage log events: "
        f"{sorted({e for e in events if 'storage' in e or 'store' in e})}"
    )

    agent.kill()
    restarted = agent_factory(config)
    restarted.wait_for(lambda: wanted <= _active(restarted), "R6 active after restart", timeout=60)
    # Several evaluations later, still exactly one raise per alarm.
    polls = _metric(restarted, "altiwatch_polls_total")
    restarted.wait_for(
        lambda: _metric(restarted, "altiwatch_polls_total") > polls + 3 * len(addresses),
        "a few poll cycles after the restart",
        timeout=30,
    )
    for address in hot:
        assert len(_raised(subscription, macs[address])) == 1, subscription.alarm_events()


def test_reliability_read_only_state_dir_keeps_agent_working(
    tmp_path, mounts, emulator_factory, agent_factory, mosquitto, subscription
):
    """The state file system turns read-only (ext4 abort) while an alarm fires: nothing stops.

    1. The agent runs with its state on a loop-mounted ext4 (errors=remount-ro).
    2. ``mount -o remount,abort``: every write now fails.
    3. A miner loses a hashboard: R6 fires (API) and its event reaches MQTT from memory.
    4. Failures are counted; polling and /metrics go on; the process stays up.
    """
    state = tmp_path / "state"
    mount_ext4(tmp_path / "state.ext4", state, mounts)
    emulator = emulator_factory(SCENARIO, base_address="127.90.3.1")
    addresses = emulator.addresses()
    macs = _macs(emulator, addresses)
    agent = agent_factory(_config(addresses, state, mosquitto))

    aborted = _run("mount", "-o", "remount,abort", str(state))
    if aborted.returncode != 0:
        pytest.skip(f"cannot abort the ext4 mount: {aborted.stderr.strip()}")
    probe = state / "probe"
    with pytest.raises(OSError):  # the file system really is read-only now
        probe.write_bytes(b"x")

    polls_before = _metric(agent, "altiwatch_polls_total")
    emulator.inject(addresses[0], "board_lost", board=1)
    mac = macs[addresses[0]]
    agent.wait_for(lambda: (mac, "R6") in _active(agent), "R6 active", timeout=60)
    agent.wait_for(
        lambda: _raised(subscription, mac), "the raised event on MQTT from memory", timeout=60
    )
    agent.wait_for(
        lambda: _metric(agent, "altiwatch_state_write_failures_total") > 0,
        "altiwatch_state_write_failures_total > 0",
        timeout=60,
    )
    agent.wait_for(
        lambda: _metric(agent, "altiwatch_polls_total") > polls_before + 3 * len(addresses),
        "polling to go on on a read-only file system",
        timeout=30,
    )
    assert agent.proc.poll() is None
    agent.signal(signal.SIGTERM)
    assert agent.proc.wait(timeout=30) == 0


def _corrupt(path: Path) -> None:
    path.write_bytes(b"this is not an SQLite database\n" * 64)


@pytest.mark.parametrize(
    "database",
    [
        pytest.param("mqtt-outbox.sqlite3", id="outbox"),
        pytest.param("alarms.sqlite3", id="alarm-store"),
    ],
)
def test_reliability_corrupt_database_is_moved_aside_and_rebuilt(
    tmp_path, database, emulator_factory, agent_factory, mosquitto
):
    """A corrupt state database is renamed ``*.corrupt-*``, rebuilt, and a log line says so."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    _corrupt(state / database)
    emulator = emulator_factory(SCENARIO, base_address="127.90.4.1")
    agent = agent_factory(_config(emulator.addresses()[:1], state, mosquitto))

    moved = agent.wait_for(
        lambda: list(state.glob(f"{database}.corrupt-*")), f"{database} moved aside", timeout=5
    )
    assert moved[0].read_bytes().startswith(b"this is not an SQLite database")
    with contextlib.closing(sqlite3.connect(state / database)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    lines = [e for e in log_events(agent) if "corrupt" in json.dumps(e)]
    assert lines, "no log line about the corrupt database"
    assert (state / database).stat().st_size > 0
