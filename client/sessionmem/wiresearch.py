"""The wire of reading by key and by text (part of ``sessionmem.protocol``): listContext
(a page of context keys by prefix) and searchMessages.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from .wirebase import EpochMs, SessionRef, _Params

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
