"""bmminer-style 4028 replies (stock Antminer and VNish share this layout)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from collectors.emulator.families.base import Firmware, JsonDict
from collectors.emulator.pools import DIFFICULTY, POOL_URLS

__all__ = ["COMPILE_TIME", "POOL_URLS", "BMMinerFirmware", "pools_list"]

if TYPE_CHECKING:
    from collectors.emulator.miner import EmulatedMiner

COMPILE_TIME = "Thu Jul 14 16:56:23 CST 2022"


def _diff_text(difficulty: float) -> str:
    """Cgminer's short difficulty: ``16.4K``."""
    return f"{difficulty / 1000:.1f}K" if difficulty >= 1000 else f"{difficulty:g}"  # noqa: PLR2004


def pools_list(miner: EmulatedMiner) -> list[JsonDict]:
    """Cgminer POOLS entries, as cgminer/bmminer/btminer/Avalon and BOSminer's RPC send them.

    pyasic reads ``URL``, ``User``, ``Status`` (``Alive``), ``Stratum Active``, ``Accepted``,
    ``Rejected``, ``Get Failures``, ``Remote Failures`` and ``POOL``; ``Stale`` is there too
    (the agent reads it from the same reply). Counters: `collectors.emulator.pools`.
    """
    uptime = miner.uptime_s()
    diff = float(DIFFICULTY)
    out = []
    for pool in miner.pools.view(miner.faults):
        i, url = pool["index"], pool["url"]
        accepted, rejected, stale = pool["accepted"], pool["rejected"], pool["stale"]
        shares = accepted + rejected + stale
        host = url.split("//", 1)[-1].rpartition("@")[2].split(":", 1)[0]
        out.append(
            {
                "POOL": i,
                "URL": url,
                "Status": "Alive" if pool["alive"] else "Dead",
                "Priority": i,
                "Quota": 1,
                "Long Poll": "N",
                "Getworks": uptime // 30 if pool["active"] else 1,
                "Accepted": accepted,
                "Rejected": rejected,
                "Works": shares,
                "Discarded": 0,
                "Stale": stale,
                "Get Failures": pool["get_failures"],
                "Remote Failures": pool["remote_failures"],
                "User": pool["worker"],
                "Last Share Time": int(miner.sim_time) if pool["active"] and accepted else 0,
                "Diff": _diff_text(diff),
                "Diff1 Shares": 0,
                "Proxy Type": "",
                "Proxy": "",
                "Difficulty Accepted": accepted * diff,
                "Difficulty Rejected": rejected * diff,
                "Difficulty Stale": stale * diff,
                "Last Share Difficulty": diff,
                "Has Stratum": True,
                "Stratum Active": pool["active"],
                "Stratum URL": host if pool["active"] else "",
                "Has GBT": False,
                "Best Share": 1_000_000 + accepted,
                "Pool Rejected%": round(100 * rejected / shares, 4) if shares else 0.0,
                "Pool Stale%%": round(100 * stale / shares, 4) if shares else 0.0,
            }
        )
    return out


