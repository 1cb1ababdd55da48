"""Model profiles of the emulated miners: nameplate figures, fans and firmware thermal limits.

Each profile is what one firmware build of one hardware model looks like from the outside:
the strings pyasic uses to detect it, nominal hashrate and power, hashboards and chips, fans,
and the firmware's thermal behaviour (the sensor it controls on, its target, throttle and trip
temperatures). ``rise_full_fan_k`` is ΔT_ci0: the controlled sensor's rise over the inlet at
full load and full fan speed at sea level (altitude-thermal.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FirmwareFamily(StrEnum):
    """Which firmware's wire protocol a miner speaks."""

    ANTMINER = "antminer"
    WHATSMINER = "whatsminer"
    AVALON = "avalon"
    BITAXE = "bitaxe"
    BRAIINS = "braiins"
    VNISH = "vnish"
    LUXOS = "luxos"
    WHATSMINER_V3 = "whatsminer-v3"
    """Whatsminer API v3 (firmware after 2024-11) on 4433, with 4028 closed."""
    WHATSMINER_V3_4028 = "whatsminer-v3-4028"
    """Whatsminer API v3 on 4433, and the v2-style API on 4028 still answering."""


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """Nameplate, layout and firmware thermal limits of one emulated model."""

    key: str
    family: FirmwareFamily
    model: str
    """Model as the firmware names it (``VERSION[0].Type``, ``DEVDETAILS[0].Model``, ...)."""
    pyasic_class: str
    """The pyasic class detection must produce (documentation and tests)."""
    hashrate_ths: float
    power_w: float
    boards: int
    chips_per_board: int
    fans: int
    max_rpm: int
    min_duty: float
    controlled_sensor: str
    """``board`` (stock S19: the chip figure is board + 15 K) or ``chip``."""
    target_c: float
    throttle_c: float
    trip_c: float
    resume_c: float
    rise_full_fan_k: float
    board_rise_ratio: float
    """Board (PCB) rise over inlet as a share of the chip rise (chip-controlled models)."""
    fan_power_w: float
    """Power of all fans at full duty at sea level."""
    ambient_sensor: bool = True
    """The firmware reports an environment (air inlet) temperature."""
    cooling: str = "air"
    """``air``, ``hydro`` (cold plates, coolant loop) or ``immersion`` (dielectric bath)."""
    coolant_flow_lpm: float = 0.0
    """Liquid: nominal coolant flow through the miner (L/min)."""
    chip_coolant_rise_k: float = 0.0
    """Liquid: controlled sensor over the coolant inlet at full load and nominal flow."""
    coolant_approach_k: float = 0.0
    """Liquid: coolant supply above the site air at sea level (dry cooler), × M(δ) at altitude."""
    coolant_dt_trip_k: float | None = None
    """Hydro firmware: stops when coolant outlet − inlet reaches this (None: no such trip)."""
    coolant_sensors: bool = False
    """The firmware reports coolant inlet/outlet per board (stock S21+ Hydro's temp_pcb)."""

    @property
    def liquid(self) -> bool:
        """Hydro or immersion: no airflow physics, no fan control."""
        return self.cooling != "air"


def _whatsminer_m60s(key: str, family: FirmwareFamily, *, ambient_sensor: bool) -> ModelProfile:
    """Whatsminer M60S VK30 on API v3 firmware (172 TH/s, 3,422 W; 3 boards of 245 chips)."""
    return ModelProfile(
        key=key,
        family=family,
        model="M60S_VK30",
        pyasic_class="BTMinerM60SVK30",
        hashrate_ths=172.0,
        power_w=3422.0,
        boards=3,
        chips_per_board=245,
        fans=2,
        max_rpm=7000,
        min_duty=0.35,
        controlled_sensor="chip",
        target_c=76.0,
        throttle_c=90.0,
        trip_c=103.0,
        resume_c=70.0,
        rise_full_fan_k=40.0,
        board_rise_ratio=0.72,
        fan_power_w=210.0,
        ambient_sensor=ambient_sensor,
    )


WHATSMINER_V3_FAMILIES = frozenset(
    {FirmwareFamily.WHATSMINER_V3, FirmwareFamily.WHATSMINER_V3_4028}
)
"""Families speaking Whatsminer API v3 (issue 16): their own per-family test module."""


