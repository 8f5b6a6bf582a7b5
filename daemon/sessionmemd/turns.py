"""Write turns: how the daemons sharing one project on PostgreSQL decide and commit.

A mutating call is not applied when it is read: the dispatcher hands it here
(``defer``), and the next turn runs it. A turn, one at a time: open a transaction
that locks the project row and read the changes other daemons committed since this
one's revision (pgshared.PgShared.fetch, on the writer thread); apply them
(replay.apply, on the loop); run the turn's calls, in the order they came, against
that memory (``expect``, message ids, the current session, leases: decided on the
project's latest state); write what they changed, their frames and the revision,
NOTIFY, commit (PgShared.finish); only then reply and publish. Every call of one
loop turn shares the transaction (group commit).

Without calls, a turn only reads (``sync``; a NOTIFY or the listener's heartbeat):
the changes committed so far are applied and published.

A turn's calls change memory before their commit, so, until it is settled, every
change records its inverse (undo.py) and the reads that come meanwhile wait for the
commit (heldreads.py: answered the moment the turn is settled, before the next one runs):
no reply shows a change that may not be committed. A call that fails on its own (a
conflict, bad params, a bug) is undone alone and keeps its error; the others go on.
A turn that does not commit is undone at once, every call of it getting -32004 naming
the store. When the store refused it (it answered: a trigger, a constraint), that is
all. When it cannot be reached (or the commit's outcome is unknown), writes are also
refused at once (the dispatcher's ``writes_refused``) while reads answer from memory
as it was before the turn, and the daemon reconnects with backoff, then reads
everything back (a full reload, the changes since its last committed revision
appended to its log), so every watcher gets every committed change, once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from sessionmem import errors

from . import replay
from .feed import Feed
from .heldreads import HeldReads
from .loader import outcome_of
from .host import SessionHost
from .rpc import Dispatcher
from .state import SessionState
from .storage import StoreRefused, TurnStale

if TYPE_CHECKING:  # psycopg is imported only with a PostgreSQL store
    from .pgshared import Fetched, PgShared

log = logging.getLogger("sessionmemd")

Thunk = Callable[[], Any]

FIRST_DELAY = 0.05  # seconds before the first reconnect
MOST_DELAY = 2.0  # the longest wait between two attempts
SKIP_TRIES = 3  # turns decided without the project's row before one under its lock


def backoff(first: float = FIRST_DELAY, most: float = MOST_DELAY) -> Iterator[float]:
    """The waits between reconnect attempts: doubling from ``first`` up to ``most``."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, most)


