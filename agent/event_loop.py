"""Which asyncio event loop the agent and its HTTP front run on: uvloop by default.

uvloop (libuv, the loop of Node.js, packaged for asyncio by the MagicStack team) runs the same
asyncio code with less CPU per socket operation: at 2,000 miners and a 30 s interval, polls
started 2-3.5 ms late on average on asyncio's own loop and 0.35 ms late on uvloop
(docs/reliability.md, docs/performance.md).
``agent.event_loop: asyncio`` selects the standard library's loop instead, e.g. to rule uvloop
out while investigating a problem.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Literal, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from typing import Any

EventLoop = Literal["uvloop", "asyncio"]
"""The values of ``agent.event_loop``."""

_T = TypeVar("_T")


def loop_factory(kind: EventLoop) -> Callable[[], asyncio.AbstractEventLoop]:
    """The constructor of a new loop of ``kind``."""
    if kind == "uvloop":
        import uvloop  # noqa: PLC0415 - only where selected

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def running() -> str:
    """The running loop's kind, for logs: ``"uvloop"`` or ``"asyncio"``."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def run(main: Coroutine[Any, Any, _T], kind: EventLoop) -> _T:
    """Run ``main`` to completion on a new loop of ``kind`` (``asyncio.run`` semantics)."""
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        return runner.run(main)
