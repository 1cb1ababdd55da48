"""Wire details that pyasic's detection and parsing depend on (miner-protocols.md §6)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

BASE = "127.20.7.1"
SCENARIO = {
    "name": "protocol",
    "site": {"name": "lab", "altitude_m": 0},
    "miners": [
        {"model": "antminer-s19jpro"},
        {"model": "bitaxe-ultra"},
        {"model": "vnish-s19jpro"},
        {"model": "whatsminer-m30s+ve40"},
        {"model": "avalon-15-194"},
        {"model": "braiins-s19jpro"},
    ],
}


@pytest.fixture(scope="module")
def site(module_emulator_factory):
    """One miner per family."""
    return module_emulator_factory(SCENARIO, base_address=BASE)


@pytest.fixture(scope="module")
def addr(site):
    """Family -> address."""
    return {m["family"]: m["address"] for m in site.miners()}


async def rpc(address: str, command: str) -> bytes:
    """One raw 4028 exchange."""
    reader, writer = await asyncio.open_connection(address, 4028)
    writer.write(json.dumps({"command": command}).encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    return data


async def test_antminer_digest_on_every_path_and_no_marathon_json(addr):
    """Antminer: Digest realm on /, wrong password refused, /kaonsu/v1/brief is a non-JSON 404."""
    base = f"http://{addr['antminer']}"
    async with httpx.AsyncClient() as client:
        anon = await client.get(base + "/")
        assert anon.status_code == 401
        assert 'Digest realm="antMiner Configuration"' in anon.headers["www-authenticate"]
        wrong = await client.get(
            base + "/cgi-bin/get_system_info.cgi", auth=httpx.DigestAuth("root", "nope")
        )
        assert wrong.status_code == 401
        good = await client.get(
            base + "/cgi-bin/get_system_info.cgi", auth=httpx.DigestAuth("root", "root")
        )
        assert good.json()["minertype"] == "Antminer S19j Pro"
        brief = await client.get(base + "/kaonsu/v1/brief", auth=httpx.DigestAuth("root", "root"))
        assert brief.status_code == 404
        with pytest.raises(json.JSONDecodeError):
            json.loads(brief.text)


async def test_cgminer_rpc_terminators_and_joins(addr):
    """Bmminer ends with NUL and rejects joins (Code 14); btminer has no NUL and joins."""
    stock = await rpc(addr["antminer"], "version")
    assert stock.endswith(b"\x00")
    assert json.loads(stock[:-1])["VERSION"][0]["Type"] == "Antminer S19j Pro"
    joined = json.loads((await rpc(addr["antminer"], "summary+stats"))[:-1])
    assert joined["STATUS"][0]["STATUS"] == "E"
    assert joined["STATUS"][0]["Code"] == 14
    wm = json.loads(await rpc(addr["whatsminer"], "summary+devs+pools"))
    assert set(wm) == {"summary", "devs", "pools", "id"}
    version = json.loads(await rpc(addr["whatsminer"], "get_version"))
    assert version["Msg"]["fw_ver"] <= "20241100"


async def test_vnish_version_has_no_antminer_and_web_needs_the_token(addr):
    """VNish: no "Antminer" on 4028 version; REST answers only with the unlock token."""
    assert b"antminer" not in (await rpc(addr["vnish"], "version")).lower()
    base = f"http://{addr['vnish']}/api/v1"
    async with httpx.AsyncClient() as client:
        assert (await client.get(base + "/summary")).status_code == 401
        assert (await client.post(base + "/unlock", json={"pw": "wrong"})).status_code == 403
        token = (await client.post(base + "/unlock", json={"pw": "admin"})).json()["token"]
        summary = await client.get(base + "/summary", headers={"Authorization": token})
        assert summary.json()["miner"]["miner_type"] == "Antminer S19j Pro (Vnish 1.2.6)"


async def test_bitaxe_has_no_rpc_port_and_integer_fanrpm(addr):
    """Bitaxe: 4028 and 4433 refused; /api/system/info has ASICModel and an int fanrpm."""
    for port in (4028, 4433):
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(addr["bitaxe"], port)
    async with httpx.AsyncClient() as client:
        page = await client.get(f"http://{addr['bitaxe']}/")
        assert "AxeOS" in page.text
        info = (await client.get(f"http://{addr['bitaxe']}/api/system/info")).json()
    assert info["ASICModel"] == "BM1366"
    assert isinstance(info["fanrpm"], int)


async def test_whatsminer_web_redirects_to_https(addr):
    """Whatsminer: port 80 answers 307 to https:// (the LuCI page pyasic looks for)."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://{addr['whatsminer']}/")
    assert response.status_code == 307
    assert response.headers["location"].startswith("https://")


async def test_avalon_and_bos_identify_on_version(addr):
    """Avalon: PROD/MODEL on version; BOS+: BOSer on version and a Bitmain devdetails model."""
    avalon = json.loads((await rpc(addr["avalon"], "version"))[:-1])["VERSION"][0]
    assert (avalon["PROD"], avalon["MODEL"]) == ("AvalonMiner 15-194", "15-194")
    assert b"BOSer" in await rpc(addr["braiins"], "version")
    details = json.loads((await rpc(addr["braiins"], "devdetails"))[:-1])
    assert details["DEVDETAILS"][0]["Model"] == "Bitmain Antminer S19j Pro"
