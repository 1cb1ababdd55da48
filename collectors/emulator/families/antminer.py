"""Stock Antminer (S19j Pro, S21): bmminer RPC on 4028 and the Digest-protected cgi web UI.

Every web path, ``/`` included, wants HTTP Digest (MD5, qop=auth, root/root) in realm
``antMiner Configuration``; ``/kaonsu/v1/brief`` answers a non-JSON 404 (JSON there would make
pyasic think it is a Marathon miner).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import TYPE_CHECKING, ClassVar

from collectors.emulator.families.base import JsonDict, json_response, not_found
from collectors.emulator.families.bmminer import COMPILE_TIME, POOL_URLS, BMMinerFirmware
from collectors.emulator.profiles import FirmwareFamily
from collectors.emulator.wire import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from collectors.emulator.miner import EmulatedMiner

REALM = "antMiner Configuration"
USERNAME = "root"
PASSWORD = "root"  # noqa: S105 - the firmware's factory default, emulated on purpose
_HA1 = hashlib.md5(f"{USERNAME}:{REALM}:{PASSWORD}".encode(), usedforsecurity=False).hexdigest()
_DIGEST_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')
_OPAQUE = secrets.token_hex(16)
UNAUTHORIZED_HTML = b"<html><head><title>401 Unauthorized</title></head><body>401</body></html>"
INDEX_HTML = b"<!DOCTYPE html><html><head><title>Antminer</title></head><body></body></html>"


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def digest_ok(request: HttpRequest) -> bool:
    """True when the request carries a valid Digest response for root/root."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("digest "):
        return False
    params = {m[0]: m[1] or m[2] for m in _DIGEST_PARAM.findall(header[7:])}
    try:
        ha2 = _md5(f"{request.method}:{params['uri']}")
        if params.get("qop"):
            expected = _md5(
                f"{_HA1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:{params['qop']}:{ha2}"
            )
        else:
            expected = _md5(f"{_HA1}:{params['nonce']}:{ha2}")
    except KeyError:
        return False
    return params.get("username") == USERNAME and secrets.compare_digest(
        expected, params.get("response", "")
    )


def challenge() -> HttpResponse:
    """401 with the Antminer Digest challenge."""
    nonce = secrets.token_hex(16)
    return HttpResponse(
        status=401,
        body=UNAUTHORIZED_HTML,
        content_type="text/html",
        headers=[
            (
                "WWW-Authenticate",
                (
                    f'Digest realm="{REALM}", nonce="{nonce}", opaque="{_OPAQUE}", '
                    'algorithm=MD5, qop="auth"'
                ),
            )
        ],
    )