class Turns:
    def __init__(self, store: PgShared, host: SessionHost, feed: Feed, dispatcher: Dispatcher,
                 reset_readers: Callable[[], None], new_state: Callable[[], SessionState],
                 complete: Callable[[SessionState], object]) -> None:
        self._store = store
        self._host = host
        self._feed = feed
        self._dispatcher = dispatcher
        # The store's calls run on a thread of their own, at normal priority (the
        # persister's writer thread runs niced, for big snapshots; every reply waits
        # for a turn here). The persister has nothing to write on this store.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-turns")
        self._reset_readers = reset_readers
        self._new_state = new_state
        self._complete = complete
        self._calls: list[tuple[Thunk, asyncio.Future[Any]]] = []
        self._held = HeldReads(dispatcher, store.location)  # reads waiting for a commit
        self._reads: list[asyncio.Future[int]] = []
        self._lock = asyncio.Lock()
        self._scheduled = False
        self._recovering: asyncio.Task[None] | None = None
        self.committed = host.revision  # memory holds what the store holds up to here
        self.turns = 0  # write turns committed (stats, benchmarks)
        self.in_turn = False  # a write turn is running its calls (under the row lock)
        self.outages = 0
        # The newest revision another daemon announced (NOTIFY): a turn asks for the
        # changes with its first query only when some are expected (pgshared.fetch).
        self._announced = 0
        dispatcher.defer = self.defer

    # -- what the dispatcher, the lifecycle and sync hand in ------------------------------
    def defer(self, thunk: Thunk, conn: Any = None) -> Coroutine[Any, Any, Any]:
        """A mutating call (or a read behind one on the same connection): run by the
        next write turn, in the order they came; its result once committed."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls.append((thunk, fut))
        if conn is not None:
            waiting = self._dispatcher.deferring
            waiting[conn] = waiting.get(conn, 0) + 1
            fut.add_done_callback(lambda _f: self._done(conn))
        self._schedule()
        return outcome_of(fut)

    def _done(self, conn: Any) -> None:
        waiting = self._dispatcher.deferring
        left = waiting.get(conn, 1) - 1
        if left > 0:
            waiting[conn] = left
        else:
            waiting.pop(conn, None)

    async def sync(self) -> int:
        """Every change committed before this call applied; the revision then. Asked
        while a write turn runs its calls (``sync`` pipelined behind a write), that turn
        caught up under the project's row lock: no daemon has committed since."""
        if self.in_turn:
            return self._host.revision
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reads.append(fut)
        self._schedule()
        return await fut

    async def flush(self) -> None:
        """The clean stop's last turn: what this daemon changed without a call (the new
        current session it made at its start, on a project that had none) is committed
        before it exits; the persister's final snapshot has nothing to write here."""
        if self._recovering is None and (self._calls or self._host.own_changes_pending()):
            await self._turn()
        if self._host.own_changes_pending():
            log.error("stopping with changes the store did not take (it is unreachable)")

    def poke(self, revision: int | None = None) -> None:
        """Another daemon may have committed (a NOTIFY with its revision, the heartbeat
        with None): catch up, unless that revision is applied here already (this
        daemon's own commits notify it too) or a turn is due anyway."""
        if revision is not None:
            if revision <= self._host.revision:
                return
            self._announced = max(self._announced, revision)
        self._schedule()  # a turn with nothing to run reads

    def poke_threadsafe(self, loop: asyncio.AbstractEventLoop) -> Callable[[int | None], None]:
        def wake(revision: int | None) -> None:
            # This daemon's own commits notify it too: not worth a wake-up of the loop
            # per write (poke would drop them there, by the same test). Read off the
            # loop, the revision may be a moment old: lower, the loop is woken for
            # nothing; higher (during a turn whose changes are undone when it fails),
            # the same as poke would decide, and the heartbeat reads within a second.
            if revision is not None and revision <= self._host.revision:
                return
            loop.call_soon_threadsafe(self.poke, revision)
        return wake

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        asyncio.get_running_loop().create_task(self._turn())

    # -- one turn ------------------------------------------------------------------------
    async def _turn(self) -> None:
        async with self._lock:
            self._scheduled = False
            calls, self._calls = self._calls, []
            reads, self._reads = self._reads, []
            if self._recovering is None:
                try:
                    if calls or self._host.own_changes_pending():
                        await self._write(calls)
                    else:
                        await self._read()
                except Exception as e:  # a bug: the callers hear of it, the turns go on
                    log.error("internal error in a turn", exc_info=e)
                    _fail(calls, errors.InternalError(f"internal error: {e!r}"))
            if self._recovering is not None:  # unreachable: sync cannot say what is committed
                err = self._dispatcher.writes_refused or errors.PersistFailed("the store is unreachable")
                _fail(calls, err)
                _fail(reads, err)
            else:
                _answer(reads, self._host.revision)
        if self._calls or self._reads:
            self._schedule()

    async def _fetch(self, lock: bool) -> Fetched:
        host = self._host
        return await self._run_blocking(self._store.fetch, host.revision, frozenset(host.loaded),  # type: ignore[no-any-return]
                                        host.current_id, lock, False, host.own_changes_pending(),
                                        bool(host.leases.held), self._announced > host.revision)

    async def _read(self) -> None:
        try:
            fetched = await self._fetch(lock=False)
        except Exception as e:  # the store went away: reconnect (writes refused meanwhile)
            self._lost(e, [])
            return
        try:
            self._absorb(fetched)
        except Exception as e:  # memory may be half brought forward: read it all anew
            self._lost(e, [])

    async def _write(self, calls: list[tuple[Thunk, asyncio.Future[Any]]]) -> None:
        # Decided on memory brought up to date without the project's row (a read, when
        # another daemon announced changes), and committed in one round trip that takes
        # the row and checks that nothing was committed meanwhile (pgshared.finish
        # ``applied``): the row is never held across a round trip, so the daemons' turns
        # overlap. If something was committed, the turn is undone and decided again; after
        # SKIP_TRIES of those (or with a lease held: see _may_skip), the usual way, on
        # what the store holds under the row's lock, which always goes through.
        for _ in range(SKIP_TRIES):
            if not self._may_skip():
                break
            if self._announced > self._host.revision:
                try:
                    self._absorb(await self._fetch(lock=False))
                except Exception as e:
                    self._lost(e, calls)
                    return
            if not await self._turn_calls(calls, None):
                return
        try:
            fetched = await self._fetch(lock=True)
        except Exception as e:
            self._lost(e, calls)
            return
        await self._turn_calls(calls, fetched)

    def _may_skip(self) -> bool:
        """A turn may be decided without the project's row: no lease is held here (a
        renewal on another daemon is no change, only the store's table has it, which a
        locked :meth:`_fetch` reads)."""
        return not self._host.leases.held

    async def _turn_calls(self, calls: list[tuple[Thunk, asyncio.Future[Any]]], fetched: Fetched | None) -> bool:
        """Run the calls and commit them; True when the turn must be decided again
        (``fetched`` None: decided on memory, and another daemon had committed)."""
        host = self._host
        # Each call's outcome, given once the turn is settled: a reply (or an error such
        # as a conflict) is sent only when what it was decided on is committed.
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            if fetched is not None:
                self._absorb(fetched)
            host.begin_turn()  # from here every change can be undone (undo.py)
            self._held.start()  # reads wait for the commit, not see its calls before it
            self.in_turn = True
            for thunk, fut in calls:
                mark = host.call_begins()
                try:
                    r = thunk()
                    if asyncio.iscoroutine(r):
                        r = await r
                    outcomes.append((fut, r, None))
                except errors.SessionmemError as e:  # decided against the latest state
                    host.call_undone(mark)  # nothing changed, by its rules; and if it had, it is undone
                    outcomes.append((fut, None, e))
                except Exception as e:  # a bug: that call is undone and fails, the turn goes on
                    log.error("internal error in a write", exc_info=e)
                    host.call_undone(mark)
                    outcomes.append((fut, None, errors.InternalError(f"internal error: {e!r}")))
            self.in_turn = False
            batch = host.drain(marks=True)
            await self._run_blocking(self._store.finish, batch, host.revision,
                                     self.committed if fetched is None else None)
        except TurnStale:
            self.in_turn = False
            self._roll_back()
            self._announced = max(self._announced, host.revision + 1)  # the changes come with the lock
            return True
        except Exception as e:
            self.in_turn = False
            self._undone(e, outcomes)
            await self._run_blocking(self._store.abort)
            if not isinstance(e, StoreRefused):
                self._lost(e, [])  # whether it committed is unknown: read everything anew
            return False
        host.end_turn(committed=True)
        self.committed = host.revision
        self.turns += 1
        self._feed.committed(host.revision)
        self._held.release()
        for fut, r, err in outcomes:
            if not fut.done():
                if err is None:
                    fut.set_result(r)
                else:
                    fut.set_exception(err)
        return False

    def _undone(self, e: Exception, outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
        """The turn did not commit: memory back to what the store holds (before any
        other task runs: the held reads then see it), and every call of the turn fails."""
        self._roll_back()
        err = self._not_committed(e)
        for fut, _r, _err in outcomes:
            if not fut.done():
                fut.set_exception(err)
        if isinstance(e, StoreRefused):
            log.error("the store refused a turn (nothing of it is kept): %s", e)

    def _roll_back(self) -> None:
        """Memory back to what the store holds, then the held reads answered on it."""
        self._host.end_turn(committed=False)
        self._held.release()

    def _not_committed(self, e: Exception) -> errors.PersistFailed:
        return errors.PersistFailed(f"not committed: {e}; nothing of it is kept",
                                    {"store": self._store.location, "reason": str(e)})

    def _absorb(self, f: Fetched) -> None:
        """What another daemon committed, into memory and the log (replay.py)."""
        host = self._host
        if f.full is not None:
            known, restored = f.full
            state = self._new_state() if restored is None else SessionState.from_restored(restored)
            host.resynced(state, known, self.committed, f.leases or [])
            rows = [r for r in f.rows if r[0] > self.committed]
            if [r[0] for r in rows] == list(range(self.committed + 1, f.revision + 1)):
                for rev, sid, frame in rows:
                    host.log.append(rev, sid, frame)
            else:
                host.log.restart(f.revision)
            host.revision = max(f.revision, host.revision)
            host.absorb_replayed(host.own_dirty())  # a new current session (none stored) is ours to write
            host.adopt(state)
            if not state.complete:
                self._complete(state)
        elif f.rows or f.fresh:
            fresh = {sid: None if r is None else SessionState.from_restored(r) for sid, r in f.fresh.items()}
            replay.apply(host, f.rows, fresh, f.leases, host.own_dirty())
            for st in fresh.values():
                if st is not None and not st.complete:
                    self._complete(st)
        else:
            replay.apply(host, [], {}, f.leases, host.own_dirty())
        if host.current_id not in host.loaded:
            raise errors.PersistFailed("the current session could not be brought up to date here")
        self.committed = host.revision
        self._feed.committed(host.revision)

    # -- the store went away, or refused --------------------------------------------------
    def _lost(self, e: Exception, pending: list[tuple[Thunk, asyncio.Future[Any]]]) -> None:
        _fail(pending, self._not_committed(e))
        self.outages += 1
        self._dispatcher.writes_refused = errors.PersistFailed(
            f"writes are refused until the daemon has reconnected to the store (it retries by itself): "
            f"{e}; nothing was changed", {"store": self._store.location, "reason": str(e)})
        log.error("the store failed a turn; writes are refused until it is back: %s", e)
        if self._recovering is None:
            self._recovering = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        attempts = 0
        for delay in backoff():
            await asyncio.sleep(delay)
            attempts += 1
            try:
                async with self._lock:
                    await self._run_blocking(self._store.repair, self._reset_readers)
                    host = self._host
                    fetched = await self._run_blocking(self._store.fetch, self.committed, frozenset(),
                                                       host.current_id, False, True, False)
                    self._absorb(fetched)
                break
            except Exception as e:
                log.debug("reconnect attempt %d failed: %s", attempts, e)
        self._dispatcher.writes_refused = None
        self._recovering = None
        log.warning("the store is back after %d attempt(s): caught up at revision %d", attempts,
                    self._host.revision)
        if self._calls or self._reads:
            self._schedule()

    async def _run_blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        if self._recovering is not None:
            self._recovering.cancel()
        self._executor.shutdown(wait=True)


def _fail(calls: list[Any], err: errors.SessionmemError) -> None:
    """Fail the futures of ``calls`` ((thunk, future) pairs, or futures) not done yet."""
    for call in calls:
        fut = call[1] if isinstance(call, tuple) else call
        if not fut.done():
            fut.set_exception(err)


def _answer(reads: list[asyncio.Future[int]], revision: int) -> None:
    for fut in reads:
        if not fut.done():
            fut.set_result(revision)
