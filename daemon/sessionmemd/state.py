"""The session in memory: pure state changes, no I/O, no clock.

Messages (see messages.py) and context values are kept as their encoded JSON, so
replies are built from bytes without re-encoding and every result is a fresh copy.

Every mutation is also recorded as "dirty": :meth:`SessionState.drain` turns what
changed since the last drain into a :class:`batch.Changes` (plain values, detached
from the live state) that the store writes in one transaction. Its size is
proportional to the changes, never to the history.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import msgspec
from msgspec import Raw

from .batch import Changes, Restored
from .keyrange import SortedKeys
from .messages import MessageLog
from .undo import Undo

_encode = msgspec.json.Encoder().encode
# What ``clear {session}`` replaces (the rest is the session's identity and tracking).
_CONTENT = ("current_task", "active_ticket", "older", "older_cursor", "_messages", "_files", "_context",
            "_sorted_keys")


class SessionState:
    __slots__ = (
        "session_id",
        "start_time",
        "current_task",
        "active_ticket",
        "revision",
        "older",
        "older_cursor",
        "_messages",
        "_files",
        "_context",
        "_sorted_keys",
        "_saved_messages",
        "_trim_saved",
        "_pop_saved",
        "_wiped",
        "_dirty_files",
        "_dirty_context",
        "_dirty_row",
        "_mutations",
        "_undo",
        "_call",
        "_ctx_copied",
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
        self.revision = 0  # of its last change (host.py sets it)
        # Messages in the store not loaded yet (the oldest; see storage.Reader), and the
        # store's own position of where they end.
        self.older = 0
        self.older_cursor: object = None
        self._messages = MessageLog()
        self._files: dict[str, None] = {}
        self._context: dict[str, bytes] = {}
        self._sorted_keys: SortedKeys | None = None  # built by the first list_context
        self._saved_messages = 0  # the first this many loaded messages are in the database
        self._trim_saved = 0
        self._pop_saved = 0
        self._wiped = False
        self._dirty_files: dict[str, None] = {}
        self._dirty_context: dict[str, None] = {}
        self._dirty_row = False
        self._mutations = 0
        self._undo: list[Callable[[], None]] | None = None  # a write turn's inverse steps (undo.py)
        self._call = -1  # the call of that turn whose changes began last here
        self._ctx_copied = False

    @classmethod
    def from_restored(cls, r: Restored) -> SessionState:
        s = cls.__new__(cls)
        s._reset(r.session_id, r.start_time)
        s.current_task = r.current_task
        s.active_ticket = r.active_ticket
        s.revision = r.revision
        s.older = r.older
        s.older_cursor = r.older_cursor
        s._messages = r.messages
        s._saved_messages = len(r.messages)
        s._files = dict.fromkeys(r.files)  # a duplicate row (another tool's) counts once
        s._context = r.context
        return s

    @classmethod
    def built(cls, session_id: str, start_time: int, task: str | None, ticket: str | None,
              messages: MessageLog, files: list[str], context: dict[str, bytes]) -> SessionState:
        """A new session with content (a fork, an import): all of it unsaved."""
        s = cls(session_id, start_time)
        s.current_task, s.active_ticket = task, ticket
        s._messages = messages
        s._files = dict.fromkeys(files)
        s._dirty_files = dict.fromkeys(files)
        s._context = context
        s._dirty_context = dict.fromkeys(context)
        s._mutations += 1
        return s

    def add_older(self, older: MessageLog) -> None:
        """The rest of the history, loaded after the tail: put in front of it. Within a
        turn that may be undone (a call of it may be what waits for this history), the
        undo takes it out again: the session is then as loaded before, its tail only."""
        n = len(older)  # before: prepend takes over older's buffers
        if self._undo is not None:
            self._undo.append(partial(self._unsplice, n, self.older, self.older_cursor))
        self._messages.prepend(older)
        self._saved_messages += n
        self.older = 0

    def _unsplice(self, n: int, older: int, cursor: object) -> None:
        self._messages.trim_front(n)
        self._saved_messages -= n
        self.older, self.older_cursor = older, cursor

    @property
    def complete(self) -> bool:
        """Its whole history is in memory."""
        return self.older == 0

    # -- task / ticket -------------------------------------------------------
    # A call that changes nothing records nothing, so a snapshot after it writes nothing;
    # each setter says whether it changed something (a change gets a revision).
    def set_current_task(self, task: str | None) -> bool:
        if task == self.current_task:
            return False
        if self._undo is not None:
            self._undo.append(partial(setattr, self, "current_task", self.current_task))
        self.current_task = task
        self._dirty_row = True
        self._mutations += 1
        return True

    def set_active_ticket(self, ticket: str | None) -> bool:
        if ticket == self.active_ticket:
            return False
        if self._undo is not None:
            self._undo.append(partial(setattr, self, "active_ticket", self.active_ticket))
        self.active_ticket = ticket
        self._dirty_row = True
        self._mutations += 1
        return True

    # -- messages -------------------------------------------------------------
    def add_message(self, role: str, content: str, timestamp: int, msg_id: str | None = None,
                    data: bytes | None = None) -> bytes | None:
        """Append; returns the message's JSON, or None when ``msg_id`` is one the
        session already holds (a retried append: nothing is added)."""
        if msg_id is not None and self._messages.has_id(msg_id):
            return None
        encoded = self._messages.append(role, content, timestamp, msg_id, data)
        self._mutations += 1
        if self._undo is not None:
            self._undo.append(self._messages.drop_last)
        return encoded

    def recent_messages(self, count: int) -> Raw:
        return Raw(self._messages.recent(count))

    def recent_full(self, count: int) -> Raw:
        return Raw(self._messages.recent_full(count))

    def all_messages(self) -> Raw:
        return Raw(self._messages.all())

    def messages_before(self, before: int, count: int, full: bool) -> Raw:
        """The ``count`` messages before index ``before`` (clamped to the end), oldest
        first; the caller has loaded them (:meth:`needs_older_for`)."""
        stop = min(before, self.messages_count)
        return Raw(self._messages.between(stop - count - self.older, stop - self.older, full))

    def needs_older_for(self, before: int, count: int) -> bool:
        """Whether the messages before ``before`` reach into the part not loaded yet."""
        return self.older > 0 and min(before, self.messages_count) - count < self.older

    def newest_message(self) -> bytes | None:
        return self._messages.newest()

    @property
    def loaded_messages(self) -> int:
        return len(self._messages)

    def pop_message(self) -> bytes | None:
        """Remove the newest (loaded) message; its full JSON, or None when none is."""
        entry = self._messages.newest_entry() if self._undo is not None else None
        popped = self._messages.pop()
        if popped is None:
            return None
        saved = self._saved_messages > len(self._messages)
        if saved:
            self._saved_messages -= 1
            self._pop_saved += 1
        self._mutations += 1
        if self._undo is not None and entry is not None:
            self._undo.append(lambda: self._unpop(entry, saved))
        return popped

    def _unpop(self, entry: tuple[bytes, str | None, bytes | None], saved: bool) -> None:
        self._messages.push(*entry)
        if saved:
            self._saved_messages += 1
            self._pop_saved -= 1

    def trim_messages(self, keep: int) -> int:
        """Keep the newest ``keep`` (loaded) messages; returns how many went."""
        removed = self._messages.trim_front(len(self._messages) - keep)
        if removed:
            saved = min(removed, self._saved_messages)
            self._saved_messages -= saved
            self._trim_saved += saved
            self._mutations += 1
            if self._undo is not None:
                self._undo.append(lambda: self._untrim(removed, saved))
        return removed

    def _untrim(self, removed: int, saved: int) -> None:
        self._messages.untrim(removed)
        self._saved_messages += saved
        self._trim_saved -= saved

    @property
    def messages_count(self) -> int:
        return self.older + len(self._messages)

    def message_log(self) -> MessageLog:
        return self._messages

    # -- files -----------------------------------------------------------------
    def track_file(self, path: str) -> bool:
        if path in self._files:
            return False
        self._save_files()
        self._files[path] = None
        self._touch_file(path)
        return True

    def untrack_file(self, path: str) -> bool:
        if path not in self._files:
            return False
        self._save_files()
        del self._files[path]
        self._touch_file(path)
        return True

    def _save_files(self) -> None:
        if self._undo is not None:  # their order matters: the whole (short) list back
            self._undo.append(partial(setattr, self, "_files", dict(self._files)))

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
        old = self._context.get(key)
        if old == value_json:
            return False
        if self._undo is not None:
            self._undo.append(lambda: self._put_back(key, old))
        self._context[key] = value_json
        if old is None and self._sorted_keys is not None:
            self._sorted_keys.add(key)
        self._dirty_context[key] = None
        self._mutations += 1
        return True

    def get_context(self, key: str) -> Raw | None:
        value = self._context.get(key)
        return None if value is None else Raw(value)

    def context_json(self, key: str) -> bytes | None:
        return self._context.get(key)

    def delete_context(self, key: str) -> bool:
        if self._undo is not None and key in self._context:
            if not self._ctx_copied:
                # Put back, a deleted key would go last: the whole context as it was
                # before the turn's first delete keeps its order (undone last).
                self._ctx_copied = True
                self._undo.append(partial(self._put_all_back, dict(self._context)))
            self._undo.append(partial(self._put_back, key, self._context[key]))
        if self._context.pop(key, None) is None:
            return False
        if self._sorted_keys is not None:
            self._sorted_keys.remove(key)
        self._dirty_context[key] = None
        self._mutations += 1
        return True

    def _put_content_back(self, kept: list[object]) -> None:
        for name, value in zip(_CONTENT, kept, strict=True):
            setattr(self, name, value)

    def _put_back(self, key: str, old: bytes | None) -> None:
        if old is None:
            del self._context[key]
        else:
            self._context[key] = old
        self._sorted_keys = None  # rebuilt by the next listing

    def _put_all_back(self, old: dict[str, bytes]) -> None:
        self._context = old
        self._sorted_keys = None

    def all_context(self) -> Raw:
        if not self._context:
            return Raw(b"{}")
        parts = [_encode(k) + b":" + v for k, v in self._context.items()]
        return Raw(b"{" + b",".join(parts) + b"}")

    def list_context(self, prefix: str, after: str | None, limit: int, reverse: bool) -> Raw:
        """``listContext``'s result: ``{"entries": [{"key", "value"}], "more"}``, in key
        order (see keyrange.py)."""
        if self._sorted_keys is None:
            self._sorted_keys = SortedKeys(self._context)
        keys, more = self._sorted_keys.page(prefix, after, limit, reverse)
        ctx = self._context
        entries = b",".join([b'{"key":' + _encode(k) + b',"value":' + ctx[k] + b"}" for k in keys])
        return Raw(b'{"entries":[' + entries + (b'],"more":true}' if more else b'],"more":false}'))

    def context_items(self) -> list[tuple[str, bytes]]:
        return list(self._context.items())

    @property
    def context_count(self) -> int:
        return len(self._context)

    # -- whole session -------------------------------------------------------------
    def wipe(self) -> None:
        """Empty the session and keep its id (``clear {session}``); the next snapshot
        deletes its rows. Its whole history must be loaded (older == 0)."""
        sid, start, rev = self.session_id, self.start_time, self.revision
        undo, call = self._undo, self._call
        if undo is not None:  # _reset makes new parts: the old ones are intact, to put back
            kept = [getattr(self, name) for name in _CONTENT]
            undo.append(lambda: self._put_content_back(kept))
        self._reset(sid, start)
        self._undo, self._call = undo, call
        self._messages.held = undo is not None
        self.revision = rev
        self._wiped = True
        self._dirty_row = True
        self._mutations = 1

    # -- a write turn that may be undone (undo.py) -------------------------------------
    def checkpoint(self, undo: Undo) -> None:
        """Before a call of a turn changes this session: from now on until the turn is
        settled, each change records its inverse into ``undo``; the first change of each
        call also records what says what is unwritten (the turn's drain resets it), so a
        call undone alone leaves it exact too."""
        if self._undo is None:
            self._undo = undo.steps
            self._messages.held = True
            undo.touched.append(self._end_undo)
        if self._call != undo.calls:
            self._call = undo.calls
            self._ctx_copied = False
            tracking = (self.revision, self._saved_messages, self._trim_saved, self._pop_saved, self._wiped,
                        dict(self._dirty_files), dict(self._dirty_context), self._dirty_row, self._mutations)
            undo.steps.append(lambda: self._put_tracking_back(tracking))

    def _put_tracking_back(self, t: tuple) -> None:  # type: ignore[type-arg]
        (self.revision, self._saved_messages, self._trim_saved, self._pop_saved, self._wiped,
         self._dirty_files, self._dirty_context, self._dirty_row, self._mutations) = t

    def _end_undo(self) -> None:
        self._undo = None
        self._call = -1
        self._messages.held = False
        self._messages.compact_if_due()

    @property
    def undoing(self) -> bool:
        """Its changes are being recorded (a turn that may be undone is running)."""
        return self._undo is not None

    @property
    def pending_changes(self) -> int:
        """Mutations since the last drain (0 means a snapshot would write nothing)."""
        return self._mutations

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
            session_row=self._dirty_row,
            wiped=self._wiped,
            trim_front=self._trim_saved,
            pop_back=self._pop_saved,
            messages=new_msgs,
            files=[(path, path in files) for path in self._dirty_files],
            context=[
                (k, ctx[k].decode() if k in ctx else None) for k in self._dirty_context
            ],
        )
        self._saved_messages = len(self._messages)
        self._trim_saved = self._pop_saved = 0
        self._wiped = False
        self._dirty_files = {}
        self._dirty_context = {}
        self._dirty_row = False
        self._mutations = 0
        return changes
