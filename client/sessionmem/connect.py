"""Finding the daemon, and starting one when none answers (autostart).

Race-free by construction: every racing client runs ``sessionmemd --background``;
the daemons take an exclusive lock on the database before binding, so exactly
one serves and the others exit with EXIT_ALREADY_RUNNING, which their clients
take as "someone else is starting it" and simply connect. A daemon that fails
for a real reason (bad flag, corrupt database, unwritable folder) reports that
reason through its start pipe, and the client raises it at once.
"""

from __future__ import annotations

import errno
import os
# _socket, not socket: the C type has all a client needs, and `import socket` (with
# selectors, enum) costs a one-shot CLI call ~3 ms.
import _socket as socket
import struct
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any, TypeVar

from . import errors
from .paths import Paths
from .peercred import peer_uid

T = TypeVar("T")
AUTOSTART_IDLE_TIMEOUT = 900.0
NO_DAEMON = (errno.ENOENT, errno.ECONNREFUSED)


def autostart_enabled(autostart: bool) -> bool:
    return autostart and os.environ.get("SESSIONMEM_NO_AUTOSTART", "") in ("", "0")


def daemon_command(paths: Paths, idle_timeout: float | None = AUTOSTART_IDLE_TIMEOUT) -> list[str]:
    cmd = [sys.executable, "-m", "sessionmemd", "--background", "--project", str(paths.root)]
    if paths.explicit_socket:
        cmd += ["--socket", str(paths.socket)]
    if idle_timeout:
        cmd += ["--idle-timeout", str(idle_timeout)]
    return cmd


def _start_result(code: int, stderr: bytes, paths: Paths) -> bool:
    if code in (errors.EXIT_OK, errors.EXIT_ALREADY_RUNNING):
        return code == errors.EXIT_OK
    text = stderr.decode(errors="replace").strip() or f"sessionmemd exited with status {code}"
    raise errors.DaemonStartError(
        f"could not start sessionmemd for {paths.root}: {text}", {"exitCode": code}
    )


def start_daemon(
    paths: Paths, timeout: float = 30.0, idle_timeout: float | None = AUTOSTART_IDLE_TIMEOUT
) -> bool:
    """Start a detached daemon; returns once one serves: True when it is ours, False
    when another one already owned the database."""
    import subprocess  # only when autostarting: keeps a plain call's imports small

    try:
        proc = subprocess.run(
            daemon_command(paths, idle_timeout), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        raise errors.DaemonStartError(f"sessionmemd did not start within {timeout:g}s") from None
    return _start_result(proc.returncode, proc.stderr, paths)


def may_autostart(paths: Paths, autostart: bool, e: OSError) -> None:
    """Raise unless this client should start a daemon itself."""
    if not autostart_enabled(autostart):
        raise no_daemon(paths, e) from None
    if paths.explicit_socket:
        # Named by --socket or $SESSIONMEM_SOCKET: it may be forwarded from another host
        # (ssh -L), whose daemon is the single writer; a daemon of our own there would
        # split the session in two.
        raise errors.ConnectionFailed(
            f"no sessionmemd answers on {paths.socket} ({e.strerror}); a client given a socket "
            f"(--socket, SESSIONMEM_SOCKET) never starts a daemon: start it where it runs, or "
            f"check the forwarding (ssh -L)",
            {"socket": str(paths.socket)},
        ) from None
    from .service import managed_by_service

    if managed_by_service(paths):
        raise errors.ConnectionFailed(
            f"no daemon answers on {paths.socket}, and a service manager owns this project's "
            f"socket, so none is autostarted: check `sessionmem service status`",
            {"socket": str(paths.socket)},
        ) from None


def no_daemon(paths: Paths, e: OSError) -> errors.ConnectionFailed:
    return errors.ConnectionFailed(
        f"no sessionmemd answers on {paths.socket} ({e.strerror}); start one with "
        f"`sessionmem daemon start` or allow autostart",
        {"socket": str(paths.socket)},
    )


def set_io_timeout(sock: socket.socket, timeout: float) -> None:
    """Bound every send and receive by ``timeout`` in the kernel (SO_RCVTIMEO /
    SO_SNDTIMEO) and leave the socket blocking: Python's own socket timeout polls
    before each call, which costs ~15% of a round trip."""
    tv = struct.pack("ll", int(timeout), int((timeout % 1) * 1_000_000))
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)


