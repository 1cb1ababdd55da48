"""The text of an alert message, in Chinese or English, for one event or a grouped burst.

Pure rendering: ``render(events, language)`` returns a title, a plain-text body and a Markdown
body. Each miner is named by its ``name`` (when the payload has one) before its id/MAC, with its
location (container, rack, shelf, slot) when known; alarm lines carry the value, the derated
threshold (and its sea-level value) and the site altitude. Unknown values are left out, never
shown as 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.alerts.grouping import ALARM_SCHEMA, alert_level

_SEVERITY = {
    "en": {"info": "INFO", "warning": "WARNING", "critical": "CRITICAL"},
    "zh": {"info": "提示", "warning": "警告", "critical": "严重"},
}
_EVENT = {
    "en": {
        "raised": "raised",
        "escalated": "escalated",
        "deescalated": "de-escalated",
        "cleared": "cleared",
        "miner_offline": "miner offline",
        "miner_online": "miner back online",
    },
    "zh": {
        "raised": "告警触发",
        "escalated": "告警升级",
        "deescalated": "告警降级",
        "cleared": "告警恢复",
        "miner_offline": "矿机离线",
        "miner_online": "矿机恢复在线",
    },
}
_LOCATION_PARTS = {
    "en": (("container", "container"), ("rack", "rack"), ("shelf", "shelf"), ("slot", "slot")),
    "zh": (("container", "集装箱"), ("rack", "机架"), ("shelf", "层"), ("slot", "位")),
}


@dataclass(frozen=True, slots=True)
class Message:
    """One rendered alert: a title, plain text and Markdown."""

    title: str
    text: str
    markdown: str


def _num(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return f"{value:g}" if isinstance(value, int) else f"{value:.1f}"


def _metres(value: Any) -> str | None:
    text = _num(value)
    return None if text is None else f"{float(value):.0f}"


def location_text(location: Any, language: str) -> str | None:
    """``container C3, rack 12, shelf 2`` / ``集装箱 C3,机架 12,层 2``; None when unknown."""
    if not isinstance(location, dict):
        return None
    parts = [
        f"{label} {location[key]}"
        for key, label in _LOCATION_PARTS[language]
        if location.get(key) not in (None, "")
    ]
    if not parts:
        return None
    return (", " if language == "en" else "，").join(parts)


def miner_text(payload: dict[str, Any], language: str) -> str:
    """The miner as a technician finds it: name, id/MAC, location."""
    miner = payload.get("miner")
    name = payload.get("name")
    who = str(miner) if miner else ("site" if language == "en" else "站点")
    if name and name != miner:
        who = f"{name} ({miner})"
    where = location_text(payload.get("location"), language)
    return f"{who} — {where}" if where else who


def _reading(payload: dict[str, Any], language: str) -> str:
    details = payload.get("details")
    unit = details.get("unit") if isinstance(details, dict) else None
    suffix = f" {unit}" if isinstance(unit, str) and unit else ""
    value = _num(payload.get("value"))
    threshold = _num(payload.get("threshold"))
    sea = _num(payload.get("sea_level_threshold"))
    altitude = _metres(payload.get("altitude_m"))
    parts: list[str] = []
    if language == "en":
        if value is not None:
            parts.append(f"value {value}{suffix}")
        if threshold is not None:
            limit = f"threshold {threshold}{suffix}"
            if sea is not None and sea != threshold:
                at = f", derated for {altitude} m" if altitude is not None else ""
                limit += f" ({sea}{suffix} at sea level{at})"
            parts.append(limit)
        return ", ".join(parts)
    if value is not None:
        parts.append(f"数值 {value}{suffix}")
    if threshold is not None:
        limit = f"阈值 {threshold}{suffix}"
        if sea is not None and sea != threshold:
            at = f"，按海拔 {altitude} 米降额" if altitude is not None else ""
            limit += f"（海平面 {sea}{suffix}{at}）"
        parts.append(limit)
    return "，".join(parts)


def _line(payload: dict[str, Any], language: str) -> str:
    reading = _reading(payload, language) if payload.get("schema") == ALARM_SCHEMA else ""
    sep = ": " if language == "en" else "："
    return (
        f"{miner_text(payload, language)}{sep}{reading}"
        if reading
        else miner_text(payload, language)
    )


def _headline(first: dict[str, Any], count: int, language: str) -> str:
    site = first.get("site")
    event = str(first.get("event"))
    what = _EVENT[language].get(event, event)
    if first.get("schema") == ALARM_SCHEMA:
        level = _SEVERITY[language].get(alert_level(first) or "", "")
        rule = first.get("rule")
        subject = f"[{level}] {rule} {what}" if language == "en" else f"【{level}】{rule} {what}"
    else:
        subject = f"[{what}]" if language == "en" else f"【{what}】"
    if language == "en":
        scope = f"site {site}" + (f", {count} miners" if count > 1 else "")
        return f"{subject} — {scope}"
    scope = f"站点 {site}" + (f"，共 {count} 台矿机" if count > 1 else "")
    return f"{subject} — {scope}"


def _altitude_line(first: dict[str, Any], language: str) -> str | None:
    altitude = _metres(first.get("altitude_m"))
    if altitude is None:
        return None
    return f"Site altitude {altitude} m" if language == "en" else f"站点海拔 {altitude} 米"


def render(events: list[dict[str, Any]], language: str, *, max_lines: int = 20) -> Message:
    """Render one event, or a group of events sharing a site, rule and transition."""
    first = events[0]
    title = _headline(first, len(events), language)
    lines = [_line(e, language) for e in events[:max_lines]]
    more = len(events) - len(lines)
    if more > 0:
        lines.append(f"… and {more} more" if language == "en" else f"…… 另有 {more} 台")
    summary = first.get("summary") if len(events) == 1 else None
    footer = [
        x
        for x in (
            summary if isinstance(summary, str) and summary else None,
            _altitude_line(first, language),
            f"{first.get('ts')}",
        )
        if x
    ]
    text = "\n".join([title, *lines, *footer])
    markdown = "\n".join(
        [f"### {title}", "", *[f"- {ln}" for ln in lines], "", *[f"> {x}" for x in footer]]
    )
    return Message(title=title, text=text, markdown=markdown)
