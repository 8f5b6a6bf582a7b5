"""searchMessages' query, pure: the user's text checked against the limits and turned
into what a store runs (an FTS5 MATCH expression, or a LIKE pattern for ``substring``),
the page cursor, and the snippet of a substring hit. No I/O, so every hostile input is
tested here without a database.

User text never reaches FTS5's query syntax as syntax: every word is a double-quoted
string (a ``"`` inside doubled), so ``AND``, ``NEAR(``, ``*``, ``-`` and ``:`` are
words like any other and a query can never be one the index fails to parse.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final, Literal

MAX_QUERY_CHARS: Final = 1000  # longer is -32602: a query is words, not a document
MAX_WORDS: Final = 32  # each word is one more term for the index to intersect
MAX_LIMIT: Final = 100  # hits per page; more pages through ``cursor``
DEFAULT_LIMIT: Final = 20
MAX_OFFSET: Final = 10_000  # how deep paging goes: a ranked search is read from the top
# The matched text in a snippet sits between these two: characters that do not occur in
# conversation text, so a client marks the match as it likes (bold, <mark>, [..]).
MARK_OPEN: Final = "\x02"
MARK_CLOSE: Final = "\x03"
SNIPPET_CHARS: Final = 64  # of context on each side of a substring match
SNIPPET_TOKENS: Final = 16  # FTS5's snippet(): tokens around the match

Mode = Literal["words", "phrase", "prefix", "substring"]
MODES: Final = ("words", "phrase", "prefix", "substring")


class QueryError(ValueError):
    """The query cannot be searched: the message is the reason (-32602)."""


@dataclass(frozen=True, slots=True)
class Query:
    """What a store runs. ``match`` is an FTS5 expression (None in substring mode),
    ``like`` a LIKE pattern with ``\\`` as its escape (substring mode only)."""

    text: str
    mode: str
    match: str | None
    like: str | None
    sessions: tuple[str, ...] | None  # None: every session
    roles: tuple[str, ...] | None
    since: int | None  # epoch ms, inclusive
    until: int | None  # epoch ms, exclusive
    limit: int
    offset: int


def _words(text: str) -> list[str]:
    # Only words with a letter or digit: FTS5's tokenizer drops the rest, and a quoted
    # string of punctuation alone is an empty phrase that matches nothing.
    return [w for w in text.split() if any(ch.isalnum() for ch in w)]


def _quote(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def fts_expression(text: str, mode: str) -> str:
    """The FTS5 MATCH expression for ``text`` in ``mode`` (not substring)."""
    words = _words(text)
    if not words:
        raise QueryError("the query has no word to search for (letters or digits)")
    if len(words) > MAX_WORDS:
        raise QueryError(f"the query has {len(words)} words; at most {MAX_WORDS}")
    if mode == "words":
        return " AND ".join(_quote(w) for w in words)
    if mode == "prefix":
        return " AND ".join(_quote(w) + "*" for w in words)
    if mode == "phrase":
        return _quote(" ".join(words))
    raise QueryError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")


def like_pattern(text: str) -> str:
    r"""``%text%`` with LIKE's own wildcards escaped (ESCAPE '\')."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise QueryError("`params.cursor` is not a cursor this daemon gave") from None
    if not re.fullmatch(r"o[0-9]{1,7}", raw):
        raise QueryError("`params.cursor` is not a cursor this daemon gave")
    offset = int(raw[1:])
    if offset > MAX_OFFSET:
        raise QueryError(f"`params.cursor` pages beyond {MAX_OFFSET} hits; narrow the query")
    return offset


def build(text: str, mode: str | None = None, sessions: tuple[str, ...] | None = None,
          roles: tuple[str, ...] | None = None, since: int | None = None, until: int | None = None,
          limit: int | None = None, cursor: str | None = None) -> Query:
    """The query to run, or QueryError saying why it cannot be."""
    mode = mode or "words"
    if mode not in MODES:
        raise QueryError(f"`params.mode` is {mode!r}; one of {', '.join(MODES)}")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"`params.query` has {len(text)} characters; at most {MAX_QUERY_CHARS}")
    if "\x00" in text:
        raise QueryError("`params.query` holds a NUL character")
    if limit is None:
        limit = DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"`params.limit` is {limit}; 1 to {MAX_LIMIT}")
    if since is not None and until is not None and until <= since:
        raise QueryError("`params.until` is not after `params.since`")
    offset = 0 if cursor is None else decode_cursor(cursor)
    if mode == "substring":
        if not text.strip():
            raise QueryError("`params.query` is empty")
        return Query(text, mode, None, like_pattern(text), sessions, roles, since, until, limit, offset)
    return Query(text, mode, fts_expression(text, mode), None, sessions, roles, since, until, limit, offset)


def substring_snippet(content: str, needle: str, chars: int = SNIPPET_CHARS) -> str:
    """``content`` around the first case-insensitive (ASCII, as LIKE) occurrence of
    ``needle``, the match marked, cut ends shown as ``…``."""
    at = ascii_lower(content).find(ascii_lower(needle))
    if at < 0:  # LIKE matched what this search did not (it should not): show the start
        return content[: 2 * chars] + ("…" if len(content) > 2 * chars else "")
    end = at + len(needle)
    start, stop = max(0, at - chars), min(len(content), end + chars)
    return ("…" if start > 0 else "") + content[start:at] + MARK_OPEN + content[at:end] + MARK_CLOSE + \
        content[end:stop] + ("…" if stop < len(content) else "")


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(s: str) -> str:
    return s.translate(_ASCII_LOWER)
