"""A search hit's ``index`` on the PostgreSQL store (pgsearch.PgRows under
searchpos.Positions' checkpoints) equals a plain count, on a real server with the
store's schema and its deletion trigger, through appends (sessions growing past their
checkpoints), deletions anywhere, a session deleted and made again, a TRUNCATE, and
another project's deletions (which must not throw this project's checkpoints away)."""

from __future__ import annotations

import random
from typing import Any

import pytest

pytest.importorskip("psycopg", reason="the extra sessionmem[postgres] is not installed")

import psycopg  # noqa: E402

from sessionmemd import pgsearch, searchpos  # noqa: E402
from sessionmemd.pgstore import PgStore  # noqa: E402


def truth(c: psycopg.Connection[Any], key: str, sid: str, seq: int) -> int:
    row = c.execute("SELECT count(*) FROM sessionmem_messages WHERE project_key = %s AND session_id = %s "
                    "AND seq < %s", (key, sid, seq)).fetchone()
    assert row is not None
    return int(row[0])


def deletions(c: psycopg.Connection[Any], key: str) -> int:
    row = c.execute("SELECT deletions FROM sessionmem_projects WHERE project_key = %s", (key,)).fetchone()
    assert row is not None
    return int(row[0])


def test_positions_match_a_count_through_appends_and_deletes(pg_url: str) -> None:
    for key in ("k", "other"):
        PgStore(pg_url, key).close()  # the schema (migrations 1-4) and each project's row
    w = psycopg.connect(pg_url, autocommit=True)  # a writer: any transaction that deletes is counted
    r = psycopg.connect(pg_url, autocommit=True)
    r.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ  # as the store's reader
    pos = searchpos.Positions(step=7)  # small, so every path (marks, extension) runs often
    rng = random.Random(3)
    checked = truncated = 0

    def add(key: str, sid: str, n: int, step: int) -> None:
        with w.cursor() as cur:
            cur.executemany("INSERT INTO sessionmem_messages (project_key, session_id, role, content, ts) "
                            "VALUES (%s, %s, 'user', %s, 0)", [(key, sid, f"m {step} {i}".encode()) for i in range(n)])

    for step in range(300):
        action = rng.random()
        sid = rng.choice("abc")
        if step == 200:  # everything goes, the sessions come back under their ids
            w.execute("TRUNCATE sessionmem_messages")
            truncated += 1
        elif action < 0.55:
            add("k", sid, rng.randint(1, 12), step)
        elif action < 0.75:
            rows = [x[0] for x in w.execute("SELECT seq FROM sessionmem_messages WHERE project_key = 'k' "
                                            "AND session_id = %s", (sid,))]
            if rows:
                w.execute("DELETE FROM sessionmem_messages WHERE seq = %s", (rng.choice(rows),))
        elif action < 0.8:  # the session deleted and made again under its id
            w.execute("DELETE FROM sessionmem_messages WHERE project_key = 'k' AND session_id = %s", (sid,))
        elif action < 0.9:  # another project's rows come and go
            add("other", sid, 3, step)
            before = deletions(w, "k")
            w.execute("DELETE FROM sessionmem_messages WHERE project_key = 'other' AND seq IN "
                      "(SELECT min(seq) FROM sessionmem_messages WHERE project_key = 'other')")
            assert deletions(w, "k") == before  # counted for that project only
        all_rows = [(str(s), int(i)) for s, i in r.execute(
            "SELECT session_id, seq FROM sessionmem_messages WHERE project_key = 'k'")]
        if not all_rows:
            continue
        hits = rng.sample(all_rows, min(len(all_rows), 21))
        with r.transaction():
            got = pos.index(pgsearch.PgRows(r, "k"), hits)
            want = {h: truth(r, "k", *h) for h in hits}
        assert got == want, step
        checked += len(hits)
    assert checked > 3000
    assert deletions(r, "k") > 10 and truncated == 1  # the trigger counted the deletions
    w.close()
    r.close()
