"""The outbox against a model: order, bound and drop accounting hold under any operation sequence."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent.mqtt.events import Outgoing
from agent.mqtt.outbox import Outbox

BOUND = 12


class OutboxMachine(RuleBasedStateMachine):
    """Random puts (telemetry/alarms), acks of the oldest rows and reopenings vs a list model."""

    def __init__(self) -> None:
        """A fresh outbox in a temp dir and an empty model."""
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="outbox-model-"))
        self.box = Outbox(self.dir, max_messages=BOUND)
        self.model: list[tuple[str, bool]] = []  # (payload, droppable), oldest first
        self.dropped = 0
        self.n = 0

    def _msg(self, *, droppable: bool) -> Outgoing:
        self.n += 1
        name = f"{'t' if droppable else 'a'}{self.n}"
        return Outgoing(
            "p/t", name.encode(), qos=0 if droppable else 1, retain=False, droppable=droppable
        )

    @rule(kinds=st.lists(st.booleans(), min_size=1, max_size=6))
    def put(self, kinds: list[bool]) -> None:
        """Queue a batch; the model evicts the oldest droppable rows over the bound."""
        batch = [self._msg(droppable=k) for k in kinds]
        self.box.put(batch)
        self.model.extend((m.payload.decode(), m.droppable) for m in batch)
        while len(self.model) > BOUND:
            victim = next((i for i, (_, d) in enumerate(self.model) if d), None)
            if victim is None:
                break
            del self.model[victim]
            self.dropped += 1

    @precondition(lambda self: bool(self.model))
    @rule(k=st.integers(min_value=1, max_value=5))
    def ack_oldest(self, k: int) -> None:
        """Deliver and ack the k oldest rows."""
        rows = self.box.peek(k)
        self.box.ack(rows)
        del self.model[: len(rows)]

    @rule()
    def reopen(self) -> None:
        """Close and reopen (an agent restart)."""
        self.box.close()
        self.box = Outbox(self.dir, max_messages=BOUND)
        self.dropped = 0  # drop counters are per process, like the metric

    @invariant()
    def same_rows_in_order(self) -> None:
        """The outbox holds exactly the model's rows, oldest first."""
        assert [r.message.payload.decode() for r in self.box.peek(1000)] == [
            p for p, _ in self.model
        ]
        assert self.box.depth == len(self.model)

    @invariant()
    def drops_counted(self) -> None:
        """Every eviction is counted under outbox_full (and nothing else is)."""
        assert self.box.dropped.get("outbox_full", 0) == self.dropped
        assert set(self.box.dropped) <= {"outbox_full"}

    def teardown(self) -> None:
        """Close and delete the temp dir."""
        self.box.close()
        shutil.rmtree(self.dir, ignore_errors=True)


OutboxMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
test_outbox_matches_model = OutboxMachine.TestCase
