"""The clients' methods, typed: a one-line method per wire call for ``Session`` (returns
``T``) and for ``AsyncSession`` (returns ``Awaitable[T]``), each running the ``Call[T]``
that calls.py builds. The rules (params, session binding, ids) are there, once; these are
the faces a type checker and an IDE see."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, Literal, TypeVar, overload

from . import protocol as p
from .api import NOT_GIVEN
from .calls import Call, Calls, Transaction, with_lease
from .lease import AsyncLease, Lease

# What fences a call: a held lease, its wire shape, or {name, token}.
LeaseLike = Lease | AsyncLease | p.Lease | p.LeaseRef


def _ref(lease: LeaseLike) -> p.LeaseRef:
    if isinstance(lease, p.LeaseRef):
        return lease
    if isinstance(lease, p.Lease):
        return p.LeaseRef(lease.name, lease.token)
    return lease.ref

T = TypeVar("T")


class SessionMethods:
    """Every wire method in snake_case; see docs/protocol.md, and calls.py for each one."""

    _calls: Calls

    def _run(self, call: Call[T]) -> T:
        raise NotImplementedError

    @property
    def session_id(self) -> str | None:
        """The session every session method addresses (None: the project's current)."""
        return self._calls.session_id

    def bound(self, session_id: str | None) -> SessionMethods:
        """This client's methods with every session method addressing ``session_id``
        (None: the project's current session), on this client's connection."""
        return _Bound(self, session_id)

    def fenced(self, lease: LeaseLike) -> SessionMethods:
        """This client's methods with ``lease`` attached to every call that changes
        something (``transact`` included): each is refused (LeaseHeld), changing
        nothing, unless the lease is still held with that token when it applies."""
        return _Fenced(self, _ref(lease))

    def acquire_lease(self, name: str, ttl: float | None = None, owner: str | None = None) -> Lease:
        """See Calls.acquire_lease; ``with s.acquire_lease(...) as lease:`` renews it in
        a thread every ttl/3 and releases it at the end."""
        return Lease(self, self._run(self._calls.acquire_lease(name, ttl, owner)))

    def renew_lease(self, name: str, token: int, ttl: float | None = None) -> p.Lease:
        return self._run(self._calls.renew_lease(name, token, ttl))

    def release_lease(self, name: str, token: int) -> None:
        return self._run(self._calls.release_lease(name, token))

    def list_leases(self, session: str | None = None) -> list[p.Lease]:
        return self._run(self._calls.list_leases(session))

    def get_session_id(self) -> str:
        return self._run(self._calls.get_session_id())

    @contextlib.contextmanager
    def transaction(self, expect_revision: int | None = None, lease: LeaseLike | None = None
                    ) -> Iterator[Transaction]:
        """``with s.transaction() as t: t.set_context(...); t.add_message(...)``: the ops
        go as one ``transact`` when the block ends (none when it raises), all or none;
        ``t.results`` then holds their results. ``expect_revision``: the session's
        revision must still be this one (else Conflict). ``lease``: the transaction is
        fenced by it (else LeaseHeld, nothing applied)."""
        t = Transaction()
        yield t
        if t.ops:
            t.results = self.transact(t, expect_revision, lease)

    def transact(self, t: Transaction, expect_revision: int | None = None,
                 lease: LeaseLike | None = None) -> list[Any]:
        """Send ``t``'s ops as one ``transact`` (what :meth:`transaction` does on exit)."""
        call = self._calls.transact(t, expect_revision)
        return self._run(call if lease is None else with_lease(call, _ref(lease)))

    def get_current_task(self) -> str | None:
        return self._run(self._calls.get_current_task())

    def set_current_task(self, task: str | None, expect: Any = NOT_GIVEN) -> None:
        return self._run(self._calls.set_current_task(task, expect))

    def add_message(self, role: str, content: str, timestamp: int | None = None, message_id: str | None = None,
                    data: Any = NOT_GIVEN) -> None:
        return self._run(self._calls.add_message(role, content, timestamp, message_id, data))

    def add_messages(self, messages: Iterable[Mapping[str, Any]]) -> None:
        return self._run(self._calls.add_messages(messages))

    @overload
    def get_recent_messages(self, count: int, full: Literal[False] = False, *,
                            before: int | None = None) -> list[p.Message]: ...
    @overload
    def get_recent_messages(self, count: int, full: Literal[True], *,
                            before: int | None = None) -> list[p.FullMessage]: ...
    def get_recent_messages(self, count: int, full: bool = False, *,
                            before: int | None = None) -> list[p.Message] | list[p.FullMessage]:
        """The last ``count`` messages, oldest first; with ``before``, the ``count``
        messages before that index (page a long history back, newest first)."""
        if full:
            return self._run(self._calls.get_recent_full(count, before))
        return self._run(self._calls.get_recent_messages(count, before))

    @overload
    def get_all_messages(self, full: Literal[False] = False) -> list[p.Message]: ...
    @overload
    def get_all_messages(self, full: Literal[True]) -> list[p.FullMessage]: ...
    def get_all_messages(self, full: bool = False) -> list[p.Message] | list[p.FullMessage]:
        if full:
            return self._run(self._calls.get_all_full())
        return self._run(self._calls.get_all_messages())

    def pop_message(self, expect: Any = NOT_GIVEN) -> p.FullMessage | None:
        return self._run(self._calls.pop_message(expect))

    def trim_messages(self, keep: int) -> int:
        return self._run(self._calls.trim_messages(keep))

    def track_open_file(self, file_path: str) -> None:
        return self._run(self._calls.track_open_file(file_path))

    def untrack_file(self, file_path: str) -> None:
        return self._run(self._calls.untrack_file(file_path))

    def get_open_files(self) -> list[str]:
        return self._run(self._calls.get_open_files())

    def set_active_ticket(self, ticket_id: str | None, expect: Any = NOT_GIVEN) -> None:
        return self._run(self._calls.set_active_ticket(ticket_id, expect))

    def claim_ticket(self, ticket_id: str) -> None:
        """Make ``ticket_id`` active only if no ticket is: raises Conflict naming the
        holder (``.current``) when another agent got there first."""
        return self._run(self._calls.set_active_ticket(ticket_id, expect=None))

    def get_active_ticket(self) -> str | None:
        return self._run(self._calls.get_active_ticket())

    def set_context(self, key: str, value: Any, expect: Any = NOT_GIVEN) -> None:
        return self._run(self._calls.set_context(key, value, expect))

    def get_context(self, key: str) -> Any:
        return self._run(self._calls.get_context(key))

    def delete_context(self, key: str, expect: Any = NOT_GIVEN) -> None:
        return self._run(self._calls.delete_context(key, expect))

    def get_all_context(self) -> dict[str, Any]:
        return self._run(self._calls.get_all_context())

    def list_context(self, prefix: str = "", *, after: str | None = None, limit: int | None = None,
                     reverse: bool = False) -> p.ContextPage:
        return self._run(self._calls.list_context(prefix, after=after, limit=limit, reverse=reverse))

    def list_contexts(self, queries: Iterable[Mapping[str, Any]]) -> list[p.ContextPage]:
        return self._run(self._calls.list_contexts(queries))

    def clear(self) -> str:
        return self._run(self._calls.clear())

    def get_stats(self) -> p.Stats:
        return self._run(self._calls.get_stats())

    def snapshot(self) -> p.SnapshotResult:
        return self._run(self._calls.snapshot())

    def restore(self) -> None:
        return self._run(self._calls.restore())

    def sync(self) -> p.SyncResult:
        return self._run(self._calls.sync())

    def hello(self) -> p.HelloResult:
        return self._run(self._calls.hello())

    def shutdown(self) -> None:
        return self._run(self._calls.shutdown())

    def create_session(self, session_id: str | None = None, fork_from: str | None = None,
                       up_to: int | None = None, make_current: bool = False) -> str:
        return self._run(self._calls.create_session(session_id, fork_from, up_to, make_current))

    def search_messages(self, query: str, *, all_sessions: bool = False, session: str | None = None,
                        mode: str = "words", roles: Iterable[str] | None = None, since: int | None = None,
                        until: int | None = None, limit: int | None = None,
                        cursor: str | None = None) -> p.SearchResult:
        """Search message content (calls.Calls.search_messages)."""
        return self._run(self._calls.search_messages(query, all_sessions=all_sessions, session=session, mode=mode,
                                                     roles=roles, since=since, until=until, limit=limit,
                                                     cursor=cursor))

    def list_sessions(self) -> list[p.SessionInfo]:
        return self._run(self._calls.list_sessions())

    def set_current_session(self, session_id: str) -> None:
        return self._run(self._calls.set_current_session(session_id))

    def delete_session(self, session_id: str) -> None:
        return self._run(self._calls.delete_session(session_id))

    def export_session(self, session: str | None = None) -> list[p.Record]:
        return self._run(self._calls.export_session(session))

    def import_session(self, records: Iterable[p.Record | Mapping[str, Any] | bytes], session_id: str | None = None,
                       make_current: bool = False) -> str:
        return self._run(self._calls.import_session(records, session_id, make_current))

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Any method by its wire name, params by name."""
        return self._run(self._calls.any(method, params))


class AsyncSessionMethods:
    """The same methods as ``Session``'s (see SessionMethods), as coroutines."""

    _calls: Calls

    async def _run(self, call: Call[T]) -> T:
        raise NotImplementedError

    @property
    def session_id(self) -> str | None:
        return self._calls.session_id

    def bound(self, session_id: str | None) -> AsyncSessionMethods:
        """See SessionMethods.bound."""
        return _AsyncBound(self, session_id)

    def fenced(self, lease: LeaseLike) -> AsyncSessionMethods:
        """See SessionMethods.fenced."""
        return _AsyncFenced(self, _ref(lease))

    async def acquire_lease(self, name: str, ttl: float | None = None, owner: str | None = None) -> AsyncLease:
        """See Calls.acquire_lease; ``async with await s.acquire_lease(...) as lease:``
        renews it in a task every ttl/3 and releases it at the end."""
        return AsyncLease(self, await self._run(self._calls.acquire_lease(name, ttl, owner)))

    async def renew_lease(self, name: str, token: int, ttl: float | None = None) -> p.Lease:
        return await self._run(self._calls.renew_lease(name, token, ttl))

    async def release_lease(self, name: str, token: int) -> None:
        return await self._run(self._calls.release_lease(name, token))

    async def list_leases(self, session: str | None = None) -> list[p.Lease]:
        return await self._run(self._calls.list_leases(session))

    async def get_session_id(self) -> str:
        return await self._run(self._calls.get_session_id())

    @contextlib.asynccontextmanager
    async def transaction(self, expect_revision: int | None = None, lease: LeaseLike | None = None
                          ) -> AsyncIterator[Transaction]:
        """``async with s.transaction() as t: t.set_context(...); t.add_message(...)``
        (the ops are recorded, not awaited): one ``transact`` when the block ends (none
        when it raises), all or none; ``t.results`` then holds their results."""
        t = Transaction()
        yield t
        if t.ops:
            t.results = await self.transact(t, expect_revision, lease)

    async def transact(self, t: Transaction, expect_revision: int | None = None,
                       lease: LeaseLike | None = None) -> list[Any]:
        """Send ``t``'s ops as one ``transact`` (what :meth:`transaction` does on exit)."""
        call = self._calls.transact(t, expect_revision)
        return await self._run(call if lease is None else with_lease(call, _ref(lease)))

    async def get_current_task(self) -> str | None:
        return await self._run(self._calls.get_current_task())

    async def set_current_task(self, task: str | None, expect: Any = NOT_GIVEN) -> None:
        return await self._run(self._calls.set_current_task(task, expect))

    async def add_message(self, role: str, content: str, timestamp: int | None = None,
                          message_id: str | None = None, data: Any = NOT_GIVEN) -> None:
        return await self._run(self._calls.add_message(role, content, timestamp, message_id, data))

    async def add_messages(self, messages: Iterable[Mapping[str, Any]]) -> None:
        return await self._run(self._calls.add_messages(messages))

    @overload
    async def get_recent_messages(self, count: int, full: Literal[False] = False, *,
                                  before: int | None = None) -> list[p.Message]: ...
    @overload
    async def get_recent_messages(self, count: int, full: Literal[True], *,
                                  before: int | None = None) -> list[p.FullMessage]: ...
    async def get_recent_messages(self, count: int, full: bool = False, *,
                                  before: int | None = None) -> list[p.Message] | list[p.FullMessage]:
        """The last ``count`` messages, oldest first; with ``before``, the ``count``
        messages before that index (page a long history back, newest first)."""
        if full:
            return await self._run(self._calls.get_recent_full(count, before))
        return await self._run(self._calls.get_recent_messages(count, before))

    @overload
    async def get_all_messages(self, full: Literal[False] = False) -> list[p.Message]: ...
    @overload
    async def get_all_messages(self, full: Literal[True]) -> list[p.FullMessage]: ...
    async def get_all_messages(self, full: bool = False) -> list[p.Message] | list[p.FullMessage]:
        if full:
            return await self._run(self._calls.get_all_full())
        return await self._run(self._calls.get_all_messages())

    async def pop_message(self, expect: Any = NOT_GIVEN) -> p.FullMessage | None:
        return await self._run(self._calls.pop_message(expect))

    async def trim_messages(self, keep: int) -> int:
        return await self._run(self._calls.trim_messages(keep))

    async def track_open_file(self, file_path: str) -> None:
        return await self._run(self._calls.track_open_file(file_path))

    async def untrack_file(self, file_path: str) -> None:
        return await self._run(self._calls.untrack_file(file_path))

    async def get_open_files(self) -> list[str]:
        return await self._run(self._calls.get_open_files())

    async def set_active_ticket(self, ticket_id: str | None, expect: Any = NOT_GIVEN) -> None:
        return await self._run(self._calls.set_active_ticket(ticket_id, expect))

    async def claim_ticket(self, ticket_id: str) -> None:
        return await self._run(self._calls.set_active_ticket(ticket_id, expect=None))

    async def get_active_ticket(self) -> str | None:
        return await self._run(self._calls.get_active_ticket())

    async def set_context(self, key: str, value: Any, expect: Any = NOT_GIVEN) -> None:
        return await self._run(self._calls.set_context(key, value, expect))

    async def get_context(self, key: str) -> Any:
        return await self._run(self._calls.get_context(key))

    async def delete_context(self, key: str, expect: Any = NOT_GIVEN) -> None:
        return await self._run(self._calls.delete_context(key, expect))

    async def get_all_context(self) -> dict[str, Any]:
        return await self._run(self._calls.get_all_context())

    async def list_context(self, prefix: str = "", *, after: str | None = None, limit: int | None = None,
                           reverse: bool = False) -> p.ContextPage:
        return await self._run(self._calls.list_context(prefix, after=after, limit=limit, reverse=reverse))

    async def list_contexts(self, queries: Iterable[Mapping[str, Any]]) -> list[p.ContextPage]:
        return await self._run(self._calls.list_contexts(queries))

    async def clear(self) -> str:
        return await self._run(self._calls.clear())

    async def get_stats(self) -> p.Stats:
        return await self._run(self._calls.get_stats())

    async def snapshot(self) -> p.SnapshotResult:
        return await self._run(self._calls.snapshot())

    async def restore(self) -> None:
        return await self._run(self._calls.restore())

    async def sync(self) -> p.SyncResult:
        return await self._run(self._calls.sync())

    async def hello(self) -> p.HelloResult:
        return await self._run(self._calls.hello())

    async def shutdown(self) -> None:
        return await self._run(self._calls.shutdown())

    async def create_session(self, session_id: str | None = None, fork_from: str | None = None,
                             up_to: int | None = None, make_current: bool = False) -> str:
        return await self._run(self._calls.create_session(session_id, fork_from, up_to, make_current))

    async def search_messages(self, query: str, *, all_sessions: bool = False, session: str | None = None,
                              mode: str = "words", roles: Iterable[str] | None = None, since: int | None = None,
                              until: int | None = None, limit: int | None = None,
                              cursor: str | None = None) -> p.SearchResult:
        """Search message content (calls.Calls.search_messages)."""
        return await self._run(self._calls.search_messages(
            query, all_sessions=all_sessions, session=session, mode=mode, roles=roles, since=since, until=until,
            limit=limit, cursor=cursor))

    async def list_sessions(self) -> list[p.SessionInfo]:
        return await self._run(self._calls.list_sessions())

    async def set_current_session(self, session_id: str) -> None:
        return await self._run(self._calls.set_current_session(session_id))

    async def delete_session(self, session_id: str) -> None:
        return await self._run(self._calls.delete_session(session_id))

    async def export_session(self, session: str | None = None) -> list[p.Record]:
        return await self._run(self._calls.export_session(session))

    async def import_session(self, records: Iterable[p.Record | Mapping[str, Any] | bytes],
                             session_id: str | None = None, make_current: bool = False) -> str:
        return await self._run(self._calls.import_session(records, session_id, make_current))

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return await self._run(self._calls.any(method, params))


class _Bound(SessionMethods):
    """A client's methods bound to another session, run by that client."""

    def __init__(self, client: SessionMethods, session_id: str | None) -> None:
        self._client = client
        self._calls = Calls(session_id)

    def _run(self, call: Call[T]) -> T:
        return self._client._run(call)


class _AsyncBound(AsyncSessionMethods):
    def __init__(self, client: AsyncSessionMethods, session_id: str | None) -> None:
        self._client = client
        self._calls = Calls(session_id)

    async def _run(self, call: Call[T]) -> T:
        return await self._client._run(call)


class _Fenced(SessionMethods):
    """A client's methods with a lease attached to every mutating call (fenced())."""

    def __init__(self, client: SessionMethods, lease: p.LeaseRef) -> None:
        self._client = client
        self._calls = client._calls
        self._lease = lease

    def _run(self, call: Call[T]) -> T:
        return self._client._run(with_lease(call, self._lease))


class _AsyncFenced(AsyncSessionMethods):
    def __init__(self, client: AsyncSessionMethods, lease: p.LeaseRef) -> None:
        self._client = client
        self._calls = client._calls
        self._lease = lease

    async def _run(self, call: Call[T]) -> T:
        return await self._client._run(with_lease(call, self._lease))
