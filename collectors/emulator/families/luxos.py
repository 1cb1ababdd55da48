"""LuxOS (Luxor's firmware) on an Antminer: the LUXminer RPC on 4028 as pyasic 0.79 reads it.

pyasic detects LuxOS by "LUXminer" in the ``version`` reply (socket probe) or "Luxor Firmware"
in the page on port 80 (web probe), and takes the model from ``VERSION[0].Type`` cut at
``" ("``. ``LUXMiner.get_data`` joins its commands (``config+summary+stats+power+profiles+
fans+pools+version``, LuxOS accepts ``+`` joins) and reads:

* ``stats`` ``STATS[1]``: ``chain_rate{n}`` (GH/s), ``chain_acn{n}``, ``temp_chip{n}`` and
  ``temp_pcb{n}`` (four dash-separated sensors; pyasic averages chip sensors 1 and 4 and PCB
  sensors 2 and 3 after dropping zeros), ``total_rateideal`` + ``rate_unit``, ``Elapsed``;
* ``fans`` ``FANS[i].RPM``; ``power`` ``POWER[0].Watts``; ``version`` ``Miner``/``API``;
* ``config`` ``RedLed`` (fault light) and ``Profile``, matched against ``profiles``
  ``PROFILES[]."Profile Name"`` for the power limit (``Watts``); ``pools`` as cgminer.

``atm`` (Advanced Thermal Management) is read by ``LUXMiner.atm_enabled()`` only, not by
``get_data``. ``session``/``logon`` give the session id that writes need. pyasic 0.79's
``_get_mac`` and ``_get_hashrate`` return None before reading their reply (an unconditional
``return None``): ``get_data`` has no MAC, and its hashrate is the sum of the boards.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, ClassVar

from collectors.emulator.families.base import not_found
from collectors.emulator.families.bmminer import BMMinerFirmware
from collectors.emulator.profiles import FirmwareFamily
from collectors.emulator.wire import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from collectors.emulator.families.base import JsonDict
    from collectors.emulator.miner import EmulatedMiner

LUXOS_VERSION = "2025.1.10.152155-f4fcb6f7"
INDEX_HTML = (
    b'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>LuxOS</title>'
    b'<meta name="description" content="Luxor Firmware"></head>'
    b'<body><div id="root"></div></body></html>'
)
PROFILE_STEP_MHZ = 25
"""LuxOS profiles step the frequency; ``default`` is the model's nameplate."""


