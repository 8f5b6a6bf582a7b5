"""The sessions the daemon serves and the rules of every change to them: revisions,
conditional writes (``expect``), message ids, the change log, which session is current,
which are in memory. Sans-I/O, like state.py: the clock and the id source are handed
in; loading a session is loader.py's job, writing to disk persist.py's and sending the
feed feed.py's.

Sessions. The database holds any number; ``known`` names every one (id -> revision of
its last change), ``loaded`` holds those in memory. A session is loaded on first use
(loader.py) and dropped after a while idle once its changes are written
(:meth:`unload_idle`); the current session is always loaded. Every change method takes
the loaded :class:`SessionState` it applies to.

The rules every change goes through, and the kinds of change, are built up in
layers: hostcore.py (state, revisions, the rules), hostchanges.py (one session's
parts), hostleases.py (leases, fencing), hosttransact.py (transactions); this module
adds the sessions themselves, replay's hooks and what to write (drain).
"""

from __future__ import annotations

from functools import partial

from sessionmem import errors
from sessionmem import protocol as p

from . import replay
from .hostcore import BLOCK, no_such_session
from .hosttransact import TransactChanges
from .leases import LeaseRow
from .batch import Batch
from .state import SessionState


class SessionHost(TransactChanges):
    """The sessions the daemon serves, and every change to them (see the modules above)."""

    def adopt(self, state: SessionState) -> None:
        """A session the loader read from the database, now in memory. Several daemons on
        one store (``replays``): brought forward by what was replayed while it was read."""
        if (self.replays and state.session_id != self.current_id
                and not replay.catch_up(state, self.log, self.replays_since)):
            raise errors.PersistFailed(f"session {state.session_id!r} changed on another daemon while it "
                                       f"was read here; nothing was changed, retry")
        self.loaded[state.session_id] = state
        self._used[state.session_id] = self.tick
        # Several daemons: no change outside a write turn (the next append trims it there).
        if (self.max_messages is not None and not self.replays and state.complete
                and state.messages_count > self.max_messages):
            self.trim_messages(state, self.max_messages)

    def unload_idle(self, idle_since: int, busy: set[str]) -> list[str]:
        """Drop sessions unused since tick ``idle_since`` whose changes are all drained
        (the caller has written them). Never the current one, one with older history
        still loading, or one with calls waiting (``busy``); none while a turn may
        still be undone (undo.py)."""
        if self.undo is not None:
            return []
        gone = [sid for sid, s in self.loaded.items()
                if sid != self.current_id and self._used.get(sid, -1) < idle_since
                and not s.pending_changes and sid not in self._dirty and s.complete
                and sid not in busy]
        for sid in gone:
            self.known[sid] = self.loaded.pop(sid).revision
            self._used.pop(sid, None)
        return gone

    # -- sessions -------------------------------------------------------------------------
    def _check_free(self, sid: str) -> None:
        if sid in self.known:
            raise errors.SessionExists(f"a session {sid!r} exists already; nothing was created",
                                       {"sessionId": sid})

    def _add(self, s: SessionState, make_current: bool, change: p.Change) -> str:
        sid = s.session_id
        self.loaded[sid] = s
        self._used[sid] = self.tick
        self.known[sid] = 0
        if self.undo is not None:
            self.undo.add(lambda: self._unadd(sid))
        if make_current:
            self._make_current(sid)
            change.current = sid
        self._record(change)
        return sid

    def create_session(self, sid: str | None, fork: SessionState | None = None,
                       up_to: int | None = None, make_current: bool = False) -> str:
        """A new session: empty, or a copy of ``fork`` (complete) with its first ``up_to``
        messages (all when None). One change, even when it is also made current."""
        self._check_room()
        if sid is None:
            sid = self._new_id()
        self._check_free(sid)
        now = self._now()
        if fork is None:
            s = SessionState(sid, now)
            change = self._next("createSession", sid)
        else:
            n = fork.messages_count if up_to is None else min(up_to, fork.messages_count)
            s = SessionState.built(sid, now, fork.current_task, fork.active_ticket,
                                   fork.message_log().prefix(n), fork.open_files(), dict(fork.context_items()))
            change = self._next("createSession", sid, forkFrom=fork.session_id, forkUpTo=n)
        if self.max_messages is not None:
            s.trim_messages(self.max_messages)
        return self._add(s, make_current, change)

    def import_session(self, s: SessionState, make_current: bool) -> str:
        """A session built from exported records (records.py)."""
        self._check_room()
        self._check_free(s.session_id)
        if self.max_messages is not None:
            s.trim_messages(self.max_messages)
        return self._add(s, make_current, self._next("importSession", s.session_id))

    def _unadd(self, sid: str) -> None:
        """Undo (undo.py): a session made in the turn is gone again."""
        self.loaded.pop(sid, None)
        self.known.pop(sid, None)
        self._used.pop(sid, None)
        self._dirty.pop(sid, None)

    def _make_current(self, sid: str) -> None:
        if self.undo is not None:
            self.undo.add(partial(self._put_current_back, self.current_id, self._current_moved))
        self.current_id = sid
        self._current_moved = True

    def _put_current_back(self, sid: str, moved: bool) -> None:
        self.current_id, self._current_moved = sid, moved

    def set_current_session(self, sid: str) -> None:
        """Make ``sid`` (loaded) current: a change, unless it is already."""
        if sid == self.current_id:
            return
        self._check_room()
        self._make_current(sid)
        self._record(self._next("setCurrentSession", sid, current=sid))

    def delete_session(self, sid: str) -> None:
        if sid == self.current_id:
            raise errors.SessionIsCurrent(
                f"session {sid!r} is the current one and was not deleted: make another "
                f"current first (setCurrentSession)", {"sessionId": sid})
        if sid not in self.known:
            raise no_such_session(sid)
        self._check_room()
        self._forget(sid)
        self._record(self._next("deleteSession", sid))

    def _forget(self, sid: str) -> None:
        if self.undo is not None:
            self.undo.add(partial(self._unforget, sid, self.known[sid], self.loaded.get(sid), sid in self._dirty))
        del self.known[sid]
        self.loaded.pop(sid, None)
        self._used.pop(sid, None)
        self._dirty.pop(sid, None)
        self._deleted.append(sid)

    def _unforget(self, sid: str, revision: int, state: SessionState | None, dirty: bool) -> None:
        """Undo (undo.py): a session deleted in the turn is back as it was."""
        self.known[sid] = revision
        if state is not None:
            self.loaded[sid] = state
            self._used[sid] = self.tick
        if dirty:
            self._dirty[sid] = None
        deleted = self._deleted  # the last time it was deleted is the one undone (unless drained)
        if sid in deleted:
            del deleted[len(deleted) - 1 - deleted[::-1].index(sid)]

    def clear(self) -> str:
        """The original's ``clear``: a new, empty current session; the old one deleted."""
        self._check_room()
        old = self.current_id
        new = self._new_id()
        s = SessionState(new, self._now())
        self.loaded[new] = s
        self.known[new] = 0
        if self.undo is not None:
            self.undo.add(lambda: self._unadd(new))
        self._make_current(new)
        self._forget(old)
        self._record(self._next("clear", old, newSessionId=new, current=new))
        self._dirty[new] = None
        s.revision = self.revision
        return new

    def _reloaded(self, current: SessionState, known: dict[str, int]) -> None:
        """Memory is ``current`` alone, every other session only known (by revision)."""
        self.loaded = {current.session_id: current}
        self.known = known
        self.known.setdefault(current.session_id, current.revision)
        self.current_id = current.session_id
        self._used = {current.session_id: self.tick}
        self._dirty = {}
        self._deleted = []
        self._current_moved = False
        self._unsaved_current(current)

    def restored(self, current: SessionState, known: dict[str, int]) -> None:
        """Every session reloaded from the last snapshot (``restore``): a change too."""
        self._check_room()
        self._reloaded(current, known)
        self._reserving = None  # a reservation among the dropped batches is void
        self._watermark = self.reserved - BLOCK // 2
        self._record(self._next("restore", current.session_id, current=current.session_id))

    def resynced(self, current: SessionState, known: dict[str, int], committed: int,
                 lease_rows: list[LeaseRow]) -> int:
        """Back to what the store holds (several daemons on PostgreSQL, turns.py: after a
        turn the store failed, or one that could not replay without a gap): the sessions
        as reloaded, the revision of the last committed change, the leases as stored.
        What was applied in memory after ``committed`` is gone, not recorded as a change
        (it was never committed, published or acknowledged; its revisions are handed out
        again). The ephemeral leases of connections still open stay when the store still
        has them with a live holder (after a reconnect it does not: they end). Returns
        how many changes were dropped."""
        self._reloaded(current, known)
        dropped = self.log.truncate(committed)
        self.revision = self._drained = committed
        self._logged = min(self._logged, committed)
        self._reserving = None  # a reservation among the lost batches is void
        self._watermark = self.reserved - BLOCK // 2
        # The store's leases (ephemeral ones too), this daemon's connections kept on those
        # it still holds by a committed change (leases.Leases.reloaded).
        self.leases = self.leases.reloaded(lease_rows, self._now(), upto=committed)
        self.on_leases()
        return dropped

    # -- several daemons on one store (replay.py) ---------------------------------------
    def drop_replayed(self, sid: str, deleted: bool = False) -> None:
        """Another daemon deleted ``sid`` (or changed it in a way that is read anew): out
        of memory, and out of the catalogue when deleted. Nothing is written for it."""
        self.loaded.pop(sid, None)
        self._used.pop(sid, None)
        self._dirty.pop(sid, None)
        if deleted:
            self.known.pop(sid, None)

    def absorb_replayed(self, keep: set[str] | frozenset[str] = frozenset()) -> None:
        """What replay changed in memory is what the store holds already: nothing of it
        is to be written (the sessions' deltas, the log rows, the leases). ``keep``: the
        sessions whose own unwritten changes stay (a new current session made at start,
        which takes no revision)."""
        for sid, s in self.loaded.items():
            if sid not in keep:
                s.drain()
        self._dirty = {sid: None for sid in self._dirty if sid in keep and sid in self.loaded}
        self._deleted = []
        self._current_moved = self._current_moved and self.current_id in keep
        self.leases.dirty = {}
        self._logged = self._drained = self.revision

    def own_dirty(self) -> set[str]:
        """The sessions with changes of this daemon not yet drained."""
        return set(self._dirty)

    def own_changes_pending(self) -> bool:
        """Changes made here and not yet drained (shared mode: none between turns)."""
        return bool(self._dirty or self._deleted or self._current_moved or self.leases.dirty
                    or self.revision != self._drained)

    # -- persistence ----------------------------------------------------------------------
    @property
    def pending_changes(self) -> int:
        loaded = self.loaded
        rows = sum(loaded[sid].pending_changes for sid in self._dirty if sid in loaded)
        return (rows + len(self._deleted) + self._current_moved + (self.revision != self._drained)
                + len(self.leases.dirty))

    @property
    def marks_pending(self) -> bool:
        """Sessions' last revisions, or changes for the log on disk, not written yet (the
        periodic snapshot writes them)."""
        return bool(self._dirty) or self.revision > self._logged

    def drain(self, marks: bool = True) -> Batch | None:
        """What to write now: the changed sessions' rows, the deleted sessions, the
        current pointer, and a reservation of the next block of revisions once half of
        the current one is used; with ``marks``, each changed session's last revision
        (see Batch.marks). None: nothing to do."""
        reserve = None
        if self._reserving is None and self.revision >= self.reserved - BLOCK // 2:
            reserve = self._reserving = self.revision + BLOCK
        batch = Batch(deleted=self._deleted, current=self.current_id if self._current_moved else None,
                      reserve=reserve)
        loaded = self.loaded
        for sid in self._dirty:
            s = loaded[sid]
            ch = s.drain()
            if ch is not None:
                batch.sessions.append(ch)
            if marks:
                batch.marks.append((sid, s.revision))
        if marks:
            self._dirty = {}
            if self.revision > self._logged:
                batch.log_rows = self.log.entries_after(self._logged)
                self._logged = self.revision
                if not self.log_loading:
                    batch.log_floor = self.log.oldest
        self._deleted = []
        self._current_moved = False
        batch.leases = self.leases.drain()
        if not batch.sessions and not batch.deleted and not batch.marks and batch.current is None \
                and not batch.leases and reserve is None and not batch.log_rows and self.revision == self._drained:
            return None
        batch.revision = self._drained = self.revision
        return batch

    def final(self) -> Batch:
        """The last batch of a clean stop: what is left (the last changes for the log
        on disk among it) and the exact last revision as the reserved mark, so the next
        start continues without a gap and finds the log on disk complete up to it."""
        self.closing = True
        self.reserved = self._watermark = self.revision  # nothing more is handed out
        batch = self.drain() or Batch(revision=self.revision)
        batch.reserve = self.revision
        batch.final = True
        return batch

    def saved(self, batch: Batch) -> None:
        """A batch is committed: its reservation now holds."""
        if batch.reserve is not None and not batch.final:
            self.reserved = max(self.reserved, batch.reserve)
            if batch.reserve == self._reserving:
                self._reserving = None
                self._watermark = self.reserved - BLOCK // 2
