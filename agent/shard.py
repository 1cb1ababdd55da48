"""Shards of one site: which agent polls which miner, exactly as Prometheus ``hashmod`` assigns.

An address belongs to shard ``hashmod(address, count)``: the MD5 of the address text, its last
8 bytes read as a big-endian unsigned 64-bit integer, modulo ``count``. This is what Prometheus'
relabel action ``hashmod`` computes (``prometheus/prometheus:model/relabel/relabel.go``:
``binary.BigEndian.Uint64(hash[8:]) % cfg.Modulus``) and vmagent reproduces, so a relabel rule
over the same address text (``source_labels: [address]``, ``modulus: <count>``) puts every miner
on the shard that polls it::

    >>> hashmod("10.28.1.17", 3)
    2

The address is the one in the config (``miners[].address``, normalised: lower-case host name,
compressed IPv6) or the one discovery found; shards of one site keep the same ``site`` label.
"""

from __future__ import annotations

import hashlib

_LAST_8_BYTES = slice(8, 16)


def hashmod(value: str, modulus: int) -> int:
    """Prometheus ``hashmod`` of ``value`` (one source label, so no separator) by ``modulus``."""
    if modulus < 1:
        msg = f"modulus must be at least 1, got {modulus}"
        raise ValueError(msg)
    digest = hashlib.md5(value.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[_LAST_8_BYTES], "big") % modulus


def owns(address: str, index: int, count: int) -> bool:
    """True when shard ``index`` of ``count`` polls ``address``."""
    return count == 1 or hashmod(address, count) == index
