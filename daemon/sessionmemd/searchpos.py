"""A search hit's ``index`` (its position in its session) without walking the session.

``index`` is the number of the session's rows before the hit (getAllMessages orders by
rowid on SQLite, by ``seq`` on PostgreSQL: the *key* below). Counting them walks the
session's part of the (session, key) index up to the hit: for a page of 20 hits spread
over ten sessions of 100,000 messages that is most of a million entries, ~25 ms on
SQLite and 30-65 ms on PostgreSQL, more than the ranking of a rare word
(benchmarks/search_bench.py, pg_search_bench.py). So each session's every STEP-th key
is remembered (a checkpoint: the key at position k*STEP), and a hit's position is its
checkpoint's plus a count of at most STEP entries.

Why the checkpoints stay right: positions of existing rows change only when a row is
deleted (appends, the only inserts, take keys above every other in their session; a
session made again under an old id follows a deletion of its rows). Each store counts
deletions where every deleter's transaction counts them, whoever deletes: on SQLite the
delete trigger of searchindex.py (the original tool's deletes fire it too), on
PostgreSQL a statement trigger per project (pgsearch.py). The checkpoints are thrown
away when that count moved. A session's checkpoints are made on its first hit, by one
walk. (On PostgreSQL, "above every other" holds because one project's writes are
serialised: one writer per daemon, and several daemons take the project row's lock.)

The rules are here, pure; the two stores' queries are a :class:`Rows` each.
"""

from __future__ import annotations

import bisect
import sqlite3
from typing import Protocol

STEP = 1024  # entries counted at most per hit (~0.05 ms); checkpoints: 8 bytes per STEP messages
COUNTER = "sessionmem_fts_deletes"
_NONE = -(2**63)  # a key below every key: a hit before a session's first checkpoint


class Rows(Protocol):
    """The three reads the checkpoints need, inside one read snapshot."""

    def deletions(self) -> int | None:
        """The store's deletion count; None when unknown (then nothing is cached)."""

    def marks(self, sid: str, step: int, start: int | None) -> list[int]:
        """Keys at positions 0, step, 2*step, ... of the session; with ``start`` (a key at
        a checkpoint) the ones due after it, counted from it."""

    def counts(self, spans: list[tuple[str, int, int]]) -> list[int]:
        """For each (session, lo, hi): how many of its rows have lo <= key < hi."""


class SqliteRows:
    def __init__(self, c: sqlite3.Connection) -> None:
        self._c = c

    def deletions(self) -> int | None:
        return deletions(self._c)

    def marks(self, sid: str, step: int, start: int | None) -> list[int]:
        # One walk, in C: the rowid at positions 0, step, 2*step, ...
        return [int(r[0]) for r in self._c.execute(
            "SELECT rowid FROM (SELECT rowid, row_number() OVER (ORDER BY rowid) - 1 AS pos "
            "FROM session_messages WHERE session_id = ? AND rowid >= ?) WHERE pos % ? = 0 "
            + ("" if start is None else "AND pos > 0"), (sid, _NONE if start is None else start, step))]

    def counts(self, spans: list[tuple[str, int, int]]) -> list[int]:
        return [int(self._c.execute("SELECT count(*) FROM session_messages WHERE session_id = ? AND rowid >= ? "
                                    "AND rowid < ?", span).fetchone()[0]) for span in spans]


def deletions(c: sqlite3.Connection) -> int:
    row = c.execute(f"SELECT n FROM {COUNTER}").fetchone()
    return 0 if row is None else int(row[0])


class Positions:
    """Checkpoints per session, for one reader connection (used inside its read
    transaction, so the counter and the counts see one snapshot)."""

    def __init__(self, step: int = STEP) -> None:
        self._step = step
        self._seen: int | None = None  # the deletion count the checkpoints are right for
        self._marks: dict[str, list[int]] = {}

    def index(self, rows: Rows | sqlite3.Connection,
              hits: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Each (session, key) hit's position in its session."""
        if isinstance(rows, sqlite3.Connection):
            rows = SqliteRows(rows)
        now = rows.deletions()
        if now is None or now != self._seen:
            self._marks.clear()
            self._seen = now
        wanted = sorted(set(hits))
        for sid in {sid for sid, _ in wanted} - self._marks.keys():
            self._marks[sid] = rows.marks(sid, self._step, None)
        out, stale = self._count(rows, wanted)
        if stale:  # appended to since: one short walk from the last mark each, then exact again
            for sid in {sid for sid, _ in stale}:
                marks = self._marks[sid]
                marks.extend(rows.marks(sid, self._step, marks[-1] if marks else None))
            again, _ = self._count(rows, stale)
            out.update(again)
        if now is None:
            self._marks.clear()
        return out

    def _count(self, rows: Rows, hits: list[tuple[str, int]]) -> tuple[dict[tuple[str, int], int],
                                                                        list[tuple[str, int]]]:
        """The hits' positions, and the hits a step or more past their session's last mark."""
        spans, bases, last = [], [], []
        for sid, key in hits:
            marks = self._marks[sid]
            k = bisect.bisect_right(marks, key) - 1
            spans.append((sid, marks[k] if k >= 0 else _NONE, key))
            bases.append(max(k, 0) * self._step)
            last.append(k == len(marks) - 1)  # (no marks yet: k is -1, the last too)
        out, stale = {}, []
        for hit, base, n, at_last in zip(hits, bases, rows.counts(spans), last):
            out[hit] = base + n
            if at_last and n >= self._step:
                stale.append(hit)
        return out, stale
