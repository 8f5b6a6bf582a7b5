"""Snapshots: when the state's changes go to the store (storage.Storage), on which
thread, and what a failure does.

Store work runs on one dedicated writer thread, so the event loop keeps
answering while a big snapshot is written; only the small commits of
durability=always (a few rows, tens of microseconds) are made on the loop's own
thread, where a thread hop would cost more than the commit. Snapshots are
serialized by a lock;
each drains the state's changes and writes them *after* any batch that failed
before, in one transaction, so the store only ever moves forward through
prefixes of what was acknowledged. A failed batch is kept and retried: nothing
is dropped because the disk was full for a while.

Several daemons sharing one PostgreSQL project commit every change in its write turn
(turns.py): for them snapshots and the group commit have nothing to do.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sessionmem import errors
from sessionmem import protocol as p

from .host import SessionHost
from .batch import Batch, Restored
from .storage import Storage, StoreFault

log = logging.getLogger("sessionmemd")
T = TypeVar("T")

# Up to this many changed rows are committed on the event loop's own thread: a few
# tens of microseconds, cheaper than handing them to the writer thread and back.
INLINE_MAX_ROWS = 256


def _lower_priority() -> None:
    """Run the writer thread at nice +10. On a small machine a big snapshot, the event
    loop and the clients compete for the cores; the scheduler should favour answering
    requests (Linux: a thread's nice value is its own)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


def _notify(waiters: list[Callable[[Exception | None], None]], err: Exception | None) -> None:
    for callback in waiters:
        try:
            callback(err)
        except Exception:  # one broken waiter must not leave the others unanswered
            log.exception("internal error while answering a committed write")


async def _outlive_cancel(aw: Awaitable[T]) -> T:
    """Await a write on the writer thread to its end, even when the caller is cancelled
    meanwhile (a shutdown cancels the snapshot timer): the thread commits regardless, so
    the bookkeeping after the await must run too, or the batch would stay "unsaved" and
    be written a second time. The cancellation is delivered once the write is done."""
    fut = asyncio.ensure_future(aw)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(fut)
            break
        except asyncio.CancelledError:
            if fut.cancelled():
                raise
            cancelled = True
            if fut.done():
                result = fut.result()
                break
    if cancelled:
        # Re-deliver after the caller's bookkeeping: raised at its next await.
        task = asyncio.current_task()
        if task is not None:
            task.cancel()
    return result


class Persister:
    def __init__(
        self,
        store: Storage,
        host: SessionHost,
        on_committed: Callable[[int], None] = lambda revision: None,
        before_reopen: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self._host = host
        # Told the revision up to which every change is on disk (the feed publishes up
        # to it under durability=always).
        self._on_committed = on_committed
        # The readers close first when the store must be opened anew (Storage.repair).
        self._before_reopen = before_reopen
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="store-writer", initializer=_lower_priority
        )
        self._lock = asyncio.Lock()
        self._unsaved: list[Batch] = []  # drained but not committed (a write failed)
        self._waiters: list[Callable[[Exception | None], None]] = []
        self._committing = False
        self.last_snapshot_at: int | None = None  # epoch ms of the last successful write
        self.last_error: str | None = None
        self.failures = 0
        self.written = 0
        self.last_duration_ms = 0.0  # of the last successful write: part of periodic's loss bound
        # Several daemons on one store: write turns commit every change (turns.py).
        self.turns = bool(getattr(store, "shared", False))

    # -- snapshots ---------------------------------------------------------------------
    async def snapshot(self, final: bool = False) -> p.SnapshotResult:
        """Write what changed; raise PersistFailed (changes kept for retry) on error.
        ``final``: the clean stop's last one (the exact revision mark, the change log)."""
        if self.turns:
            return p.SnapshotResult(False, 0, 0, 0, False, 0.0)
        async with self._lock:
            started = time.perf_counter()
            await self._check_store()
            host = self._host
            changes = host.final() if final else host.drain()
            if changes is not None:
                self._unsaved.append(changes)
            if not self._unsaved:
                self._on_committed(host.revision)  # nothing unwritten: all of it is on disk
                return p.SnapshotResult(False, 0, 0, 0, False, 0.0)
            batches = list(self._unsaved)
            try:
                await _outlive_cancel(self._run(self.store.write, batches))
            except Exception as e:
                self._record_failure(e)
                raise errors.PersistFailed(
                    f"snapshot failed, changes kept in memory and retried: {e}",
                    {"pendingBatches": len(self._unsaved)},
                ) from e
            del self._unsaved[: len(batches)]
            self._saved(batches, time.perf_counter() - started)
            return p.SnapshotResult(
                written=True,
                messages=sum(b.messages for b in batches),
                files=sum(len(c.files) for b in batches for c in b.sessions),
                contextKeys=sum(len(c.context) for b in batches for c in b.sessions),
                sessionChanged=any(b.deleted or b.current is not None for b in batches),
                durationMs=round((time.perf_counter() - started) * 1000, 3),
            )

    async def _check_store(self) -> None:
        """Write only where the store says writes may go (Storage.fault); else let it
        repair that first (SQLite: a database file deleted under us is copied into a
        new one), or keep everything in memory and say why on every snapshot."""
        if self.store.fault() is None:
            return
        try:
            await _outlive_cancel(self._run(self.store.repair, self._before_reopen))
        except StoreFault as e:
            self._record_failure(e.cause)
            raise errors.PersistFailed(str(e), {"pendingBatches": len(self._unsaved)}) from e.cause

    def _saved(self, batches: list[Batch], seconds: float) -> None:
        for b in batches:
            self._host.saved(b)
        self._record_success(seconds)
        self._on_committed(batches[-1].revision)

    def _record_success(self, seconds: float) -> None:
        if self.last_error is not None:
            log.warning("snapshots recovered: the database is written again")
        self.last_error = None
        self.last_snapshot_at = int(time.time() * 1000)
        self.last_duration_ms = round(seconds * 1000, 3)
        self.written += 1

    def _record_failure(self, e: Exception) -> None:
        self.failures += 1
        msg = f"{type(e).__name__}: {e}"
        if msg != self.last_error:  # log each distinct failure once, not every retry
            log.error("snapshot failed (serving from memory, will retry): %s", msg)
        self.last_error = msg

    @property
    def busy(self) -> bool:
        """A snapshot (or restore) is being written (read) on the writer thread."""
        return self._lock.locked()

    @property
    def pending(self) -> int:
        return self._host.pending_changes + sum(len(b) for b in self._unsaved)

    # -- group commit (durability=always) ----------------------------------------------
    def commit_then(self, callback: Callable[[Exception | None], None]) -> None:
        """Call ``callback(None)`` once every change made so far is committed, or
        ``callback(error)`` if that failed (the changes are kept and retried). Every
        caller of one loop turn, from every connection, shares one transaction, and
        the callbacks run right after it: no future, no task per write."""
        if self.turns:
            callback(None)  # committed by its turn already
            return
        if not self._waiters and not self._committing:
            asyncio.get_running_loop().call_soon(self._start_commit)
        self._waiters.append(callback)

    def commit_soon(self) -> asyncio.Future[None]:
        """:meth:`commit_then` as a future, for code that awaits."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def resolve(err: Exception | None) -> None:
            if fut.done():
                return
            if err is None:
                fut.set_result(None)
            else:
                fut.set_exception(err)

        self.commit_then(resolve)
        return fut

    async def settled(self) -> None:
        """Return once every commit asked for so far has been made (or has failed)."""
        if self._waiters or self._committing:
            await asyncio.shield(self.commit_soon())

    def _start_commit(self) -> None:
        waiters, self._waiters = self._waiters, []
        if not waiters:
            return
        done, err = self._commit_inline()
        if done:
            _notify(waiters, err)
            return
        self._committing = True
        asyncio.get_running_loop().create_task(self._commit(waiters))

    def _commit_inline(self) -> tuple[bool, Exception | None]:
        """Commit right here, on the loop's thread, when the change is small and nobody
        else is writing: a few tens of microseconds, less than a hop to the writer
        thread and back. (False, None) leaves it to the writer thread."""
        host = self._host
        if (self._lock.locked() or self._unsaved or host.pending_changes > INLINE_MAX_ROWS
                or self.store.fault()):
            return False, None  # a snapshot under way, a retry, a big write, or a store at fault
        changes = host.drain(marks=False)  # the revision marks go with the next snapshot
        if changes is None:
            self._on_committed(host.revision)
            return True, None
        started = time.perf_counter()
        try:
            self.store.write([changes])
        except Exception as e:
            self._unsaved.append(changes)  # kept, and retried by the next snapshot
            self._record_failure(e)
            return True, errors.PersistFailed(
                f"change applied in memory but not committed, kept and retried: {e}",
                {"pendingBatches": len(self._unsaved)},
            )
        self._saved([changes], time.perf_counter() - started)
        return True, None

    async def _commit(self, waiters: list[Callable[[Exception | None], None]]) -> None:
        err: Exception | None = None
        try:
            await self.snapshot()
        except Exception as e:  # waiters must hear of any failure, not hang on it
            err = e
        self._committing = False
        _notify(waiters, err)
        if self._waiters:
            self._start_commit()

    async def room(self, n: int = 1) -> None:
        """Return once ``n`` changes may take their revisions: the next block of revisions
        is durable. Writes the batch that reserves it now (it goes with the changes
        made so far) rather than waiting for the timer; raises PersistFailed, naming the
        database's own error, when that cannot be written."""
        host = self._host
        while not host.room_for(n):
            if host.closing:
                raise errors.ShuttingDown("daemon is shutting down; nothing was changed")
            await self.snapshot()

    # -- restore / shutdown ------------------------------------------------------------
    async def load(self) -> tuple[dict[str, int], Restored | None]:
        """Reload the last snapshot; unsaved changes (also failed ones) are dropped."""
        async with self._lock:
            self._unsaved.clear()
            return await self._run(self.store.reload)  # type: ignore[no-any-return]

    def unsaved_batches(self) -> list[Batch]:
        return list(self._unsaved)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.store.close()
