"""The agent daemon's lifecycle: wiring, one TaskGroup of named tasks, signals, reload, shutdown.

``run(config_path)`` is what ``altiwatch run`` calls. ``AgentService`` loads the config,
configures logging and runs one ``asyncio.TaskGroup`` with the named tasks:

``poll[<address>]`` one per miner (agent.poller), ``alarm_loop`` (drains poll outcomes into the
alarm engine every second and hands transitions to the MQTT publisher), ``http`` (/metrics and the
JSON API, served from their own thread), ``ready`` (READY after the first poll cycle, at most
``READY_MAX_S``), ``watchdog`` (WATCHDOG pings from the event loop, from start-up on),
``housekeeping`` (drops series of miners gone ``stale_after_s``), ``metrics_refresh`` (re-renders
the changed part of /metrics in the background, so scrapes send cached bytes), ``mqtt_publisher``
(when MQTT is enabled), ``discovery`` (when ``discovery:`` ranges are configured: miners found there
are polled too), ``pressure`` (when a site has a ``pressure_file``: station pressure for δ).

Signals: SIGTERM/SIGINT → STOPPING, the TaskGroup is cancelled and cleanup runs under
``agent.shutdown_grace_s``; a requested stop exits 0. SIGHUP → reload the config: an invalid
file keeps the running config (``config_reload_failed``); miners added/removed/changed get
their poll tasks started/cancelled. A bug in a task ends the TaskGroup, is logged and exits 70
so systemd's ``Restart=on-failure`` restarts the agent.

Once the first poll cycle is done the daemon freezes its settled heap out of the garbage
collector's full collections, and every collection's pause is counted (``agent.gc_policy``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import importlib
import ipaddress
import math
import os
import signal
import sqlite3
import sys
import time
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from agent import event_loop
from agent.alarms.engine import AlarmEngine, Observation
from agent.alarms.store import AlarmStore
from agent.config import AgentConfig, load_config
from agent.errors import ConfigError
from agent.fleet_state import FleetState
from agent.gc_policy import GcPauses, freeze_settled_heap
from agent.http_api import HttpApi
from agent.http_front import HttpFront
from agent.location import Locator, describe
from agent.logging_setup import configure_logging
from agent.maintenance import (
    MaintenanceBook,
    MaintenanceRequest,
    MaintenanceStore,
    Window,
    reconcile,
    select,
)
from agent.metrics import AgentMetrics, MetricsRenderer
from agent.mqtt.publisher import EventPublisher
from agent.notify import Notifier
from agent.poller import Poller, PollOutcome, Schedule
from collectors.snapshot import Tier
from collectors.source import MinerTarget

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from agent.alarms.model import AlarmTransition
    from agent.fleet_state import MinerRecord
    from agent.mqtt.events import MaintenanceEvent
    from collectors.source import MinerSource

log = structlog.get_logger("altiwatch.service")

EX_OK = 0
EX_SOFTWARE = 70
EX_CONFIG = 78
ALARM_TICK_S = 1.0
HOUSEKEEPING_TICK_S = 5.0
DISCOVERY_TICK_S = 5.0
GC_REFREEZE_AFTER_S = 5.0  # after a reload: the replaced poll tasks have ended by then
GIL_SWITCH_INTERVAL_S = 0.0005
METRICS_REFRESH_S = 1.0
READY_MAX_S = 90.0  # below the unit's TimeoutStartSec=120s
METRICS_MAX_AGE_S = 10.0
PRESSURE_TICK_S = 60.0
MIN_PRESSURE_KPA = 30.0
MAX_PRESSURE_KPA = 110.0
_TRANSITION_EVENTS = {
    "raised": "alarm_raised",
    "escalated": "alarm_escalated",
    "deescalated": "alarm_deescalated",
    "cleared": "alarm_cleared",
}


def _version() -> str:
    try:
        from importlib.metadata import version  # noqa: PLC0415 - only needed once

        return version("altiwatch")
    except Exception:  # noqa: BLE001 - metadata is missing in odd installs; not fatal
        return "unknown"


def _optional(module: str, name: str) -> Any:
    """A class from a sibling component, or None while that component is not installed."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


