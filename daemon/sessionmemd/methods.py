"""The method table: each wire method's decoded params turned into a call on the
session host (the rules, pure), applied to the session the loader has in memory; the
feed (watch); or the shell (the calls that need I/O or the daemon's runtime:
snapshot, restore, shutdown, stats, hello).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol

from msgspec import UNSET, Raw

from sessionmem import errors
from sessionmem import protocol as p

from .feed import Feed, Watcher
from .host import SessionHost
from .loader import Loader, always
from .records import export_records, import_state
from .searchquery import QueryError, build, encode_cursor
from .rpc import Handler, check_json_value
from .state import SessionState
from .transact import decode_ops, needs_history


class Shell(Protocol):
    """What the assembled daemon (app.App) provides to the methods."""

    def snapshot(self) -> Coroutine[Any, Any, p.SnapshotResult]: ...
    def restore(self) -> Coroutine[Any, Any, None]: ...
    def shutdown_method(self) -> Coroutine[Any, Any, None]: ...
    def stats(self, session: SessionState) -> p.Stats: ...
    def hello(self, params: p.HelloParams) -> p.HelloResult: ...
    def sync(self) -> p.SyncResult | Any: ...


def _checked(value: Raw | Any, max_depth: int, field: str) -> Any:
    if value is UNSET:
        return UNSET
    raw = bytes(value)  # copy: a Raw would pin the whole request frame
    check_json_value(raw, max_depth, field)
    return Raw(raw)


def build_handlers(host: SessionHost, loader: Loader, feed: Feed, shell: Shell, max_depth: int) -> dict[str, Handler]:
    # call(session, op, needs_all): op(session) now or once the session is loaded. The
    # hottest handlers spell that out as ready()/later(), so their common case (the
    # current session, in memory) makes no closure.
    call, ready, later = loader.call, loader.ready, loader.later

    def write(ref: Any, op: Any, needs_all: Any = None, switches: bool = False) -> Any:
        return call(ref, op, needs_all, True, switches)

    def expect(a: Any) -> Any:
        return _checked(a.expect, max_depth, "params.expect")

    # Fencing (``lease``): checked inside the op, so when the call applies (it may wait
    # for its session to load), before anything changes.
    def fenced(a: Any, op: Any) -> Any:
        lease = a.lease
        if lease is UNSET:
            return op

        def checked(*s: Any) -> Any:
            host.fence(lease)
            return op(*s)
        return checked

    def add_message(a: p.AddMessageParams) -> Any:
        data = None
        if a.data is not UNSET:
            data = bytes(a.data)  # type: ignore[arg-type]
            check_json_value(data, max_depth, "params.data")
        ts = a.timestamp if type(a.timestamp) is int else None
        msg_id = None if a.id is UNSET else a.id
        # An id must be checked against the whole history (a retry of an old append);
        # --max-messages trims the oldest: both wait for messages still loading.
        needs = _older_loading if msg_id is not None or host.max_messages is not None else None
        s = ready(a.session, needs, True)
        if s is not None:
            if a.lease is not UNSET:
                host.fence(a.lease)
            return host.add_message(s, a.role, a.content, ts, msg_id, data)  # type: ignore[arg-type]
        return later(a.session, fenced(a, lambda s: host.add_message(s, a.role, a.content, ts, msg_id, data)),  # type: ignore[arg-type]
                     needs, True)

    def set_task(a: p.SetCurrentTaskParams) -> Any:
        exp = expect(a)
        return write(a.session, fenced(a, lambda s: host.set_current_task(s, a.task, exp)))

    def set_ticket(a: p.SetActiveTicketParams) -> Any:
        exp = expect(a)
        return write(a.session, fenced(a, lambda s: host.set_active_ticket(s, a.ticketId, exp)))

    def delete_context(a: p.DeleteContextParams) -> Any:
        exp = expect(a)
        return write(a.session, fenced(a, lambda s: host.delete_context(s, a.key, exp)))

    def pop_message(a: p.PopMessageParams) -> Any:
        exp = expect(a)
        return write(a.session, fenced(a, lambda s: host.pop_message(s, exp)), _tail_empty)

    def set_context(a: p.SetContextParams) -> Any:
        value = bytes(a.value)
        check_json_value(value, max_depth, "params.value")
        exp = expect(a)
        s = ready(a.session, None, True)
        if s is not None:
            if a.lease is not UNSET:
                host.fence(a.lease)
            return host.set_context(s, a.key, value, exp)
        return later(a.session, fenced(a, lambda s: host.set_context(s, a.key, value, exp)), None, True)

    def get_context(a: p.KeyParams) -> Any:
        s = ready(a.session)
        if s is not None:
            return s.get_context(a.key)
        return later(a.session, lambda s: s.get_context(a.key))

    def recent(a: p.GetRecentMessagesParams) -> Any:
        n = a.count
        if a.before is not UNSET:  # paging back: loads the older history when the page needs it
            before = a.before
            return call(a.session, lambda s: s.messages_before(before, n, a.full),
                        lambda s: s.needs_older_for(before, n))
        s = ready(a.session)
        if s is not None and (s.older == 0 or n <= s.loaded_messages):
            return s.recent_full(n) if a.full else s.recent_messages(n)
        if a.full:
            return later(a.session, lambda s: s.recent_full(n), lambda s: n > s.loaded_messages)
        return later(a.session, lambda s: s.recent_messages(n), lambda s: n > s.loaded_messages)

    def all_messages(a: p.GetAllMessagesParams) -> Any:
        if a.full:
            return call(a.session, lambda s: s.recent_full(s.messages_count), always)
        return call(a.session, SessionState.all_messages, always)

    def clear(a: p.ClearParams) -> Any:
        if a.session is UNSET:
            # The original's: a new current session, the old one deleted.
            return loader.session_op(UNSET, fenced(a, host.clear), switches=True)
        return write(a.session, fenced(a, host.wipe), always)

    def create_session(a: p.CreateSessionParams) -> Any:
        sid = None if a.sessionId is UNSET else a.sessionId
        up_to = None if a.forkUpTo is UNSET else a.forkUpTo
        if a.forkFrom is UNSET:
            if a.forkUpTo is not UNSET:
                raise errors.InvalidParams("`params.forkUpTo` is given without `params.forkFrom`")
            return loader.session_op(sid, fenced(a, lambda: p.SessionIdResult(
                host.create_session(sid, None, None, a.makeCurrent))), a.makeCurrent)  # type: ignore[arg-type]
        if sid is not None and sid in loader.busy():
            # The new id has calls waiting (a delete): after them, then the fork.
            return loader.session_op(sid, lambda: write(a.forkFrom, fenced(a, lambda s: p.SessionIdResult(
                host.create_session(sid, s, up_to, a.makeCurrent))), always, a.makeCurrent))  # type: ignore[arg-type]
        return write(a.forkFrom, fenced(a, lambda s: p.SessionIdResult(
            host.create_session(sid, s, up_to, a.makeCurrent))), always, a.makeCurrent)  # type: ignore[arg-type]

    def import_session(a: p.ImportSessionParams) -> Any:
        sid = None if a.sessionId is UNSET else a.sessionId
        state = import_state(a.records, sid, lambda v, f: check_json_value(v, max_depth, f))  # type: ignore[arg-type]
        return loader.session_op(state.session_id, fenced(a, lambda: p.SessionIdResult(
            host.import_session(state, a.makeCurrent))), a.makeCurrent)

    def transact(a: p.TransactParams) -> Any:
        ops = decode_ops(a.ops, lambda v, f: check_json_value(v, max_depth, f))
        expected = None if a.expectRevision is UNSET else a.expectRevision
        needs = always if needs_history(ops, host.max_messages) else None
        return call(a.session, lambda s: host.transact(s, ops, expected, a.lease), needs, len(ops))  # type: ignore[arg-type]

    # -- leases (hostleases.py, leases.py) -------------------------------------------------
    def acquire_lease(a: p.AcquireLeaseParams, conn: Any) -> Any:
        ttl = None if a.ttlMs is UNSET else a.ttlMs

        def op(s: SessionState) -> p.Lease:
            if ttl is None and getattr(conn, "closed", False):
                # Gone while the call waited: an ephemeral lease would outlive it.
                raise errors.InvalidRequest("acquireLease: the connection closed; no lease was taken")
            return host.acquire_lease(a.name, a.owner, ttl, s.session_id, conn)  # type: ignore[arg-type]
        # Up to two changes: a lease whose time passed ends, then the acquisition.
        return call(a.session, op, None, 2)

    def list_leases(a: p.ListLeasesParams) -> Any:
        session = None if a.session is UNSET else host.resolve(a.session)
        return host.leases.listed(session, host.now())

    def search(a: p.SearchMessagesParams) -> Any:
        if a.sessions is not UNSET and a.session is not UNSET:
            raise errors.InvalidParams("give `params.session` or `params.sessions`, not both")
        sessions = None if a.sessions is not UNSET else (host.resolve(a.session),)
        try:
            q = build(a.query, a.mode, sessions, None if a.roles is UNSET else tuple(a.roles),
                      None if a.since is UNSET else a.since, None if a.until is UNSET else a.until,  # type: ignore[arg-type]
                      a.limit, None if a.cursor is UNSET else a.cursor)  # type: ignore[arg-type]
        except QueryError as e:
            raise errors.InvalidParams(f"searchMessages: {e}") from None
        return search_saved(q)

    async def search_saved(q: Any) -> p.SearchResult:
        # The store searches what is on disk: write what is not yet (usually nothing,
        # or the last second's changes) first, so unsaved messages are found too and
        # `index` agrees with the sessions in memory.
        saved = True
        try:
            await shell.snapshot()
        except errors.SessionmemError:
            saved = False  # kept in memory and retried: the answer says it may miss them
        revision = host.revision
        rows, complete = await loader.search(q)
        hits = [p.SearchHit(sid, i, role, ts, snip, score, UNSET if mid is None else mid)
                for sid, i, role, ts, snip, score, mid in rows[:q.limit]]
        more = len(rows) > q.limit
        return p.SearchResult(hits, encode_cursor(q.offset + q.limit) if more else None, revision,
                              complete and saved)

    def watch(a: p.WatchParams, conn: Watcher) -> Any:
        since = None if a.since is UNSET else a.since
        session = None if a.session is UNSET else a.session
        if feed.resumes_before_log(since):  # type: ignore[arg-type]
            return watch_when_restored(conn, since, session)  # type: ignore[arg-type]
        return feed.watch(conn, since, host.settled_revision, session)  # type: ignore[arg-type]

    async def watch_when_restored(conn: Watcher, since: int, session: str | None) -> p.WatchResult | None:
        restoring = feed.restoring
        if restoring is not None:
            await asyncio.shield(restoring)
        if conn.closed:
            return None  # gone meanwhile: nothing to register
        return feed.watch(conn, since, host.settled_revision, session)

    def unwatch(_: p.NoParams, conn: Watcher) -> None:
        if not feed.unwatch(conn):
            raise errors.InvalidParams("unwatch: this connection has no watch to end")

    return {
        "getSessionId": lambda a: call(a.session, lambda s: s.session_id),
        "getCurrentTask": lambda a: call(a.session, lambda s: s.current_task),
        "setCurrentTask": set_task,
        "addMessage": add_message,
        "getRecentMessages": recent,
        "getAllMessages": all_messages,
        "trackOpenFile": lambda a: write(a.session, fenced(a, lambda s: host.track_file(s, a.filePath))),
        "untrackFile": lambda a: write(a.session, fenced(a, lambda s: host.untrack_file(s, a.filePath))),
        "getOpenFiles": lambda a: call(a.session, SessionState.open_files),
        "setActiveTicket": set_ticket,
        "getActiveTicket": lambda a: call(a.session, lambda s: s.active_ticket),
        "setContext": set_context,
        "getContext": get_context,
        "deleteContext": delete_context,
        "getAllContext": lambda a: call(a.session, SessionState.all_context),
        "listContext": lambda a: call(a.session, lambda s: s.list_context(
            a.prefix, None if a.after is UNSET else a.after, a.limit, a.reverse)),
        "snapshot": lambda _: shell.snapshot(),
        "restore": lambda _: shell.restore(),
        "clear": clear,
        "getStats": lambda a: call(a.session, shell.stats),
        "hello": shell.hello,
        "shutdown": lambda _: shell.shutdown_method(),
        "watch": watch,
        "unwatch": unwatch,
        "sync": lambda _: shell.sync(),
        "popMessage": pop_message,
        "trimMessages": lambda a: write(a.session, fenced(a, lambda s: host.trim_messages(s, a.keep)), always),
        "createSession": create_session,
        "listSessions": lambda _: loader.list_sessions(),
        "setCurrentSession": lambda a: write(a.sessionId, fenced(a, lambda s: host.set_current_session(s.session_id)),
                                             switches=True),
        "deleteSession": lambda a: loader.session_op(a.sessionId, fenced(a, lambda: host.delete_session(a.sessionId))),
        "exportSession": lambda a: call(a.session, export_records, always),
        "importSession": import_session,
        "transact": transact,
        "acquireLease": acquire_lease,
        "renewLease": lambda a: loader.session_op(None, lambda: host.renew_lease(
            a.name, a.token, None if a.ttlMs is UNSET else a.ttlMs)),
        "releaseLease": lambda a: loader.session_op(None, lambda: host.release_lease(a.name, a.token)),
        "listLeases": list_leases,
        "searchMessages": search,
    }


def _older_loading(s: SessionState) -> bool:
    return s.older > 0


def _tail_empty(s: SessionState) -> bool:
    return s.loaded_messages == 0
