"""The wire: JSON-RPC 2.0 over newline-delimited JSON, as msgspec Structs.

Sans-I/O: nothing here touches a socket or a clock. The daemon and both clients
import these types, so the Structs below *are* the protocol's documentation
(``docs/protocol.md`` is written from them).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Generic, Literal, TypeVar

from msgspec import UNSET as UNSET  # re-exported: clients compare with it
from msgspec import Meta, Raw, Struct
from msgspec import UnsetType as UnsetType

PROTOCOL_VERSION: Final = 3
JSONRPC: Final = "2.0"

# -- error codes ---------------------------------------------------------------
# JSON-RPC 2.0 reserved codes.
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
# Application codes (-32000..-32099); each one is described in docs/protocol.md.
FRAME_TOO_LARGE: Final = -32001
TOO_MANY_CONNECTIONS: Final = -32002
SHUTTING_DOWN: Final = -32003
PERSIST_FAILED: Final = -32004
OUTPUT_OVERFLOW: Final = -32005
CONFLICT: Final = -32009  # `expect` did not match; data: {current, revision}
COMPACTED: Final = -32010  # watch `since` older than the change log; data: {oldest}
NO_SUCH_SESSION: Final = -32011  # data: {sessionId}
SESSION_EXISTS: Final = -32012  # data: {sessionId}
SESSION_IS_CURRENT: Final = -32013  # deleteSession of the current one; data: {sessionId}
LEASE_HELD: Final = -32014  # a lease is held by another, or not with that token; data: {owner, expiresAt, token}

# What hello's `capabilities` lists; clients may test for each by name.
CAPABILITIES: Final = (
    "batch", "notifications", "pipelining", "durability", "snapshot", "restore",
    "revisions", "watch", "expect", "messageIds", "sessions", "messageData", "export",
    "transact", "leases", "search", "listContext", "store", "sync",
)
EXPORT_FORMAT: Final = 1  # the "format" of exportSession's header record

Role = Literal["user", "assistant", "system", "tool"]
# SQLite INTEGER is a signed 64-bit value; anything wider could never be saved.
Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
EpochMs = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Count = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Revision = Annotated[int, Meta(ge=0, le=2**63 - 1)]
MessageId = Annotated[str, Meta(min_length=1, max_length=128)]
SessionId = Annotated[str, Meta(min_length=1, max_length=128)]
# `session`: absent (UNSET) = the current session.
SessionRef = SessionId | UnsetType
RequestId = int | float | str | None
# `expect`: absent (UNSET) = unconditional; any JSON value, null included, is compared.
Expect = Raw | UnsetType
LeaseName = Annotated[str, Meta(min_length=1, max_length=256)]
LeaseOwner = Annotated[str, Meta(min_length=1, max_length=128)]
TtlMs = Annotated[int, Meta(ge=1, le=2**53)]


class LeaseRef(Struct, forbid_unknown_fields=True):
    """``lease`` of a mutating call (fencing): the call applies only while this lease is
    held with this token, else -32014 and nothing changes."""

    name: LeaseName
    token: Revision


# `lease`: absent (UNSET) = not fenced.
Fence = LeaseRef | UnsetType


# -- envelope --------------------------------------------------------------------
class Request(Struct, omit_defaults=True, kw_only=True):
    """One JSON-RPC call. ``id`` absent (UNSET) makes it a notification."""

    jsonrpc: Literal["2.0"]
    method: str
    params: Raw | UnsetType = UNSET
    id: RequestId | UnsetType = UNSET


class ErrorObject(Struct, omit_defaults=True):
    code: int
    message: str
    data: Any = UNSET


class Response(Struct, kw_only=True):
    jsonrpc: str = JSONRPC
    id: RequestId
    result: Any


class ErrorResponse(Struct, kw_only=True):
    jsonrpc: str = JSONRPC
    id: RequestId
    error: ErrorObject


class Reply(Struct, omit_defaults=True, kw_only=True):
    """What a client decodes: exactly one of ``result`` / ``error`` is present."""

    jsonrpc: str = JSONRPC
    id: RequestId = None
    result: Raw | UnsetType = UNSET
    error: ErrorObject | UnsetType = UNSET


T = TypeVar("T")


class TypedReply(Struct, Generic[T], omit_defaults=True, kw_only=True):
    """A reply whose result is decoded straight into the method's result type."""

    jsonrpc: str = JSONRPC
    id: RequestId = None
    result: T | UnsetType = UNSET
    error: ErrorObject | UnsetType = UNSET


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


