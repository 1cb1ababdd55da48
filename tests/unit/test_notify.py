"""Specification of agent/notify.py: sd_notify datagrams to a socket the test owns."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from pathlib import Path

import pytest

from agent.notify import Notifier


@pytest.fixture
def notify_socket():
    """A datagram socket standing in for systemd's notify socket: (path, socket)."""
    directory = Path(tempfile.mkdtemp(prefix="aw-notify-", dir="/tmp"))
    path = directory / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield str(path), sock
    sock.close()
    path.unlink(missing_ok=True)
    directory.rmdir()


def test_notify_sends_ready_watchdog_stopping_status(notify_socket):
    """Each call sends exactly its sd_notify message to $NOTIFY_SOCKET."""
    path, sock = notify_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    notifier.ready()
    notifier.watchdog()
    notifier.status("polling 30 miners")
    notifier.stopping()
    received = [sock.recv(4096).decode() for _ in range(4)]
    assert received == ["READY=1", "WATCHDOG=1", "STATUS=polling 30 miners", "STOPPING=1"]


def test_notify_reloading_carries_monotonic_usec(notify_socket):
    """RELOADING=1 comes with MONOTONIC_USEC as systemd's reload protocol requires."""
    path, sock = notify_socket
    Notifier.from_env({"NOTIFY_SOCKET": path}).reloading()
    lines = sock.recv(4096).decode().split("\n")
    assert lines[0] == "RELOADING=1"
    assert lines[1].startswith("MONOTONIC_USEC=")
    assert int(lines[1].split("=")[1]) > 0


def test_notify_abstract_socket():
    """An '@' NOTIFY_SOCKET is an abstract-namespace socket."""
    name = f"altiwatch-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier.from_env({"NOTIFY_SOCKET": "@" + name}).send("READY=1")
        assert sock.recv(100) == b"READY=1"


def test_notify_without_socket_is_a_noop():
    """Without NOTIFY_SOCKET nothing is sent and no watchdog interval is asked for."""
    notifier = Notifier.from_env({"WATCHDOG_USEC": "30000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    assert notifier.send("READY=1") is False
    notifier.ready()


def test_notify_watchdog_interval_is_half_of_watchdog_usec():
    """WATCHDOG_USEC=30 s gives a 15 s ping interval; a WATCHDOG_PID for another process none."""
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000"}
    assert Notifier.from_env(env).watchdog_interval_s == 15.0
    assert Notifier.from_env(env | {"WATCHDOG_PID": str(os.getpid())}).watchdog_interval_s == 15.0
    assert Notifier.from_env(env | {"WATCHDOG_PID": "1"}).watchdog_interval_s is None


def test_notify_unreachable_socket_does_not_raise(tmp_path):
    """A vanished notify socket is logged, not raised: monitoring must not kill the agent."""
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.send("WATCHDOG=1") is False
    assert notifier.send("WATCHDOG=1") is False
