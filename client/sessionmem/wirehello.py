"""The wire of what a daemon says about itself (part of ``sessionmem.protocol``):
hello (versions, capabilities, the store) and getStats.
"""

from __future__ import annotations

from msgspec import UNSET, Struct, UnsetType

from .wirebase import _Params


class HelloParams(_Params):
    clientVersion: str | UnsetType = UNSET
    protocolVersion: int | UnsetType = UNSET


class Stats(Struct):
    sessionId: str
    startTime: int
    messagesCount: int
    filesOpenCount: int
    contextKeysCount: int
    dbPath: str
    currentTask: str | None
    activeTicket: str | None
    pendingChanges: int
    lastSnapshotAt: int | None
    lastSnapshotDurationMs: float
    lastSnapshotError: str | None
    snapshotFailures: int
    snapshotsWritten: int
    snapshotInProgress: bool
    durability: str
    connections: int
    uptimeMs: int
    pid: int
    revision: int = 0  # of the last change, over the whole database
    watchers: int = 0
    sessions: int = 0  # in the database
    sessionsLoaded: int = 0  # of them, held in memory now
    historyComplete: bool = True  # False while older messages of this session still load
    # Where the sessions are kept: the SQLite file's path, or the PostgreSQL URL with its
    # password masked; the project key in it (None on SQLite); and the revision up to
    # which this daemon has applied every change (what `sync` returns).
    store: str = ""
    projectKey: str | None = None
    appliedRevision: int = 0


class HelloResult(Struct):
    daemonVersion: str
    protocolVersion: int
    pid: int
    projectRoot: str
    dbPath: str
    socketPath: str
    capabilities: list[str]
    maxFrame: int = 0  # the longest request line the daemon takes (--max-frame)
    # The store it serves: "sqlite" (the file dbPath names), or a PostgreSQL URL with its
    # password masked; "" from a daemon that does not say. Clients told a store compare it.
    store: str = ""
    projectKey: str | None = None  # the project's key in a PostgreSQL store
