"""Avalon (A15-194 class, cgminer 4.11.1): joinable RPC with the ``estats`` ``MM ID0`` string.

Shapes follow a captured AvalonMiner 15-194 in pyasic's test suite. Per board the firmware
reports the hottest chip (``MTmax``, which pyasic reads as both board and chip temperature) and
the average chip (``MTavg``); ``Temp`` is the inlet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from collectors.emulator.families.base import Firmware, JsonDict
from collectors.emulator.families.bmminer import pools_list
from collectors.emulator.profiles import FirmwareFamily
from collectors.emulator.wire import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from collectors.emulator.miner import EmulatedMiner

FIRMWARE_VERSION = "24102401_25462b2_9ddf522"
INDEX_HTML = b"<html><head><title>Avalon Device</title></head><body>AvalonMiner</body></html>"


def _ints(values: list[int]) -> str:
    return " ".join(str(v) for v in values)


class AvalonFirmware(Firmware):
    """Canaan cgminer."""

    family: ClassVar[FirmwareFamily] = FirmwareFamily.AVALON
    joins: ClassVar[bool] = True
    description: ClassVar[str] = "cgminer 4.11.1"

    def http(self, miner: EmulatedMiner, request: HttpRequest) -> HttpResponse:
        """The login page names the device."""
        del miner
        if request.path in {"/", "/index.html"}:
            return HttpResponse(status=200, body=INDEX_HTML, content_type="text/html")
        return HttpResponse(status=404, body=b"Not Found", content_type="text/plain")

    def rpc_version(self, miner: EmulatedMiner) -> JsonDict:
        """version: PROD/MODEL select the pyasic class; MAC without colons."""
        return {
            "STATUS": self.status(miner, 22, "CGMiner versions"),
            "VERSION": [
                {
                    "CGMiner": "4.11.1",
                    "API": "3.7",
                    "STM8": "20.08.01",
                    "PROD": f"AvalonMiner {miner.profile.model}",
                    "MODEL": miner.profile.model,
                    "HWTYPE": "MM4v2_X3",
                    "SWTYPE": "MM319",
                    "VERSION": FIRMWARE_VERSION,
                    "LOADER": "d0d779de.00",
                    "DNA": "020100008c699117",
                    "MAC": miner.identity.mac.replace(":", "").lower(),
                    "UPAPI": "2",
                }
            ],
            "id": 1,
        }

    def rpc_devs(self, miner: EmulatedMiner) -> JsonDict:
        """devs: one ASC with the total hashrate in MH/s."""
        phys = miner.physics
        mhs = round(phys.hashrate_hs() / 1e6, 2)
        return {
            "STATUS": self.status(miner, 9, "1 ASC(s)"),
            "DEVS": [
                {
                    "ASC": 0,
                    "Name": "AVA10",
                    "ID": 0,
                    "Enabled": "Y",
                    "Status": "Alive",
                    "Temperature": round(phys.inlet_c, 1),
                    "MHS av": mhs,
                    "MHS 30s": mhs,
                    "MHS 1m": mhs,
                    "MHS 5m": mhs,
                    "MHS 15m": mhs,
                    "Accepted": miner.uptime_s() // 12,
                    "Rejected": 0,
                    "Hardware Errors": 0,
                    "Utility": 5.0,
                    "Last Share Pool": 0,
                    "Last Share Time": int(miner.sim_time),
                    "Total MH": round(mhs * miner.uptime_s(), 0),
                    "Device Hardware%": 0.0,
                    "Device Rejected%": 0.2,
                    "Device Elapsed": miner.uptime_s(),
                }
            ],
            "id": 1,
        }

    def rpc_summary(self, miner: EmulatedMiner) -> JsonDict:
        """Summary."""
        mhs = round(miner.physics.hashrate_hs() / 1e6, 2)
        return {
            "STATUS": self.status(miner, 11, "Summary"),
            "SUMMARY": [
                {"Elapsed": miner.uptime_s(), "MHS av": mhs, "MHS 30s": mhs, "MHS 1m": mhs}
            ],
            "id": 1,
        }

    def rpc_pools(self, miner: EmulatedMiner) -> JsonDict:
        """Pools."""
        pools = pools_list(miner)
        return {"STATUS": self.status(miner, 7, f"{len(pools)} Pool(s)"), "POOLS": pools, "id": 1}

    def mm_id0(self, miner: EmulatedMiner) -> str:
        """The ``MM ID0`` status string."""
        phys = miner.physics
        prof = miner.profile
        temps = phys.board_temps()
        rates = phys.board_hashrates_hs()
        rpms = phys.fan_rpms()
        uptime = miner.uptime_s()
        present = [t for t in temps if t is not None]
        tmax = max((int(t[2]) for t in present), default=0)
        tavg = round(sum(t[1] for t in present) / len(present)) if present else 0
        ghs = phys.hashrate_hs() / 1e9
        work = "In Work" if phys.running else "Idle"
        fields = [
            f"Ver[{prof.model}-{FIRMWARE_VERSION}]",
            "DNA[020100008c699117]",
            f"SYSTEMSTATU[Work: {work}, Hash Board: {len(present)} ]",
            f"Elapsed[{uptime}]",
            f"Temp[{round(phys.inlet_c)}]",
            f"TMax[{tmax}]",
            f"TAvg[{tavg}]",
        ]
        fields.extend(f"Fan{i + 1}[{rpm}]" for i, rpm in enumerate(rpms))
        fields.append(f"FanR[{round(phys.duty * 100)}%]")
        power = round(miner.power_w())
        fields += [
            f"WALLPOWER[{power}]",
            f"GHSspd[{ghs:.2f}]",
            f"GHSmm[{phys.expected_hashrate_hs() / 1e9:.2f}]",
            f"GHSavg[{ghs:.2f}]",
            "Led[0]",
            "MGHS[" + " ".join(f"{(r or 0.0) / 1e9:.2f}" for r in rates) + "]",
            "MTmax[" + _ints([int(t[2]) if t else 0 for t in temps]) + "]",
            "MTavg[" + _ints([int(t[1]) if t else 0 for t in temps]) + "]",
        ]
        for t in temps:
            if t is None:
                continue
            chip = int(t[2])
            values = [chip - (k % 7) for k in range(prof.chips_per_board)]
            fields.append(f"PVT_T{t[0]}[" + _ints(values) + "]")
        fields += [f"MPO[{round(prof.power_w)}]", "WORKMODE[1]"]
        return " ".join(fields)

    def _stats(self, miner: EmulatedMiner) -> JsonDict:
        uptime = miner.uptime_s()
        return {
            "STATUS": self.status(miner, 70, "CGMiner stats"),
            "STATS": [
                {
                    "STATS": 0,
                    "ID": "AVA100",
                    "Elapsed": uptime,
                    "Calls": 0,
                    "Wait": 0.0,
                    "Max": 0.0,
                    "Min": 99999999.0,
                    "MM ID0": self.mm_id0(miner),
                    "MM Count": 1,
                    "Smart Speed": 1,
                    "Voltage Level Offset": 0,
                    "Nonce Mask": 25,
                },
                {"STATS": 1, "ID": "POOL0", "Elapsed": uptime, "Calls": 0, "Wait": 0.0},
            ],
            "id": 1,
        }

    def rpc_stats(self, miner: EmulatedMiner) -> JsonDict:
        """Stats."""
        return self._stats(miner)

    def rpc_estats(self, miner: EmulatedMiner) -> JsonDict:
        """Estats (same layout as stats on this firmware)."""
        return self._stats(miner)

    def rpc_devdetails(self, miner: EmulatedMiner) -> JsonDict:
        """Devdetails."""
        return {
            "STATUS": self.status(miner, 69, "Device Details"),
            "DEVDETAILS": [
                {"DEVDETAILS": 0, "Name": "AVA10", "ID": 0, "Driver": "avalon10", "Model": ""}
            ],
            "id": 1,
        }
