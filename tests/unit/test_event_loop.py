"""agent.event_loop: the loop the daemon and its front run on."""

from __future__ import annotations

import asyncio

import pytest

from agent import event_loop
from agent.config import AgentSection


async def _kind() -> str:
    await asyncio.sleep(0)
    return event_loop.running()


def test_event_loop_default_is_uvloop():
    """A config that says nothing selects uvloop."""
    assert AgentSection().event_loop == "uvloop"


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_event_loop_run_uses_the_selected_loop(kind):
    """``run`` runs the coroutine on a new loop of the selected kind and returns its result."""
    assert event_loop.run(_kind(), kind) == kind


def test_event_loop_unknown_kind_is_a_config_error():
    """Any other value of agent.event_loop is refused by the config model."""
    with pytest.raises(ValueError, match="event_loop"):
        AgentSection.model_validate({"event_loop": "trio"})
