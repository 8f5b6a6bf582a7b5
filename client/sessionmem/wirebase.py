"""The wire's common ground (part of ``sessionmem.protocol``, which re-exports it):
the protocol version, the error codes, the capabilities, the scalar types every
params Struct is built of, fencing's ``lease``, the JSON-RPC envelope, and the base of
every params Struct.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Generic, Literal, TypeVar

from msgspec import UNSET, Meta, Raw, Struct, UnsetType

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


class _Params(Struct, forbid_unknown_fields=True):
    """Base of every params Struct: unknown names are errors, so typos surface."""


class NoParams(_Params):
    pass


class SessionParams(_Params):
    """The params of a read of one session's part: which session (absent: the current)."""

    session: SessionRef = UNSET
