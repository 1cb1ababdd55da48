"""Free TCP ports for the servers tests start, chosen outside the kernel's ephemeral range.

A port from ``bind(0)`` is an ephemeral port, and every outgoing loopback connection (the
agent's polls, thousands a minute while another test module runs on the other xdist worker)
also takes an ephemeral port with source address 127.0.0.1. Between our check and the
server's own bind, such a connection can take the port ("Address already in use"; seen once
in a make test run). Ports below the ephemeral range are never handed out to connections, so
only another test could take them, and that is unlikely (random among ~12,000).
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_LOW, _HIGH = 20000, 32000
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _candidates() -> range:
    """Ports to pick from: [20000, 32000), trimmed below the ephemeral range if that is lower."""
    try:
        ephemeral_low = int(_RANGE_FILE.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    return range(min(_LOW, ephemeral_low // 2), min(_HIGH, ephemeral_low))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago, outside the ephemeral range."""
    candidates = _candidates()
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.choice(candidates)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    msg = f"no free port on {host} in {candidates}"
    raise RuntimeError(msg)
