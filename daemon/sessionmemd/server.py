"""The socket shell: connections, framing, limits, back-pressure, peer checks, and
"write this frame to that connection". It only writes bytes and knows neither the
session nor the disk: the dispatcher answers a request now, or its reply is handed to
``later`` (replies.Replies) with this connection's ``write``, which is called with the
reply's bytes when its commit or its I/O completes.

Uses ``asyncio.Protocol`` rather than streams: a pipelining client's frames are
split and dispatched in one callback and all replies leave in one write.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import msgspec

from sessionmem import errors
from sessionmem.peercred import peer_uid
from sessionmem.framing import FrameTooLarge, LineFramer

from .listener import BACKLOG
from .rpc import Dispatcher, PendingReply

log = logging.getLogger("sessionmemd")


class Limits(msgspec.Struct, frozen=True):
    """Every bound the daemon enforces; defaults are documented in README.md."""

    max_frame: int = 16 * 1024 * 1024
    max_connections: int = 1024
    max_output: int = 256 * 1024 * 1024
    max_depth: int = 64
    # Stop reading from a connection whose unsent replies pass this; resume below 1/4.
    output_high_water: int = 1024 * 1024


# Finishes replies that are not ready yet, writing each with the given write when it is.
Later = Callable[[list[PendingReply], Callable[[bytes], None]], None]


class Connection(asyncio.Protocol):
    __slots__ = ("srv", "transport", "framer", "closed", "peer", "backlog", "write_paused")

    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.transport: asyncio.Transport | None = None
        self.framer = LineFramer(srv.limits.max_frame)
        self.closed = False
        self.peer = "?"
        # Requests read but not yet handled: their client has not read the replies to
        # the ones before them. At most one read's worth (reading is paused meanwhile).
        self.backlog: list[bytes] = []
        self.write_paused = False

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        transport: asyncio.Transport = base  # type: ignore[assignment]  # uvloop's is duck-typed
        self.transport = transport
        srv = self.srv
        sock = transport.get_extra_info("socket")
        uid = peer_uid(sock) if sock is not None else None
        self.peer = f"uid={uid}"
        if uid is not None and uid != srv.uid:
            log.warning("refused a connection from uid %d (daemon runs as uid %d)", uid, srv.uid)
            self.closed = True
            transport.abort()
            return
        if len(srv.connections) >= srv.limits.max_connections or srv.stopping:
            err: errors.SessionmemError
            if srv.stopping:
                err = errors.ShuttingDown("daemon is shutting down")
            else:
                err = errors.TooManyConnections(
                    f"too many connections (limit {srv.limits.max_connections})"
                )
                log.warning("refused a connection: %s", err.message)
            transport.write(srv.dispatcher.error_frame(None, err))
            self.closed = True
            transport.close()
            return
        high = srv.limits.output_high_water
        transport.set_write_buffer_limits(high=high, low=high // 4)
        srv.connections.add(self)
        srv.touch()

    def data_received(self, data: bytes) -> None:
        srv = self.srv
        srv.touch()
        if self.closed:
            return
        try:
            frames = self.framer.feed(data)
        except FrameTooLarge as e:
            log.warning("closed a connection (%s): %s", self.peer, e)
            self._fail(errors.FrameTooLargeError(str(e), {"limit": e.limit}))
            return
        if self.backlog:
            self.backlog += frames  # behind the ones still waiting for the client to read
        elif frames:
            self._dispatch(frames)

    def _dispatch(self, frames: list[bytes]) -> None:
        """Handle requests while the client keeps up. Replies are made only as far as
        the output's high-water mark allows; the rest wait, unread, in ``backlog`` until
        the client reads (resume_writing). So the daemon's memory per connection stays
        within the high-water mark plus one reply, whatever a client pipelines."""
        dispatcher = self.srv.dispatcher
        high = self.srv.limits.output_high_water
        while True:
            out, pending, done = dispatcher.handle_frames(frames, high, self)
            if out:
                # One reply (the sequential client's case): one plain write.
                self.write(out[0] + out[1] if len(out) == 2 else out)
            if pending:
                self.srv.later(pending, self.write)
            if done == len(frames) or self.closed:
                return
            frames = frames[done:]
            t = self.transport
            if self.write_paused or (t is not None and t.get_write_buffer_size() > high):
                self.backlog = frames
                if t is not None:
                    t.pause_reading()
                return

    def write(self, data: bytes | list[bytes]) -> None:
        """Queue replies. A client whose unsent replies pass ``max_output`` is cut off,
        alone: reading from it already paused at the high-water mark, so it only gets
        there by not reading. One reply, however big (getAllMessages of a long
        history), is always let through whole."""
        t = self.transport
        if self.closed or t is None or t.is_closing():
            return
        limit = self.srv.limits.max_output
        if t.get_write_buffer_size() > limit:
            self._cut_off()
            return
        if type(data) is list:
            t.writelines(data)
            # [reply, b"\n"] is one reply; more than that were many requests' replies
            if len(data) > 2 and t.get_write_buffer_size() > limit:
                self._cut_off()
        else:
            t.write(data)  # type: ignore[arg-type]

    def _cut_off(self) -> None:
        assert self.transport is not None
        log.warning(
            "closed a connection (%s): over %d bytes of unread replies",
            self.peer,
            self.srv.limits.max_output,
        )
        self.closed = True
        self.transport.abort()

    def feed_room(self) -> int:
        """0 while writing is paused (resume_writing will say when it is not); else what
        fits under the high-water mark, and at least one byte, so that whatever is sent
        either goes out or takes the buffer over the mark, which pauses it."""
        t = self.transport
        if self.closed or self.write_paused or t is None or t.is_closing():
            return 0
        return max(self.srv.limits.output_high_water - t.get_write_buffer_size(), 1)

    def close_feed(self, reason: str) -> None:
        """The feed gives up on this watcher: closed, so that it resumes with `since`."""
        if self.transport is not None and not self.closed:
            log.warning("closed a watching connection (%s): %s", self.peer, reason)
            self.closed = True
            self.transport.abort()

    def _fail(self, err: errors.SessionmemError) -> None:
        assert self.transport is not None
        self.transport.write(self.srv.dispatcher.error_frame(None, err))
        self.closed = True
        self.transport.close()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        t = self.transport
        if t is None or self.closed or t.is_closing():
            return
        self.srv.on_drained(self)
        if self.backlog:
            frames, self.backlog = self.backlog, []
            self._dispatch(frames)
            if self.backlog or self.write_paused:
                return
        if not self.srv.stopping:
            t.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.backlog = []
        self.srv.connections.discard(self)
        self.srv.on_close(self)
        self.srv.touch()


class Server:
    def __init__(
        self,
        dispatcher: Dispatcher,
        limits: Limits,
        on_activity: Callable[[], None],
        later: Later,
        on_close: Callable[[Connection], Any] = lambda conn: None,
        on_drained: Callable[[Connection], Any] = lambda conn: None,
    ) -> None:
        self.dispatcher = dispatcher
        self.later = later
        self.on_close = on_close  # e.g. the feed forgets a watcher
        self.on_drained = on_drained  # a connection's client read what waited: the feed goes on
        self.limits = limits
        self.uid = os.getuid()
        self.connections: set[Connection] = set()
        self.stopping = False
        self._aserver: asyncio.AbstractServer | None = None
        self.touch = on_activity

    async def serve(self, sock: socket.socket) -> None:
        """Accept on ``sock``, instead of any socket accepted on before (a re-bind after
        the old socket file was deleted); open connections are not touched."""
        loop = asyncio.get_running_loop()
        if self._aserver is not None:
            self._aserver.close()
        # asyncio re-listens with its own backlog (100 by default): keep a deep one, so a
        # burst of clients connecting at once is queued rather than refused with EAGAIN.
        self._aserver = await loop.create_unix_server(
            lambda: Connection(self), sock=sock, backlog=BACKLOG
        )

    def stop_accepting(self) -> None:
        """Close the listener and stop reading requests; in-flight ones still finish.
        (Requests read but not handled yet are refused by the dispatcher, which the
        lifecycle tells first: Dispatcher.refusing.)"""
        self.stopping = True
        if self._aserver is not None:
            self._aserver.close()
        for c in list(self.connections):
            if c.transport is not None and not c.transport.is_closing():
                c.transport.pause_reading()

    async def close_all(self, timeout: float = 2.0) -> None:
        """Close every connection, giving each a moment to flush its last replies."""
        for c in list(self.connections):
            if c.transport is not None:
                c.transport.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for c in list(self.connections):
            if c.transport is not None:
                c.transport.abort()
