"""The core of the session host (host.py): its state, which session a call names, and
the rules every change goes through (room within the reserved revisions, ``expect``,
recording a change in the change log). Sans-I/O, like state.py: the clock and the id
source are handed in. The kinds of change build on this class: hostchanges.py (one
session's parts), hostleases.py (leases, fencing), hosttransact.py (transactions) and
host.py (the sessions themselves, replay, what to write).

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
from functools import partial
from typing import Any

import msgspec
from msgspec import UNSET, Raw

from sessionmem import errors
from sessionmem import protocol as p

from .changelog import ChangeLog
from .leases import Leases
from .state import SessionState
from .undo import Mark, Undo

BLOCK = 1_000_000  # revisions reserved at a time

encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
FRAME_HEAD = b'{"jsonrpc":"2.0","method":"changed","params":'  # a change's notification, before its params


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


def no_such_session(sid: str) -> errors.NoSuchSession:
    return errors.NoSuchSession(f"no such session: {sid!r}", {"sessionId": sid})


class HostCore:
    """The host's state and the rules of every change; SessionHost (host.py) is what
    the daemon uses."""

    def __init__(
        self,
        current: SessionState,
        known: dict[str, int],
        revision: int,
        log: ChangeLog,
        now_ms: Callable[[], int],
        new_id: Callable[[], str],
        max_messages: int | None = None,
    ) -> None:
        self.current_id = current.session_id
        self.loaded: dict[str, SessionState] = {current.session_id: current}
        # Every session: id -> revision of its last change (of a loaded one, its
        # state's ``revision`` is the newer: known is brought up to date when it is dropped).
        self.known = known
        self.known.setdefault(current.session_id, current.revision)
        self.revision = revision
        self.reserved = revision  # the durable mark; raised by saved()
        self._watermark = revision  # see _check_room
        self.closing = False  # the final batch was taken: no change may follow it
        self.log = log
        self.max_messages = max_messages
        self._now = now_ms
        self._new_id = new_id
        self._drained = revision  # the revision of the last drain
        self._logged = revision  # the changes up to here are in (or on their way to) the log on disk
        # The previous run's change log is being read (after the first answers): the copy
        # on disk is not trimmed meanwhile.
        self.log_loading = False
        self._reserving: int | None = None
        # Sessions changed since the last drain with marks (see Batch.marks): a drain
        # without them (durability=always's commits) writes their rows and keeps them.
        self._dirty: dict[str, None] = {}
        self._deleted: list[str] = []
        self._current_moved = False
        # Idle tracking without a clock: the sweeper advances ``tick``; each use of a
        # session stamps it.
        self.tick = 0
        self._used: dict[str, int] = {}
        self._unsaved_current(current)
        # Called after each change (the feed schedules its flush here).
        self.on_change: Callable[[], None] = lambda: None
        # Called once half the reserved block is used: the shell writes a batch now, which
        # carries the next reservation (drain), instead of waiting for the snapshot timer.
        self.on_reserve: Callable[[], None] = lambda: None
        # The lease table (leases.py), and what is called when its next expiry may have
        # moved (the lifecycle's lease timer re-arms).
        self.leases = Leases()
        self.on_leases: Callable[[], None] = lambda: None
        # Several daemons on one store: other daemons' changes are replayed (replay.py).
        self.replays = False
        self.replays_since = revision  # the first revision replayed here is after this
        # A write turn (turns.py) is running: every change records its inverse (undo.py).
        self.undo: Undo | None = None
        self._turn_base = revision

    def set_reserved(self, mark: int) -> None:
        """The durable mark at start (store.reserve_revisions)."""
        self.reserved = mark
        self._watermark = mark - BLOCK // 2

    def _unsaved_current(self, s: SessionState) -> None:
        """A current session that is not in the database yet (a new one at start or
        after restoring an empty file) is written, and made current there, by the next
        snapshot."""
        if s.pending_changes:
            self._dirty[s.session_id] = None
            self._current_moved = True

    # -- a write turn that may be undone (undo.py) ------------------------------------
    def begin_turn(self) -> None:
        """From now on until :meth:`end_turn`, every change can be undone. What the
        turn's drain resets (the unwritten sessions, deletions, leases) is put back last."""
        u = self.undo = Undo()
        self._turn_base = self.revision
        saved = (self.revision, self.current_id, self._current_moved, dict(self._dirty), list(self._deleted),
                 self._drained, self._logged, self._reserving, self._watermark, dict(self.leases.dirty))
        u.add(lambda: self._put_turn_back(saved))
        leases = self.leases
        leases.undo = u.steps
        u.touched.append(leases.stop_undo)
        for sid in self._dirty:  # this daemon's changes made between turns: drained by this one
            s = self.loaded.get(sid)
            if s is not None:
                s.checkpoint(u)

    def _put_turn_back(self, saved: tuple) -> None:  # type: ignore[type-arg]
        (revision, self.current_id, self._current_moved, self._dirty, self._deleted, self._drained,
         self._logged, self._reserving, self._watermark, self.leases.dirty) = saved
        self.log.truncate(revision)
        self.revision = revision

    @property
    def settled_revision(self) -> int:
        """The revision no undo can take back: while a turn runs, the one before it."""
        return self.revision if self.undo is None else self._turn_base

    def call_begins(self) -> Mark:
        u = self.undo
        assert u is not None
        mark = u.mark(self.revision)
        u.add(partial(setattr, self, "_dirty", dict(self._dirty)))  # (a few sessions)
        return mark

    def call_undone(self, mark: Mark) -> None:
        """A call of the turn broke: what it changed is undone, the rest of the turn stays."""
        assert self.undo is not None
        self.undo.run_back_to(mark.steps)
        self.log.truncate(mark.revision)
        self.revision = mark.revision

    def end_turn(self, committed: bool) -> None:
        """The turn is settled: committed (its changes stay), or not (every one of them
        is undone: memory is what the store held before it). Then what waited for it."""
        u = self.undo
        if u is None:
            return
        if not committed:
            u.run_back_to(0)
            self.on_leases()
        self.undo = None
        u.settle()

    def _touch(self, s: SessionState) -> None:
        """``s`` is about to change: within a turn, its changes become undoable."""
        if self.undo is not None:
            s.checkpoint(self.undo)

    # -- which session ----------------------------------------------------------------
    @property
    def current(self) -> SessionState:
        return self.loaded[self.current_id]

    def resolve(self, ref: str | p.UnsetType) -> str:
        """The id a ``session`` param names (absent: the current); NoSuchSession when none."""
        if ref is UNSET:
            return self.current_id
        if ref not in self.known:
            raise no_such_session(ref)  # type: ignore[arg-type]
        return ref  # type: ignore[return-value]

    def get(self, sid: str) -> SessionState | None:
        """The session in memory, or None (then loader.py loads it)."""
        s = self.loaded.get(sid)
        if s is not None:
            self._used[sid] = self.tick
        return s

    # -- the rules every change goes through ------------------------------------------
    def _check_room(self) -> None:
        # One comparison on the hot path: the watermark is half a block below the
        # durable mark while no reservation is under way, the mark itself while one is.
        if self.revision >= self._watermark:
            self._room()

    def _room(self) -> None:
        if self.revision < self.reserved:
            # Half the block is used: reserve the next one now, on the writer thread,
            # whatever the snapshot timer says (the shell writes it at once).
            self._watermark = self.reserved
            self.on_reserve()
            return
        if self.closing:
            raise errors.ShuttingDown("daemon is shutting down; nothing was changed")
        # The loader holds writes back until the next block is durable (has_room), so
        # this is reached only if a change bypassed it: refuse, changing nothing.
        raise errors.PersistFailed(
            "no revision is reserved durably yet (the next block is still being written to the "
            "database); nothing was changed, retry", {"revision": self.revision},
        )

    @property
    def has_room(self) -> bool:
        """A change may take the next revision now (one within the durable mark)."""
        return self.revision < self.reserved

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
        sid = change.sessionId
        s = self.loaded.get(sid)  # None: a deleted one (clear's change names the old session)
        if s is not None:
            if self.undo is not None:  # a change naming it (made current, say): its revision too
                s.checkpoint(self.undo)
            s.revision = change.revision
            self._dirty[sid] = None
        self.log.append(change.revision, sid, b"%s%s}\n" % (FRAME_HEAD, encode(change)))
        self.on_change()

    def _next(self, op: str, session_id: str, **fields: Any) -> p.Change:
        self.revision += 1
        return p.Change(revision=self.revision, sessionId=session_id, op=op, at=self._now(), **fields)

    def room_for(self, n: int) -> bool:
        """``n`` changes may take their revisions now (within the durable mark)."""
        return self.revision + n <= self.reserved
