"""Braiins OS+ (BOSer) on an S19j Pro: cgminer-compatible RPC on 4028 plus gRPC on 50051.

The gRPC side is served by grpclib with pyasic's own betterproto ``*ServiceBase`` classes and
messages (``braiins.bos.v1``). ``AuthenticationService/Login`` (root/root) returns the token in
the *initial metadata* key ``authorization``; every other call pyasic makes is privileged and
answers UNAUTHENTICATED without that token. The pool group list is never empty (an empty one
serialises without ``poolGroups`` and breaks pyasic).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import struct
from typing import TYPE_CHECKING, Any, ClassVar

import grpclib
import grpclib.const
import grpclib.exceptions
import grpclib.server

# pyasic patches betterproto on import of its BOSer web API; import it the same way.
import pyasic.web.braiins_os.boser  # noqa: F401 - side effect: pyasic's betterproto patch
from pyasic.web.braiins_os.proto.braiins.bos import ApiVersion, ApiVersionServiceBase
from pyasic.web.braiins_os.proto.braiins.bos import v1 as bos

from collectors.emulator.families.base import Firmware, JsonDict
from collectors.emulator.families.bmminer import POOL_URLS
from collectors.emulator.pools import DIFFICULTY
from collectors.emulator.profiles import FirmwareFamily
from collectors.emulator.wire import REQUESTS, HttpRequest, HttpResponse

if TYPE_CHECKING:
    from collectors.emulator.miner import EmulatedMiner

BOS_VERSION = "2024-01-22-0-26ba61b9-24.01-plus"
BOSER_VERSION = "boser-buildroot 0.1.0-26ba61b9"
USERNAME = "root"
PASSWORD = "root"  # noqa: S105 - the firmware's factory default, emulated on purpose
TOKEN = secrets.token_hex(12)
LOGIN_RESPONSE = bos.LoginResponse(token=TOKEN, timeout_s=3600)
LOCATE_OFF = bos.LocateDeviceStatusResponse(enabled=False)
API_VERSION = ApiVersion(major=1, minor=2, patch=0, pre="", build="")
INDEX_HTML = b"<!DOCTYPE html><html><head><title>Braiins OS</title></head><body></body></html>"


class BraiinsFirmware(Firmware):
    """BOSer RPC (joins accepted) and the web page naming Braiins OS."""

    family: ClassVar[FirmwareFamily] = FirmwareFamily.BRAIINS
    grpc_port: ClassVar[bool] = True
    joins: ClassVar[bool] = True
    description: ClassVar[str] = f"BOSer {BOSER_VERSION}"

    def http(self, miner: EmulatedMiner, request: HttpRequest) -> HttpResponse:
        """The web UI page (detection) and 404 elsewhere."""
        del miner
        if request.path in {"/", "/index.html"}:
            return HttpResponse(status=200, body=INDEX_HTML, content_type="text/html")
        return HttpResponse(status=404, body=b"Not Found", content_type="text/plain")

    def rpc_version(self, miner: EmulatedMiner) -> JsonDict:
        """version: "BOSer" identifies the firmware."""
        return {
            "STATUS": self.status(miner, 22, "BOSer versions"),
            "VERSION": [{"BOSer": BOSER_VERSION, "API": "3.7"}],
            "id": 1,
        }

    def rpc_devdetails(self, miner: EmulatedMiner) -> JsonDict:
        """devdetails: Model "Bitmain Antminer S19j Pro"."""
        details = [
            {
                "DEVDETAILS": i,
                "Name": "",
                "ID": i,
                "Driver": "",
                "Kernel": "",
                "Model": f"Bitmain {miner.profile.model}",
                "Device Path": "",
            }
            for i in range(miner.profile.boards)
        ]
        return {"STATUS": self.status(miner, 69, "Device Details"), "DEVDETAILS": details, "id": 1}

    def rpc_summary(self, miner: EmulatedMiner) -> JsonDict:
        """summary: ``MHS 1m`` and ``Elapsed``."""
        mhs = round(miner.physics.hashrate_hs() / 1e6, 2)
        uptime = miner.uptime_s()
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
                    "Accepted": uptime // 12,
                    "Rejected": 0,
                    "Hardware Errors": 0,
                    "Utility": 5.0,
                    "Device Hardware%": 0.0,
                    "Device Rejected%": 0.0,
                    "Pool Rejected%": 0.0,
                    "Pool Stale%": 0.0,
                }
            ],
            "id": 1,
        }

    def rpc_devs(self, miner: EmulatedMiner) -> JsonDict:
        """devs: one entry per present board (``MHS 5s`` > 0 means mining)."""
        devs = []
        rates = miner.physics.board_hashrates_hs()
        for t, rate in zip(miner.physics.board_temps(), rates, strict=True):
            if t is None or rate is None:
                continue
            mhs = round(rate / 1e6, 2)
            devs.append(
                {
                    "ASC": t[0],
                    "Name": "BC5",
                    "ID": t[0],
                    "Enabled": "Y",
                    "Status": "Alive",
                    "Temperature": t[1],
                    "MHS av": mhs,
                    "MHS 5s": mhs,
                    "MHS 1m": mhs,
                    "MHS 5m": mhs,
                    "MHS 15m": mhs,
                    "Nominal MHS": round(miner.physics.expected_hashrate_hs() / 1e6 / 3, 2),
                }
            )
        return {"STATUS": self.status(miner, 9, f"{len(devs)} ASC(s)"), "DEVS": devs, "id": 1}

    def rpc_tunerstatus(self, miner: EmulatedMiner) -> JsonDict:
        """tunerstatus: per-chain status ("Stable" unless the board is lost)."""
        chains = []
        for i, t in enumerate(miner.physics.board_temps()):
            chains.append(
                {
                    "HashchainIndex": 6 + i,
                    "Iteration": 0,
                    "StatusCode": 2 if t is not None else 0,
                    "ApproximatePowerConsumptionWatt": round(miner.power_w() / 3),
                    "PowerLimitWatt": round(miner.profile.power_w / 3),
                    "EstimatedHashrateGHs": round(miner.profile.hashrate_ths * 1000 / 3, 2),
                    "Status": "Stable" if t is not None else "Hashboard not detected {missing}",
                }
            )
        return {
            "STATUS": self.status(miner, 22, "Tuner Status"),
            "TUNERSTATUS": [
                {
                    "PowerLimit": round(miner.profile.power_w),
                    "DynamicPowerScaling": "Disabled",
                    "ApproximateMinerPowerConsumption": round(miner.power_w()),
                    "ApproximateChainPowerConsumption": round(miner.power_w() * 0.95),
                    "TunerChainStatus": chains,
                }
            ],
            "id": 1,
        }

    def rpc_pools(self, miner: EmulatedMiner) -> JsonDict:
        """Pools."""
        from collectors.emulator.families.bmminer import pools_list  # noqa: PLC0415 - shared

        pools = pools_list(miner)
        return {"STATUS": self.status(miner, 7, f"{len(pools)} Pool(s)"), "POOLS": pools, "id": 1}


# ---- gRPC ---------------------------------------------------------------------------------


def _giga(hs: float) -> bos.GigaHashrate:
    return bos.GigaHashrate(gigahash_per_second=round(hs / 1e9, 2))


class _Services:
    """Builds the BOSer gRPC responses for one miner."""

    def __init__(self, miner: EmulatedMiner) -> None:
        self.miner = miner

    def details(self) -> bos.GetMinerDetailsResponse:
        m = self.miner
        return bos.GetMinerDetailsResponse(
            uid=m.identity.serial,
            miner_identity=bos.MinerIdentity(
                brand=bos.MinerBrand.ANTMINER, name=m.profile.model, miner_model=m.profile.model
            ),
            platform=bos.Platform.CVITEK_BM1_AM2,
            bos_mode=bos.BosMode.NAND,
            bos_version=bos.BosVersion(current=BOS_VERSION, major="24.01", bos_plus=True),
            hostname=m.identity.hostname,
            mac_address=m.identity.mac,
            sticker_hashrate=_giga(m.physics.expected_hashrate_hs()),
            bosminer_uptime_s=m.uptime_s(),
            system_uptime_s=m.uptime_s() + 60,
            status=bos.MinerStatus.NORMAL if m.physics.running else bos.MinerStatus.SUSPENDED,
            kernel_version="5.10.0",
            serial_number=m.identity.serial,
        )

    def stats(self) -> bos.GetMinerStatsResponse:
        m = self.miner
        rate = _giga(m.physics.hashrate_hs())
        return bos.GetMinerStatsResponse(
            pool_stats=bos.PoolStats(
                accepted_shares=sum(p["accepted"] for p in m.pools.view(m.faults)),
                rejected_shares=sum(p["rejected"] for p in m.pools.view(m.faults)),
                stale_shares=sum(p["stale"] for p in m.pools.view(m.faults)),
            ),
            miner_stats=bos.WorkSolverStats(
                real_hashrate=bos.RealHashrate(last_5_s=rate, last_1_m=rate, last_15_m=rate),
                nominal_hashrate=_giga(m.physics.expected_hashrate_hs()),
            ),
            power_stats=bos.MinerPowerStats(
                approximated_consumption=bos.Power(watt=round(m.power_w()))
            ),
        )

    def hashboards(self) -> bos.GetHashboardsResponse:
        m = self.miner
        boards = []
        rates = m.physics.board_hashrates_hs()
        for t, rate in zip(m.physics.board_temps(), rates, strict=True):
            if t is None or rate is None:
                continue
            index, board, chip = t
            boards.append(
                bos.Hashboard(
                    id=str(index + 1),
                    enabled=True,
                    chips_count=m.profile.chips_per_board,
                    highest_chip_temp=bos.TemperatureSensor(
                        location=bos.SensorLocation.CHIP, temperature=bos.Temperature(chip)
                    ),
                    board_temp=bos.Temperature(board),
                    stats=bos.WorkSolverStats(
                        real_hashrate=bos.RealHashrate(last_5_s=_giga(rate), last_1_m=_giga(rate))
                    ),
                    model="BHB42601",
                    serial_number=f"{m.identity.serial[:10]}H{index}",
                )
            )
        return bos.GetHashboardsResponse(hashboards=boards)

    def cooling(self) -> bos.GetCoolingStateResponse:
        m = self.miner
        temps = [t for t in m.physics.board_temps() if t is not None]
        hottest = max((t[2] for t in temps), default=m.physics.inlet_c)
        return bos.GetCoolingStateResponse(
            fans=[
                bos.FanState(position=i, rpm=rpm, target_speed_ratio=round(m.physics.duty, 3))
                for i, rpm in enumerate(m.physics.fan_rpms())
            ],
            highest_temperature=bos.TemperatureSensor(
                location=bos.SensorLocation.CHIP, temperature=bos.Temperature(hottest)
            ),
        )

    def performance_mode(self) -> bos.PerformanceMode:
        return bos.PerformanceMode(
            tuner_mode=bos.TunerPerformanceMode(
                power_target=bos.PowerTargetMode(
                    power_target=bos.Power(watt=round(self.miner.profile.power_w))
                )
            )
        )

    def pool_groups(self) -> bos.GetPoolGroupsResponse:
        m = self.miner
        pools = [
            bos.Pool(
                uid=str(p["index"]),
                url=p["url"],
                user=p["worker"],
                enabled=True,
                alive=p["alive"],
                active=p["active"],
                stats=bos.PoolStats(
                    accepted_shares=p["accepted"],
                    rejected_shares=p["rejected"],
                    stale_shares=p["stale"],
                    last_difficulty=DIFFICULTY,
                ),
            )
            for p in m.pools.view(m.faults)
        ]
        return bos.GetPoolGroupsResponse(
            pool_groups=[bos.PoolGroup(name="Default", quota=bos.Quota(value=1), pools=pools)]
        )

    def configuration(self) -> bos.GetMinerConfigurationResponse:
        m = self.miner
        prof = m.profile
        if prof.cooling == "immersion":
            # Immersion fan mode: temperature control disabled, fans off (0 rpm is normal).
            temperature = bos.CoolingConfiguration(disabled=bos.CoolingDisabledMode())
        else:
            temperature = bos.CoolingConfiguration(
                auto=bos.CoolingAutoMode(
                    target_temperature=bos.Temperature(prof.target_c),
                    hot_temperature=bos.Temperature(prof.throttle_c),
                    dangerous_temperature=bos.Temperature(prof.trip_c),
                )
            )
        return bos.GetMinerConfigurationResponse(
            temperature=temperature,
            pool_groups=[
                bos.PoolGroupConfiguration(
                    uid="0",
                    name="Default",
                    quota=bos.Quota(value=1),
                    pools=[
                        bos.PoolConfiguration(
                            uid=str(i),
                            url=url,
                            user=f"altiwatch.{m.identity.hostname}",
                            password="x",  # noqa: S106 - emulated pool worker password
                            enabled=True,
                        )
                        for i, url in enumerate(POOL_URLS)
                    ],
                )
            ],
        )


def _services(miner: EmulatedMiner) -> list[Any]:
    """Pyasic's ServiceBase subclasses, implemented over ``miner``."""
    s = _Services(miner)

    class Miner(bos.MinerServiceBase):  # type: ignore[misc]  # pyasic is untyped
        async def get_miner_details(
            self, _: bos.GetMinerDetailsRequest
        ) -> bos.GetMinerDetailsResponse:
            return miner.cached("grpc:details", s.details)

        async def get_miner_stats(self, _: bos.GetMinerStatsRequest) -> bos.GetMinerStatsResponse:
            return miner.cached("grpc:stats", s.stats)

        async def get_hashboards(self, _: bos.GetHashboardsRequest) -> bos.GetHashboardsResponse:
            return miner.cached("grpc:hashboards", s.hashboards)

    class Cooling(bos.CoolingServiceBase):  # type: ignore[misc]  # pyasic is untyped
        async def get_cooling_state(
            self, _: bos.GetCoolingStateRequest
        ) -> bos.GetCoolingStateResponse:
            return miner.cached("grpc:cooling", s.cooling)

    class Performance(bos.PerformanceServiceBase):  # type: ignore[misc]  # pyasic is untyped
        async def get_active_performance_mode(
            self, _: bos.GetPerformanceModeRequest
        ) -> bos.PerformanceMode:
            return miner.cached("grpc:performance_mode", s.performance_mode)

    class Pools(bos.PoolServiceBase):  # type: ignore[misc]  # pyasic is untyped
        async def get_pool_groups(self, _: bos.GetPoolGroupsRequest) -> bos.GetPoolGroupsResponse:
            return miner.cached("grpc:pool_groups", s.pool_groups)

    class Configuration(bos.ConfigurationServiceBase):  # type: ignore[misc]  # pyasic is untyped
        async def get_miner_configuration(
            self, _: bos.GetMinerConfigurationRequest
        ) -> bos.GetMinerConfigurationResponse:
            return miner.cached("grpc:configuration", s.configuration)

    class Actions(bos.ActionsServiceBase):  # type: ignore[misc]  # pyasic is untyped
        async def get_locate_device_status(
            self, _: bos.GetLocateDeviceStatusRequest
        ) -> bos.LocateDeviceStatusResponse:
            return LOCATE_OFF

    class Version(ApiVersionServiceBase):  # type: ignore[misc]  # pyasic is untyped
        async def get_api_version(self, _: Any) -> ApiVersion:
            return API_VERSION

    return [Miner(), Cooling(), Performance(), Pools(), Configuration(), Actions(), Version()]


