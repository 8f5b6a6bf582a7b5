"""Migration 3 (the search column, its trigger and indexes) on a PostgreSQL database that
already holds messages: a daemon of this version starting on a schema-2 database
answers at once, builds the vectors and indexes in the background (pgsearchbuild.py)
while it serves reads and writes, says ``complete: false`` until then, and ends with
what a database made at schema 4 holds: the same vectors, valid indexes, and the same
hits, index for index, as a daemon on such a database with the same messages. Also: a
build stopped half way goes on, an index a cut-short build left invalid is made again,
and a database of the first migration 3 (a generated column) is brought to the new
shape by migration 4."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon, wait_for

pytest.importorskip("psycopg", reason="the extra sessionmem[postgres] is not installed")

import psycopg  # noqa: E402

from sessionmemd import pgschema, pgsearch, pgsearchbuild  # noqa: E402
from sessionmemd.pgstore import PgStore  # noqa: E402

KEY = "example.com/search/migrate"
WORDS = [f"w{i}" for i in range(400)] + ["parser", "config", "release", "notes", "café"]
MESSAGES = 20_000  # enough for four sessions of several checkpoints and many fill steps


def schema_2(url: str, n: int = MESSAGES) -> None:
    """A database as a schema-2 sessionmemd left it, holding ``n`` messages in 4
    sessions (one with a NUL, one not UTF-8, as a hand edit could leave)."""
    rng = random.Random(7)
    with psycopg.connect(url) as c:
        for script in pgschema._MIGRATIONS[:2]:
            c.execute(script.encode())
        c.execute("CREATE TABLE sessionmem_schema (version integer NOT NULL)")
        c.execute("INSERT INTO sessionmem_schema (version) VALUES (2)")
        c.execute("INSERT INTO sessionmem_projects (project_key, current_session) VALUES (%s, 's0')", (KEY,))
        for s in range(4):
            c.execute("INSERT INTO sessionmem_sessions (project_key, id, start_time) VALUES (%s, %s, 0)", (KEY, f"s{s}"))
        rows = [(KEY, f"s{i % 4}", b"user" if i % 3 else b"assistant",
                 " ".join(rng.choices(WORDS, k=rng.randint(3, 30))).encode(), 1_000 + i, f"m{i}".encode())
                for i in range(n)]
        rows[5] = (*rows[5][:3], b"a NUL \x00 in the parser text", *rows[5][4:])
        rows[6] = (*rows[6][:3], b"\xff parser not utf-8", *rows[6][4:])
        with c.cursor().copy("COPY sessionmem_messages (project_key, session_id, role, content, ts, message_id) "
                             "FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)


def one(c: psycopg.Connection[Any], sql: str, *args: Any) -> Any:
    row = c.execute(sql, args).fetchone()
    assert row is not None
    return row[0]


def search(d: Daemon, query: str, mode: str = "words", pages: int = 100) -> tuple[list[tuple[Any, ...]], bool]:
    """The hits of the first ``pages`` pages of 100, and whether the last said complete."""
    hits: list[tuple[Any, ...]] = []
    cursor = None
    c = d.conn()
    try:
        while True:
            r = c.result("searchMessages", {"query": query, "mode": mode, "sessions": "*", "limit": 100,
                                            **({"cursor": cursor} if cursor else {})})
            hits += [(h["sessionId"], h["index"], h["role"], h.get("id"), h["score"]) for h in r["hits"]]
            cursor = r["nextCursor"]
            pages -= 1
            if cursor is None or pages == 0:
                return hits, r["complete"]
    finally:
        c.close()


def built(d: Daemon) -> bool:
    c = d.conn()
    try:
        return bool(c.result("searchMessages", {"query": "w3", "sessions": "*", "limit": 1})["complete"])
    finally:
        c.close()


def daemon(tmp_path: Path, env: dict[str, str], url: str, name: str) -> Daemon:
    root = tmp_path / name
    root.mkdir()
    return Daemon(root, tmp_path / f"{name}.sock", root / "unused.db", ["--store", url, "--project-key", KEY], env)


def shape(c: psycopg.Connection[Any]) -> dict[str, Any]:
    """What must hold once the build is done."""
    return {
        "version": one(c, "SELECT version FROM sessionmem_schema"),
        "pending": one(c, "SELECT count(*) FROM sessionmem_search_build"),
        "wrong vectors": one(c, "SELECT count(*) FROM sessionmem_messages "
                                "WHERE search IS DISTINCT FROM sessionmem_search_vector(content)"),
        "valid indexes": sorted(r[0] for r in c.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = 'sessionmem_messages'::regclass AND i.indisvalid AND c.relname LIKE '%search%' "
            "OR i.indrelid = 'sessionmem_messages'::regclass AND i.indisvalid AND c.relname LIKE '%trgm%'")),
        "generated": one(c, "SELECT attgenerated FROM pg_attribute WHERE attrelid = 'sessionmem_messages'::regclass "
                            "AND attname = 'search'"),
    }


BUILT = {"version": pgschema.SCHEMA_VERSION, "pending": 0, "wrong vectors": 0,
         "valid indexes": ["sessionmem_messages_search", "sessionmem_messages_trgm"], "generated": ""}
QUERIES = [("parser", "words"), ("w1 w2", "words"), ("w7", "words"), ("release notes", "phrase"),
           ("conf", "prefix"), ("w399", "prefix"), ("café", "words"), ("parser", "substring"), ("w12 w", "substring")]


def test_a_schema_2_database_with_messages_migrates_in_the_background(
        tmp_path: Path, env: dict[str, str], pg_cluster: Any) -> None:
    url = pg_cluster.create_database("t_migrate_bg")
    schema_2(url)
    holder = psycopg.connect(url, autocommit=True)  # holds the build back: the daemon must not wait for it
    holder.execute("SELECT pg_advisory_lock(%s)", (pgsearchbuild._BUILD_LOCK,))
    d = daemon(tmp_path, env, url, "migrating").start()
    ref = None
    try:
        with psycopg.connect(url, autocommit=True) as c:
            assert one(c, "SELECT version FROM sessionmem_schema") == pgschema.SCHEMA_VERSION
            assert one(c, "SELECT count(*) FROM sessionmem_search_build") == 1
            assert one(c, "SELECT count(*) FROM sessionmem_messages WHERE search IS NULL") == MESSAGES
        hits, complete = search(d, "parser")
        assert complete is False  # not built yet, and it says so (whatever it found meanwhile)
        s = d.session()  # writes go on while it builds: their rows get vectors at once
        for i in range(30):
            s.add_message("user", f"parser written while building {i}", message_id=f"new{i}")
        s.pop_message()
        s.close()
        holder.close()  # the build may start now
        wait_for(lambda: built(d), 120, "the search index built")
        with psycopg.connect(url, autocommit=True) as c:
            assert shape(c) == BUILT
            rows = c.execute("SELECT session_id, role, content, ts, message_id FROM sessionmem_messages "
                             "WHERE project_key = %s ORDER BY seq", (KEY,)).fetchall()
        # The reference: a database made at this schema, the same messages written in the same order.
        ref_url = pg_cluster.create_database("t_migrate_ref")
        PgStore(ref_url, KEY).close()
        with psycopg.connect(ref_url) as c:
            for sid in ("s0", "s1", "s2", "s3"):
                c.execute("INSERT INTO sessionmem_sessions (project_key, id, start_time) VALUES (%s, %s, 0)", (KEY, sid))
            c.execute("UPDATE sessionmem_projects SET current_session = 's0' WHERE project_key = %s", (KEY,))
            with c.cursor().copy("COPY sessionmem_messages (project_key, session_id, role, content, ts, message_id) "
                                 "FROM STDIN") as cp:
                for row in rows:
                    cp.write_row((KEY, *row))
        ref = daemon(tmp_path, env, ref_url, "reference").start()
        with psycopg.connect(ref_url, autocommit=True) as c:
            assert shape(c) == BUILT
        for query, mode in QUERIES:
            got, complete = search(d, query, mode, pages=3)
            want, _ = search(ref, query, mode, pages=3)
            assert complete is True
            assert got == want, (query, mode)  # the same hits, order, indexes and scores
            assert got, (query, mode)
        assert len(search(d, "written while building", "phrase")[0]) == 29
        assert len(search(d, "parser")[0]) > 29 + 2  # the NUL and the non-UTF-8 rows too
    finally:
        if not holder.closed:
            holder.close()
        d.stop()
        if ref is not None:
            ref.stop()


def test_a_build_stopped_half_way_goes_on_and_remakes_an_invalid_index(pg_url: str) -> None:
    schema_2(pg_url, 6_000)
    store = None
    with psycopg.connect(pg_url, autocommit=True) as c:
        pgschema.migrate(c, "test")  # what a daemon's start does first (without its builder)
        assert pgsearchbuild.pending(c)
        for _ in range(3):
            assert pgsearchbuild.fill_step(c, 1_000)
        done = one(c, "SELECT done FROM sessionmem_search_build")
        assert done == 3_000  # noted with each step (seqs start at 1 in a new database)
        assert one(c, "SELECT count(*) FROM sessionmem_messages WHERE search IS NULL AND seq <= %s", done) == 0
        assert one(c, "SELECT count(*) FROM sessionmem_messages WHERE search IS NULL") > 0
        c.execute("DELETE FROM sessionmem_messages WHERE seq % 7 = 0")  # deletions meanwhile, before and after
        # A concurrent build cut short leaves an invalid index under the name: made again, right.
        with pytest.raises(psycopg.errors.UniqueViolation):
            c.execute("CREATE UNIQUE INDEX CONCURRENTLY sessionmem_messages_search ON sessionmem_messages (session_id)")
        assert one(c, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'sessionmem_messages_search'::regclass") is False
    try:
        store = PgStore(pg_url, KEY)  # its builder goes on from where the steps stopped
        assert store._builder is not None and store._builder.done.wait(60)
        with psycopg.connect(pg_url, autocommit=True) as c:
            assert shape(c) == BUILT
            assert "gin (search)" in one(c, "SELECT indexdef FROM pg_indexes WHERE indexname = 'sessionmem_messages_search'")
    finally:
        if store is not None:
            store.close()


def test_a_build_whose_connection_fails_starts_over(pg_url: str) -> None:
    """The builder's backend ends (as when the server restarts) while it waits for the
    build lock: it connects again and finishes once the lock is free."""
    schema_2(pg_url, 3_000)
    holder = psycopg.connect(pg_url, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", (pgsearchbuild._BUILD_LOCK,))
    store = PgStore(pg_url, KEY)
    try:
        assert store._builder is not None

        def waiting() -> list[Any]:
            return holder.execute("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                  "AND query LIKE '%%pg_advisory_lock%%' AND pid <> pg_backend_pid()").fetchall()

        pids = wait_for(waiting, 30, "the builder waiting for the build lock")
        holder.execute("SELECT pg_terminate_backend(%s)", (pids[0][0],))
        wait_for(lambda: waiting() and waiting() != pids, 30, "the builder back, waiting again")
        holder.close()
        assert store._builder.done.wait(60)
        with psycopg.connect(pg_url, autocommit=True) as c:
            assert shape(c) == BUILT
    finally:
        if not holder.closed:
            holder.close()
        store.close()


# The first migration 3 (before the build moved to the background), as databases hold it.
FIRST_MIGRATION_3 = pgsearch._FUNCTIONS + rf"""
ALTER TABLE sessionmem_messages ADD COLUMN search tsvector GENERATED ALWAYS AS (
  to_tsvector('simple'::regconfig, regexp_replace(left(sessionmem_search_text(content), {pgsearch.INDEXED_CHARS}),
    '[\x01-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]+', ' ', 'g'))) STORED;