class BMMinerFirmware(Firmware):
    """bmminer RPC: version, summary, stats, pools, devdetails; joins rejected (Code 14)."""

    description: ClassVar[str] = "bmminer 1.0.0"
    miner_name: ClassVar[str] = "uart_trans.1.3"

    def type_string(self, miner: EmulatedMiner) -> str:
        """``Type`` as this firmware writes it."""
        return miner.profile.model

    def version_type_string(self, miner: EmulatedMiner) -> str:
        """``Type`` in the ``version`` reply."""
        return self.type_string(miner)

    def rpc_version(self, miner: EmulatedMiner) -> JsonDict:
        """Version."""
        return {
            "STATUS": self.status(miner, 22, "BMMiner versions"),
            "VERSION": [
                {
                    "BMMiner": "1.0.0",
                    "API": "3.1",
                    "Miner": self.miner_name,
                    "CompileTime": COMPILE_TIME,
                    "Type": self.version_type_string(miner),
                }
            ],
            "id": 1,
        }

    def rpc_summary(self, miner: EmulatedMiner) -> JsonDict:
        """summary: ``GHS 5s`` is the hashrate pyasic reads."""
        ghs = miner.physics.hashrate_hs() / 1e9
        uptime = miner.uptime_s()
        accepted = uptime // 12
        return {
            "STATUS": self.status(miner, 11, "Summary"),
            "SUMMARY": [
                {
                    "Elapsed": uptime,
                    "GHS 5s": round(ghs, 2),
                    "GHS av": round(ghs, 2),
                    "GHS 30m": round(ghs, 2),
                    "Found Blocks": 0,
                    "Getworks": uptime // 30,
                    "Accepted": accepted,
                    "Rejected": accepted // 500,
                    "Hardware Errors": 0,
                    "Utility": 5.0,
                    "Discarded": 0,
                    "Stale": 0,
                    "Get Failures": 0,
                    "Local Work": uptime * 1000,
                    "Remote Failures": 0,
                    "Network Blocks": uptime // 600,
                    "Total MH": round(ghs * 1000 * uptime, 0),
                    "Work Utility": 1_400_000.0,
                    "Difficulty Accepted": float(accepted * 65536),
                    "Difficulty Rejected": float(accepted // 500 * 65536),
                    "Difficulty Stale": 0.0,
                    "Best Share": 1_000_000 + accepted,
                    "Device Hardware%": 0.0,
                    "Device Rejected%": 0.2,
                    "Pool Rejected%": 0.2,
                    "Pool Stale%": 0.0,
                    "Last getwork": int(miner.sim_time),
                }
            ],
            "id": 1,
        }

    def rpc_pools(self, miner: EmulatedMiner) -> JsonDict:
        """Pools."""
        pools = pools_list(miner)
        return {"STATUS": self.status(miner, 7, f"{len(pools)} Pool(s)"), "POOLS": pools, "id": 1}

    def rpc_devdetails(self, miner: EmulatedMiner) -> JsonDict:
        """Devdetails (no model strings: the socket probe must not decide on it)."""
        details = [
            {
                "DEVDETAILS": i,
                "Name": "BTM_SOC",
                "ID": i,
                "Driver": "bitmain",
                "Kernel": "",
                "Model": "",
            }
            for i in range(miner.profile.boards)
        ]
        return {"STATUS": self.status(miner, 69, "Device Details"), "DEVDETAILS": details, "id": 1}

    def rpc_stats(self, miner: EmulatedMiner) -> JsonDict:
        """stats: STATS[0] identifies the firmware, STATS[1] carries fans, chains and temps."""
        phys = miner.physics
        prof = miner.profile
        uptime = miner.uptime_s()
        ghs = phys.hashrate_hs() / 1e9
        info: JsonDict = {
            "STATS": 0,
            "ID": "BTM_SOC0",
            "Elapsed": uptime,
            "Calls": 0,
            "Wait": 0.0,
            "Max": 0.0,
            "Min": 99999999.0,
            "GHS 5s": round(ghs, 2),
            "GHS av": round(ghs, 2),
            "rate_30m": round(ghs, 2),
            "Mode": 2,
            "miner_count": prof.boards,
            "frequency": 525,
            "fan_num": prof.fans,
        }
        for i, rpm in enumerate(phys.fan_rpms()):
            info[f"fan{i + 1}"] = rpm
        temps = phys.board_temps()
        rates = phys.board_hashrates_hs()
        info["temp_num"] = prof.boards
        for i in range(prof.boards):
            t = temps[i]
            n = i + 1
            info[f"temp{n}"] = int(t[2]) if t is not None else 0
            info[f"temp2_{n}"] = int(t[1]) if t is not None else 0
            info[f"temp_pcb{n}"] = (
                f"{int(t[1])}-{int(t[1])}-{int(t[1])}-{int(t[1])}" if t else "0-0-0-0"
            )
            info[f"temp_chip{n}"] = (
                f"{int(t[2])}-{int(t[2])}-{int(t[2])}-{int(t[2])}" if t else "0-0-0-0"
            )
        info["total_rateideal"] = round(phys.expected_hashrate_hs() / 1e9, 2)
        info["rate_unit"] = "GH"
        info["total_freqavg"] = 525.0
        info["total_acn"] = sum(prof.chips_per_board for t in temps if t is not None)
        info["total_rate"] = round(ghs, 2)
        for i in range(prof.boards):
            n = i + 1
            lost = temps[i] is None
            rate = rates[i]
            info[f"chain_rateideal{n}"] = round(phys.expected_hashrate_hs() / prof.boards / 1e9, 2)
            info[f"chain_acn{n}"] = 0 if lost else prof.chips_per_board
            info[f"chain_acs{n}"] = (
                "" if lost else " ".join(["oooooooo"] * (prof.chips_per_board // 8))
            )
            info[f"chain_hw{n}"] = 0
            info[f"chain_rate{n}"] = "" if lost or rate is None else f"{rate / 1e9:.2f}"
        return {
            "STATUS": self.status(miner, 70, "BMMiner stats"),
            "STATS": [
                {
                    "BMMiner": "1.0.0",
                    "Miner": self.miner_name,
                    "CompileTime": COMPILE_TIME,
                    "Type": self.type_string(miner),
                },
                info,
            ],
            "id": 1,
        }
