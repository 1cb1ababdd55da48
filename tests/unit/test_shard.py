"""agent.shard and ``agent.shard``: hashmod assignment, config checks, shards partition a fleet."""

from __future__ import annotations

import hashlib

import pytest

from agent.config import load_config_text
from agent.errors import ConfigError
from agent.shard import hashmod, owns

CONFIG = """
agent: {{id: shard-{index}, shard: {{index: {index}, count: {count}}}}}
sites: [{{name: golmud, altitude_m: 2800}}]
miners:
{miners}
"""


def _config(index: int, count: int, addresses: list[str]) -> str:
    miners = "\n".join(f"  - {{address: {a}}}" for a in addresses)
    return CONFIG.format(index=index, count=count, miners=miners)


def test_hashmod_is_md5_last_8_bytes_big_endian_mod_n():
    """Hashmod is the MD5's last 8 bytes as a big-endian uint64, modulo n (relabel.go)."""
    digest = hashlib.md5(b"10.28.1.17", usedforsecurity=False).digest()
    assert hashmod("10.28.1.17", 7) == int.from_bytes(digest[8:], "big") % 7
    assert hashmod("10.28.1.17", 1) == 0
    with pytest.raises(ValueError, match="modulus"):
        hashmod("x", 0)


def test_shards_partition_sixty_addresses_exactly_once():
    """Three shards' configs keep disjoint address sets that together cover the fleet."""
    addresses = [f"10.28.{i // 250}.{i % 250 + 1}" for i in range(60)]
    kept = [
        {t.address for _, t in load_config_text(_config(i, 3, addresses)).targets()}
        for i in range(3)
    ]
    assert sorted(a for shard in kept for a in shard) == sorted(addresses)
    assert all(kept), "every shard gets some of 60 miners"
    for index, shard in enumerate(kept):
        assert all(hashmod(a, 3) == index for a in shard)


def test_shard_index_must_be_below_count():
    """agent.shard.index >= count is a config error naming the field."""
    with pytest.raises(ConfigError, match=r"agent\.shard\.index"):
        load_config_text(_config(3, 3, ["10.0.0.1"]))


def test_owns_single_shard_keeps_everything():
    """Count 1 (or no agent.shard) polls every address."""
    assert owns("10.0.0.1", 0, 1)
    assert load_config_text(
        "sites: [{name: a, altitude_m: 1}]\nminers: [{address: 10.0.0.1}]"
    ).owns("10.0.0.1")
