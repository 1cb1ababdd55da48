"""tests.support.ports: server ports for tests come from outside the ephemeral range."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.support.ports import free_port


def test_ports_free_port_is_below_the_ephemeral_range_and_bindable():
    """The port is below ip_local_port_range (no outgoing connection can take it) and free."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(20):
        port = free_port("127.0.0.1")
        assert 1024 < port < low
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
