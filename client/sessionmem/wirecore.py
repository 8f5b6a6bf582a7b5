"""The wire of the core methods (part of ``sessionmem.protocol``): one session's
parts (task, ticket, messages, open files, context), snapshot, and the feed (watch,
sync, the ``changed`` notification's Change).
"""

from __future__ import annotations

from typing import Any, Generic

from msgspec import UNSET, Raw, Struct, UnsetType

from .wirebase import (
    JSONRPC,
    Count,
    EpochMs,
    Expect,
    Fence,
    MessageId,
    Revision,
    Role,
    SessionRef,
    T,
    _Params,
)
from .wirecoord import Lease


# -- values ----------------------------------------------------------------------
class Message(Struct, frozen=True, gc=False):
    """One conversation message, exactly as it travels: {role, content, timestamp}.

    ``role`` is checked on the way in (addMessage); results keep whatever a
    database written by the original holds. ``gc=False``: it holds only strings and
    an int, so it can never be part of a cycle, and a million of them must not make
    the cyclic collector's passes longer.
    """

    role: str
    content: str
    timestamp: EpochMs


class SetCurrentTaskParams(_Params):
    task: str | None
    expect: Expect = UNSET
    session: SessionRef = UNSET
    lease: Fence = UNSET


class AddMessageParams(_Params):
    role: Role
    content: str
    timestamp: EpochMs | None | UnsetType = UNSET
    id: MessageId | UnsetType = UNSET  # a repeat of an id the session holds adds nothing
    data: Raw | UnsetType = UNSET  # any JSON, kept with the message (read with full: true)
    session: SessionRef = UNSET
    lease: Fence = UNSET


class GetRecentMessagesParams(_Params):
    count: Count
    full: bool = False  # messages with their id and data
    session: SessionRef = UNSET
    # The `count` messages before this index (a session's history paged newest first);
    # past the end it is the end.
    before: Count | UnsetType = UNSET


class GetAllMessagesParams(_Params):
    full: bool = False
    session: SessionRef = UNSET


class FilePathParams(_Params):
    filePath: str
    session: SessionRef = UNSET
    lease: Fence = UNSET


class SetActiveTicketParams(_Params):
    ticketId: str | None
    expect: Expect = UNSET
    session: SessionRef = UNSET
    lease: Fence = UNSET


class SetContextParams(_Params):
    key: str
    value: Raw
    expect: Expect = UNSET
    session: SessionRef = UNSET
    lease: Fence = UNSET


class KeyParams(_Params):
    key: str
    session: SessionRef = UNSET


class DeleteContextParams(_Params):
    key: str
    expect: Expect = UNSET
    session: SessionRef = UNSET
    lease: Fence = UNSET


class PopMessageParams(_Params):
    expect: Expect = UNSET  # the newest message as {role, content, timestamp}, or null
    session: SessionRef = UNSET
    lease: Fence = UNSET


class TrimMessagesParams(_Params):
    keep: Count
    session: SessionRef = UNSET
    lease: Fence = UNSET


class WatchParams(_Params):
    since: Revision | UnsetType = UNSET  # absent: from the current revision on
    session: SessionRef = UNSET  # only this session's changes; absent: every session's


# -- results ---------------------------------------------------------------------
class SnapshotResult(Struct):
    written: bool
    messages: int
    files: int
    contextKeys: int
    sessionChanged: bool
    durationMs: float


class WatchResult(Struct):
    revision: int


class SyncResult(Struct):
    revision: int  # every change committed before the call is applied up to here


class FullMessage(Struct, omit_defaults=True, frozen=True):
    """A message with its id and data (``full: true`` reads, ``popMessage``)."""

    role: str
    content: str
    timestamp: int
    id: str | UnsetType = UNSET
    data: Any = UNSET


class Change(Struct, omit_defaults=True, kw_only=True):
    """The params of a ``changed`` notification: one change, its revision, what it did.
    Fields that do not apply to ``op`` are absent (see docs/protocol.md)."""

    revision: int
    sessionId: str
    op: str  # the wire method that made the change
    at: int  # epoch ms when the daemon applied it
    message: Message | UnsetType = UNSET  # addMessage
    messageId: str | UnsetType = UNSET  # addMessage with an id
    task: str | None | UnsetType = UNSET  # setCurrentTask
    ticketId: str | None | UnsetType = UNSET  # setActiveTicket
    key: str | UnsetType = UNSET  # setContext, deleteContext
    value: Any = UNSET  # setContext
    filePath: str | UnsetType = UNSET  # trackOpenFile, untrackFile
    newSessionId: str | UnsetType = UNSET  # clear (no params)
    data: Any = UNSET  # addMessage with data
    removed: int | UnsetType = UNSET  # trimMessages; addMessage trimmed by --max-messages
    forkFrom: str | UnsetType = UNSET  # createSession as a fork
    forkUpTo: int | UnsetType = UNSET  # createSession as a fork: messages copied
    # The session that is current after this change, on every change that made another
    # session current (setCurrentSession; clear with no params; createSession and
    # importSession with makeCurrent; restore): a follower of "the current session"
    # needs no other read to know it moved.
    current: str | UnsetType = UNSET
    # acquireLease, renewLease (not a change: no notification), releaseLease,
    # leaseExpired (its time passed, or its connection closed): the lease.
    lease: Lease | UnsetType = UNSET


class Notification(Struct, Generic[T], kw_only=True):
    jsonrpc: str = JSONRPC
    method: str
    params: T
