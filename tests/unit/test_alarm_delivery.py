"""Alarm delivery order: transitions reach the publisher's outbox before alarm state is saved.

A crash between the two must re-announce at worst, never lose an event: the engine's saved
state says "already announced" only once the outbox has the event. The publisher is faked at
the boundary we own (``EventPublisher.alarm_transitions``); engine, store and service are real.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import yaml

from agent.alarms.config import ThermalSettings
from agent.alarms.engine import AlarmEngine
from agent.alarms.store import AlarmStore
from agent.alarms.testing import Site
from agent.config import load_config
from agent.notify import Notifier
from agent.service import AgentService

if TYPE_CHECKING:
    from pathlib import Path

    from agent.alarms.model import AlarmTransition

STORE = "alarms.sqlite3"


def stored_rules(state_dir: Path) -> list[str]:
    """Rules of the alarms saved in the store, read through a connection of its own."""
    store = AlarmStore(state_dir / STORE)
    try:
        return sorted(row.rule for row in store.load())
    finally:
        store.close()


class FakePublisher:
    """Records, at each hand-over, what the alarm store already held; may fail on demand."""

    def __init__(self, state_dir: Path, *, fail: bool = False) -> None:
        """Watch ``state_dir``'s alarm store."""
        self.state_dir = state_dir
        self.fail = fail
        self.calls: list[tuple[list[str], list[str]]] = []

    def alarm_transitions(self, transitions: list[AlarmTransition]) -> None:
        """Note (rules handed over, rules already saved); raise if asked to."""
        self.calls.append(([t.rule for t in transitions], stored_rules(self.state_dir)))
        if self.fail:
            msg = "outbox unavailable"
            raise OSError(msg)


def service_at(tmp_path: Path) -> tuple[AgentService, Path]:
    """A real AgentService (MQTT disabled, no miners) on a 3,000 m site: R9 info raises."""
    state_dir = tmp_path / "state"
    config = {
        "agent": {"id": "t", "state_dir": str(state_dir)},
        "sites": [{"name": "site", "altitude_m": 3000}],
        "miners": [],
    }
    path = tmp_path / "altiwatch.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    service = AgentService(load_config(path, env={}), notifier=Notifier.from_env({}))
    return service, state_dir


def tick_until_transition(service: AgentService, publisher: Any = None) -> None:
    """Run alarm ticks until the engine produced a transition (R9 raised on the first)."""
    for _ in range(5):
        service.alarm_tick()
        if publisher is None or publisher.calls:
            return
    pytest.fail("no alarm transition within 5 ticks")


def test_alarm_delivery_outbox_commit_comes_before_state_save(tmp_path):
    """When the publisher gets a transition, the store does not hold it yet; afterwards it does."""
    service, state_dir = service_at(tmp_path)
    publisher = FakePublisher(state_dir)
    service.publisher = publisher  # type: ignore[assignment]
    tick_until_transition(service, publisher)
    assert publisher.calls == [(["R9"], [])]
    assert stored_rules(state_dir) == ["R9"]


def test_alarm_delivery_failed_hand_over_leaves_state_unsaved_until_it_succeeds(tmp_path):
    """A publisher that fails keeps the alarm unsaved (re-announced after a crash), not lost."""
    service, state_dir = service_at(tmp_path)
    publisher = FakePublisher(state_dir, fail=True)
    service.publisher = publisher  # type: ignore[assignment]
    tick_until_transition(service, publisher)
    assert stored_rules(state_dir) == []
    publisher.fail = False
    service.alarm_tick()
    assert stored_rules(state_dir) == ["R9"]


def test_alarm_delivery_without_mqtt_still_saves_state(tmp_path):
    """With MQTT disabled (no publisher) each tick saves the alarm state itself."""
    service, state_dir = service_at(tmp_path)
    assert service.publisher is None
    for _ in range(5):
        service.alarm_tick()
        if service.engine.active():
            break
    assert [a.rule for a in service.engine.active()] == ["R9"]
    assert stored_rules(state_dir) == ["R9"]


def test_alarm_engine_without_autocommit_saves_only_on_commit(tmp_path):
    """autocommit=False: evaluate leaves the store alone; commit() writes what changed."""
    path = tmp_path / STORE
    engine = AlarmEngine(
        ThermalSettings(), [Site("site", 3000)], store=AlarmStore(path), autocommit=False
    )
    assert [t.rule for t in engine.evaluate(0.0, [])] == ["R9"]
    assert stored_rules(tmp_path) == []
    assert engine.commit()
    assert stored_rules(tmp_path) == ["R9"]
