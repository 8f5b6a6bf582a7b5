"""What crosses the storage seam: what a snapshot or a write turn writes (a
:class:`Batch` of each session's :class:`Changes`, detached from the live state by
``SessionState.drain`` and ``SessionHost.drain``), and a session as a store reads it
back (:class:`Restored`). Plain values, no behaviour beyond their sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .leases import LeaseRow
from .messages import MessageLog, MessageSlice


@dataclass(slots=True)
class Changes:
    """One session's rows to write, captured at drain time."""

    session_id: str
    start_time: int
    current_task: str | None
    active_ticket: str | None
    session_row: bool = False
    # Every row of the session's messages, files and context is deleted first
    # (``clear {session}``); what follows is then the whole session.
    wiped: bool = False
    # Saved messages removed: the oldest ``trim_front`` and the newest ``pop_back``
    # rows (never overlapping), deleted before the new messages are inserted.
    trim_front: int = 0
    pop_back: int = 0
    # The new messages, decoded into rows by the writer thread: draining a million
    # of them must cost the event loop an offsets copy, not a million decodes.
    messages: MessageSlice = field(default_factory=lambda: MessageLog().since(0))
    # (path, tracked): rows of these paths are deleted, then re-inserted in order if tracked.
    files: list[tuple[str, bool]] = field(default_factory=list)
    # (key, json text or None for deleted)
    context: list[tuple[str, str | None]] = field(default_factory=list)

    def __len__(self) -> int:
        rows = len(self.messages) + len(self.files) + len(self.context)
        return rows + self.trim_front + self.pop_back + (1 if self.session_row or self.wiped else 0)


@dataclass(slots=True)
class Batch:
    """What one snapshot writes: changed sessions, deleted ones, the current pointer."""

    sessions: list[Changes] = field(default_factory=list)
    # Deleted (with every row) before ``sessions`` are written: a session deleted and
    # made again under the same id in one batch comes back whole.
    deleted: list[str] = field(default_factory=list)
    current: str | None = None  # the current session, when it changed
    # (session, revision of its last change), for listSessions' order. Left out of the
    # small commits of durability=always (each would cost another page write) and
    # written by the next periodic snapshot: a crash may leave the order of the last
    # interval's sessions stale, never their content.
    marks: list[tuple[str, int]] = field(default_factory=list)
    # The database's revision when drained (written with the rows), and a new block of
    # revisions to reserve durably (see hostcore.py), or None.
    revision: int = 0
    reserve: int | None = None
    # The changes logged since the last batch that carried them (revision, session,
    # notification frame), added to the copy of the change log on disk, and the oldest
    # revision the log still keeps (older rows are dropped): the log survives a clean
    # restart without a stop that rewrites it or a start that reads it before answering.
    log_rows: list[tuple[int, str, bytes]] = field(default_factory=list)
    log_floor: int | None = None
    final: bool = False  # a clean stop's last batch: ``reserve`` is the exact last revision
    # Leases changed since the last batch (leases.py): name -> its row, or None (gone).
    leases: list[tuple[str, LeaseRow | None]] = field(default_factory=list)

    def __len__(self) -> int:
        return (sum(map(len, self.sessions)) + len(self.deleted) + len(self.marks) + (self.current is not None)
                + len(self.leases))

    @property
    def messages(self) -> int:
        return sum(len(c.messages) for c in self.sessions)

    @classmethod
    def of(cls, ch: Changes, current: bool = True) -> Batch:
        """One session's changes as a batch (that session made current)."""
        return cls(sessions=[ch], current=ch.session_id if current else None)


@dataclass(slots=True)
class Restored:
    """A session as the store loads it: all of it, or (``older`` > 0) its newest
    messages, with the ``older`` ones left to load later from ``older_cursor``."""

    session_id: str
    start_time: int
    current_task: str | None
    active_ticket: str | None
    messages: MessageLog
    files: list[str]
    context: dict[str, bytes]
    revision: int = 0
    older: int = 0
    # Where the older messages end: a position only the store that made it reads
    # (storage.Reader.load_older), opaque here.
    older_cursor: object = None
