"""Leases: named claims with an owner, an expiry and a fencing token. Sans-I/O, like
host.py: the clock is handed in (``now``, epoch ms, the daemon's wall clock, so a ttl
lease's expiry is still counted across a restart), and the host (hostleases.py) turns
what happens here into changes (acquireLease, releaseLease, leaseExpired: one revision
each).

One namespace per project: a lease's ``session`` only says which session it concerns
(for listLeases and the change's sessionId).

A lease is *held* while it is in the table and its time has not passed: an expired
lease that the timer has not removed yet is no longer held (fencing and acquire see
it as gone), so the timer's lateness never lets a stale holder write.

Ephemeral leases (no ttl) end with the connection that took them. With one daemon
(SQLite) they are never written to disk, so a restart, clean or not, ends them too.
Several daemons sharing a PostgreSQL project (``shared``) write them too, so that every
daemon knows them, each row naming its holder (the store connection of the daemon that
granted it, written by the store). The store reads back an ephemeral lease whose
holder is gone (its daemon killed, or disconnected) with an end time, the time it
found it gone: like a lease whose connection closed, it is no longer held, and the
lease timer of whichever daemon turns first ends it with a change (:meth:`reloaded`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sessionmem import errors
from sessionmem import protocol as p

# What the store keeps of a lease: name, owner, token, expiresAt, ttlMs, sessionId. A
# ttl lease has both numbers; an ephemeral one (shared stores only) neither while its
# holder lives, and an end time (no ttl) once the store found its holder gone.
LeaseRow = tuple[str, str, int, int | None, int | None, str]


@dataclass(slots=True)
class Held:
    name: str
    owner: str
    token: int  # the revision of its acquisition
    expires_at: int | None  # epoch ms; None: ephemeral
    ttl_ms: int | None
    session_id: str
    conn: object | None = None  # the connection of an ephemeral lease

    def wire(self) -> p.Lease:
        return p.Lease(name=self.name, owner=self.owner, token=self.token, expiresAt=self.expires_at,
                       sessionId=self.session_id, ttlMs=self.ttl_ms)

    def row(self) -> LeaseRow | None:
        if self.expires_at is None or self.ttl_ms is None:
            return None
        return (self.name, self.owner, self.token, self.expires_at, self.ttl_ms, self.session_id)


def held_error(name: str, h: Held | None, why: str) -> errors.LeaseHeld:
    data = {"name": name, "owner": None, "expiresAt": None, "token": None} if h is None else \
        {"name": name, "owner": h.owner, "expiresAt": h.expires_at, "token": h.token}
    return errors.LeaseHeld(f"lease {name!r}: {why}; nothing was changed", data)


class Leases:
    """The lease table and its rules; the host records the changes."""

    def __init__(self, rows: list[LeaseRow] | None = None, shared: bool = False) -> None:
        # Several daemons on one store: ephemeral leases are written too (see above).
        self.shared = shared
        self.held: dict[str, Held] = {}
        for name, owner, token, expires_at, ttl, sid in rows or ():
            self.held[name] = Held(name, owner, token, expires_at, ttl, sid)
        # Leases changed since the last drain: name -> its row to write, or None (delete).
        self.dirty: dict[str, LeaseRow | None] = {}
        # A write turn's inverse steps (undo.py): each change records how to put back the
        # lease it replaced, and whether (and how) it was to be written.
        self.undo: list[Callable[[], None]] | None = None

    def stop_undo(self) -> None:
        self.undo = None

    def _record(self, name: str) -> None:
        if self.undo is not None:
            old = self.held.get(name)
            fields = None if old is None else (old.expires_at, old.ttl_ms, old.conn)
            was_dirty, row = name in self.dirty, self.dirty.get(name)
            self.undo.append(lambda: self._put_back(name, old, fields, was_dirty, row))

    def _put_back(self, name: str, old: Held | None, fields: tuple[int | None, int | None, object | None] | None,
                  was_dirty: bool, row: LeaseRow | None) -> None:
        if old is None:
            self.held.pop(name, None)
        else:
            assert fields is not None
            old.expires_at, old.ttl_ms, old.conn = fields
            self.held[name] = old
        if was_dirty:
            self.dirty[name] = row
        else:
            self.dirty.pop(name, None)

    def live(self, name: str, now: int) -> Held | None:
        h = self.held.get(name)
        if h is None or (h.expires_at is not None and h.expires_at <= now):
            return None
        return h

    def check(self, ref: p.LeaseRef, now: int) -> Held:
        """The lease ``ref`` names, held with its token, or LeaseHeld (fencing)."""
        h = self.live(ref.name, now)
        if h is None:
            raise held_error(ref.name, None, f"not held (token {ref.token} is stale)")
        if h.token != ref.token:
            raise held_error(ref.name, h, f"held by {h.owner!r} with token {h.token}, not {ref.token}")
        return h

    def touched(self, h: Held) -> None:
        if self.shared and h.ttl_ms is None:
            if h.conn is None or h.expires_at is not None:
                # Another daemon's ephemeral lease (its row names that daemon as the
                # holder, and stays so), or one ending (its change deletes the row):
                # renewed without a ttl, nothing of it changed.
                return
            self.dirty[h.name] = (h.name, h.owner, h.token, None, None, h.session_id)  # the store adds us
            return
        self.dirty[h.name] = h.row()

    def put(self, h: Held) -> None:
        self._record(h.name)
        self.held[h.name] = h
        self.touched(h)

    def remove(self, name: str) -> Held:
        self._record(name)
        h = self.held.pop(name)
        self.dirty[name] = None
        return h

    def extend(self, h: Held, ttl: int | None, now: int) -> None:
        """A renewal: a new expiry counted from now (a ttl given to an ephemeral lease
        makes it a ttl lease: from then on it ends by its time, not its connection)."""
        self._record(h.name)
        if ttl is not None:
            h.ttl_ms = ttl
        if h.ttl_ms is not None:
            h.expires_at = now + h.ttl_ms
            h.conn = None
        self.touched(h)

    def due(self, now: int) -> list[str]:
        return [h.name for h in self.held.values() if h.expires_at is not None and h.expires_at <= now]

    def of_connection(self, conn: object) -> list[str]:
        return [h.name for h in self.held.values() if h.conn is conn and h.expires_at is None]

    def next_expiry(self) -> int | None:
        """Epoch ms of the soonest expiry, None when no lease has a ttl."""
        return min((h.expires_at for h in self.held.values() if h.expires_at is not None), default=None)

    def listed(self, session: str | None, now: int) -> list[p.Lease]:
        return [h.wire() for h in self._live(now) if session is None or h.session_id == session]

    def _live(self, now: int) -> Iterator[Held]:
        return (h for h in self.held.values() if h.expires_at is None or h.expires_at > now)

    def reloaded(self, rows: list[LeaseRow], now: int, upto: int | None = None) -> Leases:
        """The table as a shared store holds it now (every lease, ephemeral ones too),
        with what only this daemon knows kept: its own ephemeral leases' connections, and
        the end already set on one (its connection closed, or its holder found gone
        before). A lease whose holder is gone ends at the earliest of: when it was first
        found so, the store's time now, and ``now`` (ours: a store clock ahead of ours
        cannot put its end off). ``upto``: leases of ours with a larger token are not
        kept (taken by changes never committed: their tokens are handed out again)."""
        new = Leases(rows, self.shared)
        for name, h in new.held.items():
            if h.ttl_ms is not None:
                continue
            old = self.held.get(name)
            if old is not None and (old.ttl_ms is not None or old.token != h.token
                                    or (upto is not None and old.token > upto)):
                old = None  # another lease of that name than the one we knew
            if h.expires_at is None:
                if old is not None:
                    new.held[name] = old  # its holder lives: ours keeps its connection
                continue
            first = now if old is None or old.expires_at is None else old.expires_at
            h.expires_at = min(h.expires_at, now, first)
        return new

    def drain(self) -> list[tuple[str, LeaseRow | None]]:
        out = list(self.dirty.items())
        self.dirty = {}
        return out
