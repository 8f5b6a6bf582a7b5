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

from . import replay
from .changelog import ChangeLog
from .leases import Held, LeaseRow, Leases, held_error
from .state import Batch, SessionState
from .transact import DryRun, Op, failed_at

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


def no_such_session(sid: str) -> errors.NoSuchSession:
    return errors.NoSuchSession(f"no such session: {sid!r}", {"sessionId": sid})


class SessionHost:
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
        still loading, or one with calls waiting (``busy``)."""
        gone = [sid for sid, s in self.loaded.items()
                if sid != self.current_id and self._used.get(sid, -1) < idle_since
                and not s.pending_changes and sid not in self._dirty and s.complete
                and sid not in busy]
        for sid in gone:
            self.known[sid] = self.loaded.pop(sid).revision
            self._used.pop(sid, None)
        return gone

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
            s.revision = change.revision
            self._dirty[sid] = None
        self.log.append(change.revision, sid, b"%s%s}\n" % (_FRAME_HEAD, _encode(change)))
        self.on_change()

    def _next(self, op: str, session_id: str, **fields: Any) -> p.Change:
        self.revision += 1
        return p.Change(revision=self.revision, sessionId=session_id, op=op, at=self._now(), **fields)

    # -- changes to one session -------------------------------------------------------------
    def set_current_task(self, s: SessionState, task: str | None, expect: Raw | p.UnsetType = UNSET) -> None:
        self._expect(expect, lambda: _encode(s.current_task))
        self._check_room()
        if s.set_current_task(task):
            self._record(self._next("setCurrentTask", s.session_id, task=task))

    def set_active_ticket(self, s: SessionState, ticket: str | None, expect: Raw | p.UnsetType = UNSET) -> None:
        self._expect(expect, lambda: _encode(s.active_ticket))
        self._check_room()
        if s.set_active_ticket(ticket):
            self._record(self._next("setActiveTicket", s.session_id, ticketId=ticket))

    def add_message(self, s: SessionState, role: str, content: str, timestamp: int | None,
                    msg_id: str | None, data: bytes | None = None) -> None:
        # The hot path of every agent: _next/_record written out, one clock read.
        self._check_room()
        now = self._now()
        encoded = s.add_message(role, content, now if timestamp is None else timestamp, msg_id, data)
        if encoded is None:
            return
        self.revision = rev = self.revision + 1
        change = p.Change(revision=rev, sessionId=s.session_id, op="addMessage", at=now,
                          message=Raw(encoded))  # type: ignore[arg-type]  # encoded once, as is
        if msg_id is not None:
            change.messageId = msg_id
        if data is not None:
            change.data = Raw(data)
        if self.max_messages is not None and s.messages_count > self.max_messages:
            change.removed = s.trim_messages(self.max_messages)
        sid = s.session_id
        s.revision = rev
        self._dirty[sid] = None
        self.log.append(rev, sid, b"%s%s}\n" % (_FRAME_HEAD, _encode(change)))
        self.on_change()

    def track_file(self, s: SessionState, path: str) -> None:
        self._check_room()
        if s.track_file(path):
            self._record(self._next("trackOpenFile", s.session_id, filePath=path))

    def untrack_file(self, s: SessionState, path: str) -> None:
        self._check_room()
        if s.untrack_file(path):
            self._record(self._next("untrackFile", s.session_id, filePath=path))

    def set_context(self, s: SessionState, key: str, value: bytes, expect: Raw | p.UnsetType = UNSET) -> None:
        self._expect(expect, lambda: s.context_json(key))
        self._check_room()
        if s.set_context(key, value):
            self._record(self._next("setContext", s.session_id, key=key, value=Raw(value)))

    def delete_context(self, s: SessionState, key: str, expect: Raw | p.UnsetType = UNSET) -> None:
        self._expect(expect, lambda: s.context_json(key))
        self._check_room()
        if s.delete_context(key):
            self._record(self._next("deleteContext", s.session_id, key=key))

    def pop_message(self, s: SessionState, expect: Raw | p.UnsetType = UNSET) -> Raw | None:
        """Remove the newest message; its full JSON, or None when the session has none.
        ``s`` must have its history loaded when its tail is empty."""
        self._expect(expect, s.newest_message)
        self._check_room()
        plain = s.newest_message()
        popped = s.pop_message()
        if popped is None or plain is None:
            return None
        self._record(self._next("popMessage", s.session_id, message=Raw(plain)))
        return Raw(popped)

    def trim_messages(self, s: SessionState, keep: int) -> int:
        """Keep the newest ``keep`` messages (``s`` complete); how many went."""
        self._check_room()
        removed = s.trim_messages(keep)
        if removed:
            self._record(self._next("trimMessages", s.session_id, removed=removed))
        return removed

    def wipe(self, s: SessionState) -> str:
        """``clear {session}``: empty it, keep its id (``s`` complete)."""
        self._check_room()
        s.wipe()
        self._record(self._next("clear", s.session_id))
        return s.session_id

    # -- transactions -----------------------------------------------------------------------
    def room_for(self, n: int) -> bool:
        """``n`` changes may take their revisions now (within the durable mark)."""
        return self.revision + n <= self.reserved

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

    # -- leases ---------------------------------------------------------------------------
    def now(self) -> int:
        return self._now()

    def fence(self, ref: p.LeaseRef | p.UnsetType) -> None:
        """A mutating call's ``lease``: LeaseHeld unless that lease is held, now, with
        that token. Checked when the call applies, before anything changes."""
        if ref is not UNSET:
            self.leases.check(ref, self._now())  # type: ignore[arg-type]

    def _lease_change(self, op: str, h: Held) -> None:
        change = self._next(op, h.session_id, lease=h.wire())
        self.log.append(change.revision, h.session_id, b"%s%s}\n" % (_FRAME_HEAD, _encode(change)))
        self.on_change()

    def acquire_lease(self, name: str, owner: str, ttl: int | None, sid: str, conn: object) -> p.Lease:
        """Take ``name`` for ``owner``: its token is this change's revision. Held by the
        same owner: renewed, token kept (no change). A lease whose time passed but the
        timer has not ended yet ends first (its own change)."""
        now = self._now()
        leases = self.leases
        h = leases.live(name, now)
        if h is not None:
            if h.owner != owner:
                until = "until its connection closes" if h.expires_at is None else f"until {h.expires_at}"
                raise held_error(name, h, f"held by {h.owner!r} {until}")
            leases.extend(h, ttl, now)
            self.on_leases()
            return h.wire()
        if not self.room_for(2):
            self._room()
        if name in leases.held:
            self._lease_change("leaseExpired", leases.remove(name))
        h = Held(name, owner, self.revision + 1, None if ttl is None else now + ttl, ttl, sid,
                 None if ttl is not None else conn)
        leases.put(h)
        self._lease_change("acquireLease", h)
        self.on_leases()
        return h.wire()

    def renew_lease(self, name: str, token: int, ttl: int | None) -> p.Lease:
        """A new expiry from now (not a change: no revision, no notification; written
        with the next batch)."""
        now = self._now()
        h = self.leases.check(p.LeaseRef(name, token), now)
        self.leases.extend(h, ttl, now)
        self.on_leases()
        return h.wire()

    def release_lease(self, name: str, token: int) -> None:
        self.leases.check(p.LeaseRef(name, token), self._now())
        self._check_room()
        self._lease_change("releaseLease", self.leases.remove(name))
        self.on_leases()

    def expire_leases(self) -> int:
        """End every lease whose time has passed (the lease timer calls this): one
        ``leaseExpired`` change each. How many ended."""
        names = self.leases.due(self._now())
        for name in names:
            self._check_room()
            self._lease_change("leaseExpired", self.leases.remove(name))
        return len(names)

    def connection_closed(self, conn: object) -> int:
        """The ephemeral leases ``conn`` took end now: no longer held from this moment
        (their expiry set to now), their ``leaseExpired`` changes recorded by the lease
        timer, which this wakes."""
        names = self.leases.of_connection(conn)
        if names:
            now = self._now()
            for name in names:
                h = self.leases.held[name]
                h.expires_at = now
                h.conn = None
            self.on_leases()
        return len(names)

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

    def _make_current(self, sid: str) -> None:
        self.current_id = sid
        self._current_moved = True

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
        del self.known[sid]
        self.loaded.pop(sid, None)
        self._used.pop(sid, None)
        self._dirty.pop(sid, None)
        self._deleted.append(sid)

    def clear(self) -> str:
        """The original's ``clear``: a new, empty current session; the old one deleted."""
        self._check_room()
        old = self.current_id
        new = self._new_id()
        s = SessionState(new, self._now())
        self.loaded[new] = s
        self.known[new] = 0
        self._make_current(new)
        self._forget(old)
        self._record(self._next("clear", old, newSessionId=new, current=new))
        self._dirty[new] = None
        s.revision = self.revision
        return new

    def restored(self, current: SessionState, known: dict[str, int]) -> None:
        """Every session reloaded from the last snapshot (``restore``): a change too."""
        self._check_room()
        self.loaded = {current.session_id: current}
        self.known = known
        self.known.setdefault(current.session_id, current.revision)
        self.current_id = current.session_id
        self._used = {current.session_id: self.tick}
        self._dirty = {}
        self._deleted = []
        self._current_moved = False
        self._unsaved_current(current)
        self._reserving = None  # a reservation among the dropped batches is void
        self._watermark = self.reserved - BLOCK // 2
        self._record(self._next("restore", current.session_id, current=current.session_id))

    def resynced(self, current: SessionState, known: dict[str, int], committed: int,
                 lease_rows: list[LeaseRow]) -> int:
        """Back to what the store holds (several daemons on PostgreSQL, turns.py: after a
        turn the store failed, or one that could not replay without a gap): the sessions
        as reloaded, the revision of the last committed change, the ttl leases as stored.
        What was applied in memory after ``committed`` is gone, not recorded as a change
        (it was never committed, published or acknowledged; its revisions are handed out
        again). The ephemeral leases of connections still open stay (they are never
        stored) unless one of them was taken by a lost change. Returns how many changes
        were dropped."""
        self.loaded = {current.session_id: current}
        self.known = known
        self.known.setdefault(current.session_id, current.revision)
        self.current_id = current.session_id
        self._used = {current.session_id: self.tick}
        self._dirty = {}
        self._deleted = []
        self._current_moved = False
        self._unsaved_current(current)
        dropped = self.log.truncate(committed)
        self.revision = self._drained = committed
        self._logged = min(self._logged, committed)
        self._reserving = None  # a reservation among the lost batches is void
        self._watermark = self.reserved - BLOCK // 2
        ephemeral = [h for h in self.leases.held.values() if h.expires_at is None and h.token <= committed]
        self.leases = Leases(lease_rows)
        for h in ephemeral:
            self.leases.held[h.name] = h  # not dirty: an ephemeral lease has no row
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
