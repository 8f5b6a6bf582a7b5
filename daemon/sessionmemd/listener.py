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

from sessionmem.paths import PathError, make_private_dirs

from .systemd import inherited_listener


# Deep enough that a burst of clients connecting at once is queued, not refused (EAGAIN).
BACKLOG = 4096


class AlreadyRunning(Exception):
    """Another daemon holds this database (or answers on this socket)."""


class DaemonLock:
    """An exclusive flock on ``<db>.lock``, held for the daemon's whole life; the
    kernel drops it when the process dies, however it dies.

    ``db`` must be realpath-resolved (paths.resolve does it), so a symlinked name locks
    the same file. The database file itself is flocked too, which also catches a second
    name that is a hard link (flock does not touch SQLite's own fcntl locks).

    The lock file is never followed through a symlink and must be ours: in a shared,
    writable project folder another user could plant one pointing at a file of ours,
    which we would then truncate.

    The file says who holds it: the pid on the first line and, once bound, the socket
    on the second, so a client whose environment computes another socket path (another
    $XDG_RUNTIME_DIR: cron, ssh, a service) still finds the daemon that owns the
    database instead of starting a second one that could never get the lock."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.path = db.with_name(db.name + ".lock")
        self._db_fd: int | None = None
        self._socket: Path | None = None
        make_private_dirs(db.parent)
        self._fd = self._take(self.path, db)
        self.hold_database()

    @staticmethod
    def _take(path: Path, db: Path) -> int:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise PathError(f"{path} is a symlink: refusing to follow it (remove it; "
                                f"sessionmemd creates its lock file itself)") from None
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            os.close(fd)
            raise PathError(f"{path} is not a regular file owned by uid {os.getuid()} "
                            f"(owner uid {st.st_uid}): refusing to use it as the lock; remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").split("\n")
            os.close(fd)
            where = f", serving on {holder[1]}" if len(holder) > 1 and holder[1] else ""
            raise AlreadyRunning(
                f"another sessionmemd (pid {holder[0] or '?'}) already owns {db}{where}"
            ) from None
        return fd

    def hold_database(self) -> None:
        """flock the database file itself, once it exists (called again after creating it)."""
        if self._db_fd is not None:
            return
        try:
            fd = os.open(self.db, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(
                f"another sessionmemd already owns {self.db} under another name (a hard link)"
            ) from None
        self._db_fd = fd

    def renew(self) -> None:
        """Take the lock again at its path, after the folder holding the database (and
        so the lock file) was deleted under us: a second daemon must not start there."""
        make_private_dirs(self.db.parent)
        held = os.fstat(self._fd)
        try:
            st = os.lstat(self.path)
            still_ours = (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)
        except FileNotFoundError:
            still_ours = False
        if still_ours:  # only the database went: our lock file is still there
            if self._db_fd is not None:
                os.close(self._db_fd)
            self._db_fd = None
            return
        fd = self._take(self.path, self.db)
        self.release()
        self._fd = fd
        self._db_fd = None
        self._write(f"{os.getpid()}\n{self._socket or ''}\n")

    def _write(self, text: str) -> None:
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text.encode(), 0)

    def announce(self, socket_path: Path) -> None:
        self._socket = socket_path
        self._write(f"{os.getpid()}\n{socket_path}\n")

    def release(self) -> None:
        for fd in (self._fd, self._db_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


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
        return cls._bind(path, backlog)

    @classmethod
    def _bind(cls, path: Path, backlog: int = BACKLOG) -> Listener:
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
        make_private_dirs(path.parent)
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

    def lost(self) -> bool:
        """Our socket file is gone or replaced (a tmp cleaner, a logout emptying
        $XDG_RUNTIME_DIR): nobody can reach us by its name any more. A socket the
        service manager handed us is its business, never ours to judge."""
        if not self.owned:
            return False
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._ino

    def rebind(self) -> Listener:
        """A new listener at the same path (its folder re-created if need be); raises
        AlreadyRunning when something else answers there now. The caller closes this one."""
        return self._bind(self.path)

    def close(self) -> None:
        self.sock.close()
        if not self.owned:
            return
        # Unlink only the socket we created: a successor may have bound a new one.
        with contextlib.suppress(OSError):
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._ino:
                os.unlink(self.path)
