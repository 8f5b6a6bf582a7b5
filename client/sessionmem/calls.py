"""Every wire call, built once for both clients, with its real result type.

``Calls(session_id)`` has a method per wire method that returns a ``Call[T]``: the wire
method, its params (the bound session added to the session methods) and, when the
wire result is not what the client returns, how to make it so. ``Session`` runs a
``Call[T]`` and returns ``T``; ``AsyncSession`` runs it and returns ``Awaitable[T]``:
their methods (typed.py) are one line each, typed, and the rules live here.

``expect``: leave it out for an unconditional write; give the value you believe is
current (``None`` for unset or absent) and the write applies only if it still is, else
:class:`sessionmem.Conflict` is raised carrying the value now (``.current``) and the
revision (``.revision``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import msgspec

from . import protocol as p
from .api import NOT_GIVEN, hello_params
from .ids import new_message_id

T = TypeVar("T")
Params = dict[str, Any]



def _before(before: int | None) -> dict[str, int]:
    """getRecentMessages' ``before``: the messages before that index (paging back)."""
    return {} if before is None else {"before": before}

class Call(Generic[T]):
    """One wire call (or, with ``batch``, several sent as one JSON-RPC batch)."""

    __slots__ = ("method", "params", "then", "batch")

    def __init__(self, method: str, params: Params | None = None, then: Callable[[Any], T] | None = None,
                 batch: list[tuple[str, Params | None]] | None = None) -> None:
        self.method = method  # "method:variant" picks another result decoder (api.py)
        self.params = params
        self.then = then
        self.batch = batch


def _with_expect(params: Params, expect: Any) -> Params:
    if expect is not NOT_GIVEN:
        params["expect"] = msgspec.structs.asdict(expect) if isinstance(expect, p.Message) else expect
    return params


def _session_id(result: p.SessionIdResult) -> str:
    return result.sessionId


def _none(_result: Any) -> None:
    return None


class Transaction:
    """The ops of one ``transact``, recorded by the same builders as the calls they
    stand for (without ``session``: the transaction addresses one session), and sent
    all at once by ``Session.transaction()`` / ``AsyncSession.transaction()`` when the
    block ends without an exception. ``results`` then holds each op's result, in order
    (``None`` for the writes, the removed message for ``pop_message``, the count for
    ``trim_messages``). An op that fails fails them all: nothing is applied, and the
    error (a ``Conflict`` for an ``expect``) carries the op's index in ``.data``."""

    def __init__(self) -> None:
        self.ops: list[Params] = []
        self.results: list[Any] | None = None
        self._calls = Calls(None)

    def _add(self, call: Call[Any]) -> None:
        self.ops.append({"method": call.method.partition(":")[0], "params": call.params or {}})

    def set_current_task(self, task: str | None, expect: Any = NOT_GIVEN) -> None:
        self._add(self._calls.set_current_task(task, expect))

    def set_active_ticket(self, ticket_id: str | None, expect: Any = NOT_GIVEN) -> None:
        self._add(self._calls.set_active_ticket(ticket_id, expect))

    def add_message(self, role: str, content: str, timestamp: int | None = None, message_id: str | None = None,
                    data: Any = NOT_GIVEN) -> None:
        self._add(self._calls.add_message(role, content, timestamp, message_id, data))

    def track_open_file(self, file_path: str) -> None:
        self._add(self._calls.track_open_file(file_path))

    def untrack_file(self, file_path: str) -> None:
        self._add(self._calls.untrack_file(file_path))

    def set_context(self, key: str, value: Any, expect: Any = NOT_GIVEN) -> None:
        self._add(self._calls.set_context(key, value, expect))

    def delete_context(self, key: str, expect: Any = NOT_GIVEN) -> None:
        self._add(self._calls.delete_context(key, expect))

    def pop_message(self, expect: Any = NOT_GIVEN) -> None:
        self._add(self._calls.pop_message(expect))

    def trim_messages(self, keep: int) -> None:
        self._add(self._calls.trim_messages(keep))