CREATE INDEX sessionmem_messages_search ON sessionmem_messages USING gin (search);
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX sessionmem_messages_trgm ON sessionmem_messages USING gin (sessionmem_search_text(content) gin_trgm_ops);
UPDATE sessionmem_schema SET version = 3;
"""


def test_a_database_of_the_first_migration_3_is_brought_to_the_new_shape(pg_url: str) -> None:
    schema_2(pg_url, 2_000)
    with psycopg.connect(pg_url) as c:
        c.execute(FIRST_MIGRATION_3.encode())
        assert one(c, "SELECT attgenerated FROM pg_attribute WHERE attrelid = 'sessionmem_messages'::regclass "
                      "AND attname = 'search'") == "s"
    store = PgStore(pg_url, KEY)
    try:
        assert store._builder is None  # its vectors and indexes were all there
        with psycopg.connect(pg_url, autocommit=True) as c:
            assert shape(c) == BUILT
            c.execute("INSERT INTO sessionmem_messages (project_key, session_id, role, content, ts) "
                      "VALUES (%s, 's0', 'user', 'a new parser row', 0)", (KEY,))
            assert one(c, "SELECT count(*) FROM sessionmem_messages WHERE search @@ to_tsquery('simple', 'new & parser')") == 1
    finally:
        store.close()