class _Params(Struct, forbid_unknown_fields=True):
    """Base of every params Struct: unknown names are errors, so typos surface."""


class NoParams(_Params):
    pass


class SessionParams(_Params):
    """The params of a read of one session's part: which session (absent: the current)."""

    session: SessionRef = UNSET


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


# listContext's page size: a page of framework records (checkpoints, events) in one
# reply, bounded so that one call cannot build an unbounded reply.
MAX_LIST_CONTEXT = 10_000


class ListContextParams(_Params):
    """listContext: the context keys that start with ``prefix``, in key order (code
    point order; descending with ``reverse``), strictly past ``after`` in that order,
    at most ``limit`` of them."""

    prefix: str = ""
    after: str | UnsetType = UNSET
    limit: Annotated[int, Meta(ge=1, le=MAX_LIST_CONTEXT)] = 1000
    reverse: bool = False
    session: SessionRef = UNSET


class ContextEntry(Struct):
    key: str
    value: Any


class ContextPage(Struct):
    """listContext's result: ``more`` is true when keys past the last entry match too
    (ask again with ``after`` = the last entry's key)."""

    entries: list[ContextEntry]
    more: bool


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


class TransactOp(_Params):
    """One op of a transaction: a mutating method of one session's parts and its params
    (without ``session``: the transaction's applies)."""

    method: str
    params: Raw | UnsetType = UNSET


class TransactParams(_Params):
    ops: list[TransactOp]
    session: SessionRef = UNSET
    # The addressed session's revision (of its last change) must be this, else -32009.
    expectRevision: Revision | UnsetType = UNSET
    lease: Fence = UNSET


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


class AcquireLeaseParams(_Params):
    name: LeaseName
    owner: LeaseOwner
    ttlMs: TtlMs | UnsetType = UNSET  # absent: ephemeral, ends with the connection
    session: SessionRef = UNSET  # which session the lease concerns (absent: the current)


class RenewLeaseParams(_Params):
    name: LeaseName
    token: Revision
    ttlMs: TtlMs | UnsetType = UNSET  # absent: the ttl it was acquired with


class ReleaseLeaseParams(_Params):
    name: LeaseName
    token: Revision


class ListLeasesParams(_Params):
    session: SessionRef = UNSET  # only the leases concerning this session; absent: all


class WatchParams(_Params):
    since: Revision | UnsetType = UNSET  # absent: from the current revision on
    session: SessionRef = UNSET  # only this session's changes; absent: every session's


class HelloParams(_Params):
    clientVersion: str | UnsetType = UNSET
    protocolVersion: int | UnsetType = UNSET


# -- results ---------------------------------------------------------------------
class SnapshotResult(Struct):
    written: bool
    messages: int
    files: int
    contextKeys: int
    sessionChanged: bool
    durationMs: float


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


class Lease(Struct, kw_only=True):
    """A live lease (acquireLease's and renewLease's result, listLeases' items, and
    the ``lease`` of a lease change)."""

    name: str
    owner: str
    token: int  # the revision of its acquisition: a later holder's is larger
    expiresAt: int | None  # epoch ms; null: ephemeral (ends when its connection closes)
    sessionId: str
    ttlMs: int | None = None


SearchMode = Literal["words", "phrase", "prefix", "substring"]


class SearchMessagesParams(_Params):
    """searchMessages: ``session`` (absent: the current) or ``sessions: "*"`` (every
    session). Limits: docs/protocol.md (the daemon's searchquery.py checks them)."""

    query: str
    session: SessionRef = UNSET
    sessions: Literal["*"] | UnsetType = UNSET
    mode: SearchMode = "words"
    roles: list[str] | UnsetType = UNSET
    since: EpochMs | UnsetType = UNSET  # timestamp >= since
    until: EpochMs | UnsetType = UNSET  # timestamp < until
    limit: Annotated[int, Meta(ge=1)] = 20
    cursor: str | UnsetType = UNSET  # a previous result's nextCursor


