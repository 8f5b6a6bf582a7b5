"""The host's ``transact``: decided on a dry run (transact.py), then each op applied
through the host's own change method (hostchanges.py), fenced by a lease
(hostleases.py). Sans-I/O (hostcore.py)."""

from __future__ import annotations

from typing import Any

from msgspec import UNSET

from sessionmem import errors
from sessionmem import protocol as p

from .hostchanges import SessionChanges
from .hostleases import LeaseChanges
from .state import SessionState
from .transact import DryRun, Op, failed_at


class TransactChanges(SessionChanges, LeaseChanges):
    """``transact``: several changes to one session, all or none."""

    # -- transactions -----------------------------------------------------------------------
    def transact(self, s: SessionState, ops: list[Op], expect_revision: int | None = None,
                 lease: p.LeaseRef | p.UnsetType = UNSET) -> list[Any]:
        """Apply ``ops`` to ``s`` all or none (transact.py): decided on a dry run first,
        then applied, each op its own revision, none between them. One clock reading
        for all of them: a condition checked on the dry run sees what is then applied.
        ``lease``: the whole transaction is fenced by it."""
        self.fence(lease)
        if expect_revision is not None and s.revision != expect_revision:
            raise errors.Conflict(
                f"conflict: session {s.session_id!r} is at revision {s.revision}, not {expect_revision}; "
                f"the transaction changed nothing", {"current": s.revision, "revision": self.revision})
        now = self._now()
        dry = DryRun(s, now, self.max_messages)
        for i, op in enumerate(ops):
            try:
                dry.run(op, self._expect)
            except errors.SessionmemError as e:
                raise failed_at(i, op, e) from None
        if not self.room_for(len(ops)):  # the loader waited for room: only a bypass gets here
            self._room()
        clock = self._now
        self._now = lambda: now
        try:
            return [self._apply(s, op) for op in ops]
        finally:
            self._now = clock

    def _apply(self, s: SessionState, op: Op) -> Any:
        """One op of a decided transaction: its conditions held on the dry run."""
        a = op.params
        m = op.method
        if m == "addMessage":
            ts = a.timestamp if type(a.timestamp) is int else None
            return self.add_message(s, a.role, a.content, ts, None if a.id is UNSET else a.id,
                                    None if a.data is UNSET else bytes(a.data))
        if m == "setCurrentTask":
            return self.set_current_task(s, a.task)
        if m == "setActiveTicket":
            return self.set_active_ticket(s, a.ticketId)
        if m == "setContext":
            return self.set_context(s, a.key, bytes(a.value))
        if m == "deleteContext":
            return self.delete_context(s, a.key)
        if m == "trackOpenFile":
            return self.track_file(s, a.filePath)
        if m == "untrackFile":
            return self.untrack_file(s, a.filePath)
        if m == "popMessage":
            return self.pop_message(s)
        if m == "trimMessages":
            return self.trim_messages(s, a.keep)
        raise AssertionError(f"not an op: {m}")  # decode_ops admits only OPS
