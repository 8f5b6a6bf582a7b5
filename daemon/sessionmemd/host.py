"""The session the daemon serves and the rules of every change to it: revisions,
conditional writes (``expect``), message ids, the change log. Sans-I/O, like state.py:
the clock and the id source are handed in; writing to disk is persist.py's job and
sending the feed is feed.py's.

Revisions. One counter per database; every call that changes something is one
change and takes the next revision, and the change's ``changed`` notification is
encoded once, into the change log. A revision is never handed out twice, even after
a kill -9 in periodic mode: like PostgreSQL's sequence cache, numbers are reserved
in durable blocks. At start the daemon takes the reserved mark R from the database
and durably reserves R+BLOCK before serving (store.reserve_revisions); revisions
R+1, R+2, ... are then safe to hand out, and while they are, the next block is
reserved through an ordinary snapshot. A crash skips the rest of a block; a clean
stop writes the exact last revision as the mark, so the feed resumes without a gap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from msgspec import UNSET, Raw

from sessionmem import errors
from sessionmem import protocol as p

from .changelog import ChangeLog
from .state import Changes, Restored, SessionState

BLOCK = 1_000_000  # revisions reserved at a time

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
_FRAME_HEAD = b'{"jsonrpc":"2.0","method":"changed","params":'


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality of decoded values: unlike Python's ==, true is not 1 (a number
    is still equal to the same number written as a float: JSON has one number type)."""
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if isinstance(a, dict):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(json_equal(v, b[k]) for k, v in a.items()))
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(json_equal, a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


class SessionHost:
    def __init__(
        self,
        state: SessionState,
        revision: int,
        log: ChangeLog,
        now_ms: Callable[[], int],
        new_id: Callable[[], str],
    ) -> None:
        self.state = state
        self.revision = revision
        self.reserved = revision  # the durable mark; raised by reserve()/saved()
        self.log = log
        self._now = now_ms
        self._new_id = new_id
        self._drained = revision  # the revision of the last drain
        self._reserving: int | None = None
        # Called after each change (the feed schedules its flush here).
        self.on_change: Callable[[], None] = lambda: None

    # -- the rules every change goes through ------------------------------------------
    def _check_room(self) -> None:
        if self.revision >= self.reserved:
            raise errors.PersistFailed(
                "no revision is reserved durably yet (the database has not confirmed the next "
                "block: is the disk full?); nothing was changed, retry",
                {"revision": self.revision},
            )

    def _expect(self, expect: Raw | p.UnsetType, current: Callable[[], bytes | None]) -> None:
        """Raise Conflict unless ``expect`` is absent or equals the value now (its JSON from
        ``current``, None when unset or absent; asked for only when there is an expect)."""
        if expect is UNSET:
            return
        now = current() or b"null"
        if not json_equal(_decode(now), _decode(expect)):  # type: ignore[arg-type]
            raise errors.Conflict(
                "conflict: the current value is not the one expected; nothing was changed",
                {"current": Raw(now), "revision": self.revision},
            )

    def _record(self, change: p.Change) -> None:
        self.log.append(change.revision, change.sessionId, b"%s%s}\n" % (_FRAME_HEAD, _encode(change)))
        self.on_change()

    def _next(self, op: str, session_id: str | None = None, **fields: Any) -> p.Change:
        self.revision += 1
        return p.Change(revision=self.revision, sessionId=session_id or self.state.session_id,
                        op=op, at=self._now(), **fields)

    # -- changes ------------------------------------------------------------------------
    def set_current_task(self, task: str | None, expect: Raw | p.UnsetType = UNSET) -> None:
        s = self.state
        self._expect(expect, lambda: _encode(s.current_task))
        self._check_room()
        if s.set_current_task(task):
            self._record(self._next("setCurrentTask", task=task))

    def set_active_ticket(self, ticket: str | None, expect: Raw | p.UnsetType = UNSET) -> None:
        s = self.state
        self._expect(expect, lambda: _encode(s.active_ticket))
        self._check_room()
        if s.set_active_ticket(ticket):
            self._record(self._next("setActiveTicket", ticketId=ticket))

    def add_message(self, role: str, content: str, timestamp: int | None, msg_id: str | None) -> None:
        # The hot path of every agent: _next/_record written out, one clock read.
        self._check_room()
        now = self._now()
        encoded = self.state.add_message(role, content, now if timestamp is None else timestamp, msg_id)
        if encoded is None:
            return
        self.revision = rev = self.revision + 1
        change = p.Change(revision=rev, sessionId=self.state.session_id, op="addMessage", at=now,
                          message=Raw(encoded))  # type: ignore[arg-type]  # encoded once, as is
        if msg_id is not None:
            change.messageId = msg_id
        self._record(change)

    def track_file(self, path: str) -> None:
        self._check_room()
        if self.state.track_file(path):
            self._record(self._next("trackOpenFile", filePath=path))

    def untrack_file(self, path: str) -> None:
        self._check_room()
        if self.state.untrack_file(path):
            self._record(self._next("untrackFile", filePath=path))

    def set_context(self, key: str, value: bytes, expect: Raw | p.UnsetType = UNSET) -> None:
        s = self.state
        self._expect(expect, lambda: s.context_json(key))
        self._check_room()
        if s.set_context(key, value):
            self._record(self._next("setContext", key=key, value=Raw(value)))

    def delete_context(self, key: str, expect: Raw | p.UnsetType = UNSET) -> None:
        s = self.state
        self._expect(expect, lambda: s.context_json(key))
        self._check_room()
        if s.delete_context(key):
            self._record(self._next("deleteContext", key=key))

    def clear(self) -> str:
        """A new, empty current session; the old one is deleted (the original's clear)."""
        self._check_room()
        old = self.state.session_id
        self.state.clear(self._new_id(), self._now())
        self._record(self._next("clear", old, newSessionId=self.state.session_id))
        return self.state.session_id

    def restored(self, r: Restored | None) -> None:
        """The session reloaded from its last snapshot (``restore``): a change too."""
        self._check_room()
        s = self.state
        self.state = SessionState(s.session_id, s.start_time) if r is None else SessionState.from_restored(r)
        self._reserving = None  # a reservation among the dropped batches is void
        self._record(self._next("restore"))

    # -- persistence ----------------------------------------------------------------------
    @property
    def pending_changes(self) -> int:
        return self.state.pending_changes + (self.revision != self._drained)

    def drain(self) -> Changes | None:
        """What to write now: the session's changed rows, and a reservation of the next
        block of revisions once half of the current one is used. None: nothing to do."""
        reserve = None
        if self._reserving is None and self.revision > self.reserved - BLOCK // 2:
            reserve = self._reserving = self.revision + BLOCK
        ch = self.state.drain()
        if ch is None and reserve is None:
            self._drained = self.revision
            return None
        if ch is None:
            ch = self.state.identity()
        ch.revision = self._drained = self.revision
        ch.reserve = reserve
        return ch

    def everything(self) -> Changes:
        """The whole session for a new, empty database file, with the reserved mark."""
        self.drain()
        ch = self.state.everything()
        ch.revision = self.revision
        ch.reserve = self.reserved
        return ch

    def final(self) -> Changes:
        """The last batch of a clean stop: what is left, the exact last revision as the
        reserved mark (the next start continues without a gap) and the change log."""
        ch = self.drain() or self.state.identity()
        ch.revision = self.revision
        ch.reserve = self.revision
        ch.change_log = self.log.entries()
        return ch

    def saved(self, ch: Changes) -> None:
        """A batch is committed: its reservation now holds."""
        if ch.reserve is not None and ch.change_log is None:
            self.reserved = max(self.reserved, ch.reserve)
            if ch.reserve == self._reserving:
                self._reserving = None
