"""A firmware pyasic 0.79 cannot identify: well-formed cgminer JSON that names nothing it knows.

The ``unsupported_firmware`` fault swaps a miner's renderer for this one (a firmware flashed by
hand, a vendor pyasic has no backend for). Port 4028 answers every cgminer read command with
``STATUS`` "S" and plausible data, and the page on port 80 is a plain HTML dashboard, but no
reply holds a string pyasic's detection looks for (``ANTMINER``, ``BTMINER``, ``LUXMINER``,
``BOSMINER``, ``AVALON``, ``VNISH``, "AxeOS", "Luxor Firmware", ...): ``pyasic.get_miner``
returns None. Nothing about the miner is wrong on the wire; only pyasic cannot read it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from collectors.emulator.families.base import Firmware, not_found
from collectors.emulator.families.bmminer import pools_list
from collectors.emulator.profiles import FirmwareFamily
from collectors.emulator.wire import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from collectors.emulator.families.base import JsonDict
    from collectors.emulator.miner import EmulatedMiner

FIRMWARE_NAME = "hexminer"
"""The made-up firmware: no substring of it is one pyasic's detection knows."""
FIRMWARE_VERSION = "2.4.1"
INDEX_HTML = (
    b'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>hexminer</title>'
    b"</head><body><h1>hexminer dashboard</h1></body></html>"
)


class UnsupportedFirmware(Firmware):
    """Cgminer-shaped ``version``/``devdetails``/``summary``/``stats``/``pools`` of "hexminer"."""

    family: ClassVar[FirmwareFamily] = FirmwareFamily.ANTMINER  # unused: chosen by fault
    description: ClassVar[str] = f"{FIRMWARE_NAME} {FIRMWARE_VERSION}"

    def rpc_version(self, miner: EmulatedMiner) -> JsonDict:
        """Version: the firmware's own name and a hardware code pyasic does not know."""
        return {
            "STATUS": self.status(miner, 22, f"{FIRMWARE_NAME} versions"),
            "VERSION": [
                {
                    "HexMiner": FIRMWARE_VERSION,
                    "API": "3.7",
                    "Miner": f"{FIRMWARE_NAME} {FIRMWARE_VERSION}",
                    "Type": "HX-S19",
                }
            ],
            "id": 1,
        }

    def rpc_devdetails(self, miner: EmulatedMiner) -> JsonDict:
        """Devdetails: one device per board, driver and model by the unknown firmware."""
        details = [
            {"DEVDETAILS": i, "Name": "HEX", "ID": i, "Driver": FIRMWARE_NAME, "Model": "HX-S19"}
            for i in range(miner.profile.boards)
        ]
        return {"STATUS": self.status(miner, 69, "Device Details"), "DEVDETAILS": details, "id": 1}

    def rpc_summary(self, miner: EmulatedMiner) -> JsonDict:
        """Summary: the hashrate in MH/s, as cgminer names it."""
        return {
            "STATUS": self.status(miner, 11, "Summary"),
            "SUMMARY": [
                {
                    "Elapsed": miner.uptime_s(),
                    "MHS 5s": round(miner.physics.hashrate_hs() / 1e6, 2),
                    "MHS av": round(miner.physics.hashrate_hs() / 1e6, 2),
                }
            ],
            "id": 1,
        }

    def rpc_stats(self, miner: EmulatedMiner) -> JsonDict:
        """Stats: one entry per board with its temperature (a layout of its own)."""
        stats = [
            {"STATS": i, "ID": f"HEX{i}", "Elapsed": miner.uptime_s(), "Temp": round(t[2])}
            for i, t in enumerate(miner.physics.board_temps())
            if t is not None
        ]
        return {"STATUS": self.status(miner, 70, f"{FIRMWARE_NAME} stats"), "STATS": stats, "id": 1}

    def rpc_pools(self, miner: EmulatedMiner) -> JsonDict:
        """Pools: cgminer's list."""
        pools = pools_list(miner)
        return {"STATUS": self.status(miner, 7, f"{len(pools)} Pool(s)"), "POOLS": pools, "id": 1}

    def http(self, miner: EmulatedMiner, request: HttpRequest) -> HttpResponse:
        """A plain dashboard page on ``/``; 404 elsewhere."""
        del miner
        if request.path in {"/", "/index.html"}:
            return HttpResponse(status=200, body=INDEX_HTML, content_type="text/html")
        return not_found()
