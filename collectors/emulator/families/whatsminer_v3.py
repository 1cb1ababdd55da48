"""Whatsminer API v3 (firmware dated after 2024-11): framed JSON on 4433, salted-token writes.

Wire (as pyasic 0.79's ``BTMinerV3RPCAPI`` speaks it): each TCP connection carries one request,
a 4-byte little-endian length and the JSON ``{"cmd": ..., "param": ...}``; the reply is framed
the same way and is ``{"code": 0, "when": ..., "msg": {...}, "desc": cmd}``.

Reads pyasic sends: ``get.device.info`` (identity, firmware, PSU, error codes, board count),
``get.miner.status`` with ``summary`` (hashrate, power, fans, environment temperature,
uptime) and ``edevs`` (per board: hashrate, chips, chip temperature min/avg/max; no PCB or
air sensor per board). Its config read also sends ``get.miner.status:pools`` and
``get.miner.setting``. Writes (``set.*``) carry ``ts``, ``account`` and ``token`` =
base64(sha256(cmd + password + salt + ts)) cut to 8 characters, the salt coming from
``get.device.info`` with param ``salt``; a wrong token is refused.

Two families: `WhatsminerV3Firmware` closes 4028 (pyasic's version check then picks its v2
client, which reads nothing: issue 16 trap c); `WhatsminerV3With4028Firmware` also answers
the v2-style API on 4028 with a 2025 firmware date, so pyasic picks ``BTMinerV3``. A profile
without ``ambient_sensor`` sends no ``environment-temperature``.
"""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING, ClassVar

from collectors.emulator.families.base import Firmware, JsonDict, dumps
from collectors.emulator.families.bmminer import pools_list
from collectors.emulator.families.whatsminer import WhatsminerFirmware
from collectors.emulator.profiles import FirmwareFamily

if TYPE_CHECKING:
    from collectors.emulator.miner import EmulatedMiner
    from collectors.emulator.wire import HttpRequest, HttpResponse

FW_VERSION_V3 = "20250214.16.Rel"
"""A firmware build dated after 2024-11: pyasic's version check picks ``BTMinerV3``."""
API_VERSION_V3 = "3.0.1"
PASSWORD = "super"  # noqa: S105 - the factory password of the "super" account pyasic uses
INVALID_TOKEN_CODE = -4
UNKNOWN_COMMAND_CODE = -1
CHIP_SPREAD_K = (7.0, 3.0)
"""chip-temp-min and chip-temp-avg sit this far below the hottest chip (chip-temp-max)."""
ENV_HOT_C = 40.0
"""Error 600 ("Environment temperature is too high.") from this environment temperature."""


def token_for(command: str, salt: str, ts: int, password: str = PASSWORD) -> str:
    """The write token: base64(sha256(cmd + password + salt + ts)), first 8 characters."""
    digest = hashlib.sha256(f"{command}{password}{salt}{ts}".encode()).digest()
    return base64.b64encode(digest).decode("ascii")[:8]


def salt_of(miner: EmulatedMiner) -> str:
    """The device's salt (stable per serial)."""
    return hashlib.sha256(miner.identity.serial.encode()).hexdigest()[:8]


def error_codes(miner: EmulatedMiner) -> list[dict[str, str]]:
    """``error-code`` entries ``{code: text}`` for the miner's current state."""
    phys = miner.physics
    codes: list[dict[str, str]] = []
    rpms = phys.fan_rpms()
    if rpms and rpms[0] == 0:
        codes.append({"110": "Intake fan speed error."})
    if len(rpms) > 1 and rpms[1] == 0:
        codes.append({"120": "Exhaust fan speed error."})
    if miner.profile.ambient_sensor and phys.inlet_c >= ENV_HOT_C:
        codes.append({"600": "Environment temperature is too high."})
    if not phys.running:
        codes.append({"352": "Slot 2 temperature protecting."})
    return codes


