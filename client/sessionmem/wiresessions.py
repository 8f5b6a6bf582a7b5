"""The wire of the sessions of a project (part of ``sessionmem.protocol``): create,
list, make current, delete, clear, and export/import with the export records.
"""

from __future__ import annotations

from msgspec import UNSET, Raw, Struct, UnsetType

from .wirebase import Count, EpochMs, Fence, MessageId, SessionId, SessionRef, _Params


class CreateSessionParams(_Params):
    sessionId: SessionId | UnsetType = UNSET  # absent: a new UUID
    forkFrom: SessionId | UnsetType = UNSET  # absent: an empty session
    forkUpTo: Count | UnsetType = UNSET  # messages of forkFrom to copy; absent: all
    makeCurrent: bool = False
    lease: Fence = UNSET


class SessionIdParams(_Params):
    sessionId: SessionId
    lease: Fence = UNSET


class ImportSessionParams(_Params):
    records: list[Raw]  # exportSession's records, header first (see SessionRecord)
    sessionId: SessionId | UnsetType = UNSET  # absent: the header's
    makeCurrent: bool = False
    lease: Fence = UNSET


class ClearParams(_Params):
    session: SessionRef = UNSET
    lease: Fence = UNSET


class SessionIdResult(Struct):
    sessionId: str


class SessionInfo(Struct):
    """One entry of ``listSessions``."""

    sessionId: str
    startTime: int
    currentTask: str | None
    activeTicket: str | None
    messagesCount: int
    filesOpenCount: int
    contextKeysCount: int
    revision: int  # of its last change; 0 when none was made by a sessionmemd
    current: bool


# -- export records: one JSON object per line, the header first -------------------
class _Record(Struct, tag_field="type", forbid_unknown_fields=True, omit_defaults=True):
    pass


class SessionRecord(_Record, tag="session", omit_defaults=False):
    format: int
    sessionId: SessionId
    startTime: EpochMs
    currentTask: str | None = None
    activeTicket: str | None = None
    # How many records of each kind follow: an import checks them, so a file cut
    # short at a line boundary is refused instead of imported in part.
    messages: Count = 0
    files: Count = 0
    contextKeys: Count = 0


class MessageRecord(_Record, tag="message"):
    role: str  # as stored: a database written by the original may hold any role
    content: str
    timestamp: EpochMs
    id: MessageId | UnsetType = UNSET
    data: Raw | UnsetType = UNSET


class FileRecord(_Record, tag="file"):
    path: str


class ContextRecord(_Record, tag="context"):
    key: str
    value: Raw


Record = SessionRecord | MessageRecord | FileRecord | ContextRecord
