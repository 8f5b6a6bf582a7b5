"""Changes another daemon committed, applied here by the same rules. Sans-I/O.

Several daemons serve one project on a shared PostgreSQL store (pgshared.py). Each
change is committed with its ``changed`` frame in the changes table; every daemon
reads the frames after the revision it has applied and brings its memory forward
with them, so a read on any daemon sees what every daemon committed up to there.

A frame says exactly what its change did (design §9: the message as stored, the
context value's JSON, the path, the lease...), so the common changes are applied to
the session in memory from the frame alone: ``addMessage``, task, ticket, context,
files, ``popMessage``, ``trimMessages``, ``clear {session}``, deletes, leases. The
changes that build a whole session (``createSession``, ``importSession``, the
``clear`` that makes a new current session, a session made current that is not in
memory) are not rebuilt from the frame: :func:`fresh` names the sessions to read
anew from the store, in the same snapshot that the frames came from, and
:func:`apply` puts them in. A session not in memory is only marked (its revision):
it is read from the store when used, and :func:`catch_up` then applies what was
replayed meanwhile. A ``restore`` or an op this daemon does not know asks for a
full reload (:data:`FULL`).

Replayed changes are not changes of this daemon: they take no revision of their own
(the frame's), are not written again, and their notifications are the frames as
committed, byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import msgspec
from msgspec import UNSET, Raw, Struct, UnsetType

from sessionmem import protocol as p

from .changelog import ChangeLog
from .leases import Held, LeaseRow
from .state import SessionState

if TYPE_CHECKING:
    from .host import SessionHost

FULL = "*"  # fresh(): reload every session and the catalogue

# Changes applied to a session in memory from the frame alone.
SIMPLE = frozenset({"addMessage", "setCurrentTask", "setActiveTicket", "setContext", "deleteContext",
                    "trackOpenFile", "untrackFile", "popMessage", "trimMessages"})
LEASES = frozenset({"acquireLease", "releaseLease", "leaseExpired"})
BUILDS = frozenset({"createSession", "importSession", "setCurrentSession", "clear", "deleteSession"})


class Frame(Struct, kw_only=True):
    """What replay reads of a ``changed`` params: values kept as their exact JSON."""

    revision: int
    sessionId: str
    op: str
    at: int = 0
    message: Raw | UnsetType = UNSET
    messageId: str | UnsetType = UNSET
    task: str | None | UnsetType = UNSET
    ticketId: str | None | UnsetType = UNSET
    key: str | UnsetType = UNSET
    value: Raw | UnsetType = UNSET
    filePath: str | UnsetType = UNSET
    newSessionId: str | UnsetType = UNSET
    data: Raw | UnsetType = UNSET
    removed: int | UnsetType = UNSET
    current: str | UnsetType = UNSET
    lease: p.Lease | UnsetType = UNSET


class _Envelope(Struct):
    params: Frame


_decode_envelope = msgspec.json.Decoder(_Envelope).decode
_decode_message = msgspec.json.Decoder(p.Message).decode

Row = tuple[int, str, bytes]  # revision, session, frame


def decode(frame: bytes) -> Frame:
    return _decode_envelope(frame).params


def fresh(rows: Iterable[Row], loaded: Iterable[str]) -> set[str]:
    """The sessions to read anew from the store before :func:`apply` (FULL in it: all
    of them): those the frames build whole, when they are or become held in memory."""
    held = set(loaded)
    out: set[str] = set()
    for _rev, _sid, frame in rows:
        f = decode(frame)
        op, sid = f.op, f.sessionId
        if op in SIMPLE or op in LEASES or op == "deleteSession":
            continue
        if op == "clear":
            if f.newSessionId is UNSET:
                continue  # clear {session}: emptied in place
            out.add(f.newSessionId)  # type: ignore[arg-type]
        elif op in ("createSession", "importSession"):
            if f.current is not UNSET or sid in held:
                out.add(sid)
        elif op == "setCurrentSession":
            if sid not in held:
                out.add(sid)
        else:  # restore, or an op newer than this daemon
            return {FULL}
    return out


def apply_to(s: SessionState, f: Frame) -> bool:
    """One change of the SIMPLE kind (or ``clear {session}``) to the session in memory;
    False when it cannot be applied from the frame (its history not loaded far enough):
    the caller reads the session anew."""
    op = f.op
    if op == "addMessage":
        assert not isinstance(f.message, UnsetType)
        m = _decode_message(bytes(f.message))
        data = None if isinstance(f.data, UnsetType) else bytes(f.data)
        s.add_message(m.role, m.content, m.timestamp, None if isinstance(f.messageId, UnsetType) else f.messageId,
                      data)
        if not isinstance(f.removed, UnsetType) and f.removed:
            s.trim_messages(s.messages_count - f.removed)
    elif op == "setCurrentTask":
        s.set_current_task(None if isinstance(f.task, UnsetType) else f.task)
    elif op == "setActiveTicket":
        s.set_active_ticket(None if isinstance(f.ticketId, UnsetType) else f.ticketId)
    elif op == "setContext":
        assert isinstance(f.key, str) and not isinstance(f.value, UnsetType)
        s.set_context(f.key, bytes(f.value))
    elif op == "deleteContext":
        assert isinstance(f.key, str)
        s.delete_context(f.key)
    elif op == "trackOpenFile":
        assert isinstance(f.filePath, str)
        s.track_file(f.filePath)
    elif op == "untrackFile":
        assert isinstance(f.filePath, str)
        s.untrack_file(f.filePath)
    elif op in ("popMessage", "trimMessages"):
        if not s.complete:
            return False
        if op == "popMessage":
            s.pop_message()
        elif not isinstance(f.removed, UnsetType):
            s.trim_messages(s.messages_count - f.removed)
    elif op == "clear":
        s.wipe()
    else:
        return False
    s.revision = f.revision
    return True


def catch_up(s: SessionState, log: ChangeLog, since: int) -> bool:
    """A session read from the store at its revision ``s.revision``, brought forward by
    the changes to it the log holds after that (replayed while it was being read; the
    daemon replays from ``since`` on, so older ones are in what was read). False when
    the log no longer holds them all, or one cannot be applied: read again."""
    if max(s.revision, since) < log.oldest - 1:
        return False
    for _rev, sid, frame in log.entries_after(s.revision):
        if sid != s.session_id:
            continue
        f = decode(frame)
        if f.op in SIMPLE or (f.op == "clear" and f.newSessionId is UNSET):
            if not apply_to(s, f):
                return False
        elif f.op not in LEASES:
            return False
    return True


def lease_of(f: Frame) -> Held | None:
    """The lease an ``acquireLease`` frame took (held here without a connection: the
    daemon that took an ephemeral one ends it with a change of its own, or, that daemon
    gone, whichever daemon's turn finds its holder gone first: leases.py)."""
    if isinstance(f.lease, UnsetType):
        return None
    x = f.lease
    ttl = None if isinstance(x.ttlMs, UnsetType) else x.ttlMs
    return Held(x.name, x.owner, x.token, x.expiresAt, ttl, x.sessionId, None)


def apply(host: SessionHost, rows: list[Row], fresh_states: dict[str, SessionState | None],
          lease_rows: list[LeaseRow] | None, keep: set[str] | frozenset[str] = frozenset()) -> None:
    """Bring ``host`` forward by ``rows`` (consecutive, after ``host.revision``): each
    frame goes into the change log as committed, and its change into memory; then the
    sessions read anew (``fresh_states``, None: gone) take their places. ``lease_rows``:
    the leases as the store holds them now (a renewal is no change, so no frame carries
    it; an ephemeral lease whose holder is gone has an end: leases.Leases.reloaded), or
    None to keep the table as replayed."""
    log = host.log
    for rev, sid, frame in rows:
        f = decode(frame)
        log.append(rev, sid, frame)
        host.revision = rev
        op = f.op
        if op in SIMPLE or (op == "clear" and f.newSessionId is UNSET):
            host.known[sid] = rev
            s = host.loaded.get(sid)
            # A session read from the store after this change was committed has it already.
            if s is not None and sid not in fresh_states and s.revision < rev and not apply_to(s, f):
                host.drop_replayed(sid)  # read anew when used (not the current: see fresh)
        elif op in LEASES:
            if op == "acquireLease":
                h = lease_of(f)
                if h is not None:
                    host.leases.held[h.name] = h
            elif not isinstance(f.lease, UnsetType):
                host.leases.held.pop(f.lease.name, None)
        elif op == "deleteSession":
            host.drop_replayed(sid, deleted=True)
        elif op == "clear":
            host.drop_replayed(sid, deleted=True)
            new = f.newSessionId
            assert isinstance(new, str)
            host.known[new] = rev
            host.current_id = new
        elif op in ("createSession", "importSession"):
            host.known[sid] = rev
            if not isinstance(f.current, UnsetType):
                host.current_id = sid
        elif op == "setCurrentSession":
            host.known[sid] = rev
            host.current_id = sid
    for sid, st in fresh_states.items():
        if st is None:
            host.drop_replayed(sid, deleted=True)
        else:
            host.loaded[sid] = st
            host.known[sid] = max(host.known.get(sid, 0), st.revision)
    if lease_rows is not None:
        # The store's table is the truth (a renewal is no change; an ephemeral lease
        # whose holder is gone comes back with an end): this daemon's own connections kept.
        before = host.leases.next_expiry()
        host.leases = host.leases.reloaded(lease_rows, host.now())
        if host.leases.next_expiry() != before:
            host.on_leases()  # the lease timer ends the ones now due
    host.absorb_replayed(keep)