class WhatsminerV3Firmware(Firmware):
    """MicroBT btminer with API v3 on 4433 only (4028 closed)."""

    family: ClassVar[FirmwareFamily] = FirmwareFamily.WHATSMINER_V3
    rpc_port: ClassVar[bool] = False
    v3_port: ClassVar[bool] = True
    tls_port: ClassVar[bool] = True
    description: ClassVar[str] = "btminer v3"

    def __init__(self) -> None:
        """No LED patterns set yet (set.system.led)."""
        self.leds: dict[str, str] = {}
        self._luci = WhatsminerFirmware()

    def http(self, miner: EmulatedMiner, request: HttpRequest) -> HttpResponse:
        """Port 80 redirects to HTTPS, 443 serves LuCI: as the v2 firmware."""
        return self._luci.http(miner, request)

    # ---- framing ---------------------------------------------------------------------

    def v3_request(self, miner: EmulatedMiner, request: object) -> bytes:
        """The JSON body answering one v3 request (the wire adds the length header)."""
        if not isinstance(request, dict):
            return dumps(self._envelope(miner, "", "invalid command", UNKNOWN_COMMAND_CODE))
        command = str(request.get("cmd", ""))
        if command.startswith("set."):
            return self.write(miner, request)
        param = request.get("param")
        key = f"v3:{command}:{param if isinstance(param, str) else ''}"
        return miner.cached(key, lambda: dumps(self._read(miner, command, param)))

    def _envelope(self, miner: EmulatedMiner, command: str, msg: object, code: int = 0) -> JsonDict:
        return {"code": code, "when": int(miner.sim_time), "msg": msg, "desc": command}

    def _read(self, miner: EmulatedMiner, command: str, param: object) -> JsonDict:
        if command == "get.device.info":
            if param == "salt":
                return self._envelope(miner, command, {"salt": salt_of(miner)})
            return self._envelope(miner, command, self.device_info(miner))
        if command == "get.miner.status":
            renderers = {"summary": self.summary, "edevs": self.edevs, "pools": self.pools}
            renderer = renderers.get(str(param))
            if renderer is not None:
                return self._envelope(miner, command, {str(param): renderer(miner)})
        if command == "get.miner.setting":
            return self._envelope(miner, command, self.setting(miner))
        return self._envelope(miner, command, "invalid command", UNKNOWN_COMMAND_CODE)

    def write(self, miner: EmulatedMiner, request: JsonDict) -> bytes:
        """Answer a ``set.*`` request with its token checked (called by the wire)."""
        command = str(request.get("cmd", ""))
        ts, token = request.get("ts"), request.get("token")
        if (
            not isinstance(ts, int)
            or request.get("account") != "super"
            or token != token_for(command, salt_of(miner), ts)
        ):
            return dumps(self._envelope(miner, command, "invalid token", INVALID_TOKEN_CODE))
        if command == "set.system.led":
            param = request.get("param")
            self.leds[miner.address] = "auto" if param == "auto" else "manual"
            miner.bump()
        return dumps(self._envelope(miner, command, "ok"))

    # ---- replies ---------------------------------------------------------------------

    def device_info(self, miner: EmulatedMiner) -> JsonDict:
        """``get.device.info``: network, miner, system, power, error codes."""
        ident = miner.identity
        boards = miner.profile.boards
        hw: JsonDict = {
            "working": "true" if miner.physics.running else "false",
            "type": miner.profile.model,
            "hash-board": "HB3321",
            "cointype": "BTC",
            "miner-sn": ident.serial,
            "board-num": boards,
        }
        for i in range(boards):
            hw[f"pcbsn{i}"] = f"{ident.serial[:12]}{i:02d}"
            hw[f"chipdata{i}"] = "K88Z001-2013 BINV02-196302F"
        return {
            "network": {
                "ip": ident.address,
                "proto": "dhcp",
                "netmask": "255.0.0.0",
                "dns": "",
                "mac": ident.mac,
                "gateway": "",
                "hostname": ident.hostname,
            },
            "miner": hw,
            "system": {
                "api": API_VERSION_V3,
                "platform": "H616",
                "fwversion": FW_VERSION_V3,
                "control-board-version": "CB6V10",
                "btrom": "1.0",
                "ledstatus": self.leds.get(miner.address, "auto"),
            },
            "power": {
                "type": "P21",
                "hwversion": "V01.00",
                "swversion": "V01.00.V01.03",
                "model": "P21-GB-12-3300",
                "iin": round(miner.power_w() / 220.0, 2),
                "vin": 220.0,
                "pin": round(miner.power_w()),
                "fanspeed": 7040,
                "version": 1,
                "sn": f"P{ident.serial[2:]}",
                "vout": 1500,
            },
            "hardware": {"boards": boards},
            "error-code": error_codes(miner),
        }

    def summary(self, miner: EmulatedMiner) -> JsonDict:
        """``get.miner.status:summary``: TH/s, W, rpm, °C, s (pools are under ``pools``)."""
        phys = miner.physics
        rpms = phys.fan_rpms()
        chips = [t[2] for t in phys.board_temps() if t is not None] or [phys.inlet_c]
        uptime = miner.uptime_s()
        out: JsonDict = {
            "elapsed": uptime,
            "bootup-time": int(miner.sim_time) - uptime,
            "freq-avg": 560,
            "target-freq": 560,
            "hash-realtime": phys.hashrate_hs() / 1e12,
            "hash-average": phys.hashrate_hs() / 1e12,
            "hash-percent": 100 if phys.running else 0,
            "factory-hash": phys.expected_hashrate_hs() / 1e12,
            "power-limit": round(miner.profile.power_w * 1.1),
            "power-realtime": round(miner.power_w()),
            "power-rate": round(miner.power_w() * 1e12 / max(phys.hashrate_hs(), 1.0), 2),
            "power-mode": "Normal",
            "fan-speed-in": rpms[0],
            "fan-speed-out": rpms[1] if len(rpms) > 1 else rpms[0],
            "chip-temp-min": round(min(chips) - CHIP_SPREAD_K[0], 2),
            "chip-temp-avg": round(sum(chips) / len(chips) - CHIP_SPREAD_K[1], 2),
            "chip-temp-max": round(max(chips), 2),
            "btminer-fast-boot": "disable",
        }
        if miner.profile.ambient_sensor:
            out["environment-temperature"] = round(phys.inlet_c, 2)
        return out

    def edevs(self, miner: EmulatedMiner) -> list[JsonDict]:
        """``get.miner.status:edevs``: one entry per slot (zeros for a lost board)."""
        phys = miner.physics
        out = []
        for i, (t, rate) in enumerate(
            zip(phys.board_temps(), phys.board_hashrates_hs(), strict=True)
        ):
            chip = t[2] if t is not None else None
            out.append(
                {
                    "id": i,
                    "slot": i,
                    "hash-average": (rate or 0.0) / 1e12,
                    "factory-hash": phys.expected_hashrate_hs() / 1e12 / miner.profile.boards,
                    "freq": 560 if chip is not None else 0,
                    "effective-chips": miner.profile.chips_per_board if chip is not None else 0,
                    "chip-temp-min": round(chip - CHIP_SPREAD_K[0], 2) if chip is not None else 0,
                    "chip-temp-avg": round(chip - CHIP_SPREAD_K[1], 2) if chip is not None else 0,
                    "chip-temp-max": round(chip, 2) if chip is not None else 0,
                    "chip-vol-min": 1500 if chip is not None else 0,
                }
            )
        return out

    def pools(self, miner: EmulatedMiner) -> list[JsonDict]:
        """``get.miner.status:pools`` (pyasic reads it for its config only)."""
        return [
            {
                "id": i + 1,
                "url": p["URL"],
                "status": "alive" if p["Status"] == "Alive" else "dead",
                "account": p["User"],
                "stratum-active": bool(p["Stratum Active"]),
                "priority": p["Priority"],
                "accepted": p["Accepted"],
                "rejected": p["Rejected"],
            }
            for i, p in enumerate(pools_list(miner))
        ]

    def setting(self, miner: EmulatedMiner) -> JsonDict:
        """``get.miner.setting``."""
        return {
            "power-limit": round(miner.profile.power_w * 1.1),
            "power-mode": "Normal",
            "target-freq": 560,
            "heat-mode": "normal",
            "fast-boot": "disable",
        }


class WhatsminerV3With4028Firmware(WhatsminerFirmware):
    """API v3 on 4433, and 4028 still answering v2-style with a 2025 firmware date."""

    family: ClassVar[FirmwareFamily] = FirmwareFamily.WHATSMINER_V3_4028
    v3_port: ClassVar[bool] = True
    fw_version: ClassVar[str] = FW_VERSION_V3

    def __init__(self) -> None:
        """The v3 side is the 4433-only firmware's."""
        self.v3 = WhatsminerV3Firmware()

    def v3_request(self, miner: EmulatedMiner, request: object) -> bytes:
        """4433: as `WhatsminerV3Firmware`."""
        return self.v3.v3_request(miner, request)
