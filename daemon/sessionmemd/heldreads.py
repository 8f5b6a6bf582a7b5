"""The reads that wait for a write turn's commit (several daemons on PostgreSQL:
turns.py). A turn applies its calls to memory before its COMMIT; a call that comes on
another connection meanwhile is held here and answered the moment the turn is settled
(committed, or undone: undo.py), before the next turn runs, so that no reply ever shows
a change that may not be committed. A read waits HOLD_MOST seconds at most: then it is
answered -32004 (retry), so a server that stops answering in the middle of a COMMIT
(a network cut, not a refused connection) does not stop the daemon's reads for as long
as the connection takes to fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from sessionmem import errors

from .loader import copy_outcome, outcome_of
from .rpc import Dispatcher

Thunk = Callable[[], Any]

HOLD_MOST = 2.0  # seconds


class HeldReads:
    def __init__(self, dispatcher: Dispatcher, store: str) -> None:
        self._dispatcher = dispatcher
        self._store = store  # named in the error of a read held too long
        self._held: list[tuple[Thunk, asyncio.Future[Any]]] = []
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """A turn's calls are about to change memory: every call that is not a write
        (those join the next turn) waits from now on."""
        self._dispatcher.hold = self.hold

    def hold(self, thunk: Thunk, conn: Any = None) -> Coroutine[Any, Any, Any]:
        """The dispatcher's ``hold``: ``thunk``'s result once the turn is settled."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._held.append((thunk, fut))
        if self._timer is None:
            self._timer = loop.call_later(HOLD_MOST, self._too_long)
        return outcome_of(fut)

    def _too_long(self) -> None:
        self._timer = None
        held, self._held = self._held, []
        err = errors.PersistFailed(
            f"not answered: a write is being committed to the store, which has not answered for "
            f"{HOLD_MOST:g} s; this read would show changes that may not be committed: retry",
            {"store": self._store})
        for _thunk, fut in held:
            if not fut.done():
                fut.set_exception(err)

    def release(self) -> None:
        """The turn is settled: answer the held reads now, on the settled memory, before
        anything else runs; calls are answered at once again."""
        self._dispatcher.hold = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        held, self._held = self._held, []
        for thunk, fut in held:
            try:
                r = thunk()
            except BaseException as e:
                fut.set_exception(e)
                continue
            if asyncio.iscoroutine(r):  # a session to load first: on its own from here
                task = asyncio.ensure_future(r)
                task.add_done_callback(partial(copy_outcome, fut))
            else:
                fut.set_result(r)
