"""The asyncio client: many calls in flight on one connection, matched by id."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar, cast

from . import errors
from . import protocol as p
from .api import (
    check_hello,
    batch_outcome,
    decode_batch,
    decode_change,
    decode_reply,
    encode_batch,
    encode_call,
    result_of,
    safe_to_repeat,
    watch_params,
)
from .calls import Call, Calls
from .connect import Patience, connect
from .framing import FrameTooLarge, LineFramer
from .paths import Paths, resolve
from .typed import AsyncSessionMethods
from .session import MAX_REPLY


async def open_async(
    paths: Paths, autostart: bool, factory: Callable[[], _P], timeout: float = 30.0
) -> tuple[asyncio.Transport, _P]:
    """connect.connect (discovery, peer check, autostart), run in a thread: one
    implementation of finding the daemon, and the loop never blocks on it. The socket is
    closed whatever fails or is cancelled on the way (a caller's timeout)."""
    made = asyncio.ensure_future(asyncio.to_thread(connect, paths, autostart, timeout))
    try:
        raw = await asyncio.shield(made)
    except asyncio.CancelledError:
        # The thread still connects: close what it makes, not leave it to the GC.
        made.add_done_callback(_close_made)
        raise
    sock = socket.socket(fileno=raw.detach())
    try:
        transport, proto = await asyncio.get_running_loop().create_unix_connection(factory, sock=sock)
    except BaseException:
        sock.close()
        raise
    return transport, proto


def _close_made(made: asyncio.Future[Any]) -> None:
    if not made.cancelled() and made.exception() is None:
        made.result().close()


_P = TypeVar("_P", bound=asyncio.Protocol)
T = TypeVar("T")
QUEUE_HIGH, QUEUE_LOW = 10_000, 1_000  # changes a watch holds for a slow consumer


class _ClientProtocol(asyncio.Protocol):
    """Replies go to the call waiting for their id; ``changed`` notifications to the
    feed queue, when this connection watches."""

    def __init__(self) -> None:
        self.framer = LineFramer(MAX_REPLY)
        self.waiters: dict[int, tuple[str, asyncio.Future[Any]]] = {}
        self.batches: dict[int, asyncio.Future[list[p.Reply]]] = {}  # by the batch's first id
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self.changes: asyncio.Queue[p.Change | BaseException] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.framer.feed(data)
        except FrameTooLarge as e:
            self._fail(errors.ConnectionLost(str(e)))
            return
        for frame in frames:
            if frame[:1] == b"[":
                self._batch_reply(frame)
                continue
            try:
                change = decode_change(frame)
                if change is not None:
                    if self.changes is not None:
                        self.changes.put_nowait(change)
                        if self.changes.qsize() >= QUEUE_HIGH and self.transport is not None:
                            # A consumer slower than the feed: let the daemon hold the rest
                            # (it keeps them in its change log) instead of this process.
                            self.transport.pause_reading()
                    continue
                reply = decode_reply(frame)
            except errors.SessionmemError as e:  # not JSON-RPC: nothing after it can be trusted
                self._fail(e)
                return
            entry = self.waiters.pop(reply.id, None) if isinstance(reply.id, int) else None
            if entry is None:
                if reply.error is not p.UNSET:  # connection-level error (id null): fails all
                    self._fail(errors.from_wire(reply.error))
                continue
            method, fut = entry
            if fut.done():
                continue
            try:
                fut.set_result(result_of(method, reply))
            except errors.SessionmemError as e:
                fut.set_exception(e)

    def _batch_reply(self, frame: bytes) -> None:
        try:
            replies = decode_batch(frame)
        except errors.SessionmemError as e:
            self._fail(e)
            return
        ids = [r.id for r in replies if isinstance(r.id, int)]
        fut = self.batches.pop(min(ids), None) if ids else None
        if fut is not None and not fut.done():
            fut.set_result(replies)

    def _fail(self, exc: BaseException) -> None:
        self.lost = exc
        for _, fut in self.waiters.values():
            if not fut.done():
                fut.set_exception(exc)
        self.waiters.clear()
        for batch in self.batches.values():
            if not batch.done():
                batch.set_exception(exc)
        self.batches.clear()
        if self.changes is not None:
            self.changes.put_nowait(exc)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(self.lost or errors.ConnectionLost(f"lost the daemon: {exc or 'connection closed'}"))


class AsyncSession(AsyncSessionMethods):
    def __init__(
        self,
        project: str | os.PathLike[str] | None = None,
        socket: str | os.PathLike[str] | None = None,
        autostart: bool = True,
        timeout: float = 30.0,
        check_version: bool = True,
        retry: bool = True,
        session_id: str | None = None,
    ) -> None:
        """``autostart``, ``retry``, ``session_id``: see Session (a reconnect, or a watch's
        connection once this session has connected, never starts a daemon)."""
        self.paths: Paths = resolve(project, socket)
        self._calls = Calls(session_id)
        self._retry = retry
        self._may_autostart = autostart  # the first connection only (see _open)
        self._check_version = check_version
        self._timeout = timeout
        self._proto: _ClientProtocol | None = None
        self._next_id = 0
        self._reconnecting: asyncio.Lock | None = None
        self.daemon: p.HelloResult | None = None

    async def _open(self, factory: Callable[[], _P] = _ClientProtocol) -> _P:  # type: ignore[assignment]
        """A new connection. Only the first one this session makes may start a daemon."""
        _, proto = await open_async(self.paths, self._may_autostart, factory, self._timeout)
        # A daemon serves now: no later connection of this session starts another.
        self._may_autostart = False
        return proto

    async def _patiently(self, make: Callable[[], Awaitable[T]]) -> T:
        """``make()`` a new connection after the daemon went away, by the reconnect rule
        (connect.Patience; connect.reconnect is the same loop for the blocking client)."""
        patience = Patience(self._timeout)
        while True:
            try:
                return await make()
            except errors.SessionmemError as e:
                await asyncio.sleep(patience.pause(e))

    async def connect(self) -> AsyncSession:
        self._proto = await self._open()
        self.daemon = await self.hello()
        if self._check_version:
            check_hello(self.daemon)
        return self

    async def _run(self, call: Call[T]) -> T:
        batch = call.batch
        if batch is not None:
            # Every call of a batch is safe to repeat (appends with ids): retried as one.
            result = await self._attempt(lambda proto: self._send_batch(proto, batch), True)
        else:
            method, params = call.method, call.params
            result = await self._attempt(lambda proto: self._send(proto, method, params),
                                         safe_to_repeat(method, params))
        return call.then(result) if call.then is not None else cast(T, result)

    async def _attempt(self, send: Callable[[_ClientProtocol], Awaitable[Any]], repeatable: bool) -> Any:
        """``send`` on the connection; once more on a new one when the daemon went away
        while idle (nothing sent yet), or mid-call and it is ``repeatable``."""
        proto = self._proto
        if proto is None:
            raise errors.ConnectionFailed("session is not connected (use `async with`)")
        if proto.lost is not None and self._retry:
            proto = await self._reconnect(proto)  # gone while idle: nothing sent yet, any call may go
        try:
            return await send(proto)
        except errors.ConnectionLost:
            if not (self._retry and repeatable):
                raise
            # The daemon went away mid-call: safe to repeat.
        except errors.ShuttingDown:
            if not self._retry:
                raise
            # Answered -32003: the daemon began to stop before it ran the call (one of a
            # pipeline's), so nothing of it was applied and any call may go again.
        # Once more on a new connection (one reconnect for all the calls in flight).
        return await send(await self._reconnect(proto))

    async def _send_batch(self, proto: _ClientProtocol, calls: list[tuple[str, dict[str, Any] | None]]) -> list[Any]:
        if proto.lost is not None or proto.transport is None:
            raise proto.lost or errors.ConnectionLost("not connected")
        first = self._next_id + 1
        frame = encode_batch(calls, first)  # first: a param it refuses leaves no waiter behind
        self._next_id += len(calls)
        fut: asyncio.Future[list[p.Reply]] = asyncio.get_running_loop().create_future()
        proto.batches[first] = fut
        proto.transport.write(frame)
        try:
            async with asyncio.timeout(self._timeout):
                replies = await fut
        except TimeoutError:
            proto.batches.pop(first, None)
            raise errors.ConnectionFailed(f"no reply to a batch within {self._timeout:g}s") from None
        return batch_outcome(calls, first, replies)

    async def _reconnect(self, lost: _ClientProtocol) -> _ClientProtocol:
        if self._reconnecting is None:
            self._reconnecting = asyncio.Lock()
        async with self._reconnecting:
            if self._proto is not lost and self._proto is not None:
                return self._proto  # another call in flight reconnected already
            self._proto = await self._patiently(lambda: self._open(_ClientProtocol))
            return self._proto

    async def _send(self, proto: _ClientProtocol, method: str, params: dict[str, Any] | None) -> Any:
        if proto.lost is not None or proto.transport is None:
            raise proto.lost or errors.ConnectionLost("not connected")
        rid = self._next_id + 1
        frame = encode_call(method, params, rid)  # first: a param it refuses leaves no waiter behind
        self._next_id = rid
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        proto.waiters[rid] = (method, fut)
        proto.transport.write(frame)
        try:
            async with asyncio.timeout(self._timeout):
                return await fut
        except TimeoutError:
            proto.waiters.pop(rid, None)
            raise errors.ConnectionFailed(f"no reply to {method} within {self._timeout:g}s") from None

    async def watch(self, since: int | None = None, session: str | None = None) -> AsyncGenerator[p.Change, None]:
        """Every change after ``since`` (default: from now on), as it happens, from a
        connection of its own: of one ``session`` (by default the bound one), or of all of
        them when the session is not bound. Resumes by itself, from the last change it
        yielded, after the daemon restarts. Raises Compacted when the daemon can no longer
        replay from ``since``."""
        session = session or self.session_id
        proto: _WatchProtocol | None = None
        try:
            while True:
                if proto is None:
                    proto = await self._open_watch(since, session)
                    if since is None:
                        since = proto.since
                assert proto.changes is not None
                item = await proto.changes.get()
                if proto.changes.qsize() == QUEUE_LOW and proto.transport is not None:
                    proto.transport.resume_reading()  # no-op unless it was paused
                if isinstance(item, (errors.ConnectionLost, errors.ShuttingDown)):
                    # The daemon went away, or is going: resume where we are once it is back.
                    if proto.transport is not None:
                        proto.transport.close()
                    proto = None
                    continue
                if isinstance(item, BaseException):
                    raise item
                since = item.revision
                yield item
        finally:
            if proto is not None and proto.transport is not None:
                proto.transport.close()

    async def _open_watch(self, since: int | None, session: str | None) -> _WatchProtocol:
        """A connection of the watch's own, watching, made by the reconnect rule: a daemon
        that is not there yet or answers that it is shutting down (-32003) is waited for."""
        return await self._patiently(lambda: self._start_watch(since, session))

    async def _start_watch(self, since: int | None, session: str | None) -> _WatchProtocol:
        proto = await self._open(_WatchProtocol)
        try:
            proto.changes = asyncio.Queue()
            result = await self._send(proto, "watch", watch_params(since, session))
        except BaseException:
            # Every failure closes it (Compacted, bad params, -32003, a caller's timeout):
            # a watch that failed must not hold one of the daemon's connections.
            if proto.transport is not None:
                proto.transport.close()
            raise
        proto.since = result.revision
        return proto

    async def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None

    async def __aenter__(self) -> AsyncSession:
        return await self.connect()

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()


class _WatchProtocol(_ClientProtocol):
    since: int = 0
