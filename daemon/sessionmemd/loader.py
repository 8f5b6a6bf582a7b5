"""Sessions in and out of memory: the asyncio shell around host.py's sessions.

A call on a session that is in memory runs at once (the common case: one dict
lookup more than before). A call on one that is not waits while the loader reads it on
a reader thread of its own (storage.Reader: it reads while the writer thread writes):
its newest messages first (storage.TAIL), so task, ticket, files, context, stats and
recent messages answer after one small read, and the rest of its history behind them,
oldest part in one read, spliced in front. A call that needs the whole history
(getAllMessages, export, a fork, a trim, ...) waits for that part only.

Order. Calls on one session run in the order they arrived: once one of them waits,
every later call on that session queues behind it (``_last``), even one that could
run at once; a client that pipelines a write and then a read sees its write. Calls on
the set of sessions (create, import, delete, ``clear``) queue behind the calls already
waiting on the session they name (:meth:`session_op`). A call that must wait and that
changes which session is current, or a write that must wait for the next block of
revisions to be durable, is a *gate*: every call after it, on any session, waits until
it has run, and only then finds its session, so "the current session" means the one
current when the call's turn comes.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import types
import logging
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from msgspec import UNSET

from sessionmem import errors
from sessionmem import protocol as p

from .host import SessionHost
from .hostcore import no_such_session
from .state import SessionState
from .searchquery import Query
from .storage import TAIL, ChangeRow, HitRow, Reader, StoreError

log = logging.getLogger("sessionmemd")
T = TypeVar("T")
NeedsAll = Callable[[SessionState], bool] | None


def always(_s: SessionState) -> bool:
    """For calls that need a session's whole history."""
    return True


async def outcome_of(task: asyncio.Future[T]) -> T:
    return await task


def copy_outcome(out: asyncio.Future[T], task: asyncio.Task[T]) -> None:
    if out.done():
        return
    if task.cancelled():
        out.cancel()
    elif task.exception() is not None:
        out.set_exception(task.exception())  # type: ignore[arg-type]
    else:
        out.set_result(task.result())


async def _no_room(_n: int) -> None:
    raise errors.PersistFailed("no revision is reserved durably yet; nothing was changed, retry")


