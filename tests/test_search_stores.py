"""searchMessages gives the same hits on SQLite (FTS5, bm25) and on PostgreSQL
(tsvector, ts_rank; pgsearch.py) for the same data: two real daemons, one per store,
the same messages written through the client, the same queries in every mode.

What is compared: the hits (session, index, role, id) of every query, as sets; and
their order where the two rankings are equivalent (messages of one length that differ
only in how often the word occurs, and ties, which both give newest first). Where they
are not (bm25 and ts_rank weigh length and rarity differently), docs/protocol.md says
hits may order differently, and the sets are what is tested."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon

pytest.importorskip("psycopg", reason="the extra sessionmem[postgres] is not installed")

# (session, role, content): punctuation, paths, addresses, numbers, case, hyphens,
# repeated words, non-ASCII letters, and a NUL, which PostgreSQL text cannot hold.
MESSAGES = [
    ("a", "user", "where does the config parser live?"),
    ("a", "assistant", "The parser lives in src/config/parser.py, see config.py too"),
    ("a", "user", "mail ops@example.com about the v1.2.3 release-notes"),
    ("b", "user", "fox dog cat bird"),
    ("b", "assistant", "fox fox cat bird"),
    ("b", "user", "fox fox fox bird"),
    ("b", "assistant", "a well-known pre-release build of the parser"),
    ("a", "tool", "exit code 3.14 from run_tests --fast, naïve café"),
    ("b", "user", "same words here"),
    ("b", "user", "same words here"),
    ("a", "user", "with a NUL \x00 inside the parser text"),
    ("b", "assistant", "Parsers and parsing: PARSER"),
]

QUERIES: list[tuple[str, str, dict[str, Any]]] = [
    ("parser", "words", {}),
    ("PARSER config", "words", {}),
    ("config.py", "words", {}),
    ("src/config", "words", {}),
    ("example.com", "words", {}),
    ("ops", "words", {}),
    ("v1.2.3", "words", {}),
    ("release", "words", {}),
    ("pre-release", "words", {}),
    ("run_tests", "words", {}),
    ("3.14", "words", {}),
    ("fox", "words", {}),
    ("fox", "words", {"roles": ["user"]}),
    ("bird", "words", {"sessions": ["b"]}),
    ("naïve café", "words", {}),
    ("nothing matches this", "words", {}),
    ("parser lives", "phrase", {}),
    ("lives parser", "phrase", {}),
    ("config parser", "phrase", {}),
    ("release notes", "phrase", {}),
    ("pars", "prefix", {}),
    ("conf pars", "prefix", {}),
    ("rel", "prefix", {}),
    ("same words", "phrase", {}),
    ("arser", "substring", {}),
    ("g.py", "substring", {}),
    ("100%", "substring", {}),
    ("_tests", "substring", {}),
]

# Queries whose order the two rankings give alike (see the module's docstring).
SAME_ORDER = {("fox", "words"), ("same words", "phrase")}


def fill(d: Daemon) -> dict[str, str]:
    s = d.session()
    sids = {"a": s.create_session("a", make_current=False), "b": s.create_session("b", make_current=False)}
    sessions = {k: d.session(v) for k, v in sids.items()}
    for i, (label, role, content) in enumerate(MESSAGES):
        sessions[label].add_message(role, content, 1_000 + i, message_id=f"m{i}")
    for x in (s, *sessions.values()):
        x.close()
    return {v: k for k, v in sids.items()}


def hits(d: Daemon, labels: dict[str, str], query: str, mode: str, extra: dict[str, Any]) -> list[tuple[Any, ...]]:
    params: dict[str, Any] = {"query": query, "mode": mode, "limit": 100, **extra}
    if "sessions" in params:
        params["session"] = {v: k for k, v in labels.items()}[params.pop("sessions")[0]]
    else:
        params["sessions"] = "*"
    c = d.conn()
    try:
        r = c.result("searchMessages", params)
    finally:
        c.close()
    assert r["complete"] is True and r["nextCursor"] is None
    return [(labels[h["sessionId"]], h["index"], h["role"], h.get("id")) for h in r["hits"]]


def test_both_stores_find_the_same_messages(make_daemon: Any, tmp_path: Path, env: dict[str, str],
                                            pg_url: str) -> None:
    lite = make_daemon(name="lite")
    root = tmp_path / "pgproj"
    root.mkdir()
    pg = Daemon(root, tmp_path / "pg.sock", root / "unused.db",
                ["--store", pg_url, "--project-key", "example.com/search/both"], env).start()
    try:
        labels = {"lite": fill(lite), "pg": fill(pg)}
        nonempty = 0
        for query, mode, extra in QUERIES:
            a = hits(lite, labels["lite"], query, mode, extra)
            b = hits(pg, labels["pg"], query, mode, extra)
            assert sorted(a) == sorted(b), (query, mode, extra, a, b)
            if (query, mode) in SAME_ORDER:
                assert a == b, (query, mode, a, b)
            nonempty += bool(a)
        assert nonempty >= len(QUERIES) - 3  # the comparison is of hits, not of empty pages
        # More occurrences rank first on both; equal messages: the newer first.
        assert [i for _, i, _, _ in hits(pg, labels["pg"], "fox", "words", {})] == [2, 1, 0]
        assert [i for _, i, _, _ in hits(pg, labels["pg"], "same words", "phrase", {})] == [5, 4]
    finally:
        pg.stop()


def test_postgresql_search_indexes_and_a_substring_search_without_pg_trgm(
        tmp_path: Path, env: dict[str, str], pg_url: str, pg_cluster: Any) -> None:
    root = tmp_path / "pgproj"
    root.mkdir()
    pg = Daemon(root, tmp_path / "pg.sock", root / "unused.db",
                ["--store", pg_url, "--project-key", "example.com/search/trgm"], env).start()
    db = pg_url.split("/")[3].split("?")[0]
    try:
        labels = fill(pg)
        indexes = pg_cluster.psql("SELECT indexname FROM pg_indexes WHERE tablename = 'sessionmem_messages' "
                                  "ORDER BY 1", database=db).split()
        assert "sessionmem_messages_search" in indexes and "sessionmem_messages_trgm" in indexes
        from sessionmemd.pgschema import SCHEMA_VERSION

        assert pg_cluster.psql("SELECT version FROM sessionmem_schema", database=db) == str(SCHEMA_VERSION)
        want = hits(pg, labels, "arser", "substring", {})
        # A database where pg_trgm could not be made has no trigram index: the same hits, by a scan.
        pg_cluster.psql("DROP INDEX sessionmem_messages_trgm", database=db)
        assert hits(pg, labels, "arser", "substring", {}) == want and len(want) == 5
        # A row that is not UTF-8 (hand-edited: no writer of ours makes one) is written and found.
        pg_cluster.psql("UPDATE sessionmem_messages SET content = '\\xff20706172736572'::bytea "
                        "WHERE content = convert_to('same words here', 'UTF8')", database=db)
        assert len(hits(pg, labels, "parser", "words", {})) == 5 + 2
    finally:
        pg.stop()
