"""Bitaxe (AxeOS / ESP-Miner): HTTP JSON only; 4028 and 4433 are closed."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from collectors.emulator.families.base import Firmware, JsonDict, json_response, not_found
from collectors.emulator.profiles import FirmwareFamily
from collectors.emulator.wire import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from collectors.emulator.miner import EmulatedMiner

INDEX_HTML = (
    b'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>AxeOS</title>'
    b'<base href="/"></head><body><app-root></app-root></body></html>'
)
SMALL_CORES = {"BM1366": 894, "BM1368": 1276, "BM1370": 2040, "BM1397": 672}
BOARD_VERSIONS = {"BM1366": "204", "BM1368": "401", "BM1370": "601", "BM1397": "102"}


class BitaxeFirmware(Firmware):
    """ESP-Miner's REST API."""

    family: ClassVar[FirmwareFamily] = FirmwareFamily.BITAXE
    rpc_port: ClassVar[bool] = False

    def http(self, miner: EmulatedMiner, request: HttpRequest) -> HttpResponse:
        """``/`` is the AxeOS page; ``/api/system/info`` and ``/api/system/asic`` are JSON."""
        path = request.path
        if path in {"/", "/index.html"}:
            return HttpResponse(status=200, body=INDEX_HTML, content_type="text/html")
        if path == "/api/system/info" and request.method == "GET":
            return HttpResponse(
                status=200, body=miner.cached("info", lambda: json_response(self.info(miner)).body)
            )
        if path == "/api/system/asic" and request.method == "GET":
            return json_response(self.asic(miner))
        return not_found()

    def frequency(self, miner: EmulatedMiner) -> float:
        """Frequency (MHz) whose small-core product gives the nameplate hashrate."""
        model = miner.profile.model
        return round(miner.profile.hashrate_ths * 1e6 / SMALL_CORES[model], 6)

    def asic(self, miner: EmulatedMiner) -> JsonDict:
        """/api/system/asic."""
        model = miner.profile.model
        return {
            "ASICModel": model,
            "deviceModel": miner.profile.pyasic_class.removeprefix("BitAxe"),
            "swarmColor": "purple",
            "asicCount": 1,
            "defaultFrequency": self.frequency(miner),
            "frequencyOptions": [400, 490, 525, 575],
            "defaultVoltage": 1200,
            "voltageOptions": [1100, 1150, 1200, 1250],
        }

    def info(self, miner: EmulatedMiner) -> JsonDict:
        """/api/system/info: what pyasic reads (hashRate GH/s, temp, vrTemp, integer fanrpm...)."""
        phys = miner.physics
        temps = phys.board_temps()[0]
        model = miner.profile.model
        power = miner.power_w()
        return {
            "power": power,
            "voltage": 5100.0,
            "current": round(power / 5.1 * 1000, 1),
            "temp": temps[2] if temps is not None else None,
            "vrTemp": temps[1] if temps is not None else None,
            "maxPower": 25,
            "nominalVoltage": 5,
            "hashRate": round(phys.hashrate_hs() / 1e9, 2),
            "expectedHashrate": round(phys.expected_hashrate_hs() / 1e9, 2),
            "bestDiff": "1.2G",
            "bestSessionDiff": "120M",
            "stratumDiff": 1000,
            "isUsingFallbackStratum": 0,
            "freeHeap": 180000,
            "coreVoltage": 1200,
            "coreVoltageActual": 1195,
            "frequency": self.frequency(miner),
            "ssid": "mine-site",
            "macAddr": miner.identity.mac,
            "hostname": miner.identity.hostname,
            "wifiStatus": "Connected!",
            "sharesAccepted": miner.uptime_s() // 20,
            "sharesRejected": 0,
            "uptimeSeconds": miner.uptime_s(),
            "asicCount": 1,
            "smallCoreCount": SMALL_CORES[model],
            "ASICModel": model,
            "stratumURL": "btc.emulated-pool.example",
            "fallbackStratumURL": "btc-backup.emulated-pool.example",
            "stratumPort": 3333,
            "fallbackStratumPort": 443,
            "stratumUser": f"altiwatch.{miner.identity.hostname}",
            "fallbackStratumUser": f"altiwatch.{miner.identity.hostname}",
            "version": "v2.4.2",
            "idfVersion": "v5.3.1",
            "boardVersion": BOARD_VERSIONS[model],
            "runningPartition": "factory",
            "flipscreen": 1,
            "overheat_mode": 0 if phys.running else 1,
            "invertscreen": 0,
            "invertfanpolarity": 1,
            "autofanspeed": 1,
            "fanspeed": round(phys.duty * 100),
            "fanrpm": phys.fan_rpms()[0],
        }
