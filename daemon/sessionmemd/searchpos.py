"""A search hit's ``index`` (its position in its session) without walking the session.

``index`` is the number of the session's rows before the hit (getAllMessages orders by
rowid). Counting them walks the session's part of the (session_id, rowid) index up to
the hit: for a page of 20 hits spread over ten sessions of 100,000 messages that is
most of a million entries, ~25 ms, more than the ranking of a rare word
(benchmarks/search_bench.py). So each session's every STEP-th rowid is remembered
(a checkpoint: the rowid at position k*STEP), and a hit's position is its checkpoint's
plus a count of at most STEP entries.

Why the checkpoints stay right: positions of existing rows change only when a row is
deleted (appends, the only inserts, take rowids above every other; a session made
again under an old id follows a deletion of its rows). The delete trigger of
searchindex.py counts deletions in ``sessionmem_fts_deletes``, whoever deletes (the
original tool too: its writes fire the triggers); the checkpoints are thrown away when
that count moved. A session's checkpoints are made on its first hit, by one walk.
"""

from __future__ import annotations

import bisect
import sqlite3

STEP = 1024  # entries counted at most per hit (~0.05 ms); checkpoints: 8 bytes per STEP messages
COUNTER = "sessionmem_fts_deletes"


def deletions(c: sqlite3.Connection) -> int:
    row = c.execute(f"SELECT n FROM {COUNTER}").fetchone()
    return 0 if row is None else int(row[0])


class Positions:
    """Checkpoints per session, for one reader connection (used inside its read
    transaction, so the counter and the counts see one snapshot)."""

    def __init__(self, step: int = STEP) -> None:
        self._step = step
        self._seen = -1  # the deletion count the checkpoints are right for
        self._marks: dict[str, list[int]] = {}

    def _checkpoints(self, c: sqlite3.Connection, sid: str) -> list[int]:
        marks = self._marks.get(sid)
        if marks is None:
            # One walk, in C: the rowid at positions 0, step, 2*step, ...
            marks = [int(r[0]) for r in c.execute(
                "SELECT rowid FROM (SELECT rowid, row_number() OVER (ORDER BY rowid) - 1 AS pos "
                "FROM session_messages WHERE session_id = ?) WHERE pos % ? = 0", (sid, self._step))]
            if marks:  # (an empty session's would never grow)
                self._marks[sid] = marks
        return marks

    def _extend(self, c: sqlite3.Connection, sid: str, marks: list[int]) -> None:
        """The session grew since its checkpoints were made: add the ones now due."""
        marks.extend(int(r[0]) for r in c.execute(
            "SELECT rowid FROM (SELECT rowid, row_number() OVER (ORDER BY rowid) - 1 AS pos "
            "FROM session_messages WHERE session_id = ? AND rowid >= ?) WHERE pos > 0 AND pos % ? = 0",
            (sid, marks[-1], self._step)))

    def _count(self, c: sqlite3.Connection, sid: str, marks: list[int], rowid: int) -> tuple[int, bool]:
        """The position of ``rowid``, and whether it lies a step or more past the last mark."""
        k = bisect.bisect_right(marks, rowid) - 1
        lo, base = (marks[k], k * self._step) if k >= 0 else (-(2**63), 0)
        n = int(c.execute("SELECT count(*) FROM session_messages WHERE session_id = ? AND rowid >= ? "
                          "AND rowid < ?", (sid, lo, rowid)).fetchone()[0])
        return base + n, k == len(marks) - 1 and n >= self._step

    def index(self, c: sqlite3.Connection, hits: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Each (session, rowid) hit's position in its session."""
        now = deletions(c)
        if now != self._seen:
            self._marks.clear()
            self._seen = now
        out: dict[tuple[str, int], int] = {}
        for sid, rowid in sorted(set(hits)):
            marks = self._checkpoints(c, sid)
            at, stale = self._count(c, sid, marks, rowid)
            if stale and marks:  # appended to since: one short walk from the last mark, then exact again
                self._extend(c, sid, marks)
                at, _ = self._count(c, sid, marks, rowid)
            out[sid, rowid] = at
        return out
