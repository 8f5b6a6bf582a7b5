"""The blocking client: one socket, one call at a time.

Safe to share between threads (calls are serialized by a lock); for concurrency
within one process use AsyncSession, which pipelines calls on one connection.
"""

from __future__ import annotations

import os
import _socket
from functools import partial
import _thread  # not threading: the lock is all we need, and a CLI call pays for imports
from collections.abc import Callable, Iterator
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
    decode_typed,
    encode_batch,
    encode_call,
    hello_params,
    result_of,
    safe_to_repeat,
    watch_params,
)
from .calls import Call, Calls
from .connect import connect, reconnect, set_io_timeout
from .framing import FrameTooLarge, LineFramer
from .paths import Paths, resolve
from .typed import SessionMethods

T = TypeVar("T")

MAX_REPLY = 1 << 31  # replies (getAllMessages) may be far larger than a request frame
READ_SIZE = 1 << 16  # below the malloc mmap threshold: a recv buffer must not cost a syscall


class _Unsent(Exception):
    """The connection was found closed at send: the daemon received nothing."""


class Session(SessionMethods):
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
        """``autostart``: start a daemon when none answers the first connection (a
        reconnect never starts one: it would undo a ``sessionmem daemon stop``).
        ``retry``: when the daemon goes away in the middle of a call that is safe to
        repeat (a read, an addMessage with its id), reconnect (waiting up to 10 s for a
        restarting daemon) and repeat it once. Off for tools that restart it themselves.
        ``session_id``: every session method addresses this session instead of the
        project's current one (it must exist: ``create_session``); ``clear()`` then
        empties it and keeps its id."""
        self.paths: Paths = resolve(project, socket)
        self._calls = Calls(session_id)
        self._retry = retry
        self._may_autostart = autostart  # the first connection only (see _connect)
        self._timeout = timeout
        self._check_version = check_version
        self._lock = _thread.allocate_lock()
        self._next_id = 0
        self._closed = False
        self._sock: _socket.socket | None = None
        self._framer = LineFramer(MAX_REPLY)
        self._ready: list[bytes] = []
        self.daemon: p.HelloResult = self._connect()

    def _connect(self) -> p.HelloResult:
        """A fresh connection (the first, or after one was dropped mid-call)."""
        sock = connect(self.paths, self._may_autostart, self._timeout)
        # A daemon serves now: every later connection (a reconnect, a watch's) finds the
        # one that serves, or waits for it, but never starts another.
        self._may_autostart = False
        set_io_timeout(sock, self._timeout)
        self._sock = sock
        self._framer = LineFramer(MAX_REPLY)
        self._ready = []
        try:
            hello: p.HelloResult = self._exchange("hello", hello_params())
        except _Unsent:
            # Accepted, then closed before a byte was read: a forwarding (ssh -L) whose far
            # end has no daemon, or a daemon going down.
            raise errors.ConnectionLost(f"the connection to {self.paths.socket} was closed before "
                                        f"the daemon answered") from None
        if self._check_version:
            check_hello(hello)
        return hello

    def _run(self, call: Call[T]) -> T:
        result = self._batch(call.batch) if call.batch is not None else self._call_locked(call.method, call.params)
        return call.then(result) if call.then is not None else cast(T, result)

    def _call_locked(self, method: str, params: dict[str, Any] | None) -> Any:
        return self._attempt(lambda: self._exchange(method, params), safe_to_repeat(method, params), method)

    def _batch(self, calls: list[tuple[str, dict[str, Any] | None]]) -> list[Any]:
        # Every call of a batch is safe to repeat (appends with ids): retried as one.
        return self._attempt(lambda: self._exchange_batch(calls), True, "a batch")

    def _attempt(self, send: Callable[[], T], repeatable: bool, what: str) -> T:
        """``send()`` on the connection (made if need be); once more on a new one when the
        daemon went away before it was sent, or during it and it is ``repeatable``."""
        with self._lock:
            if self._closed:
                raise errors.ConnectionFailed("session is closed")
            if self._sock is None:
                self.daemon = self._connect()
            try:
                return send()
            except _Unsent:
                if not self._retry:
                    raise errors.ConnectionLost(f"lost the daemon before sending {what}") from None
                # The daemon went away while we were idle: nothing was sent, any call may go.
            except errors.ConnectionLost:
                if not (self._retry and repeatable):
                    raise
                # The daemon went away mid-call (a restart, socket activation): the call
                # is safe to repeat.
            except errors.ShuttingDown:
                if not self._retry:
                    raise
                # Answered -32003: the daemon began to stop before it ran the call, so
                # nothing of it was applied and any call may go to the next daemon.
                self._drop()
            # Once more on a new connection (connect.reconnect: never autostarting).
            self.daemon = reconnect(self._connect, self._timeout)
            return send()

    def _exchange_batch(self, calls: list[tuple[str, dict[str, Any] | None]]) -> list[Any]:
        first = self._next_id + 1
        self._next_id += len(calls)

        def read(sock: _socket.socket) -> list[Any]:
            while True:
                frame = self._read_frame(sock)
                if frame[:1] == b"[":
                    return batch_outcome(calls, first, decode_batch(frame))
                reply = decode_reply(frame)
                if reply.id is None and reply.error is not p.UNSET:
                    self._drop()
                    raise errors.from_wire(reply.error)

        return self._send_and_read(encode_batch(calls, first), read, "a batch")

    def _exchange(self, method: str, params: dict[str, Any] | None) -> Any:
        self._next_id = rid = self._next_id + 1
        return self._send_and_read(encode_call(method, params, rid),
                                   lambda sock: self._read_reply(sock, method, rid), method)

    def _send_and_read(self, frame: bytes, read: Callable[[_socket.socket], T], what: str) -> T:
        """Send a frame and read its reply. Any failure in between, an interrupt
        included (Ctrl-C, a signal handler's exception), drops the connection: a reply
        still on its way must never be taken as the answer to the next call."""
        sock = self._sock
        assert sock is not None
        try:
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                # The daemon may have refused the request and closed (a frame over its
                # limit): its reply, already sent, says why better than EPIPE does.
                self._raise_parting_error(sock)
                self._drop()
                raise _Unsent from None  # a Unix socket refuses a send to a closed peer
            return read(sock)
        except (TimeoutError, BlockingIOError):  # SO_RCVTIMEO expiry reads as EAGAIN
            self._drop()
            raise errors.ConnectionFailed(f"no reply to {what} within {self._timeout:g}s") from None
        except (OSError, FrameTooLarge) as e:
            self._drop()
            raise errors.ConnectionLost(f"lost the daemon during {what}: {e}") from None
        except errors.SessionmemError:
            raise  # a reply: the connection is in step
        except BaseException:
            self._drop()
            raise

    def _read_reply(self, sock: _socket.socket, method: str, rid: int) -> Any:
        while True:
            reply = decode_typed(method, self._read_frame(sock))
            if reply.id == rid:
                if reply.error is not p.UNSET:
                    raise errors.from_wire(reply.error)
                return reply.result
            if reply.id is None and reply.error is not p.UNSET:
                # A connection-level error (e.g. frame too large): the daemon closes next.
                self._drop()
                raise errors.from_wire(reply.error)
            # Anything else is not ours to answer (a notification): skip it.

    def _raise_parting_error(self, sock: _socket.socket) -> None:
        try:
            set_io_timeout(sock, 1.0)
            frame = self._read_frame(sock)
        except (OSError, FrameTooLarge):
            return
        reply = decode_reply(frame)
        if reply.error is not p.UNSET:
            self._drop()
            raise errors.from_wire(reply.error)

    def _read_frame(self, sock: _socket.socket) -> bytes:
        if not self._ready and not self._framer.pending:
            data = sock.recv(READ_SIZE)
            # The common case: exactly one whole reply arrived in one read.
            if data[-1:] == b"\n" and data.count(b"\n") == 1:
                return data
            if not data:
                raise ConnectionResetError("the daemon closed the connection")
            self._ready.extend(self._framer.feed(data))
        while not self._ready:
            data = sock.recv(READ_SIZE)
            if not data:
                raise ConnectionResetError("the daemon closed the connection")
            self._ready.extend(self._framer.feed(data))
        return self._ready.pop(0)

    def watch(self, since: int | None = None, session: str | None = None) -> Iterator[p.Change]:
        """Every change after ``since`` (default: from now on), as it happens, from a
        connection of its own: of one ``session`` (by default the bound one), or of all of
        them when the session is not bound. Resumes by itself, from the last change it
        yielded, after the daemon restarts. Raises Compacted when the daemon can no longer
        replay from ``since``: re-read what you need and watch again from the revision
        ``get_stats()`` reports."""
        session = session or self.session_id
        conn: _socket.socket | None = None
        frames: list[bytes] = []
        framer = LineFramer(MAX_REPLY)
        try:
            while True:
                if conn is None:
                    conn, framer, frames, revision = reconnect(partial(self._open_watch, since, session),
                                                               self._timeout)
                    if since is None:  # from the revision the watch's reply names on
                        since = revision
                if not frames:
                    try:
                        data = conn.recv(READ_SIZE)
                        frames = framer.feed(data) if data else []
                    except (OSError, FrameTooLarge):
                        data = b""
                    if not data:  # the daemon went away: resume where we are
                        conn.close()
                        conn = None
                        continue
                going = False
                while frames:
                    frame = frames.pop(0)
                    change = decode_change(frame)
                    if change is not None:
                        since = change.revision
                        yield change
                        continue
                    reply = decode_reply(frame)
                    if reply.error is not p.UNSET:
                        err = errors.from_wire(reply.error)
                        if not isinstance(err, errors.ShuttingDown):
                            raise err
                        going = True  # it is going down: resume once it is back
                        break
                if going:
                    conn.close()
                    conn = None
                    frames = []
        finally:
            if conn is not None:
                conn.close()

    def _open_watch(self, since: int | None, session: str | None,
                    ) -> tuple[_socket.socket, LineFramer, list[bytes], int]:
        """A connection of the watch's own, watching: ``watch`` sent and its reply read.
        Returns the connection, its framer, the frames read after the reply (changes) and
        the revision the reply names. Closes the connection on every failure: a daemon
        answering that it is shutting down (-32003), a bad ``since`` (Compacted)."""
        conn = connect(self.paths, self._may_autostart, self._timeout)
        self._may_autostart = False
        try:
            set_io_timeout(conn, self._timeout)  # for the reply; the feed then waits as long as it is quiet
            conn.sendall(encode_call("watch", watch_params(since, session), 1))
            framer = LineFramer(MAX_REPLY)
            frames: list[bytes] = []
            early: list[bytes] = []  # changes ahead of the reply (not sent so today; kept if they are)
            while True:
                if not frames:
                    data = conn.recv(READ_SIZE)
                    if not data:
                        raise ConnectionResetError("the daemon closed the connection")
                    frames = framer.feed(data)
                    continue
                frame = frames.pop(0)
                if decode_change(frame) is not None:
                    early.append(frame)
                    continue
                reply = decode_reply(frame)
                if reply.error is not p.UNSET:
                    raise errors.from_wire(reply.error)
                if reply.id == 1:
                    revision: int = result_of("watch", reply).revision
                    set_io_timeout(conn, 0)  # 0: no limit; a feed may be quiet for hours
                    return conn, framer, early + frames, revision
        except (OSError, FrameTooLarge) as e:
            conn.close()
            raise errors.ConnectionLost(f"lost the daemon while starting a watch: {e}") from None
        except BaseException:
            conn.close()
            raise

    def _drop(self) -> None:
        """Close the connection; the next call makes a new one."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        self._closed = True
        self._drop()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_sock", None) is not None:
            self._drop()
