"""VNish (AnthillOS) on an S19j Pro: bmminer RPC plus the token-protected REST API.

``POST /api/v1/unlock {"pw": "admin"}`` returns a token that pyasic sends back as a raw
``Authorization`` header (``Bearer`` only for ``system*`` paths). The 4028 ``version`` reply
carries no "Antminer" (otherwise pyasic's socket probe races the web probe and may pick the
stock class); ``stats`` ``Type`` is "Antminer S19j Pro (Vnish 1.2.6)".
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, ClassVar

from collectors.emulator.families.base import JsonDict, json_response, not_found
from collectors.emulator.families.bmminer import POOL_URLS, BMMinerFirmware
from collectors.emulator.profiles import FirmwareFamily
from collectors.emulator.wire import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from collectors.emulator.miner import EmulatedMiner

VNISH_VERSION = "1.2.6"
PASSWORD = "admin"  # noqa: S105 - the firmware's factory default, emulated on purpose
TOKEN = secrets.token_hex(16)
INDEX_HTML = (
    b'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>AnthillOS</title>'
    b'</head><body><div id="app"></div></body></html>'
)
UNAUTHORIZED = HttpResponse(status=401, body=b'{"err":"Unauthorized"}')


class VNishFirmware(BMMinerFirmware):
    """VNish custom firmware."""

    family: ClassVar[FirmwareFamily] = FirmwareFamily.VNISH
    miner_name: ClassVar[str] = f"vnish {VNISH_VERSION}"

    def type_string(self, miner: EmulatedMiner) -> str:
        """``Type`` in stats: model plus the VNish version."""
        return f"{miner.profile.model} (Vnish {VNISH_VERSION})"

    def version_type_string(self, miner: EmulatedMiner) -> str:
        """``Type`` in version: no "Antminer" (avoids pyasic's detection race)."""
        del miner
        return f"Vnish {VNISH_VERSION}"

    def http(self, miner: EmulatedMiner, request: HttpRequest) -> HttpResponse:  # noqa: PLR0911
        """AnthillOS page, unlock, and token-protected JSON endpoints (one return per outcome)."""
        path = request.path
        if path in {"/", "/index.html"}:
            return HttpResponse(status=200, body=INDEX_HTML, content_type="text/html")
        if not path.startswith("/api/v1/"):
            return not_found()
        name = path[len("/api/v1/") :]
        if name == "unlock" and request.method == "POST":
            try:
                body = json.loads(request.body or b"{}")
            except json.JSONDecodeError:
                body = {}
            if isinstance(body, dict) and body.get("pw") == PASSWORD:
                return json_response({"token": TOKEN})
            return HttpResponse(status=403, body=b'{"err":"Wrong password"}')
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if not secrets.compare_digest(token, TOKEN):
            return UNAUTHORIZED
        renderer = getattr(self, "web_" + name.replace("-", "_").replace("/", "_"), None)
        if renderer is None or request.method != "GET":
            return not_found()
        body_bytes: bytes = miner.cached(f"web:{name}", lambda: json_response(renderer(miner)).body)
        return HttpResponse(status=200, body=body_bytes)

    def _network(self, miner: EmulatedMiner) -> JsonDict:
        ident = miner.identity
        return {
            "mac": ident.mac,
            "dhcp": True,
            "ip": ident.address,
            "netmask": "255.0.0.0",
            "gateway": "",
            "dns": [],
            "hostname": ident.hostname,
        }

    def web_summary(self, miner: EmulatedMiner) -> JsonDict:
        """summary: power, chain states, network identity."""
        phys = miner.physics
        ths = phys.hashrate_hs() / 1e12
        temps = phys.board_temps()
        chains = []
        for t in temps:
            if t is None:
                continue
            index, board, chip = t
            chains.append(
                {
                    "id": index + 1,
                    "frequency": 525,
                    "voltage": 13.2,
                    "power_consumption": round(miner.power_w() / max(1, len(temps))),
                    "hashrate_ideal": round(phys.expected_hashrate_hs() / 1e9 / len(temps), 2),
                    "hashrate_rt": round((phys.board_hashrates_hs()[index] or 0.0) / 1e9, 2),
                    "hashrate_percentage": 100,
                    "hr_error": 0.0,
                    "hw_errors": 0,
                    "pcb_temp": {"min": board - 2, "max": board},
                    "chip_temp": {"min": chip - 4, "max": chip},
                    "chip_statuses": {"red": 0, "orange": 0, "grey": 0},
                    "status": {"state": "mining" if phys.running else "stopped", "description": ""},
                }
            )
        return {
            "miner": {
                "miner_status": {
                    "miner_state": "mining" if phys.running else "stopped",
                    "miner_state_time": miner.uptime_s(),
                },
                "miner_type": self.type_string(miner),
                "hr_stock": round(phys.expected_hashrate_hs() / 1e12, 2),
                "average_hashrate": round(ths, 2),
                "instant_hashrate": round(ths, 2),
                "hr_realtime": round(ths, 2),
                "hr_nominal": round(phys.expected_hashrate_hs() / 1e12, 2),
                "hr_average": round(ths, 2),
                "power_consumption": miner.power_w(),
                "power_usage": miner.power_w(),
                "power_efficiency": round(miner.power_w() / max(ths, 0.001), 1),
                "hw_errors_percent": 0.0,
                "hw_errors": 0,
                "devfee_percent": 2.0,
                "devfee": 0.0,
                "cooling": {
                    "fan_num": miner.profile.fans,
                    "fans": [
                        {"id": i, "rpm": r, "status": "ok" if r else "lost", "max_rpm": 6000}
                        for i, r in enumerate(phys.fan_rpms())
                    ],
                    "settings": {"mode": {"name": "auto"}},
                    "fan_duty": round(phys.duty * 100),
                },
                "chains": chains,
            },
            "system": {
                "os": "GNU/Linux",
                "miner_name": miner.identity.hostname,
                "file_system_version": f"Vnish {VNISH_VERSION}",
                "mem_total": 233_244,
                "mem_free": 150_000,
                "network_status": self._network(miner),
                "uptime": str(miner.uptime_s()),
            },
        }

    def web_info(self, miner: EmulatedMiner) -> JsonDict:
        """Info."""
        return {
            "miner": self.type_string(miner),
            "model": miner.profile.model,
            "fw_name": "Vnish",
            "fw_version": VNISH_VERSION,
            "build_time": "2024-05-01",
            "platform": "xil",
            "install_type": "nand",
            "system": {"network_status": self._network(miner)},
        }

    def web_settings(self, miner: EmulatedMiner) -> JsonDict:
        """settings: pools, cooling, overclock preset (the power limit)."""
        return {
            "miner": {
                "pools": [
                    {
                        "url": url.removeprefix("stratum+tcp://"),
                        "user": f"altiwatch.{miner.identity.hostname}",
                        "pass": "x",
                    }
                    for url in POOL_URLS
                ],
                "cooling": {
                    "mode": {"name": "auto", "param": round(miner.profile.target_c)},
                    "fan_min_count": miner.profile.fans,
                    "fan_min_duty": round(miner.profile.min_duty * 100),
                },
                "overclock": {
                    "preset": str(round(miner.profile.power_w)),
                    "globals": {"volt": 1320, "freq": 525},
                },
                "misc": {"restart_hashrate": 0},
            },
        }

    def web_autotune_presets(self, miner: EmulatedMiner) -> list[JsonDict]:
        """autotune/presets."""
        nominal = round(miner.profile.power_w)
        ths = miner.profile.hashrate_ths
        return [
            {
                "name": str(watts),
                "pretty": f"{watts} watt ~ {round(ths * watts / nominal)} TH",
                "status": "tuned",
                "modded_psu_required": False,
            }
            for watts in (nominal - 600, nominal - 300, nominal)
        ]

    def web_perf_summary(self, miner: EmulatedMiner) -> JsonDict:
        """perf-summary."""
        return {
            "current_preset": {
                "name": str(round(miner.profile.power_w)),
                "status": "tuned",
                "globals": {"volt": 1320, "freq": 525},
            }
        }
