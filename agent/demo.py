"""``make demo``: an emulated 2,800 m site, an MQTT broker and the agent, wired together locally.

``python -m agent.demo`` starts, each in its own process group and all on loopback:

1. the emulator (``python -m collectors.emulator --scenario deploy/scenarios/golmud-2800.yaml
   --base-address 127.77.0.1``), waiting for its ``emulator_ready`` line;
2. a broker on a free port: Debian's ``mosquitto`` if installed, else the pure-Python ``amqtt``
   broker if importable, else none (the agent then runs without MQTT and the demo says so);
3. the agent (``altiwatch run``) with a generated config in a temporary state directory, and
   an inventory CSV placing the miners in containers × racks × shelves × slots
   (``demo_layout``: 2 containers, 3 racks each, 3 shelves of 2), so ``altiwatch dispatch``,
   ``top --group rack`` and the site page show a real floor,

waits until the agent's ``/readyz`` answers, prints where to look, and runs until SIGINT
(Ctrl-C) or SIGTERM, then stops the agent, the broker and the emulator in that order and exits 0.
Children's logs go to files in the temporary directory, whose path is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import FrameType

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIO = REPO / "deploy" / "scenarios" / "golmud-2800.yaml"
DEFAULT_BASE_ADDRESS = "127.77.0.1"
EMULATOR_READY_S = 90.0
BROKER_READY_S = 20.0
AGENT_READY_S = 180.0
STOP_DEADLINE_S = 30.0
MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")
PR_SET_PDEATHSIG = 1


class DemoError(RuntimeError):
    """A part of the demo did not start."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    condition: Callable[[], bool],
    what: str,
    deadline_s: float,
    *,
    alive: Callable[[], None] | None = None,
    interval_s: float = 0.1,
) -> None:
    """Poll ``condition`` until true; DemoError after ``deadline_s`` or when ``alive`` raises."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        if condition():
            return
        time.sleep(interval_s)
    msg = f"{what} not ready within {deadline_s:.0f} s"
    raise DemoError(msg)


def _die_with_parent() -> None:
    """In the child: ask the kernel for SIGTERM when the demo process dies (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


@dataclass
class Child:
    """A child process in its own process group, with its log file."""

    name: str
    process: subprocess.Popen[str]
    log_path: Path

    def check_alive(self) -> None:
        """Raise DemoError (with the log's tail) if the process has exited."""
        code = self.process.poll()
        if code is not None:
            tail = self.log_tail()
            msg = f"{self.name} exited with status {code}; last log lines:\n{tail}"
            raise DemoError(msg)

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the child's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, deadline_s: float = STOP_DEADLINE_S) -> int | None:
        """SIGTERM, wait up to ``deadline_s``, then SIGKILL the process group; return the status."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=deadline_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=deadline_s)
        return self.process.returncode


@dataclass
class Demo:
    """The running demo: its children, URLs and temporary directory."""

    workdir: Path
    children: list[Child] = field(default_factory=list)
    emulator_control: str | None = None
    miners: int = 0
    site: dict[str, Any] = field(default_factory=dict)
    broker: str | None = None  # "mosquitto" | "amqtt" | None
    broker_port: int | None = None
    agent_url: str | None = None

    def spawn(self, name: str, argv: Sequence[str], *, stdout_file: Path | None = None) -> Child:
        """Start ``argv`` in its own session, logging to ``<name>.log`` in the work directory.

        Its own session: a Ctrl-C in the terminal reaches only the demo, which then stops the
        children in order. PR_SET_PDEATHSIG: if the demo itself is killed, they get SIGTERM.
        """
        log_path = self.workdir / f"{name}.log"
        with contextlib.ExitStack() as files:
            log_file = files.enter_context(log_path.open("w", encoding="utf-8"))
            out = files.enter_context(stdout_file.open("w")) if stdout_file else log_file
            process = subprocess.Popen(  # noqa: S603 - fixed argv built here
                list(argv),
                stdout=out,
                stderr=log_file,
                stdin=subprocess.DEVNULL,
                text=True,
                cwd=REPO,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - the demo has no threads
            )
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def alive(self) -> None:
        """Raise DemoError if any child has died."""
        for child in self.children:
            child.check_alive()

    def stop(self) -> None:
        """Stop children in reverse start order (agent, broker, emulator)."""
        for child in reversed(self.children):
            child.stop()
        self.children.clear()


def start_emulator(demo: Demo, scenario: Path, base_address: str, miners: int | None) -> None:
    """Start the emulator and wait for its ready line."""
    argv = [
        sys.executable,
        "-m",
        "collectors.emulator",
        "--scenario",
        str(scenario),
        "--base-address",
        base_address,
        "--control",
        "127.0.0.1:0",
    ]
    if miners is not None:
        argv += ["--miners", str(miners)]
    ready_file = demo.workdir / "emulator.out"
    child = demo.spawn("emulator", argv, stdout_file=ready_file)

    def ready_line() -> bool:
        return ready_file.read_text(encoding="utf-8").endswith("\n")

    wait_until(ready_line, "the emulator", EMULATOR_READY_S, alive=child.check_alive)
    ready = json.loads(ready_file.read_text(encoding="utf-8").splitlines()[0])
    demo.emulator_control = ready["control_url"]
    demo.miners = int(ready["miners"])


def start_broker(demo: Demo, choice: str = "auto") -> None:
    """Start mosquitto, else amqtt, on a free loopback port; ``demo.broker`` None if neither."""
    port = free_port()
    mosquitto = shutil.which("mosquitto") or next(
        (p for p in MOSQUITTO_PATHS if Path(p).exists()), None
    )
    if choice == "amqtt":
        mosquitto = None
    if mosquitto is not None and choice in {"auto", "mosquitto"}:
        conf = demo.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            # Stay as the demo's user: a privilege drop would clear PR_SET_PDEATHSIG.
            f"log_dest stderr\nuser {getpass.getuser()}\n",
            encoding="utf-8",
        )
        demo.spawn("broker", [mosquitto, "-c", str(conf)])
        demo.broker = "mosquitto"
    elif choice in {"auto", "amqtt"} and _amqtt_available():
        conf = demo.workdir / "amqtt.yaml"
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        conf.write_text(yaml.safe_dump(config), encoding="utf-8")
        amqtt = Path(sys.executable).with_name("amqtt")
        argv = [str(amqtt), "-c", str(conf)]
        demo.spawn("broker", argv)
        demo.broker = "amqtt"
    else:
        return
    demo.broker_port = port
    wait_until(
        lambda: _accepts("127.0.0.1", port), "the MQTT broker", BROKER_READY_S, alive=demo.alive
    )


def _amqtt_available() -> bool:
    import importlib.util  # noqa: PLC0415 - only for the fallback

    return (
        importlib.util.find_spec("amqtt") is not None
        and Path(sys.executable).with_name("amqtt").exists()
    )


def _scenario_site(scenario: Path) -> dict[str, Any]:
    data = yaml.safe_load(scenario.read_text(encoding="utf-8"))
    site = data["site"]
    result = {"name": str(site["name"]), "altitude_m": float(site["altitude_m"])}
    if site.get("station_pressure_kpa") is not None:
        result["station_pressure_kpa"] = float(site["station_pressure_kpa"])
    return result


def _emulator_miners(control_url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{control_url}/miners", timeout=30) as response:  # noqa: S310
        miners: list[dict[str, Any]] = json.loads(response.read())
        return miners


LAYOUT = (2, 3, 3, 2)
"""Demo floor: containers, racks per container, shelves per rack, slots per shelf (36 places)."""


def demo_layout(index: int) -> dict[str, str]:
    """The place of the ``index``-th miner (0-based): ``C1`` rack 1 shelf 1 slot 1 onwards.

    Miners beyond the floor's 36 places go on in further containers.
    """
    _, racks, shelves, slots = LAYOUT
    per_container = racks * shelves * slots
    within = index % per_container
    return {
        "container": f"C{index // per_container + 1}",
        "rack": str(within // (shelves * slots) + 1),
        "shelf": str(within % (shelves * slots) // slots + 1),
        "slot": str(within % slots + 1),
    }


def write_inventory(path: Path, miners: Sequence[dict[str, Any]]) -> Path:
    """The demo's inventory CSV: address, name (the emulated hostname) and place per miner."""
    lines = ["address,name,container,rack,shelf,slot"]
    for index, miner in enumerate(miners):
        place = demo_layout(index)
        name = str(miner.get("hostname") or "")
        lines.append(",".join([miner["address"], name, *place.values()]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def agent_config(demo: Demo, listen_port: int) -> dict[str, Any]:
    """The generated agent config: the emulated miners, a fast poll, MQTT to the demo broker."""
    assert demo.emulator_control is not None
    miners = _emulator_miners(demo.emulator_control)
    inventory = write_inventory(demo.workdir / "inventory.csv", miners)
    config: dict[str, Any] = {
        "agent": {
            "id": "demo",
            "state_dir": str(demo.workdir / "state"),
            "log_format": "json",
            "log_level": "info",
        },
        "sites": [{**demo.site, "inventory_csv": str(inventory)}],
        "miners": [{"address": m["address"], "site": demo.site["name"]} for m in miners],
        "polling": {"interval_s": 10, "slow_interval_s": 60, "timeout_s": 8},
        "http": {"listen": f"127.0.0.1:{listen_port}"},
    }
    if demo.broker_port is not None:
        config["mqtt"] = {
            "enabled": True,
            "host": "127.0.0.1",
            "port": demo.broker_port,
            "protocol": "5" if demo.broker == "mosquitto" else "3.1.1",  # amqtt speaks 3.1.1
        }
    return config


def start_agent(demo: Demo) -> None:
    """Write the config, start ``altiwatch run`` and wait for /readyz."""
    port = free_port()
    (demo.workdir / "state").mkdir(exist_ok=True)
    config_path = demo.workdir / "altiwatch.yaml"
    config_path.write_text(
        yaml.safe_dump(agent_config(demo, port), sort_keys=False), encoding="utf-8"
    )
    demo.spawn("agent", [sys.executable, "-m", "agent", "run", "--config", str(config_path)])
    demo.agent_url = f"http://127.0.0.1:{port}"
    url = f"{demo.agent_url}/readyz"
    wait_until(
        lambda: _http_status(url) == 200,  # noqa: PLR2004 - HTTP OK
        "the agent (/readyz)",
        AGENT_READY_S,
        alive=demo.alive,
        interval_s=0.25,
    )


def _altiwatch_command() -> str:
    script = Path(sys.executable).with_name("altiwatch")
    if script.exists():
        with contextlib.suppress(ValueError):
            return str(script.relative_to(Path.cwd()))
        return str(script)
    return f"{sys.executable} -m agent"


def subscribe_command(port: int) -> str:
    """A ready-to-paste subscriber: mosquitto_sub if installed, else amqtt's ``amqtt_sub``."""
    if shutil.which("mosquitto_sub") is None:
        amqtt_sub = Path(sys.executable).with_name("amqtt_sub")
        if amqtt_sub.exists():
            return f"{amqtt_sub} --url mqtt://127.0.0.1:{port} -t 'altiwatch/v1/#'"
    return f"mosquitto_sub -h 127.0.0.1 -p {port} -t 'altiwatch/v1/#' -v"


def banner(demo: Demo) -> str:
    """What the demo prints once everything is up."""
    assert demo.agent_url is not None
    site = demo.site
    lines = [
        "",
        f"altiwatch demo: {demo.miners} emulated miners at site {site['name']} "
        f"({site['altitude_m']:,.0f} m), the agent and "
        + (f"an MQTT broker ({demo.broker})." if demo.broker else "no MQTT broker."),
        "",
        f"  Site page:   {demo.agent_url}/",
        f"  Metrics:     {demo.agent_url}/metrics",
        f"  Fleet JSON:  {demo.agent_url}/api/v1/fleet",
        f"  Alarms JSON: {demo.agent_url}/api/v1/alarms",
        f"  Live view:   {_altiwatch_command()} top --url {demo.agent_url}",
    ]
    if demo.broker_port is not None:
        lines.append(f"  MQTT:        {subscribe_command(demo.broker_port)}")
    else:
        lines.append("  MQTT:        disabled (install Debian's mosquitto or amqtt to see events)")
    lines += [
        f"  Emulator:    {demo.emulator_control}  (control API: GET /miners, /site, /clock)",
        (
            "  Heatwave:    curl -X POST -H 'Content-Type: application/json' "
            f"""-d '{{"heatwave_k": 12}}' {demo.emulator_control}/site"""
        ),
        f"  Logs:        {demo.workdir}/{{{','.join(c.name for c in demo.children)}}}.log",
        "",
        "Press Ctrl-C to stop.",
        "",
    ]
    return "\n".join(lines)


class _Stop(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by the signal handler to leave the waiting loop."""


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def build_parser() -> argparse.ArgumentParser:
    """Optional knobs; ``make demo`` uses none."""
    parser = argparse.ArgumentParser(prog="python -m agent.demo", description=__doc__)
    parser.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO)
    parser.add_argument("--base-address", default=DEFAULT_BASE_ADDRESS)
    parser.add_argument("--miners", type=int, default=None, help="scale the scenario's mix")
    parser.add_argument(
        "--sites",
        type=int,
        default=1,
        help="many-sites mode: this many emulated sites, each with its agent, bridged broker"
        " and vmagent, feeding one central VictoriaMetrics and broker (agent.demo_sites)",
    )
    parser.add_argument(
        "--broker",
        choices=("auto", "mosquitto", "amqtt", "none"),
        default="auto",
        help="MQTT broker: auto = mosquitto if installed, else amqtt, else none",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo until SIGINT/SIGTERM; 0 on a requested stop, 1 if a part failed."""
    args = build_parser().parse_args(argv)
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    workdir = Path(tempfile.mkdtemp(prefix="altiwatch-demo-"))
    demo = Demo(workdir=workdir, site=_scenario_site(args.scenario))
    status = 0
    try:
        sys.stdout.write(_start(demo, args) + "\n")
        sys.stdout.flush()
        while True:
            demo.alive()
            time.sleep(0.5)
    except _Stop as stop:
        parts = ", ".join(reversed([c.name for c in demo.children]))
        _say(f"{stop.args[0]} received: stopping {parts}…")
    except DemoError as exc:
        _say(f"demo failed: {exc}")
        status = 1
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the cleanup
        demo.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if status == 0:
        shutil.rmtree(workdir, ignore_errors=True)
        _say("stopped.")
    else:
        _say(f"logs kept in {workdir}")
    return status


def _start(demo: Demo, args: argparse.Namespace) -> str:
    """Start every part (one site, or ``--sites`` sites and central); return the banner."""
    if args.sites > 1:
        from agent import demo_sites  # noqa: PLC0415 - only in many-sites mode

        _say(f"starting {args.sites} sites and the central store and broker…")
        return demo_sites.start(demo, args.sites)
    _say(f"starting the emulated site ({args.scenario.name}) on {args.base_address}…")
    start_emulator(demo, args.scenario, args.base_address, args.miners)
    if args.broker != "none":
        start_broker(demo, args.broker)
        if demo.broker is None:
            _say(f"no MQTT broker available ({args.broker}): running without MQTT")
    _say(f"starting the agent ({demo.miners} miners) and waiting for its first poll cycle…")
    start_agent(demo)
    return banner(demo)


def _say(message: str) -> None:
    sys.stderr.write(f"[demo] {message}\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
