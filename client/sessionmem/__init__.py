"""sessionmem: one shared short-term memory per project, served by ``sessionmemd``.

    from sessionmem import Session
    with Session() as s:
        s.set_current_task("Build X")

Attributes are imported lazily so that ``sessionmem`` (the CLI) starts fast.
"""

from __future__ import annotations

from ._version import __version__

TYPE_CHECKING = False  # typing's own import costs a one-shot CLI call ~3 ms
if TYPE_CHECKING:  # the lazy attributes, for type checkers and IDEs
    from typing import Any

    from .aio import AsyncSession
    from .calls import Transaction
    from .errors import (
        Compacted,
        Conflict,
        ConnectionFailed,
        ConnectionLost,
        DaemonStartError,
        InvalidParams,
        LeaseHeld,
        MethodNotFound,
        NoSuchSession,
        PersistFailed,
        SessionExists,
        SessionIsCurrent,
        SessionmemError,
        VersionMismatch,
    )
    from .protocol import Change, FullMessage, HelloResult, Message, SessionInfo, SnapshotResult, Stats
    from .lease import AsyncLease, Lease
    from .session import Session

_LAZY = {
    "Session": "session",
    "AsyncSession": "aio",
    "Message": "protocol",
    "Change": "protocol",
    "Conflict": "errors",
    "Compacted": "errors",
    "ConnectionLost": "errors",
    "Stats": "protocol",
    "SnapshotResult": "protocol",
    "HelloResult": "protocol",
    "SessionmemError": "errors",
    "ConnectionFailed": "errors",
    "DaemonStartError": "errors",
    "InvalidParams": "errors",
    "MethodNotFound": "errors",
    "PersistFailed": "errors",
    "VersionMismatch": "errors",
    "NoSuchSession": "errors",
    "SessionExists": "errors",
    "SessionIsCurrent": "errors",
    "FullMessage": "protocol",
    "SessionInfo": "protocol",
    "Transaction": "calls",
    "LeaseHeld": "errors",
    "Lease": "lease",
    "AsyncLease": "lease",
}

__all__ = [
    "__version__",
    "AsyncLease",
    "AsyncSession",
    "Change",
    "Compacted",
    "Conflict",
    "ConnectionFailed",
    "FullMessage",
    "ConnectionLost",
    "DaemonStartError",
    "HelloResult",
    "InvalidParams",
    "Lease",
    "LeaseHeld",
    "Message",
    "MethodNotFound",
    "NoSuchSession",
    "PersistFailed",
    "Session",
    "SessionExists",
    "SessionInfo",
    "SessionIsCurrent",
    "SessionmemError",
    "SnapshotResult",
    "Stats",
    "Transaction",
    "VersionMismatch",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sessionmem' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