class Calls:
    def __init__(self, session_id: str | None = None) -> None:
        self.session_id = session_id

    def _s(self, params: Params | None = None) -> Params | None:
        """Params of a session method: the bound session added, when there is one."""
        if self.session_id is None:
            return params
        return {**(params or {}), "session": self.session_id}

    # -- the session's parts -------------------------------------------------------------
    def get_session_id(self) -> Call[str]:
        return Call("getSessionId", self._s())

    def get_current_task(self) -> Call[str | None]:
        return Call("getCurrentTask", self._s())

    def set_current_task(self, task: str | None, expect: Any = NOT_GIVEN) -> Call[None]:
        return Call("setCurrentTask", self._s(_with_expect({"task": task}, expect)))

    def add_message(self, role: str, content: str, timestamp: int | None = None, message_id: str | None = None,
                    data: Any = NOT_GIVEN) -> Call[None]:
        """Append a message. It is sent with an id (``message_id``, or a fresh one), so
        the client can send it again after a daemon restart without duplicating it.
        ``data``: any JSON kept with the message (read back with ``full=True``)."""
        return Call("addMessage", self._s(_message(role, content, timestamp, message_id, data)))

    def add_messages(self, messages: Iterable[Mapping[str, Any]]) -> Call[None]:
        """Append several messages, each a mapping of ``add_message``'s arguments
        (``role``, ``content``, and ``timestamp``, ``message_id``, ``data`` when wanted),
        in one JSON-RPC batch: the daemon adds them one after the other with no other
        client's change between them (not a transaction: a bad one fails alone).
        Retried like ``add_message`` (each has an id)."""
        batch: list[tuple[str, Params | None]] = [
            ("addMessage", self._s(_message(m["role"], m["content"], m.get("timestamp"), m.get("message_id"),
                                            m["data"] if "data" in m else NOT_GIVEN)))
            for m in messages]
        if not batch:
            return Call("getSessionId", self._s(), _none)  # nothing to add; still checks the session
        return Call("addMessage", None, _none, batch)

    def get_recent_messages(self, count: int, before: int | None = None) -> Call[list[p.Message]]:
        return Call("getRecentMessages", self._s({"count": count, **_before(before)}))

    def get_recent_full(self, count: int, before: int | None = None) -> Call[list[p.FullMessage]]:
        return Call("getRecentMessages:full", self._s({"count": count, "full": True, **_before(before)}))

    def get_all_messages(self) -> Call[list[p.Message]]:
        return Call("getAllMessages", self._s())

    def get_all_full(self) -> Call[list[p.FullMessage]]:
        return Call("getAllMessages:full", self._s({"full": True}))

    def pop_message(self, expect: Any = NOT_GIVEN) -> Call[p.FullMessage | None]:
        """Remove and return the newest message, None when there is none. ``expect``: the
        newest as ``{"role", "content", "timestamp"}`` (or a ``Message``), None for none."""
        return Call("popMessage", self._s(_with_expect({}, expect)))

    def trim_messages(self, keep: int) -> Call[int]:
        """Keep the newest ``keep`` messages; returns how many were removed."""
        return Call("trimMessages", self._s({"keep": keep}))

    def track_open_file(self, file_path: str) -> Call[None]:
        return Call("trackOpenFile", self._s({"filePath": file_path}))

    def untrack_file(self, file_path: str) -> Call[None]:
        return Call("untrackFile", self._s({"filePath": file_path}))

    def get_open_files(self) -> Call[list[str]]:
        return Call("getOpenFiles", self._s())

    def set_active_ticket(self, ticket_id: str | None, expect: Any = NOT_GIVEN) -> Call[None]:
        return Call("setActiveTicket", self._s(_with_expect({"ticketId": ticket_id}, expect)))

    def get_active_ticket(self) -> Call[str | None]:
        return Call("getActiveTicket", self._s())

    def set_context(self, key: str, value: Any, expect: Any = NOT_GIVEN) -> Call[None]:
        return Call("setContext", self._s(_with_expect({"key": key, "value": value}, expect)))

    def get_context(self, key: str) -> Call[Any]:
        return Call("getContext", self._s({"key": key}))

    def delete_context(self, key: str, expect: Any = NOT_GIVEN) -> Call[None]:
        return Call("deleteContext", self._s(_with_expect({"key": key}, expect)))

    def get_all_context(self) -> Call[dict[str, Any]]:
        return Call("getAllContext", self._s())

    def list_context(self, prefix: str = "", *, after: str | None = None, limit: int | None = None,
                     reverse: bool = False) -> Call[p.ContextPage]:
        """A page of the context keys starting with ``prefix``, in key order (descending
        with ``reverse``), past ``after``; ``more`` says whether another page follows."""
        params: Params = {"prefix": prefix}
        if after is not None:
            params["after"] = after
        if limit is not None:
            params["limit"] = limit
        if reverse:
            params["reverse"] = True
        return Call("listContext", self._s(params))

    def list_contexts(self, queries: Iterable[Mapping[str, Any]]) -> Call[list[p.ContextPage]]:
        """Several ``listContext`` pages in one JSON-RPC batch (one round trip), each
        query a mapping of :meth:`list_context`'s arguments (``prefix``, ``after``,
        ``limit``, ``reverse``); the pages in query order. Reads only: retried as one."""
        batch: list[tuple[str, Params | None]] = []
        for q in queries:
            unknown = set(q) - {"prefix", "after", "limit", "reverse"}
            if unknown:
                raise TypeError(f"list_contexts: unknown argument(s) {sorted(unknown)}")
            c = self.list_context(q.get("prefix", ""), after=q.get("after"), limit=q.get("limit"),
                                  reverse=bool(q.get("reverse", False)))
            batch.append((c.method, c.params))
        if not batch:
            return Call("getSessionId", self._s(), lambda _r: [])  # nothing to list; still checks the session
        return Call("listContext", None, None, batch)

    def transact(self, t: Transaction, expect_revision: int | None = None) -> Call[list[Any]]:
        """``t``'s ops, all or none (see Transaction)."""
        params: Params = {"ops": t.ops}
        if expect_revision is not None:
            params["expectRevision"] = expect_revision
        return Call("transact", self._s(params))

    def clear(self) -> Call[str]:
        """Unbound: the original's clear (a new current session, the old one deleted),
        returning the new id. Bound to ``session_id``: that session emptied, its id kept."""
        return Call("clear", self._s())

    def get_stats(self) -> Call[p.Stats]:
        return Call("getStats", self._s())

    # -- the daemon ---------------------------------------------------------------------------
    def snapshot(self) -> Call[p.SnapshotResult]:
        return Call("snapshot")

    def restore(self) -> Call[None]:
        return Call("restore")

    def sync(self) -> Call[p.SyncResult]:
        """Returns once the daemon has applied every change committed before the call."""
        return Call("sync")

    def hello(self) -> Call[p.HelloResult]:
        return Call("hello", hello_params())

    def shutdown(self) -> Call[None]:
        return Call("shutdown")

    # -- sessions ---------------------------------------------------------------------------------
    def create_session(self, session_id: str | None = None, fork_from: str | None = None,
                       up_to: int | None = None, make_current: bool = False) -> Call[str]:
        """A new session (its id returned): empty, or a fork of ``fork_from`` with its
        task, ticket, files, context and first ``up_to`` messages (all when None)."""
        params: Params = {"makeCurrent": make_current}
        if session_id is not None:
            params["sessionId"] = session_id
        if fork_from is not None:
            params["forkFrom"] = fork_from
        if up_to is not None:
            params["forkUpTo"] = up_to
        return Call("createSession", params, _session_id)

    def search_messages(self, query: str, *, all_sessions: bool = False, session: str | None = None,
                        mode: str = "words", roles: Iterable[str] | None = None, since: int | None = None,
                        until: int | None = None, limit: int | None = None,
                        cursor: str | None = None) -> Call[p.SearchResult]:
        """Messages whose content matches ``query`` (``mode``: words, phrase, prefix,
        substring), best first: in ``session`` (else the bound one, else the current),
        or in every session with ``all_sessions``. Page on with the result's
        ``nextCursor`` as ``cursor``."""
        params: Params = {"query": query, "mode": mode}
        if roles is not None:
            params["roles"] = list(roles)
        for name, value in (("since", since), ("until", until), ("limit", limit), ("cursor", cursor)):
            if value is not None:
                params[name] = value
        if all_sessions:
            params["sessions"] = "*"
        elif session is not None:
            params["session"] = session
        else:
            params = self._s(params) or params
        return Call("searchMessages", params)

    def list_sessions(self) -> Call[list[p.SessionInfo]]:
        """Every session, the most recently changed first."""
        return Call("listSessions")

    def set_current_session(self, session_id: str) -> Call[None]:
        return Call("setCurrentSession", {"sessionId": session_id})

    def delete_session(self, session_id: str) -> Call[None]:
        return Call("deleteSession", {"sessionId": session_id})

    def export_session(self, session: str | None = None) -> Call[list[p.Record]]:
        """The session (``session``, else the bound one, else the current) as export
        records: a header, then its messages, files and context (docs/protocol.md)."""
        return Call("exportSession", {"session": session} if session is not None else self._s())

    def import_session(self, records: Iterable[p.Record | Mapping[str, Any] | bytes],
                       session_id: str | None = None, make_current: bool = False) -> Call[str]:
        """A new session made from export records (all or nothing); its id returned."""
        params: Params = {"records": [msgspec.Raw(r) if isinstance(r, bytes) else r for r in records],
                          "makeCurrent": make_current}
        if session_id is not None:
            params["sessionId"] = session_id
        return Call("importSession", params, _session_id)

    # -- leases -------------------------------------------------------------------------------
    def acquire_lease(self, name: str, ttl: float | None = None, owner: str | None = None
                      ) -> Call[p.Lease]:
        """Take the lease ``name`` (its token is the revision of the acquisition), or
        :class:`sessionmem.LeaseHeld` naming the holder. ``ttl``: seconds without a
        renewal before it ends; None: it ends when this client's connection closes.
        ``owner``: default ``$SESSIONMEM_AGENT``, else ``<hostname>:<pid>``. The lease
        concerns the bound session (else the current one)."""
        params: Params = {"name": name, "owner": owner or default_owner()}
        if ttl is not None:
            params["ttlMs"] = ttl_ms(ttl)
        return Call("acquireLease", self._s(params))

    def renew_lease(self, name: str, token: int, ttl: float | None = None) -> Call[p.Lease]:
        params: Params = {"name": name, "token": token}
        if ttl is not None:
            params["ttlMs"] = ttl_ms(ttl)
        return Call("renewLease", params)

    def release_lease(self, name: str, token: int) -> Call[None]:
        return Call("releaseLease", {"name": name, "token": token})

    def list_leases(self, session: str | None = None) -> Call[list[p.Lease]]:
        """The live leases (those concerning ``session`` only, when given)."""
        return Call("listLeases", {"session": session} if session is not None else None)

    def any(self, method: str, params: Params | None = None) -> Call[Any]:
        """Any method by its wire name, params by name (``full: true`` reads decoded as
        FullMessages)."""
        if params and params.get("full") is True and method in ("getRecentMessages", "getAllMessages"):
            method = f"{method}:full"
        return Call(method, params)


