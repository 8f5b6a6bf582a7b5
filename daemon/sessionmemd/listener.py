"""Where the daemon listens, and the lock that makes it the only one.

One place knows every listener source: a socket inherited from the service
manager (never unlinked by us), or a path we bind ourselves, after the lock,
with a 0600 mode from birth. asyncio's ``create_unix_server(path=...)`` would
silently unlink a live daemon's socket, so binding is done here and the bound
socket handed to asyncio with ``sock=``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from .systemd import inherited_listener


# Deep enough that a burst of clients connecting at once is queued, not refused (EAGAIN).
BACKLOG = 4096


class AlreadyRunning(Exception):
    """Another daemon holds this database (or answers on this socket)."""


class DaemonLock:
    """An exclusive flock on ``<db>.lock``, held for the daemon's whole life; the
    kernel drops it when the process dies, however it dies.

    The file says who holds it: the pid on the first line and, once bound, the socket
    on the second, so a client whose environment computes another socket path (another
    $XDG_RUNTIME_DIR: cron, ssh, a service) still finds the daemon that owns the
    database instead of starting a second one that could never get the lock."""

    def __init__(self, db: Path) -> None:
        self.path = db.with_name(db.name + ".lock")
        db.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 4096, 0).decode(errors="replace").split("\n")
            os.close(self._fd)
            where = f", serving on {holder[1]}" if len(holder) > 1 and holder[1] else ""
            raise AlreadyRunning(
                f"another sessionmemd (pid {holder[0] or '?'}) already owns {db}{where}"
            ) from None
        self._write(f"{os.getpid()}\n")

    def _write(self, text: str) -> None:
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text.encode(), 0)

    def announce(self, socket_path: Path) -> None:
        self._write(f"{os.getpid()}\n{socket_path}\n")

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
        return True
    except OSError as e:
        if e.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        return True  # EAGAIN (backlog full) and the like: someone is there
    finally:
        probe.close()


@dataclass
class Listener:
    sock: socket.socket
    path: Path
    owned: bool  # we bound it, so we unlink it on exit (if it is still ours)
    _ino: tuple[int, int] | None = None

    @classmethod
    def open(cls, path: Path, backlog: int = BACKLOG) -> Listener:
        inherited = inherited_listener()
        if inherited is not None:
            name = inherited.getsockname()
            return cls(inherited, Path(name) if isinstance(name, str) and name else path, False)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode):
                raise OSError(f"{path} exists and is not a socket; refusing to replace it")
            if _answers(path):
                raise AlreadyRunning(f"another daemon answers on {path}")
            path.unlink()  # stale: its daemon died without cleaning up
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is 0600 from birth: no window for others
        try:
            sock.bind(str(path))
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old)
        sock.listen(backlog)
        sock.setblocking(False)
        st = os.stat(path)
        return cls(sock, path, True, (st.st_dev, st.st_ino))

    def close(self) -> None:
        self.sock.close()
        if not self.owned:
            return
        # Unlink only the socket we created: a successor may have bound a new one.
        with contextlib.suppress(OSError):
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._ino:
                os.unlink(self.path)
