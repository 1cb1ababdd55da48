"""An asyncio event loop on a virtual clock: timers fire at once, in order, at their exact time.

Code under test that schedules with ``loop.time()`` and ``asyncio.sleep`` (the poller) runs
unchanged, but whenever the loop would block waiting for its next timer, the clock jumps to that
timer instead. A test then observes the exact schedule (no load, no slack, no real waiting), and a
deadline (``asyncio.timeout``) is a deadline in virtual time. Real I/O still works: the loop
checks the selector without blocking first, and blocks for real only when no timer is pending.

    result = run_virtual(main())   # like asyncio.run, on a fresh VirtualTimeLoop
"""

from __future__ import annotations

import asyncio
import selectors
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Coroutine, Mapping

T = TypeVar("T")


class _Selector(selectors.BaseSelector):
    """The default selector, except that a wait with a timeout advances the virtual clock."""

    def __init__(self) -> None:
        self._real = selectors.DefaultSelector()
        self.loop: VirtualTimeLoop | None = None

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # nothing scheduled: only real I/O can wake the loop
            return self._real.select(None)
        assert self.loop is not None
        self.loop.advance(timeout)
        return []

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` is virtual, starting at ``start``."""

    def __init__(self, start: float = 1_000.0) -> None:
        """Start the clock at ``start`` seconds."""
        self._virtual_now = start
        selector = _Selector()
        super().__init__(selector)
        selector.loop = self

    def time(self) -> float:
        """The virtual clock."""
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (the loop does this itself when it would wait for a timer)."""
        self._virtual_now += max(0.0, seconds)


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh :class:`VirtualTimeLoop`."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coro)