def check_peer(sock: Any, path: Path | str) -> None:
    """Talk only to a daemon of our own uid: a socket (or a lock file naming one) planted
    by another user must get none of our requests, which may carry secrets."""
    uid = peer_uid(sock)
    if uid is not None and uid != os.getuid():
        sock.close()
        raise errors.ConnectionFailed(
            f"{path} is served by uid {uid}, not by you (uid {os.getuid()}): refusing to talk "
            f"to it; remove it if it is not yours", {"socket": str(path), "peerUid": uid},
        )


def _connect_once(path: Path, timeout: float) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            check_peer(sock, path)
            return sock
        except BlockingIOError:
            # EAGAIN: the daemon's accept queue is full for a moment (a burst of clients)
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)
        except BaseException:
            sock.close()
            raise


def owner_socket(paths: Paths) -> Path | None:
    """The socket that the daemon holding this project's database announced in its
    lock file, when it differs from ours (see sessionmemd's DaemonLock)."""
    try:
        fd = os.open(f"{paths.db}.lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_uid != os.getuid():
            return None  # not written by a daemon of ours: do not follow where it points
        lines = os.read(fd, 4096).decode(errors="replace").split("\n")
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(lines) < 2 or not lines[1] or lines[1] == str(paths.socket):
        return None
    return Path(lines[1])


def _connect_any(paths: Paths, timeout: float) -> socket.socket:
    """Our socket, else the one the database's owner announced. A socket given by
    --socket or $SESSIONMEM_SOCKET is the only one tried: it may be forwarded from another
    host (ssh -L), and when the forwarding is down the local daemon that the lock file
    names holds another copy of the session; writing there would be writing to the
    wrong daemon."""
    try:
        return _connect_once(paths.socket, timeout)
    except OSError as e:
        other = owner_socket(paths) if e.errno in NO_DAEMON and not paths.explicit_socket else None
        if other is None:
            raise
        try:
            return _connect_once(other, timeout)
        except OSError:
            raise e from None


def connect(paths: Paths, autostart: bool, timeout: float = 30.0) -> socket.socket:
    try:
        return _connect_any(paths, timeout)
    except OSError as e:
        if e.errno not in NO_DAEMON:
            raise errors.ConnectionFailed(f"cannot connect to {paths.socket}: {e}") from None
        may_autostart(paths, autostart, e)
    start_daemon(paths, timeout)
    deadline = time.monotonic() + timeout
    while True:  # a racer's daemon may still be binding its socket
        try:
            return _connect_any(paths, timeout)
        except OSError as e:
            if e.errno not in NO_DAEMON or time.monotonic() > deadline:
                raise no_daemon(paths, e) from None
            time.sleep(0.02)


# The reconnect rule, for both clients: after the daemon went away, wait (up to the lesser
# of the client's timeout and RECONNECT_PATIENCE seconds) while none answers yet, or one
# answers that it is shutting down: a restart or a service manager's re-activation leaves
# a short gap. A reconnect never starts a daemon (see Session, AsyncSession): one that
# did would undo a `sessionmem daemon stop`.
RECONNECT_PATIENCE = 10.0
RECONNECT_PAUSE = 0.05


class Patience:
    """One reconnect's patience (the rule above); ``pause(e)`` after each failed try."""

    __slots__ = ("_deadline",)

    def __init__(self, timeout: float) -> None:
        self._deadline = time.monotonic() + min(timeout, RECONNECT_PATIENCE)

    def pause(self, e: errors.SessionmemError) -> float:
        """Seconds to wait before the next try after ``e``; raises ``e`` when it is no
        gap to wait out (another error), or when the patience has run out."""
        gap = isinstance(e, (errors.ConnectionFailed, errors.ShuttingDown)) and not isinstance(e, errors.DaemonStartError)
        if not gap or time.monotonic() > self._deadline:
            raise e
        return RECONNECT_PAUSE


def reconnect(make: Callable[[], T], timeout: float) -> T:
    """``make()`` a new connection after the daemon went away, by the rule above
    (``AsyncSession`` has the same loop, awaiting)."""
    patience = Patience(timeout)
    while True:
        try:
            return make()
        except errors.SessionmemError as e:
            time.sleep(patience.pause(e))