PROFILES: dict[str, ModelProfile] = {
    p.key: p
    for p in (
        ModelProfile(
            key="antminer-s19jpro",
            family=FirmwareFamily.ANTMINER,
            model="Antminer S19j Pro",
            pyasic_class="BMMinerS19jPro",
            hashrate_ths=104.0,
            power_w=3068.0,
            boards=3,
            chips_per_board=126,
            fans=4,
            max_rpm=6000,
            min_duty=0.3,
            controlled_sensor="board",
            target_c=60.0,
            throttle_c=72.0,
            trip_c=80.0,
            resume_c=55.0,
            rise_full_fan_k=28.0,
            board_rise_ratio=1.0,
            fan_power_w=160.0,
        ),
        ModelProfile(
            key="antminer-s21",
            family=FirmwareFamily.ANTMINER,
            model="Antminer S21",
            pyasic_class="BMMinerS21",
            hashrate_ths=200.0,
            power_w=3500.0,
            boards=3,
            chips_per_board=108,
            fans=4,
            max_rpm=6600,
            min_duty=0.3,
            controlled_sensor="chip",
            target_c=75.0,
            throttle_c=90.0,
            trip_c=98.0,
            resume_c=70.0,
            rise_full_fan_k=40.0,
            board_rise_ratio=0.7,
            fan_power_w=180.0,
        ),
        ModelProfile(
            key="whatsminer-m30s+ve40",
            family=FirmwareFamily.WHATSMINER,
            model="M30S+_VE40",
            pyasic_class="BTMinerM30SPlusVE40",
            hashrate_ths=100.0,
            power_w=3400.0,
            boards=3,
            chips_per_board=156,
            fans=2,
            max_rpm=7000,
            min_duty=0.35,
            controlled_sensor="chip",
            target_c=78.0,
            throttle_c=92.0,
            trip_c=105.0,
            resume_c=70.0,
            rise_full_fan_k=42.0,
            board_rise_ratio=0.72,
            fan_power_w=200.0,
        ),
        ModelProfile(
            key="whatsminer-m50",
            family=FirmwareFamily.WHATSMINER,
            model="M50_VH50",
            pyasic_class="BTMinerM50VH50",
            hashrate_ths=118.0,
            power_w=3276.0,
            boards=3,
            chips_per_board=105,
            fans=2,
            max_rpm=7000,
            min_duty=0.35,
            controlled_sensor="chip",
            target_c=78.0,
            throttle_c=92.0,
            trip_c=105.0,
            resume_c=70.0,
            rise_full_fan_k=42.0,
            board_rise_ratio=0.72,
            fan_power_w=200.0,
        ),
        ModelProfile(
            key="avalon-15-194",
            family=FirmwareFamily.AVALON,
            model="15-194",
            pyasic_class="CGMinerAvalon1566",
            hashrate_ths=194.0,
            power_w=3552.0,
            boards=3,
            chips_per_board=160,
            fans=2,
            max_rpm=6800,
            min_duty=0.5,
            controlled_sensor="chip",
            target_c=65.0,
            throttle_c=90.0,
            trip_c=105.0,
            resume_c=60.0,
            rise_full_fan_k=38.0,
            board_rise_ratio=0.85,
            fan_power_w=180.0,
        ),
        ModelProfile(
            key="vnish-s19jpro",
            family=FirmwareFamily.VNISH,
            model="Antminer S19j Pro",
            pyasic_class="VNishS19jPro",
            hashrate_ths=104.0,
            power_w=3050.0,
            boards=3,
            chips_per_board=126,
            fans=4,
            max_rpm=6000,
            min_duty=0.3,
            controlled_sensor="chip",
            target_c=75.0,
            throttle_c=90.0,
            trip_c=97.0,
            resume_c=65.0,
            rise_full_fan_k=43.0,
            board_rise_ratio=0.72,
            fan_power_w=160.0,
        ),
        ModelProfile(
            key="braiins-s19jpro",
            family=FirmwareFamily.BRAIINS,
            model="Antminer S19j Pro",
            pyasic_class="BOSMinerS19jPro",
            hashrate_ths=104.0,
            power_w=3000.0,
            boards=3,
            chips_per_board=126,
            fans=4,
            max_rpm=6000,
            min_duty=0.3,
            controlled_sensor="chip",
            target_c=75.0,
            throttle_c=90.0,
            trip_c=100.0,
            resume_c=65.0,
            rise_full_fan_k=43.0,
            board_rise_ratio=0.72,
            fan_power_w=160.0,
        ),
        # Liquid-cooled models (altitude-thermal.md §7). Stock S21+ Hydro: pyasic 0.79 reads
        # temp_pcb[0]/[2] as the coolant inlet/outlet and temp_pic[0] as the chip. Emulator
        # figures (flow, rises, trips) are plausible values for the emulation, not vendor limits.
        ModelProfile(
            key="antminer-s21plus-hydro",
            family=FirmwareFamily.ANTMINER,
            model="Antminer S21+ Hyd.",
            pyasic_class="BMMinerS21PlusHydro",
            hashrate_ths=319.0,
            power_w=4785.0,
            boards=3,
            chips_per_board=95,
            fans=0,
            max_rpm=0,
            min_duty=0.0,
            controlled_sensor="chip",
            target_c=75.0,
            throttle_c=92.0,
            trip_c=98.0,
            resume_c=65.0,
            rise_full_fan_k=0.0,
            board_rise_ratio=0.6,
            fan_power_w=0.0,
            cooling="hydro",
            coolant_flow_lpm=14.0,
            chip_coolant_rise_k=38.0,
            coolant_approach_k=8.0,
            coolant_dt_trip_k=12.0,
            coolant_sensors=True,
        ),
        # Stock S19 Hydro: pyasic 0.79 reads it like an air-cooled S19 (board and chip
        # averages); it exposes no coolant temperatures for this model.
        ModelProfile(
            key="antminer-s19-hydro",
            family=FirmwareFamily.ANTMINER,
            model="Antminer S19 Hydro",
            pyasic_class="BMMinerS19Hydro",
            hashrate_ths=158.0,
            power_w=5451.0,
            boards=4,
            chips_per_board=104,
            fans=0,
            max_rpm=0,
            min_duty=0.0,
            controlled_sensor="board",
            target_c=55.0,
            throttle_c=72.0,
            trip_c=80.0,
            resume_c=50.0,
            rise_full_fan_k=0.0,
            board_rise_ratio=1.0,
            fan_power_w=0.0,
            cooling="hydro",
            coolant_flow_lpm=16.0,
            chip_coolant_rise_k=28.0,
            coolant_approach_k=8.0,
            coolant_dt_trip_k=12.0,
        ),
        # Braiins OS+ in immersion fan mode (cooling "disabled", 0 rpm fans are normal).
        ModelProfile(
            key="braiins-s19jpro-immersion",
            family=FirmwareFamily.BRAIINS,
            model="Antminer S19j Pro",
            pyasic_class="BOSMinerS19jPro",
            hashrate_ths=104.0,
            power_w=3000.0,
            boards=3,
            chips_per_board=126,
            fans=4,
            max_rpm=6000,
            min_duty=0.0,
            controlled_sensor="chip",
            target_c=75.0,
            throttle_c=90.0,
            trip_c=100.0,
            resume_c=65.0,
            rise_full_fan_k=0.0,
            board_rise_ratio=0.72,
            fan_power_w=0.0,
            cooling="immersion",
            coolant_flow_lpm=20.0,
            chip_coolant_rise_k=30.0,
            coolant_approach_k=10.0,
        ),
        ModelProfile(
            # LuxOS on an Antminer S19 XP: 141 TH/s at 3,010 W (Bitmain's nameplate), 3 boards
            # of 110 BM1366 chips, 4 fans; LuxOS controls on the chip sensor (its tempctrl
            # defaults: target 75 °C, hot 85 °C, dangerous 95 °C).
            key="luxos-s19xp",
            family=FirmwareFamily.LUXOS,
            model="Antminer S19 XP",
            pyasic_class="LUXMinerS19XP",
            hashrate_ths=141.0,
            power_w=3010.0,
            boards=3,
            chips_per_board=110,
            fans=4,
            max_rpm=6000,
            min_duty=0.3,
            controlled_sensor="chip",
            target_c=75.0,
            throttle_c=85.0,
            trip_c=95.0,
            resume_c=65.0,
            rise_full_fan_k=42.0,
            board_rise_ratio=0.72,
            fan_power_w=160.0,
        ),
        ModelProfile(
            key="bitaxe-ultra",
            family=FirmwareFamily.BITAXE,
            model="BM1366",
            pyasic_class="BitAxeUltra",
            hashrate_ths=0.5,
            power_w=12.0,
            boards=1,
            chips_per_board=1,
            fans=1,
            max_rpm=6000,
            min_duty=0.25,
            controlled_sensor="chip",
            target_c=60.0,
            throttle_c=72.0,
            trip_c=75.0,
            resume_c=45.0,
            rise_full_fan_k=26.0,
            board_rise_ratio=0.6,
            fan_power_w=1.0,
        ),
        ModelProfile(
            key="bitaxe-gamma",
            family=FirmwareFamily.BITAXE,
            model="BM1370",
            pyasic_class="BitAxeGamma",
            hashrate_ths=1.2,
            power_w=17.0,
            boards=1,
            chips_per_board=1,
            fans=1,
            max_rpm=6000,
            min_duty=0.25,
            controlled_sensor="chip",
            target_c=60.0,
            throttle_c=72.0,
            trip_c=75.0,
            resume_c=45.0,
            rise_full_fan_k=30.0,
            board_rise_ratio=0.6,
            fan_power_w=1.2,
        ),
        _whatsminer_m60s(
            "whatsminer-m60s-v3", FirmwareFamily.WHATSMINER_V3_4028, ambient_sensor=True
        ),
        _whatsminer_m60s(
            "whatsminer-m60s-v3-noenv", FirmwareFamily.WHATSMINER_V3_4028, ambient_sensor=False
        ),
        _whatsminer_m60s(
            "whatsminer-m60s-v3-4433", FirmwareFamily.WHATSMINER_V3, ambient_sensor=True
        ),
    )
}
"""Every emulated model by scenario key."""

STOCK_CHIP_OFFSET_K = 15.0
"""Stock Antminer S19 firmware reports chip = board + ~15 K (altitude-thermal.md §2)."""
