"""searchindex.search ranks in two steps (rowid and bm25 first, the page's columns,
snippets and indexes after) and counts indexes from checkpoints: it must give exactly
what one plain query gives (every match joined, ordered by bm25 then newest, snippet
per row, index by counting). Compared on a real SQLite file with the store's schema,
every mode but substring, with and without filters, page by page."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from sessionmemd import searchindex, searchpos, searchquery
from sessionmemd.store import Store

T = searchindex.TABLE


def reference(c: sqlite3.Connection, q: searchquery.Query) -> list[tuple[object, ...]]:
    where, args = [], []
    if q.sessions is not None:
        where.append(f"m.session_id IN ({','.join('?' * len(q.sessions))})")
        args += q.sessions
    if q.roles is not None:
        where.append(f"m.role IN ({','.join('?' * len(q.roles))})")
        args += q.roles
    if q.since is not None:
        where.append("m.timestamp >= ?")
        args.append(q.since)
    rows = c.execute(
        f"SELECT m.session_id, (SELECT count(*) FROM session_messages x WHERE x.session_id = m.session_id "
        f"AND x.rowid < m.rowid), m.role, m.timestamp, snippet({T}, 0, ?, ?, '…', {searchquery.SNIPPET_TOKENS}), "
        f"-bm25({T}), m.message_id FROM {T} JOIN session_messages m ON m.rowid = {T}.rowid WHERE {T} MATCH ? "
        f"{''.join(' AND ' + w for w in where)} ORDER BY bm25({T}), m.rowid DESC LIMIT ? OFFSET ?",
        (searchquery.MARK_OPEN, searchquery.MARK_CLOSE, q.match, *args, q.limit + 1, q.offset)).fetchall()
    return [tuple(r) for r in rows]


def test_two_step_ranking_gives_what_one_query_gives(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    Store(db).close()
    c = sqlite3.connect(db, isolation_level=None)
    rng = random.Random(9)
    words = [f"w{i}" for i in range(300)]
    weights = [1 / (i + 1) for i in range(300)]
    for s in ("a", "b", "c"):
        c.execute("INSERT INTO sessions (id, start_time) VALUES (?, 0)", (s,))
    rows = [(rng.choice("abc"), rng.choice(["user", "assistant"]),
             " ".join(rng.choices(words, weights, k=rng.randint(1, 40))), 1000 + i, f"id{i}")
            for i in range(4000)]
    c.executemany("INSERT INTO session_messages (session_id, role, content, timestamp, message_id) "
                  "VALUES (?, ?, ?, ?, ?)", rows)
    c.execute("DELETE FROM session_messages WHERE rowid % 17 = 0")  # holes: indexes are not rowids
    assert searchindex.flush(c) > 0
    pos = searchpos.Positions(step=64)
    compared = 0
    for text, mode in [("w0", "words"), ("w3", "words"), ("w1 w2", "words"), ("w40", "words"),
                       ("w1 w0", "phrase"), ("w2", "prefix"), ("w29", "words")]:
        for sessions, roles, since in [(None, None, None), (("a", "c"), None, None), (None, ("user",), 2500),
                                       (("b",), ("assistant",), None)]:
            for offset in (0, 20, 100):
                q = searchquery.build(text, mode, sessions, roles, since, None, 20, searchquery.encode_cursor(offset))
                got, complete = searchindex.search(c, q, True, pos)
                assert complete
                want = reference(c, q)
                assert [(h[0], h[1], h[2], h[3], h[4], h[6]) for h in got] == [
                    (w[0], w[1], w[2], w[3], w[4], w[6]) for w in want], (text, mode, sessions, roles, offset)
                assert [round(h[5], 9) for h in got] == [round(float(w[5]), 9) for w in want]
                compared += len(got)
    assert compared > 1000
    c.close()
