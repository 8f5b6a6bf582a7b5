"""The wire: JSON-RPC 2.0 over newline-delimited JSON, as msgspec Structs.

Sans-I/O: nothing here touches a socket or a clock. The daemon and both clients
import these types, so the Structs below *are* the protocol's documentation
(``docs/protocol.md`` is written from them).

The Structs are kept in one module per part of the protocol, and this module is the
one place clients read them from (``from sessionmem import protocol as p``; ``p.X``):
wirebase.py (version, error codes, scalar types, envelope), wirecore.py (one session's
parts, snapshot, the feed), wiresessions.py (sessions, export/import), wirecoord.py
(leases, transact), wiresearch.py (listContext, searchMessages), wirehello.py (hello,
getStats). The method table (``METHODS``) is here: it names them all.
"""

from __future__ import annotations

from typing import Any, Final

from msgspec import UNSET as UNSET  # re-exported: clients compare with it
from msgspec import Struct
from msgspec import UnsetType as UnsetType

from .wirebase import (  # re-exported: the one place clients read
    PROTOCOL_VERSION as PROTOCOL_VERSION,
    JSONRPC as JSONRPC,
    PARSE_ERROR as PARSE_ERROR,
    INVALID_REQUEST as INVALID_REQUEST,
    METHOD_NOT_FOUND as METHOD_NOT_FOUND,
    INVALID_PARAMS as INVALID_PARAMS,
    INTERNAL_ERROR as INTERNAL_ERROR,
    FRAME_TOO_LARGE as FRAME_TOO_LARGE,
    TOO_MANY_CONNECTIONS as TOO_MANY_CONNECTIONS,
    SHUTTING_DOWN as SHUTTING_DOWN,
    PERSIST_FAILED as PERSIST_FAILED,
    OUTPUT_OVERFLOW as OUTPUT_OVERFLOW,
    CONFLICT as CONFLICT,
    COMPACTED as COMPACTED,
    NO_SUCH_SESSION as NO_SUCH_SESSION,
    SESSION_EXISTS as SESSION_EXISTS,
    SESSION_IS_CURRENT as SESSION_IS_CURRENT,
    LEASE_HELD as LEASE_HELD,
    CAPABILITIES as CAPABILITIES,
    EXPORT_FORMAT as EXPORT_FORMAT,
    Role as Role,
    Int64 as Int64,
    EpochMs as EpochMs,
    Count as Count,
    Revision as Revision,
    MessageId as MessageId,
    SessionId as SessionId,
    SessionRef as SessionRef,
    RequestId as RequestId,
    Expect as Expect,
    LeaseName as LeaseName,
    LeaseOwner as LeaseOwner,
    TtlMs as TtlMs,
    LeaseRef as LeaseRef,
    Fence as Fence,
    Request as Request,
    ErrorObject as ErrorObject,
    Response as Response,
    ErrorResponse as ErrorResponse,
    Reply as Reply,
    T as T,
    TypedReply as TypedReply,
    _Params as _Params,
    NoParams as NoParams,
    SessionParams as SessionParams,
)
from .wirecore import (  # re-exported: the one place clients read
    Message as Message,
    SetCurrentTaskParams as SetCurrentTaskParams,
    AddMessageParams as AddMessageParams,
    GetRecentMessagesParams as GetRecentMessagesParams,
    GetAllMessagesParams as GetAllMessagesParams,
    FilePathParams as FilePathParams,
    SetActiveTicketParams as SetActiveTicketParams,
    SetContextParams as SetContextParams,
    KeyParams as KeyParams,
    DeleteContextParams as DeleteContextParams,
    PopMessageParams as PopMessageParams,
    TrimMessagesParams as TrimMessagesParams,
    WatchParams as WatchParams,
    SnapshotResult as SnapshotResult,
    WatchResult as WatchResult,
    SyncResult as SyncResult,
    FullMessage as FullMessage,
    Change as Change,
    Notification as Notification,
)
from .wiresessions import (  # re-exported: the one place clients read
    CreateSessionParams as CreateSessionParams,
    SessionIdParams as SessionIdParams,
    ImportSessionParams as ImportSessionParams,
    ClearParams as ClearParams,
    SessionIdResult as SessionIdResult,
    SessionInfo as SessionInfo,
    SessionRecord as SessionRecord,
    MessageRecord as MessageRecord,
    FileRecord as FileRecord,
    ContextRecord as ContextRecord,
    Record as Record,
)
from .wirecoord import (  # re-exported: the one place clients read
    TransactOp as TransactOp,
    TransactParams as TransactParams,
    AcquireLeaseParams as AcquireLeaseParams,
    RenewLeaseParams as RenewLeaseParams,
    ReleaseLeaseParams as ReleaseLeaseParams,
    ListLeasesParams as ListLeasesParams,
    Lease as Lease,
)
from .wiresearch import (  # re-exported: the one place clients read
    MAX_LIST_CONTEXT as MAX_LIST_CONTEXT,
    ListContextParams as ListContextParams,
    ContextEntry as ContextEntry,
    ContextPage as ContextPage,
    SearchMode as SearchMode,
    SearchMessagesParams as SearchMessagesParams,
    SearchHit as SearchHit,
    SearchResult as SearchResult,
)
from .wirehello import (  # re-exported: the one place clients read
    HelloParams as HelloParams,
    Stats as Stats,
    HelloResult as HelloResult,
)


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
