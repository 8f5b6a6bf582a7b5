"""The blocking client: one socket, one call at a time.

Safe to share between threads (calls are serialized by a lock); for concurrency
within one process use AsyncSession, which pipelines calls on one connection.
"""

from __future__ import annotations

import os
import _socket
import _thread  # not threading: the lock is all we need, and a CLI call pays for imports
from types import TracebackType
from typing import Any

from . import errors
from . import protocol as p
from .api import SessionAPI, check_hello, decode_typed, encode_call
from .connect import connect, set_io_timeout
from .paths import Paths, resolve

MAX_REPLY = 1 << 31  # replies (getAllMessages) may be far larger than a request frame
READ_SIZE = 1 << 16  # below the malloc mmap threshold: a recv buffer must not cost a syscall


class Session(SessionAPI):
    def __init__(
        self,
        project: str | os.PathLike[str] | None = None,
        socket: str | os.PathLike[str] | None = None,
        autostart: bool = True,
        timeout: float = 30.0,
        check_version: bool = True,
    ) -> None:
        self.paths: Paths = resolve(project, socket)
        self._timeout = timeout
        self._lock = _thread.allocate_lock()
        self._next_id = 0
        self._framer = p.LineFramer(MAX_REPLY)
        self._ready: list[bytes] = []
        self._sock: _socket.socket | None = connect(self.paths, autostart, timeout)
        set_io_timeout(self._sock, timeout)
        self.daemon: p.HelloResult = self.hello()
        if check_version:
            check_hello(self.daemon)

    def _call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        with self._lock:
            sock = self._sock
            if sock is None:
                raise errors.ConnectionFailed("session is closed")
            self._next_id = rid = self._next_id + 1
            try:
                sock.sendall(encode_call(method, params, rid))
                frame = self._read_frame(sock)
            except (TimeoutError, BlockingIOError):  # SO_RCVTIMEO expiry reads as EAGAIN
                self.close()
                raise errors.ConnectionFailed(f"no reply to {method} within {self._timeout:g}s") from None
            except (OSError, p.FrameTooLarge) as e:
                self.close()
                raise errors.ConnectionFailed(f"lost the daemon during {method}: {e}") from None
        # A connection-level error (id null, e.g. frame too large) raises here too.
        reply = decode_typed(method, frame)
        if reply.error is not p.UNSET:
            raise errors.from_wire(reply.error)  # type: ignore[arg-type]
        return reply.result

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

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_sock", None) is not None:
            self.close()
