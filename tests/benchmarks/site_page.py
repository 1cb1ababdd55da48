"""What the site page at ``/`` costs the agent: render time and page size at fleet scale.

``python -m tests.benchmarks.site_page [--miners 2000 10000] [--runs 5]`` builds synthetic fleet
objects shaped like ``/api/v1/fleet`` (stock S19 at 2,800 m with thresholds; one in 20 down,
one in 50 in maintenance, one in 10 with an alarm; placed in containers of 10 racks × 5 shelves
× 4 slots) and times ``agent.site_page.render`` (the part the agent's HTTP thread runs per
fetch; the HTTP front fetches it at most once a second however many browsers are open), then
reports the page's size plain and gzipped as the front sends it (zlib-ng level 2).

Prints one JSON object per fleet size. Every figure from this module used synthetic objects.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import TYPE_CHECKING, Any

from zlib_ng import gzip_ng

from agent import site_page
from agent.http_front import GZIP_LEVEL

if TYPE_CHECKING:
    from collections.abc import Callable

GZIP: Callable[..., bytes] = gzip_ng.compress  # zlib-ng ships no type hints; as the front calls it
AIR = {"site": "golmud", "altitude_m": 2800.0, "delta": 0.7097, "cooling_multiplier": 1.285}
RACKS, SHELVES, SLOTS = 10, 5, 4


def fleet(miners: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``miners`` fleet objects and their alarms."""
    objects, alarms = [], []
    per_container = RACKS * SHELVES * SLOTS
    for i in range(miners):
        mac = f"02:A1:{i >> 16 & 255:02X}:{i >> 8 & 255:02X}:{i & 255:02X}:00"
        within = i % per_container
        up = i % 20 != 0
        alarm = []
        if up and i % 10 == 1:
            alarm = [
                {
                    "site": "golmud",
                    "miner": mac,
                    "rule": "R1",
                    "severity": "warning",
                    "since": 1.8e9,
                    "summary": "R1 chip/board temperature warning: hottest board 61.0 °C ≥ 59.8 °C",
                }
            ]
            alarms += alarm
        objects.append(
            {
                "miner": mac,
                "site": "golmud",
                "address": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                "name": None,
                "mac": mac,
                "hostname": f"s19-{i:05d}",
                "up": up,
                "last_error": None if up else "timeout",
                "model": "S19j Pro",
                "max_chip_temp_c": 50.0 + i % 25 if up else None,
                "max_board_temp_c": 35.0 + i % 25 if up else None,
                "inlet_temp_c": None,
                "fans": [{"index": f, "rpm": 5400} for f in range(4)] if up else [],
                "thresholds": {
                    "sensor": "board",
                    "warning_c": 59.8,
                    "critical_c": 72.6,
                    "inlet_warning_c": 27.0,
                    **AIR,
                },
                "alarms": alarm,
                "site_air": AIR,
                "location": {
                    "container": f"C{i // per_container + 1}",
                    "rack": str(within // (SHELVES * SLOTS) + 1),
                    "shelf": str(within // SLOTS % SHELVES + 1),
                    "slot": str(within % SLOTS + 1),
                },
                "maintenance": {"reason": "repair", "since": 1.8e9, "until": None, "by": "li"}
                if i % 50 == 7
                else None,
            }
        )
    return objects, alarms


def measure(miners: int, runs: int) -> dict[str, Any]:
    """Render ``runs`` times; the median and worst time, and the page's sizes."""
    objects, alarms = fleet(miners)
    times = []
    page = ""
    for _ in range(runs):
        started = time.perf_counter()
        page = site_page.render(objects, alarms, now=1.8e9)
        times.append((time.perf_counter() - started) * 1000)
    body = page.encode()
    return {
        "miners": miners,
        "render_ms_median": round(statistics.median(times), 1),
        "render_ms_max": round(max(times), 1),
        "page_bytes": len(body),
        "page_gzip_bytes": len(GZIP(body, GZIP_LEVEL, mtime=0)),
        "runs": runs,
    }


def main() -> int:
    """Print one JSON line per fleet size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miners", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for miners in args.miners:
        print(json.dumps(measure(miners, args.runs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
