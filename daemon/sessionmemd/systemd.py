"""The service manager's side channels: sd_notify and socket activation.

Both are tiny wire protocols (a datagram to $NOTIFY_SOCKET; fds from 3 upward
named by $LISTEN_FDS for $LISTEN_PID), so they are spoken directly rather than
through libsystemd.
"""

from __future__ import annotations

import os
import socket
import stat

SD_LISTEN_FDS_START = 3


class Notifier:
    """Sends sd_notify datagrams when $NOTIFY_SOCKET is set; otherwise does nothing."""

    def __init__(self) -> None:
        addr = os.environ.get("NOTIFY_SOCKET")
        self._sock: socket.socket | None = None
        self._addr = ""
        if addr and (addr.startswith("/") or addr.startswith("@")):
            self._addr = "\0" + addr[1:] if addr.startswith("@") else addr
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def send(self, *fields: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(fields).encode(), self._addr)
        except OSError:
            pass  # the manager went away; nothing useful to do about it

    def watchdog_interval(self) -> float | None:
        """Half the watchdog timeout, in seconds, when the manager asked for pings."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return int(usec) / 2_000_000
        except ValueError:
            return None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def inherited_listener() -> socket.socket | None:
    """The listening Unix socket passed by socket activation, if any. Clears the
    variables so children (none today) do not think they are activated too."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)
    if count < 1:
        return None
    fd = SD_LISTEN_FDS_START
    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
        raise OSError(f"inherited fd {fd} is not a socket")
    sock = socket.socket(fileno=fd)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise OSError(f"inherited fd {fd} is not a Unix stream socket")
    os.set_inheritable(fd, False)
    sock.setblocking(False)
    return sock
