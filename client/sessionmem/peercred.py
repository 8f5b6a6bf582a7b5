"""Who is at the other end of a Unix socket, from the kernel (not from anything the
peer says). The daemon refuses clients of another uid; clients refuse daemons of
another uid, so a socket or lock file planted by someone else gets no secret."""

from __future__ import annotations

import _socket
import struct
import sys

TYPE_CHECKING = False  # typing's own import costs a one-shot CLI call ~3 ms
if TYPE_CHECKING:
    from typing import Any

_UCRED = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}


def peer_uid(sock: Any) -> int | None:
    """The peer process's uid, or None where the platform cannot tell."""
    try:
        if hasattr(_socket, "SO_PEERCRED"):
            creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, _UCRED.size)
            return int(_UCRED.unpack(creds)[1])
        if sys.platform == "darwin":  # LOCAL_PEERCRED: struct xucred {u_int version; uid_t uid; ...}
            creds = sock.getsockopt(0, 0x001, 76)
            return int(struct.unpack_from("=II", creds)[1])
    except OSError:
        return None
    return None
