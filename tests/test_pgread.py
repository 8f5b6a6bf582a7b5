"""The PostgreSQL store's reads (pgread.py) on a real server: a session tail-first, its
older messages and its count, also on a table no ANALYZE has seen (a bulk load before
autovacuum reaches it), where the tail must still walk the session's index."""

from __future__ import annotations

from typing import Any

import pytest

from test_seam import contents, session

pytest.importorskip("psycopg", reason="the extra sessionmem[postgres] is not installed")

import psycopg  # noqa: E402

from sessionmemd import pgread  # noqa: E402
from sessionmemd.pgstore import PgStore  # noqa: E402
from sessionmemd.batch import Batch  # noqa: E402

# Rows (of ~100 bytes) enough that PostgreSQL 15, without statistics, plans ``ORDER BY
# seq DESC LIMIT`` as a bitmap scan of the whole session and a sort (its guess grows
# with the table's pages; 2,000 or 20,000 rows are planned well).
BULK = 100_000


def text(i: int) -> str:
    return f"m{i} ".ljust(100, ".")


def test_tail_older_and_count_across_sessions_and_keys(pg_url: str) -> None:
    store = PgStore(pg_url, "k")
    other = PgStore(pg_url, "k2")
    # Interleaved writes: the seqs of "a" are not contiguous (the identity is global).
    for _ in range(3):
        store.write([Batch(sessions=[session("a", 4).drain(), session("b", 3).drain()])])  # type: ignore[list-item]
        other.write([Batch(sessions=[session("a", 5).drain()])])  # type: ignore[list-item]
    other.close()
    reader = store.reader()
    whole = reader.load_session("a", 7, None)
    assert whole is not None and contents(whole.messages) == [f"m{i}" for i in range(4)] * 3
    for tail, older in ((5, 7), (11, 1), (12, 0), (13, 0), (1, 11)):
        r = reader.load_session("a", 7, tail)
        assert r is not None and r.revision == 7
        assert len(r.messages) == min(tail, 12) and r.older == older, (tail, r.older)
        got = contents(r.messages)
        if older:
            got = contents(reader.load_older("a", r.older_cursor)) + got
        else:
            assert r.older_cursor == 0
        assert got == contents(whole.messages)
    assert reader.load_session("nope", 0, 5) is None
    reader.close()
    store.close()


def plan(c: psycopg.Connection[Any], sql: str) -> str:
    return "\n".join(str(r[0]) for r in c.execute("EXPLAIN " + sql))


def test_the_tail_walks_the_index_on_a_table_never_analyzed(pg_url: str) -> None:
    PgStore(pg_url, "k").close()  # the schema
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute("ALTER TABLE sessionmem_messages SET (autovacuum_enabled = false)")  # stays unanalyzed
        c.execute("INSERT INTO sessionmem_sessions (project_key, id, start_time) VALUES ('k', 's', 1), "
                  "('k', 'other', 1)")
        with c.cursor().copy("COPY sessionmem_messages (project_key, session_id, role, content, ts) "
                             "FROM STDIN") as cp:
            for i in range(BULK):
                cp.write_row(("k", "other" if i % 10 == 0 else "s", b"user", text(i).encode(), i))
        c.execute("UPDATE sessionmem_projects SET current_session = 's' WHERE project_key = 'k'")
        never = c.execute("SELECT last_analyze IS NULL AND last_autoanalyze IS NULL FROM pg_stat_user_tables "
                          "WHERE relname = 'sessionmem_messages'").fetchone()
        assert never == (True,)
        # The trap the cursor is for: with LIMIT, this table's tail is a sort of every row.
        limited = plan(c, "SELECT seq, role, content, ts, message_id, data FROM sessionmem_messages "
                          "WHERE project_key = 'k' AND session_id = 's' ORDER BY seq DESC LIMIT 1000")
        assert "Sort" in limited, limited
        declare = pgread._TAIL.split(";")[0].replace("%s", "'k'", 1).replace("%s", "'s'", 1)
        with c.transaction():
            cursor = plan(c, declare)
        assert "Index Scan Backward using sessionmem_messages_by_session" in cursor and "Sort" not in cursor, cursor

    # What the daemon's open loads from it: the newest 1,000, the rest counted behind.
    store = PgStore(pg_url, "k")
    _known, current = store.take_opened()
    assert current is not None and current.session_id == "s"
    in_s = [i for i in range(BULK) if i % 10]
    assert contents(current.messages) == [text(i) for i in in_s[-1000:]]
    assert current.older == len(in_s) - 1000
    reader = store.reader()
    assert contents(reader.load_older("s", current.older_cursor)) == [text(i) for i in in_s[:-1000]]
    reader.close()
    store.close()