class Loader:
    def __init__(self, host: SessionHost, open_reader: Callable[[], Reader], tail: int = TAIL,
                 wait_room: Callable[[int], Awaitable[None]] | None = None) -> None:
        self._host = host
        # Waits until the next block of revisions is durable (persist.Persister.room).
        self._wait_room = wait_room or _no_room
        self._open_reader = open_reader
        self._tail = tail
        self._reader: Reader | None = None  # used on the reader thread only
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-reader")
        self._loading: dict[str, asyncio.Future[SessionState]] = {}
        self._completing: dict[str, asyncio.Future[None]] = {}
        self._last: dict[str, asyncio.Future[None]] = {}  # the end of each session's last queued call
        self._gate: asyncio.Future[None] | None = None  # every call waits for it (see Order)
        self._behind_gate: collections.deque[tuple[Any, ...]] = collections.deque()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- calls -------------------------------------------------------------------------
    def ready(self, ref: str | p.UnsetType, needs_all: NeedsAll = None, write: int = 0
              ) -> SessionState | None:
        """The session a call may run on at once, or None (then :meth:`later`). Raises
        NoSuchSession for an unknown id. ``write``: how many changes the call may make
        (a transaction's ops; True for one), each needing a revision within the durable
        mark."""
        if self._gate is not None:
            return None
        host = self._host
        if write and host.revision + write > host.reserved:  # room_for, inline: every write passes here
            return None
        if ref is UNSET:  # the common case: the current session, always in memory
            sid = host.current_id
            s: SessionState | None = host.loaded[sid]
        else:
            sid = host.resolve(ref)
            s = host.get(sid)
        if (s is not None and (not self._last or sid not in self._last)
                and (s.older == 0 or needs_all is None or not needs_all(s))):
            return s
        return None

    def call(self, ref: str | p.UnsetType, op: Callable[[SessionState], T], needs_all: NeedsAll = None,
             write: int = 0, switches: bool = False) -> T | Coroutine[Any, Any, T]:
        """``op(session)`` now when it can run now, else a coroutine that runs it once
        the session (and, when ``needs_all(session)``, its whole history) is loaded.
        ``switches``: the op may make another session current."""
        s = self.ready(ref, needs_all, write)
        if s is not None:
            return op(s)
        return self.later(ref, op, needs_all, write, switches)

    def later(self, ref: str | p.UnsetType, op: Callable[[SessionState], T], needs_all: NeedsAll = None,
              write: int = 0, switches: bool = False) -> Coroutine[Any, Any, T]:
        """Run ``op(session)`` once the session is ready, after every call on it that
        is already waiting (and after any gate)."""
        return self._defer(ref, op, needs_all, write, switches, load=True)

    def session_op(self, sid: str | p.UnsetType | None, op: Callable[[], T], switches: bool = False
                   ) -> T | Coroutine[Any, Any, T]:
        """``op()``, a change to the set of sessions that names ``sid`` (UNSET: the current
        one; None: none yet), now, or once the calls already waiting on ``sid`` (and any
        gate) have run."""
        key = self._host.current_id if sid is UNSET else sid
        if self._gate is None and self._host.has_room and (key is None or key not in self._last):
            return op()
        return self._defer(sid, lambda _s: op(), None, True, switches, load=False)

    def _defer(self, ref: str | p.UnsetType | None, op: Callable[[Any], T], needs_all: NeedsAll,
               write: int, switches: bool, load: bool) -> Coroutine[Any, Any, T]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if self._gate is None:
            task = self._enqueue(ref, op, needs_all, write, load, done)
            if switches or (write and not self._host.room_for(write)):
                self._gate = done
            return outcome_of(task)
        # Behind a gate: the session (and whether it exists) is decided when it passes.
        out: asyncio.Future[T] = loop.create_future()
        self._behind_gate.append((ref, op, needs_all, write, switches, load, done, out))
        return outcome_of(out)

    def _gate_passed(self) -> None:
        """The gate's call has run: queue the calls that waited for it, in arrival order,
        here and now (not from a callback: a request read meanwhile must not overtake
        them), up to the next one that is a gate itself."""
        self._gate = None
        waiting = self._behind_gate
        while waiting:
            ref, op, needs_all, write, switches, load, done, out = waiting.popleft()
            try:
                task = self._enqueue(ref, op, needs_all, write, load, done)
            except BaseException as e:  # NoSuchSession: the call's own answer
                out.set_exception(e)
                continue
            task.add_done_callback(functools.partial(copy_outcome, out))
            if switches or (write and not self._host.room_for(write)):
                self._gate = done
                return

    def _enqueue(self, ref: str | p.UnsetType | None, op: Callable[[Any], T], needs_all: NeedsAll,
                 write: int, load: bool, done: asyncio.Future[None]) -> asyncio.Task[T]:
        sid = self._host.resolve(ref) if ref is not None and (load or ref is UNSET) else ref
        prev = self._last.get(sid) if sid is not None else None
        if sid is not None:
            self._last[sid] = done
        # A task, not a bare coroutine: it runs (and ends the queue entry) even when
        # the reply is never awaited (the connection closed meanwhile).
        task = asyncio.get_running_loop().create_task(
            self._queued(sid, prev, done, op, needs_all, write, load))
        self._keep(task)
        return task

    async def _queued(self, sid: str | None, prev: asyncio.Future[None] | None, done: asyncio.Future[None],
                      op: Callable[[Any], T], needs_all: NeedsAll, write: int, load: bool) -> T:
        try:
            if prev is not None:
                await prev
            s = await self.ensure(sid, needs_all) if load and sid is not None else None
            if write and not self._host.room_for(write):
                await self._wait_room(write)
                if load and sid is not None:
                    s = await self.ensure(sid, needs_all)
            result: Any = op(s)
            if type(result) is types.CoroutineType:  # an op that itself had to wait (a fork)
                result = await result
            return result  # type: ignore[no-any-return]
        finally:
            done.set_result(None)
            if sid is not None and self._last.get(sid) is done:
                del self._last[sid]
            if self._gate is done:
                self._gate_passed()

    def busy(self) -> set[str]:
        """Sessions with calls waiting or loads under way: not to be unloaded."""
        return set(self._last) | set(self._loading) | set(self._completing)

    # -- loading -----------------------------------------------------------------------
    async def ensure(self, sid: str, needs_all: NeedsAll = None) -> SessionState:
        """The session in memory (loaded if need be), its history complete when
        ``needs_all(session)``."""
        host = self._host
        s = host.get(sid)
        if s is None:
            if sid not in host.known:
                raise no_such_session(sid)
            fut = self._loading.get(sid)
            if fut is None:
                fut = self._loading[sid] = asyncio.ensure_future(self._load(sid))
                fut.add_done_callback(lambda _f: self._loading.pop(sid, None))
            s = await asyncio.shield(fut)
        if not s.complete and needs_all is not None and needs_all(s):
            await asyncio.shield(self.complete(s))
        if host.loaded.get(sid) is not s:
            # Deleted, or replaced by a restore, while it loaded: ask again.
            return await self.ensure(sid, needs_all)
        return s

    async def _load(self, sid: str) -> SessionState:
        host = self._host
        revision, tail = host.known.get(sid, 0), self._tail
        r = await self._read(lambda reader: reader.load_session(sid, revision, tail))
        if sid not in host.known or r is None:
            raise no_such_session(sid)
        existing = host.loaded.get(sid)
        if existing is not None:  # made anew (deleted, imported) while it was read
            return existing
        s = SessionState.from_restored(r)
        host.adopt(s)
        if not s.complete:
            self.complete(s)
        return s

    def complete(self, s: SessionState) -> asyncio.Future[None]:
        """Load the rest of ``s``'s history (behind its tail), once."""
        sid = s.session_id
        fut = self._completing.get(sid)
        if fut is None or fut.done():
            fut = self._completing[sid] = asyncio.ensure_future(self._complete(s))
            fut.add_done_callback(lambda f: self._completed(sid, f))
        return fut

    def _completed(self, sid: str, fut: asyncio.Future[None]) -> None:
        if self._completing.get(sid) is fut:
            del self._completing[sid]
        if not fut.cancelled() and fut.exception() is not None:
            log.error("the older messages of session %s cannot be read: %s", sid, fut.exception())

    async def _complete(self, s: SessionState) -> None:
        try:
            sid, cursor = s.session_id, s.older_cursor
            older = await self._read(lambda reader: reader.load_older(sid, cursor))
        except StoreError as e:
            raise errors.SessionmemError(
                f"the older messages of session {s.session_id!r} cannot be read from the database: "
                f"{e}; the newest {s.loaded_messages} are served", code=p.INTERNAL_ERROR) from e
        if self._host.loaded.get(s.session_id) is s and not s.complete:
            s.add_older(older)
            self._host.adopt(s)  # applies --max-messages to the whole history

    async def list_sessions(self) -> list[p.SessionInfo]:
        """Every session, the most recently changed first: those in memory as they are
        now, the others as the database holds them (they were written before they were
        dropped)."""
        rows = await self._read(lambda reader: reader.session_rows())
        host = self._host
        out: list[p.SessionInfo] = []
        for sid, rev in host.known.items():
            s = host.loaded.get(sid)
            if s is not None:
                out.append(p.SessionInfo(sid, s.start_time, s.current_task, s.active_ticket, s.messages_count,
                                         s.files_count, s.context_count, s.revision, sid == host.current_id))
            elif sid in rows:
                start, task, ticket, m, f, c = rows[sid]
                out.append(p.SessionInfo(sid, start, task, ticket, m, f, c, rev, sid == host.current_id))
        out.sort(key=lambda i: (i.revision, i.startTime), reverse=True)
        return out

    async def search(self, query: Query) -> tuple[list[HitRow], bool]:
        """searchMessages' page, read by the store (storage.Reader.search)."""
        try:
            return await self._read(lambda reader: reader.search(query))
        except StoreError as e:
            raise errors.InternalError(f"searchMessages: the store could not search: {e}") from None

    async def change_rows(self, since: int, upto: int) -> list[ChangeRow]:
        """The changes the store's log holds after ``since`` up to ``upto``."""
        return await self._read(lambda reader: reader.change_rows(since, upto))

    # -- the reader thread ---------------------------------------------------------------
    async def _read(self, fn: Callable[[Reader], T]) -> T:
        """``fn(reader)`` on the reader thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._on_reader, fn)

    def _on_reader(self, fn: Callable[[Reader], T]) -> T:
        if self._reader is None:
            self._reader = self._open_reader()
        return fn(self._reader)

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def shrink(self) -> None:
        """Let the reader's caches go (after sessions were dropped)."""
        self._executor.submit(self._shrink)

    def _shrink(self) -> None:
        if self._reader is not None:
            self._reader.shrink()

    def reset(self) -> None:
        """The store was opened anew: read the new one from now on. (Callable from any
        thread: the close is queued on the reader thread.)"""
        self._executor.submit(self._close_reader)

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settled(self) -> None:
        """Wait for the calls queued so far (a shutdown answers them first)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def close(self) -> None:
        for loading in self._loading.values():
            loading.cancel()
        for completing in self._completing.values():
            completing.cancel()
        self._executor.submit(self._close_reader)
        self._executor.shutdown(wait=True)