def default_owner() -> str:
    """A lease's owner when none is given: ``$SESSIONMEM_AGENT``, else ``<hostname>:<pid>``."""
    import os
    import socket

    return os.environ.get("SESSIONMEM_AGENT") or f"{socket.gethostname()}:{os.getpid()}"


def ttl_ms(seconds: float) -> int:
    ms = round(seconds * 1000)
    if ms < 1:
        raise ValueError(f"a lease's ttl must be at least 1 ms, not {seconds!r} s")
    return ms


def with_lease(call: Call[T], lease: p.LeaseRef) -> Call[T]:
    """``call`` fenced by ``lease`` when it changes something (docs/protocol.md "Leases")."""
    fence = {"name": lease.name, "token": lease.token}

    def fenced(method: str, params: Params | None) -> Params | None:
        spec = p.METHODS.get(method.partition(":")[0])
        if spec is None or not spec.mutates or method in _UNFENCED:
            return params
        return {**(params or {}), "lease": fence}
    if call.batch is not None:
        return Call(call.method, call.params, call.then, [(m, fenced(m, ps)) for m, ps in call.batch])
    return Call(call.method, fenced(call.method, call.params), call.then)


# Mutating, but not fenced: the lease calls themselves, and restore (the daemon's).
_UNFENCED = frozenset({"acquireLease", "renewLease", "releaseLease", "restore"})


def _message(role: str, content: str, timestamp: int | None, message_id: str | None, data: Any) -> Params:
    params: Params = {"role": role, "content": content, "id": message_id or new_message_id()}
    if timestamp is not None:
        params["timestamp"] = timestamp
    if data is not NOT_GIVEN:
        params["data"] = data
    return params
