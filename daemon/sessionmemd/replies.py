"""Replies that are not ready when their request is read: "reply when this completes".

The dispatcher (rpc.py) answers a request with bytes ("reply now") or a
:class:`~.rpc.PendingReply`. This module finishes the pending ones and hands the
connection only bytes, through the ``write`` callback it was given: a write under
durability=always once its change is committed, a call that needs I/O (snapshot,
restore, shutdown, a session not in memory yet) once its coroutine is done. The
socket shell (server.py) so knows neither the dispatcher's pending replies nor the
disk; the lifecycle drains what is still in flight at a stop (:meth:`Replies.drain`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, Protocol

from .rpc import Dispatcher, PendingReply

# The connection's write: one reply (or a batch's) as bytes; a closed connection drops it.
Write = Callable[[bytes], None]


class Durability(Protocol):
    """How a reply waits for its change to be committed (persist.Persister)."""

    def commit_then(self, callback: Callable[[Exception | None], None]) -> None: ...
    def commit_soon(self) -> asyncio.Future[None]: ...


class Replies:
    def __init__(self, dispatcher: Dispatcher, durability: Durability) -> None:
        self._dispatcher = dispatcher
        self._durability = durability
        self._inflight: set[asyncio.Future[Any]] = set()

    def track(self, fut: asyncio.Future[Any]) -> None:
        """Keep ``fut`` alive, and let a stop wait for it (:meth:`drain`)."""
        self._inflight.add(fut)
        fut.add_done_callback(self._inflight.discard)

    async def drain(self, timeout: float) -> None:
        """Wait, at most ``timeout`` seconds, for the replies and work in flight."""
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=timeout)

    def later(self, pending: list[PendingReply], write: Write) -> None:
        """Finish replies that wait for the disk, writing each with ``write`` when done.
        Writes that only wait for their commit (durability=always) are answered by the
        commit's callback, without a task; calls that need I/O go to a task."""
        parts = [x for r in pending for x in r.pending()]
        if all(x.work is None for x in parts):
            self._durability.commit_then(functools.partial(self._committed, pending, write))
            return
        commit = None
        if any(x.work is None for x in parts):
            commit = self._durability.commit_soon()  # now: it must cover the changes just made
        self.track(asyncio.ensure_future(self._finish(pending, commit, write)))

    def _committed(self, pending: list[PendingReply], write: Write, failed: Exception | None) -> None:
        for r in pending:
            results = [x.value if failed is None else failed for x in r.pending()]
            frame = self._dispatcher.finish(r, results)
            if frame is not None:
                write(frame)

    async def _finish(self, pending: list[PendingReply], commit: asyncio.Future[None] | None,
                      write: Write) -> None:
        for reply in pending:
            results: list[Any] = []
            for part in reply.pending():
                try:
                    if part.work is not None:
                        result = await part.work
                        if part.commit:
                            await asyncio.shield(self._durability.commit_soon())
                        results.append(result)
                    else:
                        assert commit is not None
                        await asyncio.shield(commit)
                        results.append(part.value)
                except Exception as e:  # encoded as the call's error by finish()
                    results.append(e)
            frame = self._dispatcher.finish(reply, results)
            if frame is not None:
                write(frame)
