"""What a write turn changed in memory, kept so that it can be put back. Sans-I/O.

Several daemons on one PostgreSQL project (turns.py) apply a turn's calls to memory
first and commit them after. When the commit fails, memory must again be what the
store holds, at once and without the store (it may be the thing that is gone): the
reads that keep answering through an outage must never show a change that was not
committed. So while a turn runs, every change to the sessions, the catalogue and the
leases records its inverse here (state.py, messages.py, host*.py), and a failed turn
runs them backwards. A call that breaks in the middle (a bug) is undone alone, back
to the :class:`Mark` taken before it, so nothing half-applied is ever committed.

Cheap by construction: an inverse is a closure over what the change replaced (the old
value of a context key, a popped message's bytes, a count of trimmed messages), never
a copy of a session; a turn that commits just drops the list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

Step = Callable[[], None]


class Mark(NamedTuple):
    """Where a call started: the steps recorded before it, and the revision then."""

    steps: int
    revision: int


class Undo:
    """The inverse steps of one turn, oldest first, and what waits for its end."""

    __slots__ = ("steps", "touched", "after", "calls")

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.calls = 0  # calls begun (mark): a session records its tracking once per call
        # Objects that record steps while the turn runs (sessions, the lease table):
        # told when it ends, so that they stop.
        self.touched: list[Callable[[], None]] = []
        # Work that must not interleave with a turn that may still be undone (older
        # history spliced in front of a session): run once the turn is settled.
        self.after: list[Callable[[], None]] = []

    def add(self, step: Step) -> None:
        self.steps.append(step)

    def mark(self, revision: int) -> Mark:
        """A call begins: where to come back to if it breaks."""
        self.calls += 1
        return Mark(len(self.steps), revision)

    def run_back_to(self, n: int) -> None:
        """Undo the steps recorded after the first ``n``, newest first."""
        steps = self.steps
        while len(steps) > n:
            steps.pop()()

    def settle(self) -> list[Callable[[], None]]:
        """The turn is over (committed, or undone): the touched objects stop recording;
        returns the work that waited for it."""
        for stop in self.touched:
            stop()
        self.steps, self.touched = [], []
        after, self.after = self.after, []
        return after