class GrpcHandlers:
    """The grpclib handler mapping of one miner: auth + faults around pyasic's ServiceBases."""

    def __init__(self, miner: EmulatedMiner) -> None:
        """Serve ``miner``."""
        self.miner = miner
        self.services = _services(miner)

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        """Every route, privileged ones wrapped with the token check."""
        mapping: dict[str, grpclib.const.Handler] = {}
        for service in self.services:
            for path, handler in service.__mapping__().items():
                privileged = "ApiVersionService" not in path
                mapping[path] = grpclib.const.Handler(
                    self._wrap(handler.func, privileged=privileged),
                    handler.cardinality,
                    handler.request_type,
                    handler.reply_type,
                )
        mapping["/braiins.bos.v1.AuthenticationService/Login"] = grpclib.const.Handler(
            self._wrap(self._login, privileged=False),
            grpclib.const.Cardinality.UNARY_UNARY,
            bos.LoginRequest,
            bos.LoginResponse,
        )
        return mapping

    async def _login(
        self, stream: grpclib.server.Stream[bos.LoginRequest, bos.LoginResponse]
    ) -> None:
        request = await stream.recv_message()
        if request is None or request.username != USERNAME or request.password != PASSWORD:
            raise grpclib.GRPCError(grpclib.const.Status.UNAUTHENTICATED, "invalid credentials")
        await stream.send_initial_metadata(metadata={"authorization": TOKEN})
        await stream.send_message(LOGIN_RESPONSE)

    def _wrap(self, func: Any, *, privileged: bool) -> Any:
        miner = self.miner

        async def handler(stream: grpclib.server.Stream[Any, Any]) -> None:
            REQUESTS["grpc"] += 1
            fault, delay = miner.wire_fault("grpc")
            if delay > 0:
                await asyncio.sleep(delay)
            if fault is not None:
                if fault.kind in {"hang", "drip"}:
                    await asyncio.Event().wait()
                if fault.kind == "endless":
                    await _endless_reply(stream, login=func == self._login)
                    return
                status = grpclib.const.Status.UNAVAILABLE
                raise grpclib.GRPCError(status, f"emulated {fault.kind}")
            token = stream.metadata.get("authorization") if stream.metadata is not None else None
            if privileged and token != TOKEN:
                raise grpclib.GRPCError(grpclib.const.Status.UNAUTHENTICATED, "no token")
            await func(stream)

        return handler


ENDLESS_CHUNK = b"\x00" * (1 << 16)


async def _endless_reply(stream: grpclib.server.Stream[Any, Any], *, login: bool) -> None:
    """Answer one message that declares 4 GiB and streams zeros until the client hangs up.

    A Login answers the token in its initial metadata first, as the real one does, so the
    client goes on to read the message. Sent under HTTP/2 flow control: only what the client
    acknowledges (reads) is sent beyond its window.
    """
    await stream.recv_message()
    await stream.send_initial_metadata(metadata={"authorization": TOKEN} if login else None)
    h2_stream = stream._stream  # noqa: SLF001 - raw DATA frames: no real message is this long
    with contextlib.suppress(grpclib.exceptions.StreamTerminatedError, ConnectionError):
        await h2_stream.send_data(b"\x00" + struct.pack(">I", 0xFFFFFFFF))
        while True:
            await h2_stream.send_data(ENDLESS_CHUNK)
