"""Home Assistant MQTT discovery: one device per miner, its sensors read from the telemetry topic.

Device-based discovery (``<prefix>/device/<object_id>/config``, retained): the device carries
``dev`` (identifiers, model), ``o`` (origin) and ``cmps`` (one entry per sensor). Sensors read
the miner's telemetry JSON with ``value_template``; availability follows the agent status topic.
An empty retained payload on the same topic removes the device from Home Assistant.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from agent.mqtt.events import Topics, segment

_ID_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]+")


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What discovery needs to know about one miner (sensors depend on board and fan counts)."""

    site: str
    miner: str
    model: str | None
    boards: tuple[int, ...]
    fans: tuple[int, ...]
    coolant: bool = False
    """The miner reports coolant temperatures (hydro): coolant and flow sensors too."""


def object_id(site: str, miner: str) -> str:
    """Home Assistant object id for a miner: ``altiwatch_<site>_<miner>`` in ``[a-zA-Z0-9_-]``."""
    return _ID_UNSAFE.sub("_", f"altiwatch_{segment(site)}_{segment(miner)}")


def config_topic(prefix: str, site: str, miner: str) -> str:
    """``<prefix>/device/<object_id>/config``."""
    return f"{prefix.strip('/')}/device/{object_id(site, miner)}/config"


def device_config(
    info: DeviceInfo, *, topics: Topics, status_topic: str, version: str
) -> dict[str, object]:
    """The device discovery payload for one miner."""
    oid = object_id(info.site, info.miner)
    cmps: dict[str, dict[str, object]] = {}

    def sensor(key: str, name: str, template: str, **extra: object) -> None:
        cmps[f"{oid}_{key}"] = {
            "p": "sensor",
            "name": name,
            "unique_id": f"{oid}_{key}",
            "value_template": template,
            "state_class": "measurement",
            **extra,
        }

    sensor(
        "hashrate",
        "Hashrate",
        "{{ (value_json.hashrate_hs / 1e12) | round(2) if value_json.hashrate_hs is not none"
        " else none }}",
        unit_of_measurement="TH/s",
        icon="mdi:pickaxe",
    )
    temp = {"device_class": "temperature", "unit_of_measurement": "°C"}
    sensor("chip_temp", "Chip temperature (max)", "{{ value_json.max_chip_temp_c }}", **temp)
    sensor("board_temp", "Board temperature (max)", "{{ value_json.max_board_temp_c }}", **temp)
    sensor("inlet_temp", "Inlet temperature", "{{ value_json.inlet_temp_c }}", **temp)
    if info.coolant:
        sensor("coolant_in", "Coolant inlet", "{{ value_json.coolant_inlet_c }}", **temp)
        sensor("coolant_out", "Coolant outlet", "{{ value_json.coolant_outlet_c }}", **temp)
        sensor(
            "coolant_flow",
            "Coolant flow (estimate)",
            "{{ value_json.coolant_flow_lpm }}",
            unit_of_measurement="L/min",
            icon="mdi:water-pump",
        )
    sensor(
        "power",
        "Power",
        "{{ value_json.power_w }}",
        device_class="power",
        unit_of_measurement="W",
    )
    for pos, fan in enumerate(info.fans):
        sensor(
            f"fan{fan}",
            f"Fan {fan}",
            f"{{{{ value_json.fans[{pos}].rpm }}}}",
            unit_of_measurement="RPM",
            icon="mdi:fan",
        )
    for pos, board in enumerate(info.boards):
        sensor(
            f"board{board}_chip_temp",
            f"Board {board} chip temperature",
            f"{{{{ value_json.boards[{pos}].chip_temp_c }}}}",
            **temp,
        )
    sensor(
        "bad_shares",
        "Bad shares",
        "{{ (value_json.bad_share_ratio * 100) | round(2) if value_json.bad_share_ratio"
        " is not none else none }}",
        unit_of_measurement="%",
        icon="mdi:share-off",
    )
    sensor(
        "pool",
        "Pool",
        "{{ value_json.pool.url if value_json.pool else none }}",
        icon="mdi:server-network",
    )
    sensor(
        "pool_worker",
        "Pool worker",
        "{{ value_json.pool.worker if value_json.pool else none }}",
        icon="mdi:account-hard-hat",
    )
    cmps[f"{oid}_alarm"] = {
        "p": "sensor",
        "name": "Alarm",
        "unique_id": f"{oid}_alarm",
        "value_template": "{{ value_json.alarm_severity }}",
        "device_class": "enum",
        "options": ["none", "info", "warning", "critical"],
        "icon": "mdi:alert",
    }
    cmps[f"{oid}_problem"] = {
        "p": "binary_sensor",
        "name": "Thermal problem",
        "unique_id": f"{oid}_problem",
        "device_class": "problem",
        "value_template": "{{ 'ON' if value_json.alarm_severity in ['warning', 'critical']"
        " else 'OFF' }}",
    }
    return {
        "dev": {
            "ids": [oid],
            "name": f"{info.miner} ({info.site})",
            "mf": "altiwatch",
            "mdl": info.model or "unknown",
        },
        "o": {"name": "altiwatch", "sw": version},
        "cmps": cmps,
        "state_topic": topics.telemetry(info.site, info.miner),
        "availability_topic": status_topic,
        "availability_template": "{{ value_json.state }}",
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": 0,
    }


def device_config_json(
    info: DeviceInfo, *, topics: Topics, status_topic: str, version: str
) -> bytes:
    """:func:`device_config` serialised."""
    payload = device_config(info, topics=topics, status_topic=status_topic, version=version)
    return json.dumps(payload, ensure_ascii=False).encode()
