"""Whatsminer (btminer API v2): joinable cgminer-style reads plus flat ``get_*`` replies.

Port 80 answers a 307 to ``https://`` and 443 serves the LuCI login page (TLS, self-signed),
as the real firmware does. ``get_version`` reports a firmware dated before 2024-11, so pyasic
picks its API v2 class; the v3 port 4433 is closed.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, ClassVar

from collectors.emulator.families.base import Firmware, JsonDict
from collectors.emulator.families.bmminer import pools_list
from collectors.emulator.profiles import FirmwareFamily
from collectors.emulator.wire import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from collectors.emulator.miner import EmulatedMiner

FW_VERSION = "20230720.14.Rel"
LUCI_HTML = (
    b'<!DOCTYPE html><html><head><meta http-equiv="refresh" content="0; URL=/cgi-bin/luci" />'
    b'</head><body style="background-color: white"><a href="/cgi-bin/luci">LuCI - Lua '
    b"Configuration Interface</a></body></html>"
)


class WhatsminerFirmware(Firmware):
    """MicroBT btminer."""

    family: ClassVar[FirmwareFamily] = FirmwareFamily.WHATSMINER
    tls_port: ClassVar[bool] = True
    rpc_terminator: ClassVar[bytes] = b""
    joins: ClassVar[bool] = True
    description: ClassVar[str] = "btminer"
    fw_version: ClassVar[str] = FW_VERSION
    """``get_version`` fw_ver: pyasic picks API v2 up to 2024-11, v3 after."""

    def http(self, miner: EmulatedMiner, request: HttpRequest) -> HttpResponse:
        """Plain HTTP redirects to HTTPS; HTTPS serves the LuCI page."""
        if request.tls:
            if request.path in {"/", "/index.html", "/cgi-bin/luci"}:
                return HttpResponse(status=200, body=LUCI_HTML, content_type="text/html")
            return HttpResponse(status=404, body=b"Not Found", content_type="text/plain")
        return HttpResponse(
            status=307,
            body=b"",
            content_type="text/html",
            headers=[("Location", f"https://{miner.address}/")],
        )

    def _msg(self, miner: EmulatedMiner, msg: JsonDict) -> JsonDict:
        return {
            "STATUS": "S",
            "When": int(miner.sim_time),
            "Code": 131,
            "Msg": msg,
            "Description": "",
        }

    def rpc_summary(self, miner: EmulatedMiner) -> JsonDict:
        """summary: hashrate (MH/s), power, env temp, fan in/out, uptime."""
        phys = miner.physics
        mhs = round(phys.hashrate_hs() / 1e6, 2)
        rpms = phys.fan_rpms()
        temps = [t for t in phys.board_temps() if t is not None]
        chips = [t[2] for t in temps] or [phys.inlet_c]
        uptime = miner.uptime_s()
        accepted = uptime // 12 if phys.running else 0
        return {
            "STATUS": self.status(miner, 11, "Summary"),
            "SUMMARY": [
                {
                    "Elapsed": uptime,
                    "MHS av": mhs,
                    "MHS 5s": mhs,
                    "MHS 1m": mhs,
                    "MHS 5m": mhs,
                    "MHS 15m": mhs,
                    "HS RT": mhs,
                    "Accepted": accepted,
                    "Rejected": accepted // 500,
                    "Total MH": round(mhs * uptime, 0),
                    "Temperature": round(max(t[1] for t in temps), 2) if temps else 0.0,
                    "freq_avg": 590,
                    "Fan Speed In": rpms[0],
                    "Fan Speed Out": rpms[1] if len(rpms) > 1 else rpms[0],
                    "Voltage": 1320,
                    "Power": round(miner.power_w()),
                    "Power_RT": round(miner.power_w()),
                    "Device Hardware%": 0.0,
                    "Device Rejected%": 0.2,
                    "Pool Rejected%": 0.2,
                    "Pool Stale%": 0.0,
                    "Last getwork": 0,
                    "Uptime": uptime + 120,
                    "Security Mode": 0,
                    "Hash Stable": True,
                    "Hash Stable Cost Seconds": 1200,
                    "Hash Deviation%": 0.1,
                    "Target Freq": 590,
                    "Target MHS": round(phys.expected_hashrate_hs() / 1e6, 2),
                    "Env Temp": round(phys.inlet_c, 2),
                    "Power Mode": "Normal",
                    "Factory GHS": round(phys.expected_hashrate_hs() / 1e9),
                    "Power Limit": round(miner.profile.power_w * 1.1),
                    "Chip Temp Min": min(chips),
                    "Chip Temp Max": max(chips),
                    "Chip Temp Avg": round(sum(chips) / len(chips), 2),
                    "Debug": "-0.0_100.0_360",
                    "Btminer Fast Boot": "disable",
                }
            ],
            "id": 1,
        }

    def rpc_devs(self, miner: EmulatedMiner) -> JsonDict:
        """devs: one entry per present board."""
        phys = miner.physics
        rpms = phys.fan_rpms()
        devs = []
        rates = phys.board_hashrates_hs()
        for t, rate in zip(phys.board_temps(), rates, strict=True):
            if t is None or rate is None:
                continue
            index, board, chip = t
            mhs = round(rate / 1e6, 2)
            devs.append(
                {
                    "ASC": index,
                    "Name": "SM",
                    "ID": index,
                    "Slot": index,
                    "Enabled": "Y",
                    "Status": "Alive",
                    "Temperature": board,
                    "Chip Frequency": 590,
                    "Fan Speed In": rpms[0],
                    "Fan Speed Out": rpms[-1],
                    "MHS av": mhs,
                    "MHS 5s": mhs,
                    "MHS 1m": mhs,
                    "MHS 5m": mhs,
                    "MHS 15m": mhs,
                    "Accepted": 0,
                    "Rejected": 0,
                    "Hardware Errors": 0,
                    "Utility": 0.0,
                    "Last Share Pool": 0,
                    "Last Share Time": 0,
                    "Total MH": 0.0,
                    "Diff1 Work": 0,
                    "Difficulty Accepted": 0.0,
                    "Difficulty Rejected": 0.0,
                    "Last Share Difficulty": 0.0,
                    "Last Valid Work": 0,
                    "Device Hardware%": 0.0,
                    "Device Rejected%": 0.0,
                    "Device Elapsed": miner.uptime_s(),
                    "Upfreq Complete": 1,
                    "Effective Chips": miner.profile.chips_per_board,
                    "PCB SN": f"{miner.identity.serial[:12]}{index:02d}",
                    "Chip Data": "K88Z001-2013 BINV02-196302F",
                    "Chip Temp Min": chip - 4,
                    "Chip Temp Max": chip + 4,
                    "Chip Temp Avg": chip,
                    "chip_vol_diff": 5,
                }
            )
        return {"STATUS": self.status(miner, 9, f"{len(devs)} ASC(s)"), "DEVS": devs, "id": 1}

    def rpc_pools(self, miner: EmulatedMiner) -> JsonDict:
        """Pools."""
        pools = pools_list(miner)
        return {"STATUS": self.status(miner, 7, f"{len(pools)} Pool(s)"), "POOLS": pools, "id": 1}

    def rpc_devdetails(self, miner: EmulatedMiner) -> JsonDict:
        """devdetails: driver ``bitmicro`` and ``Model`` "M30S+_VE40" (how pyasic detects it)."""
        details = [
            {
                "DEVDETAILS": i,
                "Name": "SM",
                "ID": i,
                "Driver": "bitmicro",
                "Kernel": "",
                "Model": miner.profile.model,
            }
            for i in range(miner.profile.boards)
        ]
        return {"STATUS": self.status(miner, 69, "Device Details"), "DEVDETAILS": details, "id": 1}

    def rpc_get_version(self, miner: EmulatedMiner) -> JsonDict:
        """get_version: fw_ver dated ≤ 2024-11 (API v2)."""
        return self._msg(
            miner,
            {
                "api_ver": "2.0.5",
                "fw_ver": self.fw_version,
                "platform": "H6OS",
                "chip": "IC_MODEL_H6OS",
            },
        )

    def rpc_get_token(self, miner: EmulatedMiner) -> JsonDict:
        """get_token: the salts and time the privileged (write) API derives its token from."""
        salt = hashlib.sha256(miner.address.encode()).hexdigest()
        return {
            "STATUS": "S",
            "When": int(miner.sim_time),
            "Code": 134,
            "Msg": {
                "time": f"{int(miner.sim_time) % 10_000:04d}",
                "salt": salt[:8],
                "newsalt": salt[8:16],
            },
            "Description": "",
        }

    def rpc_version(self, miner: EmulatedMiner) -> JsonDict:
        """version: alias of get_version on btminer."""
        return self.rpc_get_version(miner)

    def rpc_get_miner_info(self, miner: EmulatedMiner) -> JsonDict:
        """get_miner_info: identity."""
        ident = miner.identity
        return self._msg(
            miner,
            {
                "ip": ident.address,
                "proto": "dhcp",
                "netmask": "255.0.0.0",
                "gateway": "",
                "dns": "",
                "hostname": ident.hostname,
                "mac": ident.mac,
                "ledstat": "auto",
                "minersn": ident.serial,
                "powersn": f"P{ident.serial[2:]}",
            },
        )

    def rpc_get_psu(self, miner: EmulatedMiner) -> JsonDict:
        """get_psu."""
        return self._msg(
            miner,
            {
                "name": "P221B",
                "hw_version": "V01.00",
                "sw_version": "V01.00.V01.03",
                "model": "P221B",
                "iin": "14500",
                "vin": "22100",
                "fan_speed": "6960",
                "version": "1",
                "serial_no": f"P{miner.identity.serial[2:]}",
                "vout": "1320",
            },
        )

    def rpc_get_error_code(self, miner: EmulatedMiner) -> JsonDict:
        """get_error_code: fan and temperature protection codes."""
        codes = []
        if any(r == 0 for r in miner.physics.fan_rpms()):
            codes.append({"110": "2026-01-01 00:00:00"})
        if not miner.physics.running:
            codes.append({"352": "2026-01-01 00:00:00"})
        return self._msg(miner, {"error_code": codes})

    def rpc_status(self, miner: EmulatedMiner) -> JsonDict:
        """status: mineroff false while hashing."""
        return self._msg(
            miner,
            {
                "mineroff": "false" if miner.physics.running else "true",
                "mineroff_reason": "",
                "mineroff_time": "",
                "FirmwareVersion": f"'{self.fw_version}'",
                "power_mode": "",
                "hash_percent": "",
            },
        )