class LuxOSFirmware(BMMinerFirmware):
    """LuxOS: bmminer-shaped ``summary``/``stats``/``pools`` plus the LUXminer commands."""

    family: ClassVar[FirmwareFamily] = FirmwareFamily.LUXOS
    description: ClassVar[str] = f"LUXminer {LUXOS_VERSION}"
    miner_name: ClassVar[str] = LUXOS_VERSION
    joins: ClassVar[bool] = True

    def __init__(self) -> None:
        """A session id per emulator process (LuxOS hands one out at ``logon``)."""
        self._session = secrets.token_hex(4)

    def rpc_version(self, miner: EmulatedMiner) -> JsonDict:
        """Version: ``LUXminer`` names the firmware, ``Type`` the model."""
        return {
            "STATUS": self.status(miner, 22, "LUXminer versions"),
            "VERSION": [
                {
                    "API": "3.7",
                    "CompileTime": "Fri Jan 10 15:21:55 UTC 2025",
                    "LUXminer": LUXOS_VERSION,
                    "Miner": LUXOS_VERSION,
                    "Type": miner.profile.model,
                }
            ],
            "id": 1,
        }

    def rpc_stats(self, miner: EmulatedMiner) -> JsonDict:
        """Stats: the bmminer layout with LuxOS's four-sensor temperature strings."""
        reply = super().rpc_stats(miner)
        reply["STATUS"] = self.status(miner, 70, "LUXminer stats")
        reply["STATS"][0] = {
            "LUXminer": LUXOS_VERSION,
            "Miner": LUXOS_VERSION,
            "CompileTime": "Fri Jan 10 15:21:55 UTC 2025",
            "Type": miner.profile.model,
        }
        info = reply["STATS"][1]
        for i, t in enumerate(miner.physics.board_temps()):
            n = i + 1
            if t is None:
                info[f"temp_pcb{n}"] = info[f"temp_chip{n}"] = "0-0-0-0"
                info[f"chain_rate{n}"] = "0.00"
                continue
            board, chip = round(t[1]), round(t[2])
            # Inlet-side sensors are cooler than outlet-side ones; pyasic's averages
            # (PCB sensors 2 and 3, chip sensors 1 and 4) give back ``board`` and ``chip``.
            info[f"temp_pcb{n}"] = "-".join(
                str(max(1, v)) for v in (board - 8, board - 2, board + 2, board + 8)
            )
            info[f"temp_chip{n}"] = "-".join(
                str(max(1, v)) for v in (chip - 2, chip - 9, chip + 9, chip + 2)
            )
        return reply

    def rpc_devs(self, miner: EmulatedMiner) -> JsonDict:
        """Devs: one ASC per hashboard."""
        rates = miner.physics.board_hashrates_hs()
        temps = miner.physics.board_temps()
        devs = [
            {
                "ASC": i,
                "Name": "BTM_SOC",
                "ID": i,
                "Enabled": "Y",
                "Status": "Alive" if temps[i] is not None else "Dead",
                "Temperature": float(round(temps[i][2])) if temps[i] is not None else 0.0,  # type: ignore[index]
                "MHS 5s": round((rate or 0.0) / 1e6, 2),
                "Device Elapsed": miner.uptime_s(),
            }
            for i, rate in enumerate(rates)
        ]
        return {"STATUS": self.status(miner, 9, f"{len(devs)} ASC(s)"), "DEVS": devs, "id": 1}

    def rpc_temps(self, miner: EmulatedMiner) -> JsonDict:
        """Temps: per board, the four PCB and chip sensors."""
        temps = []
        for i, t in enumerate(miner.physics.board_temps()):
            board, chip = (round(t[1]), round(t[2])) if t is not None else (0, 0)
            temps.append(
                {
                    "TEMPS": i,
                    "ID": i,
                    "Board": board,
                    "Chip": chip,
                    "TopLeft": board - 2 if t else 0,
                    "TopRight": board + 2 if t else 0,
                    "BottomLeft": chip - 2 if t else 0,
                    "BottomRight": chip + 2 if t else 0,
                }
            )
        return {"STATUS": self.status(miner, 201, f"{len(temps)} Temp(s)"), "TEMPS": temps, "id": 1}

    def rpc_fans(self, miner: EmulatedMiner) -> JsonDict:
        """Fans: ``RPM`` per fan and the duty in percent."""
        duty = round(miner.physics.duty * 100)
        fans = [
            {"FAN": i, "ID": i, "RPM": rpm, "Speed": duty}
            for i, rpm in enumerate(miner.physics.fan_rpms())
        ]
        return {
            "STATUS": self.status(miner, 202, f"{len(fans)} Fan(s)"),
            "FANCTRL": [{"MinFans": miner.profile.fans, "PowerOffSpeed": 100}],
            "FANS": fans,
            "id": 1,
        }

    def rpc_tempctrl(self, miner: EmulatedMiner) -> JsonDict:
        """Tempctrl: automatic fan control and the firmware's target, hot and dangerous °C."""
        prof = miner.profile
        return {
            "STATUS": self.status(miner, 200, "Temperature control"),
            "TEMPCTRL": [
                {
                    "Mode": "Auto",
                    "Target": round(prof.target_c),
                    "Hot": round(prof.throttle_c),
                    "Dangerous": round(prof.trip_c),
                }
            ],
            "id": 1,
        }

    def rpc_pools(self, miner: EmulatedMiner) -> JsonDict:
        """Pools: cgminer's list, each pool in LuxOS's one default group."""
        reply = super().rpc_pools(miner)
        for pool in reply["POOLS"]:
            pool["GROUP"] = 0
        return reply

    def rpc_groups(self, miner: EmulatedMiner) -> JsonDict:
        """Groups: LuxOS's pool groups (one, holding every pool)."""
        return {
            "STATUS": self.status(miner, 328, "1 Group(s)"),
            "GROUPS": [{"GROUP": 0, "Name": "Default", "Quota": 1, "Strategy": "Failover"}],
            "id": 1,
        }

    def rpc_power(self, miner: EmulatedMiner) -> JsonDict:
        """Power: the PSU's wall power in watts."""
        return {
            "STATUS": self.status(miner, 203, "Power"),
            "POWER": [{"PSU": True, "Watts": round(miner.power_w())}],
            "id": 1,
        }

    def _profiles(self, miner: EmulatedMiner) -> list[JsonDict]:
        prof = miner.profile
        out = []
        for step in (-2, -1, 0, 1):
            share = 1 + step * 0.08
            out.append(
                {
                    "Profile Name": "default" if step == 0 else f"{step:+d}",
                    "Frequency": 525 + step * PROFILE_STEP_MHZ,
                    "Hashrate": round(prof.hashrate_ths * share, 2),
                    "IsDynamic": False,
                    "IsTuned": step <= 0,
                    "Step": str(step),
                    "Voltage": round(13.6 + step * 0.2, 1),
                    "Watts": round(prof.power_w * share),
                }
            )
        return out

    def rpc_profiles(self, miner: EmulatedMiner) -> JsonDict:
        """Profiles: the frequency steps and their nominal power (``Watts``)."""
        profiles = self._profiles(miner)
        return {
            "STATUS": self.status(miner, 323, f"{len(profiles)} Profile(s)"),
            "PROFILES": profiles,
            "id": 1,
        }

    def rpc_config(self, miner: EmulatedMiner) -> JsonDict:
        """Config: MAC, LEDs, the active profile and the board count."""
        prof = miner.profile
        return {
            "STATUS": self.status(miner, 33, "CGMiner config"),
            "CONFIG": [
                {
                    "ASC Count": prof.boards,
                    "PGA Count": 0,
                    "Pool Count": 2,
                    "Strategy": "Failover",
                    "Log Interval": 5,
                    "Device Code": "",
                    "OS": "Linux",
                    "Hotplug": "None",
                    "MACAddr": miner.identity.mac.lower(),
                    "SerialNumber": miner.identity.serial,
                    "Model": prof.model,
                    "Profile": "default",
                    "RedLed": "off",
                    "GreenLed": "on" if miner.physics.running else "off",
                    "IsAtmEnabled": True,
                    "IsTuning": False,
                    "SystemStatus": "Normal" if miner.physics.running else "Sleeping",
                }
            ],
            "id": 1,
        }

    def rpc_atm(self, miner: EmulatedMiner) -> JsonDict:
        """Atm: Advanced Thermal Management (LuxOS steps profiles down when hot). On."""
        return {
            "STATUS": self.status(miner, 339, "ATM configuration values"),
            "ATM": [
                {
                    "Enabled": True,
                    "MaxProfile": "+1",
                    "MinProfile": "-2",
                    "PostRampMinutes": 15,
                    "StartupMinutes": 15,
                    "TempWindow": 7,
                }
            ],
            "id": 1,
        }

    def rpc_session(self, miner: EmulatedMiner) -> JsonDict:
        """Session: no session open yet (pyasic then sends ``logon``)."""
        return {
            "STATUS": self.status(miner, 340, "Session"),
            "SESSION": [{"SessionID": ""}],
            "id": 1,
        }

    def rpc_logon(self, miner: EmulatedMiner) -> JsonDict:
        """Logon: a session id for privileged commands."""
        return {
            "STATUS": self.status(miner, 341, "Logon"),
            "SESSION": [{"SessionID": self._session}],
            "id": 1,
        }

    def http(self, miner: EmulatedMiner, request: HttpRequest) -> HttpResponse:
        """The LuxOS web UI's page (its text names "Luxor Firmware"); nothing else."""
        del miner
        if request.path in {"/", "/index.html"}:
            return HttpResponse(status=200, body=INDEX_HTML, content_type="text/html")
        return not_found()