class SearchHit(Struct, omit_defaults=True):
    """One message found. ``index``: its position in its session (getAllMessages'
    order). ``snippet``: its text around the match, each match between U+0002 and
    U+0003. ``score``: higher is better (0 in substring mode, which is newest first)."""

    sessionId: str
    index: int
    role: str
    timestamp: int
    snippet: str
    score: float
    id: str | UnsetType = UNSET


class SearchResult(Struct):
    hits: list[SearchHit]
    nextCursor: str | None  # the next page's cursor; null on the last page
    revision: int  # every change up to this revision is in what was searched
    complete: bool  # false: some messages may be missing (the index is still being built)


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


class MethodSpec(Struct, frozen=True):
    params: type[_Params]
    result: Any
    mutates: bool


METHODS: Final[dict[str, MethodSpec]] = {
    "getSessionId": MethodSpec(SessionParams, str, False),
    "getCurrentTask": MethodSpec(SessionParams, str | None, False),
    "setCurrentTask": MethodSpec(SetCurrentTaskParams, None, True),
    "addMessage": MethodSpec(AddMessageParams, None, True),
    "getRecentMessages": MethodSpec(GetRecentMessagesParams, list[Message], False),
    "getAllMessages": MethodSpec(GetAllMessagesParams, list[Message], False),
    "trackOpenFile": MethodSpec(FilePathParams, None, True),
    "untrackFile": MethodSpec(FilePathParams, None, True),
    "getOpenFiles": MethodSpec(SessionParams, list[str], False),
    "setActiveTicket": MethodSpec(SetActiveTicketParams, None, True),
    "getActiveTicket": MethodSpec(SessionParams, str | None, False),
    "setContext": MethodSpec(SetContextParams, None, True),
    "getContext": MethodSpec(KeyParams, Any, False),
    "deleteContext": MethodSpec(DeleteContextParams, None, True),
    "getAllContext": MethodSpec(SessionParams, dict[str, Any], False),
    "listContext": MethodSpec(ListContextParams, ContextPage, False),
    "snapshot": MethodSpec(NoParams, SnapshotResult, False),
    "restore": MethodSpec(NoParams, None, True),
    "clear": MethodSpec(ClearParams, str, True),
    "getStats": MethodSpec(SessionParams, Stats, False),
    "hello": MethodSpec(HelloParams, HelloResult, False),
    "shutdown": MethodSpec(NoParams, None, False),
    "watch": MethodSpec(WatchParams, WatchResult, False),
    "unwatch": MethodSpec(NoParams, None, False),
    "sync": MethodSpec(NoParams, SyncResult, False),
    "popMessage": MethodSpec(PopMessageParams, FullMessage | None, True),
    "trimMessages": MethodSpec(TrimMessagesParams, int, True),
    "createSession": MethodSpec(CreateSessionParams, SessionIdResult, True),
    "listSessions": MethodSpec(NoParams, list[SessionInfo], False),
    "setCurrentSession": MethodSpec(SessionIdParams, None, True),
    "deleteSession": MethodSpec(SessionIdParams, None, True),
    "exportSession": MethodSpec(SessionParams, list[Record], False),
    "importSession": MethodSpec(ImportSessionParams, SessionIdResult, True),
    "transact": MethodSpec(TransactParams, list[Any], True),
    "acquireLease": MethodSpec(AcquireLeaseParams, Lease, True),
    "renewLease": MethodSpec(RenewLeaseParams, Lease, True),
    "releaseLease": MethodSpec(ReleaseLeaseParams, None, True),
    "listLeases": MethodSpec(ListLeasesParams, list[Lease], False),
    "searchMessages": MethodSpec(SearchMessagesParams, SearchResult, False),
}
# Handlers of these also get the calling connection (the feed is per connection).
# acquireLease: an ephemeral lease ends when that connection closes.
CONNECTION_METHODS: Final = frozenset({"watch", "unwatch", "acquireLease"})
