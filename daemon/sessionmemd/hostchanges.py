"""The changes to one session's parts (task, ticket, messages, open files, context):
each checks its ``expect`` and the room for a revision, applies to the SessionState
and records one change, or none when nothing changed. Sans-I/O (hostcore.py)."""

from __future__ import annotations

from msgspec import UNSET, Raw

from sessionmem import protocol as p

from .hostcore import FRAME_HEAD, HostCore, encode
from .state import SessionState


class SessionChanges(HostCore):
    """The changes to one session's parts (the SessionState handed in is loaded)."""

    # -- changes to one session -------------------------------------------------------------
    def set_current_task(self, s: SessionState, task: str | None, expect: Raw | p.UnsetType = UNSET) -> None:
        self._expect(expect, lambda: encode(s.current_task))
        self._check_room()
        self._touch(s)
        if s.set_current_task(task):
            self._record(self._next("setCurrentTask", s.session_id, task=task))

    def set_active_ticket(self, s: SessionState, ticket: str | None, expect: Raw | p.UnsetType = UNSET) -> None:
        self._expect(expect, lambda: encode(s.active_ticket))
        self._check_room()
        self._touch(s)
        if s.set_active_ticket(ticket):
            self._record(self._next("setActiveTicket", s.session_id, ticketId=ticket))

    def add_message(self, s: SessionState, role: str, content: str, timestamp: int | None,
                    msg_id: str | None, data: bytes | None = None) -> None:
        # The hot path of every agent: _next/_record written out, one clock read.
        self._check_room()
        if self.undo is not None:
            s.checkpoint(self.undo)
        now = self._now()
        encoded = s.add_message(role, content, now if timestamp is None else timestamp, msg_id, data)
        if encoded is None:
            return
        self.revision = rev = self.revision + 1
        change = p.Change(revision=rev, sessionId=s.session_id, op="addMessage", at=now,
                          message=Raw(encoded))  # type: ignore[arg-type]  # encoded once, as is
        if msg_id is not None:
            change.messageId = msg_id
        if data is not None:
            change.data = Raw(data)
        if self.max_messages is not None and s.messages_count > self.max_messages:
            change.removed = s.trim_messages(self.max_messages)
        sid = s.session_id
        s.revision = rev
        self._dirty[sid] = None
        self.log.append(rev, sid, b"%s%s}\n" % (FRAME_HEAD, encode(change)))
        self.on_change()

    def track_file(self, s: SessionState, path: str) -> None:
        self._check_room()
        self._touch(s)
        if s.track_file(path):
            self._record(self._next("trackOpenFile", s.session_id, filePath=path))

    def untrack_file(self, s: SessionState, path: str) -> None:
        self._check_room()
        self._touch(s)
        if s.untrack_file(path):
            self._record(self._next("untrackFile", s.session_id, filePath=path))

    def set_context(self, s: SessionState, key: str, value: bytes, expect: Raw | p.UnsetType = UNSET) -> None:
        self._expect(expect, lambda: s.context_json(key))
        self._check_room()
        self._touch(s)
        if s.set_context(key, value):
            self._record(self._next("setContext", s.session_id, key=key, value=Raw(value)))

    def delete_context(self, s: SessionState, key: str, expect: Raw | p.UnsetType = UNSET) -> None:
        self._expect(expect, lambda: s.context_json(key))
        self._check_room()
        self._touch(s)
        if s.delete_context(key):
            self._record(self._next("deleteContext", s.session_id, key=key))

    def pop_message(self, s: SessionState, expect: Raw | p.UnsetType = UNSET) -> Raw | None:
        """Remove the newest message; its full JSON, or None when the session has none.
        ``s`` must have its history loaded when its tail is empty."""
        self._expect(expect, s.newest_message)
        self._check_room()
        self._touch(s)
        plain = s.newest_message()
        popped = s.pop_message()
        if popped is None or plain is None:
            return None
        self._record(self._next("popMessage", s.session_id, message=Raw(plain)))
        return Raw(popped)

    def trim_messages(self, s: SessionState, keep: int) -> int:
        """Keep the newest ``keep`` messages (``s`` complete); how many went."""
        self._check_room()
        self._touch(s)
        removed = s.trim_messages(keep)
        if removed:
            self._record(self._next("trimMessages", s.session_id, removed=removed))
        return removed

    def wipe(self, s: SessionState) -> str:
        """``clear {session}``: empty it, keep its id (``s`` complete)."""
        self._check_room()
        self._touch(s)
        s.wipe()
        self._record(self._next("clear", s.session_id))
        return s.session_id