class AntminerFirmware(BMMinerFirmware):
    """Stock Bitmain firmware."""

    family: ClassVar[FirmwareFamily] = FirmwareFamily.ANTMINER

    def http(self, miner: EmulatedMiner, request: HttpRequest) -> HttpResponse:
        """Digest on every path, then the cgi endpoints pyasic reads."""
        if not digest_ok(request):
            return challenge()
        path = request.path
        if path.startswith("/cgi-bin/") and path.endswith(".cgi"):
            name = path[len("/cgi-bin/") : -len(".cgi")]
            renderer = getattr(self, f"cgi_{name}", None)
            if renderer is not None:
                body: bytes = miner.cached(
                    f"cgi:{name}", lambda: json_response(renderer(miner)).body
                )
                return HttpResponse(status=200, body=body)
            return not_found()
        if path in {"/", "/index.html"}:
            return HttpResponse(
                status=200,
                body=INDEX_HTML,
                content_type="text/html",
            )
        return not_found()

    def _info(self, miner: EmulatedMiner) -> JsonDict:
        return {
            "miner_version": self.miner_name,
            "CompileTime": COMPILE_TIME,
            "type": miner.profile.model,
        }

    def _web_status(self, miner: EmulatedMiner, msg: str) -> JsonDict:
        return {"STATUS": "S", "when": int(miner.sim_time), "Msg": msg, "api_version": "1.0.0"}

    def cgi_get_system_info(self, miner: EmulatedMiner) -> JsonDict:
        """get_system_info.cgi: identity."""
        ident = miner.identity
        return {
            "minertype": miner.profile.model,
            "nettype": "DHCP",
            "netdevice": "eth0",
            "macaddr": ident.mac,
            "hostname": ident.hostname,
            "ipaddress": ident.address,
            "netmask": "255.0.0.0",
            "gateway": "",
            "dnsservers": "",
            "system_mode": "GNU/Linux",
            "system_kernel_version": "Linux 4.9.38 #1 SMP PREEMPT Thu Jul 14 16:56:23 CST 2022",
            "system_filesystem_version": COMPILE_TIME,
            "firmware_type": "Release",
            "serinum": ident.serial,
        }

    def cgi_get_blink_status(self, miner: EmulatedMiner) -> JsonDict:
        """get_blink_status.cgi."""
        del miner
        return {"blink": False}

    def cgi_get_network_info(self, miner: EmulatedMiner) -> JsonDict:
        """get_network_info.cgi."""
        ident = miner.identity
        return {
            "nettype": "DHCP",
            "netdevice": "eth0",
            "macaddr": ident.mac,
            "ipaddress": ident.address,
            "netmask": "255.0.0.0",
            "conf_nettype": "DHCP",
            "conf_hostname": ident.hostname,
            "conf_ipaddress": "",
            "conf_netmask": "",
            "conf_gateway": "",
            "conf_dnsservers": "",
        }

    def cgi_get_miner_conf(self, miner: EmulatedMiner) -> JsonDict:
        """get_miner_conf.cgi: work mode 0 = normal, 1 = sleep."""
        return {
            "pools": [
                {"url": url, "user": f"altiwatch.{miner.identity.hostname}", "pass": "x"}
                for url in POOL_URLS
            ],
            "api-listen": True,
            "api-network": True,
            "api-groups": "A:stats:pools:devs:summary:version",
            "api-allow": "A:0/0,W:*",
            "bitmain-fan-ctrl": False,
            "bitmain-fan-pwm": "100",
            "bitmain-use-vil": True,
            "bitmain-freq": "525",
            "bitmain-voltage": "1320",
            "bitmain-ccdelay": "0",
            "bitmain-pwth": "0",
            "bitmain-work-mode": "0" if miner.physics.running else "1",
            "bitmain-freq-level": "100",
        }

    def cgi_summary(self, miner: EmulatedMiner) -> JsonDict:
        """summary.cgi: status entries (not "s" = an error pyasic reports)."""
        phys = miner.physics
        ghs = phys.hashrate_hs() / 1e9
        fans_ok = all(r > 0 for r in phys.fan_rpms())
        temp_ok = phys.running and phys.sensor_c < miner.profile.throttle_c
        return {
            "STATUS": self._web_status(miner, "summary"),
            "INFO": self._info(miner),
            "SUMMARY": [
                {
                    "elapsed": miner.uptime_s(),
                    "rate_5s": round(ghs, 2),
                    "rate_30m": round(ghs, 2),
                    "rate_avg": round(ghs, 2),
                    "rate_ideal": round(phys.expected_hashrate_hs() / 1e9, 2),
                    "rate_unit": "GH/s",
                    "hw_all": 0,
                    "bestshare": 1_000_000,
                    "status": [
                        {"type": "rate", "status": "s", "code": 0, "msg": ""},
                        {"type": "network", "status": "s", "code": 0, "msg": ""},
                        {
                            "type": "fans",
                            "status": "s" if fans_ok else "e",
                            "code": 0 if fans_ok else 1,
                            "msg": "" if fans_ok else "Fan lost",
                        },
                        {
                            "type": "temp",
                            "status": "s" if temp_ok else "e",
                            "code": 0 if temp_ok else 2,
                            "msg": "" if temp_ok else "Temperature too high",
                        },
                    ],
                }
            ],
        }

    def cgi_stats(self, miner: EmulatedMiner) -> JsonDict:
        """stats.cgi: per-chain hashrate (GH/s), chips, PCB and chip temperatures."""
        phys = miner.physics
        prof = miner.profile
        temps = phys.board_temps()
        rates = phys.board_hashrates_hs()
        chains = []
        for i in range(prof.boards):
            t = temps[i]
            rate = rates[i]
            if t is None or rate is None:
                continue
            board, chip = int(t[1]), int(t[2])
            pic = [board - 1, board + 1, board - 1, board + 1]
            pcb = [board - 1, board + 1, board - 1, board + 1]
            chip_temps = [chip - 1, chip + 1, chip - 1, chip + 1]
            coolant = phys.coolant_c() if prof.coolant_sensors else None
            if coolant is not None:
                # S21+ Hydro: temp_pic = [chip, pcb0, pcb1, pcb2], temp_pcb = [coolant inlet,
                # pcb3, coolant outlet, pcb4], temp_chip all 0 (pyasic issue #295).
                pic = [chip, board, board, board]
                pcb = [int(coolant[0]), board, int(coolant[1]), board]
                chip_temps = [0, 0, 0, 0]
            chains.append(
                {
                    "index": i,
                    "freq_avg": 525,
                    "rate_ideal": round(phys.expected_hashrate_hs() / prof.boards / 1e9, 2),
                    "rate_real": round(rate / 1e9, 2),
                    "asic_num": prof.chips_per_board,
                    "asic": " ".join(["oooooooo"] * (prof.chips_per_board // 8)),
                    "temp_pic": pic,
                    "temp_pcb": pcb,
                    "temp_chip": chip_temps,
                    "hw": 0,
                    "eeprom_loaded": True,
                    "sn": f"{miner.identity.serial[:10]}B{i}",
                    "hwp": 0.0,
                    "tpl": [],
                }
            )
        ghs = phys.hashrate_hs() / 1e9
        return {
            "STATUS": self._web_status(miner, "stats"),
            "INFO": self._info(miner),
            "STATS": [
                {
                    "elapsed": miner.uptime_s(),
                    "rate_5s": round(ghs, 2),
                    "rate_30m": round(ghs, 2),
                    "rate_avg": round(ghs, 2),
                    "rate_ideal": round(phys.expected_hashrate_hs() / 1e9, 2),
                    "rate_unit": "GH/s",
                    "chain_num": len(chains),
                    "fan_num": prof.fans,
                    "fan": phys.fan_rpms(),
                    "hwp_total": 0.0,
                    "miner-mode": 0,
                    "freq-level": 100,
                    "chain": chains,
                }
            ],
        }

    def cgi_pools(self, miner: EmulatedMiner) -> JsonDict:
        """pools.cgi."""
        return {"STATUS": self._web_status(miner, "pools"), "INFO": self._info(miner), "POOLS": []}