class AgentService:
    """Owns the running agent: fleet state, poller, engine, publisher, HTTP server."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        config_path: Path | None = None,
        source: MinerSource | None = None,
        notifier: Notifier | None = None,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        freeze_heap: bool = False,
        http_front: bool = False,
    ) -> None:
        """Build every component from ``config``; nothing runs until ``run``.

        ``freeze_heap``: after the first poll cycle (and after each reload), freeze the settled
        heap out of the garbage collector's full collections (``agent.gc_policy``); the daemon
        does, an agent run inside a test process does not.

        ``http_front``: serve the public port from a child process (``agent.http_front``: TLS,
        basic auth, /metrics from a one-second cache) and the API to it over a Unix socket; the
        daemon does, an agent run inside a test process serves the port from a thread.
        """
        self.config = config
        self._freeze_heap = freeze_heap
        self._refreeze: asyncio.TimerHandle | None = None
        self.config_path = config_path
        self._env = env
        self._clock = clock
        self.notifier = notifier or Notifier.from_env(env)
        self.locator = Locator(config)  # reads the inventory CSVs: ConfigError → exit 78
        self.fleet = FleetState(placer=self.locator.place)
        self.registry = CollectorRegistry(auto_describe=False)
        self.metrics = AgentMetrics(self.registry, version=_version())
        self.gc_pauses = GcPauses()
        self.registry.register(self.gc_pauses)
        self.source: MinerSource = source or self._make_source(config)
        self.engine = self._make_engine(config)
        self.maintenance = self._make_maintenance(config)
        self.engine.set_maintenance(self.maintenance.miners())
        self.publisher = self._make_publisher(config)
        self.renderer = MetricsRenderer(
            self.fleet,
            self.registry,
            sites=[s.name for s in config.sites],
            alarms=self.engine,
            publisher=self.publisher,
            maintenance=self.maintenance,
        )
        self.poller = self._make_poller(config)
        security = self._web_security(config)  # validated here either way: exit 78 if invalid
        self._web_print = web_fingerprint(config)
        warn_cleartext_passwords(config)
        self.http = HttpApi(
            fleet=self.fleet,
            renderer=self.renderer,
            ready=lambda: self._ready_sent,
            alarms=self.engine,
            maintenance=self.maintenance,
            maintain=self.maintain,
            on_request=lambda path: self.metrics.http_api_requests.labels(path=path).inc(),
            **({} if http_front else security),
        )
        self.front = (
            HttpFront(
                self.http,
                host=config.http.host,
                port=config.http.port,
                web_config_file=config.http.web_config_file,
                log_format=config.agent.log_format,
                log_level=config.agent.log_level,
                event_loop=config.agent.event_loop,
                max_connections=config.http.max_connections,
                max_connections_per_client=config.http.max_connections_per_client,
                on_restart=self.metrics.http_front_restarts.inc,
            )
            if http_front
            else None
        )
        self._outcomes: list[PollOutcome] = []
        self._seen_write_failures = 0
        self._published_up: dict[str, bool] = {}  # miner id -> last status published
        self._poll_tasks: dict[str, asyncio.Task[None]] = {}
        self._targets: dict[str, tuple[str, MinerTarget]] = {}
        self._discovered: dict[str, tuple[str, MinerTarget]] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._ready_sent = False
        self._stop = asyncio.Event()
        self._reload_requested = asyncio.Event()
        self._front_stale = False

    # ------------------------------------------------------------------ construction

    @staticmethod
    def _make_source(config: AgentConfig) -> MinerSource:
        from collectors import pyasic_tuning  # noqa: PLC0415 - see run()
        from collectors.pyasic_source import PyasicSource  # noqa: PLC0415 - see run()

        return PyasicSource(
            timeout_s=config.polling.timeout_s,
            tuning=pyasic_tuning.select(config.polling.pyasic_tuning),
        )

    def _make_engine(self, config: AgentConfig) -> AlarmEngine:
        store = None
        try:
            store = AlarmStore(config.agent.state_dir / "alarms.sqlite3")
        except (OSError, sqlite3.Error) as exc:
            # Alarms still work from memory; after a restart they would be raised again.
            self.metrics.state_write_failures.inc()
            log.warning("alarm_store_unavailable", error=str(exc))
        # autocommit=False: alarm state is saved only after the publisher committed the
        # transitions to its outbox (see alarm_tick), so a crash in between loses no event.
        return AlarmEngine(
            config.thermal,
            config.sites,
            store=store,
            autocommit=False,
            pool_settings=config.pool_alarms,
        )

    def _make_maintenance(self, config: AgentConfig) -> MaintenanceBook:
        store = None
        try:
            store = MaintenanceStore(config.agent.state_dir / "alarms.sqlite3")
        except (OSError, sqlite3.Error) as exc:
            # Maintenance still works from memory; a restart would end every window.
            self.metrics.state_write_failures.inc()
            log.warning("maintenance_store_unavailable", error=str(exc))
        return MaintenanceBook(store)

    @staticmethod
    def _make_publisher(config: AgentConfig) -> EventPublisher | None:
        if not config.mqtt.enabled:
            return None
        config.agent.state_dir.mkdir(parents=True, exist_ok=True)
        return EventPublisher(
            config.mqtt,
            agent_id=config.agent.id,
            state_dir=config.agent.state_dir,
            sites=[s.name for s in config.sites],
        )

    def _make_poller(self, config: AgentConfig) -> Poller:
        polling = config.polling
        schedule = Schedule(
            interval_s=polling.interval_s,
            slow_interval_s=polling.slow_interval_s,
            jitter_ratio=polling.jitter_ratio,
            backoff_max_s=polling.backoff_max_s,
        )
        return Poller(
            self.source,
            self.fleet,
            schedule=schedule,
            concurrency=polling.concurrency,
            metrics=self.metrics,
            sink=self._on_outcome,
            clock=self._clock,
        )

    @staticmethod
    def _web_security(config: AgentConfig) -> dict[str, Any]:
        path = config.http.web_config_file
        if path is None:
            return {}
        from agent import web_security  # noqa: PLC0415 - only with a web config

        web_cfg = web_security.load_web_config(path)
        return {
            "middlewares": web_security.web_security_middlewares(web_cfg),
            "ssl_context": web_security.ssl_context(web_cfg),
        }

    # ------------------------------------------------------------------ poll outcomes

    def _on_outcome(self, outcome: PollOutcome) -> None:
        """Called by the poller after every poll: queue for alarms, publish telemetry/status."""
        record = self.fleet.get(outcome.target.address)
        if record is None:
            return
        if outcome.tier is Tier.FAST:  # one observation per slot: the fast poll follows the slow
            self._outcomes.append(outcome)
        for site, old in self.fleet.drain_renamed() if self.fleet.renamed else ():
            log.info(
                "miner_renamed", site=site, old=old, miner=record.miner_id, address=record.address
            )
            self._drop_id(site, old, reason="renamed")
            if self.maintenance.rename(old, record.miner_id) is not None:
                self.engine.set_maintenance(self.maintenance.miners())
        for dup in self.fleet.drain_duplicates() if self.fleet.duplicates else ():
            self._report_duplicate(dup)
        if self.publisher is None or not record.visible:
            return
        with _guard("mqtt_enqueue_failed"):
            was_up = self._published_up.get(record.miner_id)
            if outcome.tier is Tier.FAST and outcome.snapshot is not None and record.snapshot:
                health = self.engine.share_health(record.miner_id)
                self.publisher.telemetry(
                    record.site,
                    record.miner_id,
                    record.snapshot,
                    bad_share_ratio=None if health is None else health["bad_ratio"],
                )
            if record.up is not None and record.up != was_up:
                self.publisher.miner_status(
                    record.site, record.miner_id, online=bool(record.up), reason=record.last_error
                )
                self._published_up[record.miner_id] = record.up

    def _report_duplicate(self, record: MinerRecord) -> None:
        """A miner reports an id an answering miner holds: warn, and say so on MQTT."""
        claimed, holder = record.duplicate_of, record.duplicate_holder
        if claimed is None or holder is None:
            return
        log.warning(
            "miner_duplicate_id",
            site=record.site,
            miner=record.miner_id,
            address=record.address,
            claimed=claimed,
            holder_address=holder,
        )
        if self.publisher is not None:
            with _guard("mqtt_enqueue_failed"):
                self.publisher.miner_duplicate_id(
                    record.site, record.miner_id, claimed=claimed, holder=holder
                )

    def _drop_id(self, site: str, miner: str, *, reason: str) -> None:
        """A miner id is gone (pruned or renamed): clear its alarms and retained MQTT topics."""
        self._published_up.pop(miner, None)
        with _guard("alarm_forget_failed"):
            self._deliver(self.engine.forget(miner))
        if self.publisher is not None:
            with _guard("mqtt_enqueue_failed"):
                self.publisher.miner_removed(site, miner, reason=reason)

    def _observations(self, batch: list[PollOutcome]) -> list[Observation]:
        out = []
        for outcome in batch:
            record = self.fleet.get(outcome.target.address)
            if record is None or not record.visible:
                continue
            snapshot = record.snapshot if outcome.snapshot is not None else None
            identity = record.slow.identity if record.slow is not None else None
            if identity is None and snapshot is not None:
                identity = snapshot.identity
            out.append(
                Observation(
                    miner=record.miner_id,
                    site=record.site,
                    at=outcome.at,
                    snapshot=snapshot,
                    failure_reason=outcome.reason,
                    model=identity.model if identity is not None else None,
                )
            )
        return out

    # ------------------------------------------------------------------ tasks

    async def _alarm_loop(self) -> None:
        while True:
            await asyncio.sleep(ALARM_TICK_S)
            self.alarm_tick()

    def alarm_tick(self) -> None:
        """Evaluate the polls since the last tick; deliver the transitions, then save state.

        Order: the publisher commits the transitions to its durable outbox first, the engine's
        state is saved after; a crash between the two re-announces, it never loses an event.
        If the publisher fails, the state is not saved this tick (it is with the next one).
        """
        batch, self._outcomes = self._outcomes, []
        now = self._clock()
        with _guard("maintenance_expiry_failed"):
            for window in self.maintenance.expire(now):
                self._window_closed(window, "maintenance_expired", now)
        with _guard("alarm_evaluate_failed"):
            transitions = self.engine.evaluate(now, self._observations(batch))
            # Held back while the miner is in maintenance: the engine keeps the state, and
            # the difference is announced when the window closes (`_window_closed`).
            held = [t for t in transitions if t.miner is not None and t.miner in self.maintenance]
            if held:
                transitions = [
                    t for t in transitions if t.miner is None or t.miner not in self.maintenance
                ]
                for t in held:
                    log.debug("alarm_held", miner=t.miner, rule=t.rule, kind=t.kind.value)
            # Logged once committed to the outbox: an `alarm_*` line means the event is durable.
            transitions = self._deliver(transitions)
            for t in transitions:
                log.info(
                    _TRANSITION_EVENTS.get(t.kind.value, "alarm_transition"),
                    miner=t.miner,
                    site=t.site,
                    rule=t.rule,
                    severity=t.severity.label,
                    value=t.value,
                    threshold=t.threshold,
                    summary=t.summary,
                )
        self._count_state_write_failures()

    def _deliver(self, transitions: list[AlarmTransition]) -> list[AlarmTransition]:
        """Hand ``transitions`` to the publisher's outbox, then save the engine's state.

        Returns them as published: named and placed (``_placed``).
        """
        transitions = [self._placed(t) for t in transitions]
        if transitions and self.publisher is not None:
            self.publisher.alarm_transitions(transitions)  # raises: state not saved
        self.engine.commit()
        return transitions

    def _placed(self, t: AlarmTransition) -> AlarmTransition:
        """``t`` with the miner's name and location, also at the end of its summary."""
        record = self.fleet.by_id(t.miner) if t.miner is not None else None
        if record is None or (record.name is None and record.location is None):
            return t
        where = describe(record.name, record.miner_id, record.location)
        return dataclasses.replace(
            t,
            name=record.name,
            location=record.location.as_dict() if record.location is not None else None,
            summary=f"{t.summary} — {where}",
        )

    # ------------------------------------------------------------------ maintenance

    def maintain(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Apply a ``POST /api/v1/maintenance`` body (polling loop): (HTTP status, JSON answer)."""
        try:
            request = MaintenanceRequest.model_validate(body)
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            ]
            return 400, {"error": "; ".join(problems)}
        records = select(self.fleet.rendered(), request)
        if not records:
            return 404, {"error": "no miner in the agent's inventory matches"}
        now = self._clock()
        done: list[dict[str, Any]] = []
        for record in records:
            if request.action == "start":
                held = {t.rule: int(t.severity) for t in self.engine.firing(record.miner_id)}
                until = now + request.for_s if request.for_s is not None else None
                reason = request.reason or ""
                window = self.maintenance.start(
                    Window(record.site, record.miner_id, reason, now, until, request.by, held)
                )
                self._window_event(window, "maintenance_started", now)
            else:
                closed = self.maintenance.end(record.miner_id)
                if closed is None:
                    continue
                window = closed
                self._window_closed(window, "maintenance_ended", now)
            self.fleet.changed(record.miner_id)
            location = record.location.as_dict() if record.location is not None else None
            done.append(
                {
                    "miner": record.miner_id,
                    "name": record.name,
                    "location": location,
                    **window.as_dict(),
                }
            )
        self.engine.set_maintenance(self.maintenance.miners())
        return 200, {"action": request.action, "miners": done}

    def _window_event(self, window: Window, event: MaintenanceEvent, now: float) -> None:
        """Log a maintenance event and publish it on the site's event stream."""
        record = self.fleet.by_id(window.miner)
        name = record.name if record is not None else None
        location = record.location if record is not None else None
        log.info(
            event,
            site=window.site,
            miner=window.miner,
            name=name,
            where=location.text() if location is not None else None,
            reason=window.reason,
            until=window.until,
            by=window.by,
            at=now,
        )
        if self.publisher is not None:
            with _guard("mqtt_enqueue_failed"):
                self.publisher.maintenance(
                    window.site,
                    window.miner,
                    event,
                    window=window.as_dict(),
                    name=name,
                    location=location.as_dict() if location is not None else None,
                )

    def _window_closed(self, window: Window, event: MaintenanceEvent, now: float) -> None:
        """A window ended or expired: say so, then announce what changed while it was open."""
        self.engine.set_maintenance(self.maintenance.miners())
        self.fleet.changed(window.miner)
        self._window_event(window, event, now)
        try:
            air = self.engine.site_air(window.site)
        except KeyError:
            air = None
        transitions = reconcile(window, self.engine.firing(window.miner), now=now, air=air)
        with _guard("alarm_release_failed"):
            for t in self._deliver(transitions):
                log.info(
                    _TRANSITION_EVENTS.get(t.kind.value, "alarm_transition"),
                    miner=t.miner,
                    site=t.site,
                    rule=t.rule,
                    severity=t.severity.label,
                    summary=t.summary,
                )

    def _count_state_write_failures(self) -> None:
        failures = self.engine.state_write_failures
        if failures > self._seen_write_failures:
            self.metrics.state_write_failures.inc(failures - self._seen_write_failures)
            self._seen_write_failures = failures

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_TICK_S)
            self.fleet.prune(self._clock(), self.config.polling.stale_after_s)
            for site, miner in self.fleet.drain_removed():
                log.info("miner_series_dropped", site=site, miner=miner)
                self._drop_id(site, miner, reason="removed")
                window = self.maintenance.end(miner)  # gone from inventory: so is its window
                if window is not None:
                    self.engine.set_maintenance(self.maintenance.miners())
                    self._window_event(window, "maintenance_ended", self._clock())

    async def _discovery(self) -> None:
        """Scan every ``discovery:`` range on its interval; poll miners found there too."""
        from agent import discover  # noqa: PLC0415 - pulls in pyasic

        due: dict[str, float] = {}
        while True:
            now = time.monotonic()
            for entry in self.config.discovery:
                if due.get(entry.cidr, 0.0) > now:
                    continue
                due[entry.cidr] = now + entry.interval_s
                site = entry.site or self.config.sites[0].name
                with _guard("discovery_failed"):
                    found = await discover.scan(
                        entry.cidr,
                        concurrency=min(self.config.polling.concurrency, 256),
                        timeout_s=self.config.polling.timeout_s,
                    )
                    found = [m for m in found if self.config.owns(m.address)]  # agent.shard
                    new = [m for m in found if m.address not in self._targets]
                    for miner in new:
                        target = MinerTarget(address=miner.address)
                        self._discovered[miner.address] = (site, target)
                        self._start_poll(site, target)
                    log.info("discovery_scanned", cidr=entry.cidr, found=len(found), new=len(new))
            await asyncio.sleep(DISCOVERY_TICK_S)

    async def _pressure(self) -> None:
        """Feed each site's ``pressure_file`` (station pressure in kPa) to the alarm engine."""
        failing: set[str] = set()
        while True:
            for site in self.config.sites:
                if site.pressure_file is None:
                    continue
                kpa = read_pressure_kpa(site.pressure_file)
                if kpa is None and site.name not in failing:
                    log.warning(
                        "pressure_file_unreadable", site=site.name, path=str(site.pressure_file)
                    )
                    failing.add(site.name)
                elif kpa is not None:
                    failing.discard(site.name)
                with _guard("pressure_update_failed"):
                    self.engine.set_site_pressure(site.name, kpa or site.station_pressure_kpa)
            await asyncio.sleep(PRESSURE_TICK_S)

    async def _metrics_refresh(self) -> None:
        """Re-render /metrics in the background so a scrape only sends cached bytes."""
        self.renderer.scrape_max_age_s = METRICS_MAX_AGE_S
        while True:
            self.renderer.miners_body()
            # At 10,000 miners a render takes ~50-100 ms: keep it under ~5 % of a core.
            await asyncio.sleep(max(METRICS_REFRESH_S, 20 * self.renderer.last_render_s))

    async def _ready(self) -> None:
        """READY=1 once every miner finished its first poll (at the latest after READY_MAX_S)."""
        try:
            async with asyncio.timeout(READY_MAX_S):
                await self.poller.first_cycle.wait()
        except TimeoutError:
            # Far beyond a normal first cycle (slow miners, long timeouts): say so and go on,
            # rather than let systemd's TimeoutStartSec kill a working agent.
            log.warning("ready_before_first_cycle_complete", waited_s=READY_MAX_S)
        self.renderer.miners_body()  # /metrics shows the whole first cycle once READY is sent
        self._ready_sent = True
        self.notifier.ready()
        up = sum(1 for r in self.fleet if r.up)
        self.notifier.status(f"polling {len(self.fleet)} miners, {up} up")
        log.info("agent_ready", miners=len(self.fleet), up=up, loop=event_loop.running())
        if self._freeze_heap:
            self._freeze()

    def _freeze(self) -> None:
        self._refreeze = None
        started = time.perf_counter()
        frozen = freeze_settled_heap()
        log.info("gc_heap_frozen", objects=frozen, took_s=round(time.perf_counter() - started, 3))

    async def _watchdog(self) -> None:
        """WATCHDOG=1 from the event loop every half WATCHDOG_USEC, from start-up on."""
        interval = self.notifier.watchdog_interval_s
        if interval is None:
            return
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def _http(self) -> None:
        host, port = self.config.http.host, self.config.http.port
        front = self.front
        if front is None:
            await self.http.start(host, port)
            log.info("http_listening", listen=f"{host}:{self.http.port}")
            try:
                await asyncio.Event().wait()
            finally:
                await self.http.stop()
            return
        try:
            await front.start()
            log.info("http_listening", listen=f"{host}:{front.port}", front_pid=front.pid)
            await front.run()
        finally:
            await front.stop()

    def _start_poll(self, site: str, target: MinerTarget) -> None:
        assert self._tg is not None
        self.fleet.add(site, target, self._clock())
        self._targets[target.address] = (site, target)
        self._poll_tasks[target.address] = self._tg.create_task(
            self.poller.run_miner(site, target), name=f"poll[{target.address}]"
        )

    def _stop_poll(self, address: str) -> None:
        task = self._poll_tasks.pop(address, None)
        if task is not None:
            task.cancel()
        self._targets.pop(address, None)

    async def _supervise(self) -> None:
        targets = self.config.targets()
        self.poller.expect({t.address for _, t in targets})
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            tg.create_task(self._http(), name="http")
            for site, target in targets:
                self._start_poll(site.name, target)
            tg.create_task(self._alarm_loop(), name="alarm_loop")
            tg.create_task(self._housekeeping(), name="housekeeping")
            tg.create_task(self._metrics_refresh(), name="metrics_refresh")
            tg.create_task(self._ready(), name="ready")
            tg.create_task(self._watchdog(), name="watchdog")
            if self.publisher is not None:
                tg.create_task(self.publisher.run(), name="mqtt_publisher")
            if self.config.discovery:
                tg.create_task(self._discovery(), name="discovery")
            if any(s.pressure_file is not None for s in self.config.sites):
                tg.create_task(self._pressure(), name="pressure")
            tg.create_task(self._reloader(), name="reload")

    # ------------------------------------------------------------------ reload

    async def _reloader(self) -> None:
        while True:
            await self._reload_requested.wait()
            self._reload_requested.clear()
            if self.reload() and self._front_stale and self.front is not None:
                # The web config (users, passwords, TLS files) or the connection limits
                # changed: a new front reads them; the old one is gone when this returns.
                self._front_stale = False
                http = self.config.http
                with _guard("http_front_reload_failed"):  # the running front stays
                    await self.front.reload(
                        web_config_file=http.web_config_file,
                        max_connections=http.max_connections,
                        max_connections_per_client=http.max_connections_per_client,
                    )

    def request_reload(self) -> None:
        """SIGHUP handler: reload in the loop, not in the handler."""
        self._reload_requested.set()

    def reload(self) -> bool:
        """Re-read the config file; apply inventory and logging changes. False if invalid."""
        if self.config_path is None:
            return False
        self.notifier.reloading()
        try:
            new = load_config(self.config_path, env=self._env)
            web_print = web_fingerprint(new)  # the web config validated as at start
            locator = Locator(new)  # the inventory CSVs re-read
        except ConfigError as exc:
            log.error("config_reload_failed", error=str(exc))  # noqa: TRY400 - not a traceback case
            self.notifier.ready()
            return False
        self._note_web_changes(new, web_print)
        self.locator = locator
        self.fleet.replace_placer(locator.place)
        configure_logging(new.agent.log_format, new.agent.log_level)
        restart_all = new.polling != self.config.polling
        if restart_all:
            # New cadence, deadline or concurrency: new source and poller, every loop restarted
            # (the fleet state, and so the series, are kept).
            self.source = self._make_source(new)
            self.poller = self._make_poller(new)
            self.poller.expect(set())
        for section in _sections_needing_restart(self.config, new):
            # Live: inventory, polling, logging, shutdown_grace_s, the HTTP front's web config
            # and limits. The rest at the next start.
            log.warning("config_reload_section_needs_restart", section=section)
        discovered = {a: st for a, st in self._discovered.items() if new.owns(a)}
        wanted = {**discovered, **{t.address: (s.name, t) for s, t in new.targets()}}
        removed = [a for a in self._targets if a not in wanted]
        for address in removed:
            self._stop_poll(address)
            self.fleet.remove(address, self._clock())
            forget = getattr(self.source, "forget", None)
            if callable(forget):
                forget(address)
        started = 0
        for address, (site, target) in wanted.items():
            if restart_all or self._targets.get(address) != (site, target):
                self._stop_poll(address)
                self._start_poll(site, target)
                started += 1
        self.renderer.set_sites([s.name for s in new.sites])
        self.config = new
        log.info("config_reloaded", miners=len(wanted), removed=len(removed), started=started)
        self.notifier.ready()
        self._schedule_refreeze()
        return True

    def _note_web_changes(self, new: AgentConfig, web_print: tuple[object, ...]) -> None:
        """The front is to be replaced (by ``_reloader``) when what it is made of changed."""
        if web_print == self._web_print:
            return
        self._web_print = web_print
        self._front_stale = self.front is not None
        if self.front is None:
            log.warning("config_reload_section_needs_restart", section="http")
        else:
            warn_cleartext_passwords(new, mqtt=False)

    def _schedule_refreeze(self) -> None:
        """After a reload: unfreeze, collect, freeze again once the replaced tasks are gone.

        A reference cycle among frozen objects would never be collected.
        """
        if self._freeze_heap and self._ready_sent and self._refreeze is None:
            loop = asyncio.get_running_loop()
            self._refreeze = loop.call_later(GC_REFREEZE_AFTER_S, self._freeze)

    # ------------------------------------------------------------------ run

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (exit 0) or a task fails (exit 70)."""
        with self.gc_pauses.installed():
            try:
                return await self._run()
            finally:
                if self._refreeze is not None:
                    self._refreeze.cancel()

    async def _run(self) -> int:
        loop = asyncio.get_running_loop()
        supervisor = asyncio.create_task(self._supervise(), name="supervisor")

        def stop(signame: str) -> None:
            if not self._stop.is_set():
                log.info("shutdown_requested", signal=signame)
                self.notifier.stopping()
                self._stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        stopping = asyncio.create_task(self._stop.wait(), name="stop_wait")
        try:
            await asyncio.wait({supervisor, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not supervisor.done():
                supervisor.cancel()
                grace = self.config.agent.shutdown_grace_s
                done, _ = await asyncio.wait({supervisor}, timeout=grace)
                if not done:
                    log.error("shutdown_timeout", grace_s=grace)
                    return EX_SOFTWARE
        finally:
            stopping.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        if not supervisor.cancelled() and supervisor.exception() is not None:
            log.error("agent_failed", error=repr(supervisor.exception()))
            return EX_SOFTWARE
        if not self._stop.is_set():
            log.error("agent_failed", error="all tasks ended")
            return EX_SOFTWARE
        self._close()
        log.info("agent_stopped")
        return EX_OK

    def _close(self) -> None:
        for component in (self.publisher, self.engine, self.maintenance):
            close = getattr(component, "close", None)
            if callable(close):
                with _guard("close_failed"):
                    close()


def _sections_needing_restart(old: AgentConfig, new: AgentConfig) -> list[str]:
    changed = [
        name
        for name in ("mqtt", "thermal", "pool_alarms", "sites")
        if getattr(new, name) != getattr(old, name)
    ]
    if new.http.listen != old.http.listen:  # the rest of http: see web_fingerprint
        changed.append("http")
    if (new.agent.id, new.agent.state_dir) != (old.agent.id, old.agent.state_dir):
        changed.append("agent")
    return changed


def web_fingerprint(config: AgentConfig) -> tuple[object, ...]:
    """What the HTTP front is made from: limits, web config and TLS files (by content).

    Reading the web config validates it (and its certificate and key) as start-up does:
    ``ConfigError`` when it is invalid.
    """
    http = config.http
    digest = hashlib.sha256()
    path = http.web_config_file
    if path is not None:
        from agent import web_security  # noqa: PLC0415 - only with a web config

        web_cfg = web_security.load_web_config(path)
        web_security.ssl_context(web_cfg)
        files = [path]
        tls = web_cfg.tls_server_config
        if tls is not None:
            files += [f for f in (tls.cert_file, tls.key_file, tls.client_ca_file) if f]
        for file in files:
            try:
                digest.update(file.read_bytes())
            except OSError as exc:
                msg = f"cannot read {file}: {exc.strerror}"
                raise ConfigError(msg) from None
    return (path, http.max_connections, http.max_connections_per_client, digest.digest())


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_cleartext_passwords(config: AgentConfig, *, mqtt: bool = True) -> None:
    """Warn when passwords would cross the network in clear: basic auth or MQTT without TLS."""
    path = config.http.web_config_file
    if path is not None and not _loopback(config.http.host):
        from agent import web_security  # noqa: PLC0415 - only with a web config

        with contextlib.suppress(ConfigError):  # reported where it is loaded
            web_cfg = web_security.load_web_config(path)
            if web_cfg.basic_auth_users and web_cfg.tls_server_config is None:
                log.warning("http_basic_auth_without_tls", listen=config.http.listen)
    settings = config.mqtt
    has_password = settings.password is not None or settings.password_file is not None
    if (
        mqtt
        and settings.enabled
        and has_password
        and settings.tls is None
        and not _loopback(settings.host)
    ):
        log.warning("mqtt_password_without_tls", host=settings.host, port=settings.port)


def read_pressure_kpa(path: Path) -> float | None:
    """The station pressure in kPa from the first number in ``path`` (None if unusable)."""
    try:
        text = path.read_text(encoding="utf-8").split()
        value = float(text[0]) if text else math.nan
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not MIN_PRESSURE_KPA <= value <= MAX_PRESSURE_KPA:
        return None
    return value


@contextlib.contextmanager
def _guard(event: str) -> Any:
    """Log and swallow a failure of a sibling component so polling and metrics go on."""
    try:
        yield
    except Exception as exc:
        log.exception(event, error=str(exc))


def run(config_path: Path, *, env: Mapping[str, str] | None = None) -> int:
    """Load the config, configure logging and run the agent; return the exit code."""
    try:
        config = load_config(config_path, env=env)
    except ConfigError as exc:
        configure_logging()
        log.error("config_invalid", error=str(exc))  # noqa: TRY400 - the message is the point
        return EX_CONFIG
    # Logging first: pyasic calls logging.basicConfig() when imported, which is a no-op once
    # the root logger has our handler. It also lowers the root level, hence the second call.
    configure_logging(config.agent.log_format, config.agent.log_level)
    importlib.import_module("collectors.pyasic_source")
    configure_logging(config.agent.log_format, config.agent.log_level)

    async def main() -> int:
        service = AgentService(
            config, config_path=config_path, env=env, freeze_heap=True, http_front=True
        )
        return await service.run()

    # The HTTP server has its own thread: when the polling loop wakes (a timer is due) while
    # that thread runs Python, it waits for the GIL at most this long instead of 5 ms.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    code = event_loop.run(main(), config.agent.event_loop)
    if code == EX_SOFTWARE:
        # A task ignored cancellation past the grace period: exit now rather than let
        # asyncio.run's cleanup wait for it (systemd would SIGKILL us at TimeoutStopSec).
        sys.stdout.flush()
        os._exit(code)
    return code
