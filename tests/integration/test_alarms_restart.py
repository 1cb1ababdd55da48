"""Restart: kill -9 an alarm-evaluating process while alarms fire, restart it on the same store.

The process under test is this module run as a script: real emulator, real pyasic
(PyasicSource), the alarm engine with its SQLite store, fed the emulator's simulated clock (so the
5-min rules take seconds). It prints one JSON line per transition. Addresses: 127.40.4.0/24.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tests.support.agent import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

REPO = Path(__file__).resolve().parents[2]
SPEEDUP = 60.0
DEADLINE_S = 90.0


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback emulator
        return json.loads(response.read())


async def _agent(control_url: str, store: Path) -> None:
    """The process under test: poll, evaluate, persist, print transitions; until killed."""
    import structlog  # noqa: PLC0415 - only the subprocess needs these

    from agent.alarms.config import ThermalSettings  # noqa: PLC0415
    from agent.alarms.engine import AlarmEngine, Observation  # noqa: PLC0415
    from agent.alarms.store import AlarmStore  # noqa: PLC0415
    from agent.alarms.testing import Site  # noqa: PLC0415
    from collectors.pyasic_source import PyasicSource  # noqa: PLC0415
    from collectors.snapshot import Tier  # noqa: PLC0415
    from collectors.source import CollectorError, MinerTarget  # noqa: PLC0415

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    engine = AlarmEngine(ThermalSettings(), [Site("site", 3000)], store=AlarmStore(store))
    restored = [[a.miner, a.rule, a.severity.label] for a in engine.active() if a.miner]
    print(json.dumps({"event": "started", "restored": restored}), flush=True)
    source = PyasicSource(timeout_s=20.0)
    targets = [MinerTarget(address=m["address"]) for m in _get(control_url + "/miners")]
    while True:
        now = float(_get(control_url + "/clock")["sim_time"])
        obs = []
        failed = {}
        for target in targets:
            try:
                snap = await source.fetch(target, Tier.FAST)
            except CollectorError as exc:
                failed[target.address] = str(exc)
                obs.append(Observation(target.address, "site", now, None, exc.reason.value))
            else:
                obs.append(Observation(target.address, "site", now, snap))
        for t in engine.evaluate(now, obs):
            line = {"event": t.kind.value, "miner": t.miner, "rule": t.rule, "at": t.at}
            print(json.dumps(line | {"severity": t.severity.label}), flush=True)
        print(json.dumps({"event": "round", "sim_time": now, "failed": failed}), flush=True)
        await asyncio.sleep(0.25)


class Agent:
    """The script above as a subprocess, with its JSON lines read under deadlines."""

    def __init__(self, control_url: str, store: Path, log: Path) -> None:
        """Start the process."""
        argv = [sys.executable, "-m", "tests.integration.test_alarms_restart"]
        argv += ["--control", control_url, "--store", str(store)]
        with log.open("a", encoding="utf-8") as err:
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO, env=dict(os.environ)
            )
        self.events: list[dict[str, Any]] = []
        self.log = log

    def wait_for(self, what: str, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Read lines until one satisfies ``predicate`` (deadline DEADLINE_S)."""
        stdout: IO[str] | None = self.proc.stdout
        assert stdout is not None
        deadline = time.monotonic() + DEADLINE_S
        with selectors.DefaultSelector() as sel:
            sel.register(stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not sel.select(timeout=0.1):
                    if self.proc.poll() is not None:
                        break
                    continue
                line = stdout.readline()
                if not line:
                    break
                event: dict[str, Any] = json.loads(line)
                self.events.append(event)
                if predicate(event):
                    return event
        tail = self.log.read_text(encoding="utf-8")[-3000:]
        msg = f"no {what} within {DEADLINE_S} s; events {self.events[-5:]}; stderr:\n{tail}"
        raise AssertionError(msg)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no close(); only what SQLite committed survives."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def test_alarms_restart_after_kill_raises_nothing_twice_and_clears_what_cleared(
    emulator_factory, tmp_path
):
    """Kill -9 while R2 fires on two miners; one cools meanwhile; restart reconciles.

    1. two miners overheat, R2 CRIT fires for both  2. kill -9  3. one cools down
    4. restart: nothing is raised again; the cooled miner's R2 clears at the first evaluation.
    """
    scenario = {
        "name": "restart-3000",
        "site": {"name": "site", "altitude_m": 3000, "inlet_override_c": 24.0},
        "miners": [{"model": "avalon-15-194", "count": 2}],
    }
    handle = emulator_factory(scenario, base_address="127.40.4.1", speedup=SPEEDUP)
    hot, cooled = sorted(handle.addresses())
    for address in (hot, cooled):
        handle.inject(address, "heatwave", k=6.0)  # inlet 30 °C ≥ T_in,max 28.0 at 3,000 m
    store = tmp_path / "alarms.sqlite3"
    log = tmp_path / "agent.log"

    first = Agent(handle.control_url, store, log)
    try:
        raised: set[str] = set()
        while raised != {hot, cooled}:
            event = first.wait_for(
                "R2 raised", lambda e: e["event"] == "raised" and e["rule"] == "R2"
            )
            assert event["severity"] == "critical"
            raised.add(event["miner"])
    finally:
        first.kill()

    handle.clear(cooled, "heatwave")  # while the agent is down: a 20 °C inlet, below every
    handle.inject(cooled, "heatwave", k=-4.0)  # clear point (24 °C would sit in WARN's band)
    # the emulator applies an inlet change at its next physics tick (every 1 s): wait for it,
    # or a quick first poll reads the old 30 °C and the clear comes one round later
    wait_until(
        lambda: handle.truth(cooled)["inlet_temp_c"] <= 21.0,
        "the emulator's new inlet for the cooled miner",
        timeout=DEADLINE_S,
    )
    second = Agent(handle.control_url, store, log)
    try:
        started = second.wait_for("start", lambda e: e["event"] == "started")
        restored_r2 = sorted(r for r in started["restored"] if r[1] == "R2")
        assert restored_r2 == [[hot, "R2", "critical"], [cooled, "R2", "critical"]]
        # other rules may clear first (the heatwave's R4 rate-of-rise clears once the chips stop
        # rising, on whichever miner); the R2 clear is the one under test
        cleared = second.wait_for(
            "R2 clear", lambda e: e["event"] == "cleared" and e["rule"] == "R2"
        )
        assert cleared["miner"] == cooled
        first_round = second.wait_for("round", lambda e: e["event"] == "round")["sim_time"]
        # reconciled by the first evaluation that had a reading of the cooled miner (a poll
        # that failed on a loaded machine is "unknown", which holds an alarm as it is)
        earlier = [e for e in second.events[:-1] if e["event"] == "round"]
        assert all(cooled in e["failed"] for e in earlier), (earlier, second.events)
        assert cleared["at"] <= first_round
        # run 6 simulated minutes: a lost state would have re-raised the hot miner by now
        second.wait_for(
            "6 min", lambda e: e["event"] == "round" and e["sim_time"] > first_round + 360
        )
    finally:
        second.kill()
    transitions = [e for e in second.events if e["event"] not in {"started", "round"}]
    assert [e for e in transitions if e["event"] == "raised"] == [], transitions
    assert [e for e in transitions if e["rule"] == "R2"] == [cleared], transitions


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--control", required=True)
    parser.add_argument("--store", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(_agent(args.control, args.store))
