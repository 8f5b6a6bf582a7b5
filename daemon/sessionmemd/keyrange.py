"""Context keys in key order, for ``listContext``: a page of the keys under a prefix,
forwards or backwards from a key, as a range scan over a sorted list.

A session's context is a dict in the order keys were first set (``getAllContext``'s
order); framework stores (LangGraph checkpoints, ADK events) need the other order,
by key, a page at a time. The sorted list is built the first time a session is
listed (most sessions never are) and kept up to date from then on: a new key is
inserted by bisection, a deleted one removed, so a store that appends a key and
lists the newest pays O(log n) to find its place, not a sort per call.

Order is by code point (Python's ``str`` order), the same on every platform, and
what a zero-padded number or a UUIDv6/v7 sorts by.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable

_MAX_CHAR = chr(0x10FFFF)


def _prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix`` (None: none is)."""
    p = prefix.rstrip(_MAX_CHAR)
    if not p:
        return None
    return p[:-1] + chr(ord(p[-1]) + 1)


class SortedKeys:
    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = sorted(keys)

    def add(self, key: str) -> None:
        """A key that was not there before."""
        insort(self._keys, key)

    def remove(self, key: str) -> None:
        keys = self._keys
        i = bisect_left(keys, key)
        if i < len(keys) and keys[i] == key:
            del keys[i]

    def page(self, prefix: str, after: str | None, limit: int, reverse: bool) -> tuple[list[str], bool]:
        """Up to ``limit`` keys starting with ``prefix``, in key order (descending with
        ``reverse``), strictly past ``after`` in that order; and whether more follow."""
        keys = self._keys
        lo = bisect_left(keys, prefix)
        end = _prefix_end(prefix)
        hi = len(keys) if end is None else bisect_left(keys, end, lo)
        if after is not None:
            if reverse:
                hi = min(hi, bisect_left(keys, after, lo, hi))
            else:
                lo = max(lo, bisect_right(keys, after, lo, hi))
        if hi <= lo:
            return [], False
        if reverse:
            start = max(lo, hi - limit)
            out = keys[start:hi]
            out.reverse()
            return out, start > lo
        stop = min(hi, lo + limit)
        return keys[lo:stop], stop < hi
