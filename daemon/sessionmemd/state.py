"""The session in memory: pure state changes, no I/O, no clock.

Messages (see messages.py) and context values are kept as their encoded JSON, so
replies are built from bytes without re-encoding and every result is a fresh copy.

Every mutation is also recorded as "dirty": :meth:`SessionState.drain` turns what
changed since the last drain into a :class:`Changes` (plain values, detached from
the live state) that the store writes in one transaction. Its size is
proportional to the changes, never to the history.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
from msgspec import Raw

from .messages import MessageLog, MessageSlice

_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class Changes:
    """What a snapshot writes, captured at drain time."""

    session_id: str
    start_time: int
    current_task: str | None
    active_ticket: str | None
    # Set when the session was replaced (clear/new): the old id's rows go, the new row comes.
    replaced_session: str | None = None
    session_row: bool = False
    # The new messages, decoded into rows by the writer thread: draining a million
    # of them must cost the event loop an offsets copy, not a million decodes.
    messages: MessageSlice = field(default_factory=lambda: MessageLog().since(0))
    # (path, tracked): rows of these paths are deleted, then re-inserted in order if tracked.
    files: list[tuple[str, bool]] = field(default_factory=list)
    # (key, json text or None for deleted)
    context: list[tuple[str, str | None]] = field(default_factory=list)
    # The database's revision when drained (written with the rows), and a new block of
    # revisions to reserve durably (see host.py), or None.
    revision: int = 0
    reserve: int | None = None
    # At a clean stop only: the change log, kept for watchers across the restart.
    change_log: list[tuple[int, str, bytes]] | None = None

    def __len__(self) -> int:
        rows = len(self.messages) + len(self.files) + len(self.context)
        return rows + (1 if self.session_row or self.replaced_session else 0)


@dataclass(slots=True)
class Restored:
    """A session as the store loads it."""

    session_id: str
    start_time: int
    current_task: str | None
    active_ticket: str | None
    messages: MessageLog
    files: list[str]
    context: dict[str, bytes]


class SessionState:
    __slots__ = (
        "session_id",
        "start_time",
        "current_task",
        "active_ticket",
        "_messages",
        "_files",
        "_context",
        "_saved_messages",
        "_dirty_files",
        "_dirty_context",
        "_dirty_row",
        "_replaced",
        "_mutations",
    )

    def __init__(self, session_id: str, start_time: int) -> None:
        self._reset(session_id, start_time)
        # A brand-new session is not in the database yet: save its id and start time,
        # so its identity survives a restart even if nothing else happens.
        self._dirty_row = True
        self._mutations = 1

    def _reset(self, session_id: str, start_time: int) -> None:
        self.session_id = session_id
        self.start_time = start_time
        self.current_task: str | None = None
        self.active_ticket: str | None = None
        self._messages = MessageLog()
        self._files: dict[str, None] = {}
        self._context: dict[str, bytes] = {}
        self._saved_messages = 0
        self._dirty_files: dict[str, None] = {}
        self._dirty_context: dict[str, None] = {}
        self._dirty_row = False
        self._replaced: str | None = None
        self._mutations = 0

    @classmethod
    def from_restored(cls, r: Restored) -> SessionState:
        s = cls.__new__(cls)
        s._reset(r.session_id, r.start_time)
        s.current_task = r.current_task
        s.active_ticket = r.active_ticket
        s._messages = r.messages
        s._saved_messages = len(r.messages)
        s._files = dict.fromkeys(r.files)  # a duplicate row (another tool's) counts once
        s._context = r.context
        return s

    # -- task / ticket -------------------------------------------------------
    # A call that changes nothing records nothing, so a snapshot after it writes nothing;
    # each setter says whether it changed something (a change gets a revision).
    def set_current_task(self, task: str | None) -> bool:
        if task == self.current_task:
            return False
        self.current_task = task
        self._dirty_row = True
        self._mutations += 1
        return True

    def set_active_ticket(self, ticket: str | None) -> bool:
        if ticket == self.active_ticket:
            return False
        self.active_ticket = ticket
        self._dirty_row = True
        self._mutations += 1
        return True

    # -- messages -------------------------------------------------------------
    def add_message(self, role: str, content: str, timestamp: int, msg_id: str | None = None) -> bytes | None:
        """Append; returns the message's JSON, or None when ``msg_id`` is one the
        session already holds (a retried append: nothing is added)."""
        if msg_id is not None and self._messages.has_id(msg_id):
            return None
        encoded = self._messages.append(role, content, timestamp, msg_id)
        self._mutations += 1
        return encoded

    def recent_messages(self, count: int) -> Raw:
        return Raw(self._messages.recent(count))

    def all_messages(self) -> Raw:
        return Raw(self._messages.all())

    @property
    def messages_count(self) -> int:
        return len(self._messages)

    # -- files -----------------------------------------------------------------
    def track_file(self, path: str) -> bool:
        if path in self._files:
            return False
        self._files[path] = None
        self._touch_file(path)
        return True

    def untrack_file(self, path: str) -> bool:
        if path not in self._files:
            return False
        del self._files[path]
        self._touch_file(path)
        return True

    def _touch_file(self, path: str) -> None:
        # Re-inserting keeps the dirty order that of the latest touch. The files still
        # tracked among them were all added after every untouched one, so writing them
        # in this order keeps the table's rowid order equal to the tracking order.
        self._dirty_files.pop(path, None)
        self._dirty_files[path] = None
        self._mutations += 1

    def open_files(self) -> list[str]:
        return list(self._files)

    @property
    def files_count(self) -> int:
        return len(self._files)

    # -- context ---------------------------------------------------------------
    def set_context(self, key: str, value_json: bytes) -> bool:
        if self._context.get(key) == value_json:
            return False
        self._context[key] = value_json
        self._dirty_context[key] = None
        self._mutations += 1
        return True

    def get_context(self, key: str) -> Raw | None:
        value = self._context.get(key)
        return None if value is None else Raw(value)

    def context_json(self, key: str) -> bytes | None:
        return self._context.get(key)

    def delete_context(self, key: str) -> bool:
        if self._context.pop(key, None) is None:
            return False
        self._dirty_context[key] = None
        self._mutations += 1
        return True

    def all_context(self) -> Raw:
        if not self._context:
            return Raw(b"{}")
        parts = [_encode(k) + b":" + v for k, v in self._context.items()]
        return Raw(b"{" + b",".join(parts) + b"}")

    @property
    def context_count(self) -> int:
        return len(self._context)

    # -- whole session -------------------------------------------------------------
    def clear(self, new_id: str, now_ms: int) -> None:
        """Start a fresh session; the old one's rows are deleted by the next snapshot."""
        old = self._replaced or self.session_id
        self._reset(new_id, now_ms)
        self._replaced = old
        self._dirty_row = True
        self._mutations = 1

    @property
    def pending_changes(self) -> int:
        """Mutations since the last drain (0 means a snapshot would write nothing)."""
        return self._mutations

    def identity(self) -> Changes:
        """A batch with no rows, for what is written beside them (revision marks)."""
        return Changes(self.session_id, self.start_time, self.current_task, self.active_ticket)

    def everything(self) -> Changes:
        """The whole session as one batch, for a new, empty database file (the old one
        was deleted under the daemon). Drains what was pending: this batch holds it."""
        self.drain()
        return Changes(
            session_id=self.session_id,
            start_time=self.start_time,
            current_task=self.current_task,
            active_ticket=self.active_ticket,
            session_row=True,
            messages=self._messages.since(0),
            files=[(path, True) for path in self._files],
            context=[(k, v.decode()) for k, v in self._context.items()],
        )

    def drain(self) -> Changes | None:
        """Detach what changed since the last drain; None when nothing did."""
        if not self._mutations:
            return None
        new_msgs = self._messages.since(self._saved_messages)
        files = self._files
        ctx = self._context
        changes = Changes(
            session_id=self.session_id,
            start_time=self.start_time,
            current_task=self.current_task,
            active_ticket=self.active_ticket,
            replaced_session=self._replaced,
            session_row=self._dirty_row,
            messages=new_msgs,
            files=[(path, path in files) for path in self._dirty_files],
            context=[
                (k, ctx[k].decode() if k in ctx else None) for k in self._dirty_context
            ],
        )
        self._saved_messages = len(self._messages)
        self._dirty_files = {}
        self._dirty_context = {}
        self._dirty_row = False
        self._replaced = None
        self._mutations = 0
        return changes
