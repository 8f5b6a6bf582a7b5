"""searchMessages end to end: a real daemon on a real SQLite file. Unsaved messages
are found, every writer keeps the FTS5 index right (appends, import, pop, trim, delete,
clear, and rows written with the daemon stopped), an existing database is indexed in
the background after the start, an inconsistent index is rebuilt, and hostile queries
are -32602, never a crash."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon, run_cli, wait_for

# Every daemon test here runs on SQLite and on PostgreSQL (pgsearch.py); the ones about
# the SQLite file's FTS5 index say so.
pytestmark = pytest.mark.both_stores

OPEN, CLOSE = "\x02", "\x03"


def search(d: Daemon, query: str, **params: Any) -> dict[str, Any]:
    c = d.conn()
    try:
        return c.result("searchMessages", {"query": query, **params})  # type: ignore[no-any-return]
    finally:
        c.close()


def found(d: Daemon, query: str, **params: Any) -> list[tuple[str, int, str]]:
    return [(h["sessionId"], h["index"], h["role"]) for h in search(d, query, **params)["hits"]]


def fts_rows(db: Path) -> int:
    c = sqlite3.connect(db)
    try:
        return int(c.execute("SELECT count(*) FROM sessionmem_fts_docsize").fetchone()[0])
    finally:
        c.close()


def test_finds_unsaved_messages_ranked_with_snippets(daemon: Daemon) -> None:
    s = daemon.session()
    sid = s.get_session_id()
    s.add_message("user", "the quick brown fox jumps", 1000)
    s.add_message("assistant", "a fox, a fox, a fox everywhere", 2000)
    s.add_message("user", "nothing to see", 3000)
    r = search(daemon, "fox")  # no snapshot was asked for: the search writes first
    assert r["complete"] is True and r["nextCursor"] is None and r["revision"] >= 3
    hits = r["hits"]
    assert [(h["index"], h["role"]) for h in hits] == [(1, "assistant"), (0, "user")]  # more foxes rank first
    assert hits[0]["sessionId"] == sid and hits[0]["timestamp"] == 2000
    assert f"{OPEN}fox{CLOSE}" in hits[0]["snippet"] and hits[0]["score"] > hits[1]["score"] > 0
    assert found(daemon, "QUICK jumps") == [(sid, 0, "user")]  # every word, any order, any case
    assert found(daemon, "jumps quick", mode="phrase") == []
    assert found(daemon, "quick brown", mode="phrase") == [(sid, 0, "user")]
    assert found(daemon, "ever", mode="prefix") == [(sid, 1, "assistant")]
    assert found(daemon, "ick bro", mode="substring") == [(sid, 0, "user")]
    assert found(daemon, "fox", roles=["user"]) == [(sid, 0, "user")]
    assert found(daemon, "fox", since=1500) == [(sid, 1, "assistant")]
    assert found(daemon, "fox", until=1500) == [(sid, 0, "user")]
    s.close()


def test_sessions_ids_and_paging(daemon: Daemon) -> None:
    s = daemon.session()
    first = s.get_session_id()
    s.add_message("user", "alpha in the first", message_id="m-1")
    other = s.create_session("other", make_current=False)
    o = daemon.session(other)
    for i in range(25):
        o.add_message("user", f"alpha number {i}")
    assert found(daemon, "alpha") == [(first, 0, "user")]  # the current session only
    assert search(daemon, "alpha")["hits"][0]["id"] == "m-1"
    assert {h[0] for h in found(daemon, "alpha", session=other)} == {other}
    seen: list[tuple[str, int, str]] = []
    cursor = None
    while True:
        r = search(daemon, "alpha", sessions="*", limit=10, **({"cursor": cursor} if cursor else {}))
        seen += [(h["sessionId"], h["index"], h["role"]) for h in r["hits"]]
        cursor = r["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == 26 == len(set(seen))
    c = daemon.conn()
    both = c.call("searchMessages", {"query": "alpha", "session": other, "sessions": "*"})
    assert both["error"]["code"] == -32602
    missing = c.call("searchMessages", {"query": "alpha", "session": "nope"})
    assert "error" in missing
    c.close()
    s.close()
    o.close()


@pytest.mark.parametrize("query", ['"', "*", "NEAR(", "AND", "-", "a OR", "日本語", "x" * 10_000, "", "   ",
                                   "col:x", "(((", "\\"])
def test_hostile_queries_answer_or_are_invalid_params(daemon: Daemon, query: str) -> None:
    daemon.session().add_message("user", "AND NEAR( 日本語 col:x")
    c = daemon.conn()
    for mode in ("words", "phrase", "prefix", "substring"):
        reply = c.call("searchMessages", {"query": query, "mode": mode})
        if "error" in reply:
            assert reply["error"]["code"] == -32602 and reply["error"]["message"], reply
        else:
            assert isinstance(reply["result"]["hits"], list)
    assert c.result("getSessionId")  # still serving
    c.close()


def test_every_writer_keeps_the_index_right(daemon: Daemon, store: str | None) -> None:
    s = daemon.session()
    for i in range(10):
        s.add_message("user", f"keep word{i}")
    assert s.pop_message() is not None
    assert found(daemon, "word9") == []
    s.trim_messages(5)
    assert sorted(i for _, i, _ in found(daemon, "keep", limit=100)) == list(range(5))  # word4..word8
    assert found(daemon, "word3") == [] and [i for _, i, _ in found(daemon, "word4")] == [0]
    records = s.export_session()
    copy = s.import_session(records, "copy")
    assert {sid for sid, _, _ in found(daemon, "word8", sessions="*")} == {s.get_session_id(), copy}
    s.delete_session(copy)
    assert len(found(daemon, "word8", sessions="*")) == 1
    s.clear()
    assert found(daemon, "keep", sessions="*") == []
    if store is None:  # the FTS5 index agrees with its content table
        daemon.session().snapshot()
        c = sqlite3.connect(daemon.db)
        assert c.execute("INSERT INTO sessionmem_fts(sessionmem_fts) VALUES ('integrity-check')") is not None
        c.close()
    s.close()


def _wait_complete(d: Daemon, query: str) -> dict[str, Any]:
    return wait_for(lambda: (r := search(d, query))["complete"] and r, 30, "the index built")  # type: ignore[no-any-return]


@pytest.mark.sqlite_only("the FTS5 index of a SQLite file an older sessionmemd wrote")
def test_existing_database_is_indexed_in_the_background(make_daemon: Any) -> None:
    d = make_daemon()
    s = d.session()
    s.add_messages([{"role": "user", "content": f"old message {i} needle{i % 7}"} for i in range(20_000)])
    s.snapshot()
    s.close()
    assert d.stop() == 0
    c = sqlite3.connect(d.db)  # as a database an older sessionmemd wrote: no index
    for t in ("ai", "ad", "au"):
        c.execute(f"DROP TRIGGER sessionmem_fts_{t}")
    c.execute("DROP TABLE sessionmem_fts")
    c.execute("DELETE FROM sessionmem_meta WHERE key = 'search_index'")
    c.commit()
    c.close()
    t0 = time.monotonic()
    d.start()
    s = d.session()
    assert s.get_session_id() and time.monotonic() - t0 < 10  # the first answer does not wait
    s.add_message("user", "fresh needle3")  # indexed by the trigger while the build runs
    r = _wait_complete(d, "needle3")
    c = d.conn()
    total = 0
    cursor = None
    while True:
        page = c.result("searchMessages", {"query": "needle3", "limit": 100, **({"cursor": cursor} if cursor else {})})
        total += len(page["hits"])
        cursor = page["nextCursor"]
        if cursor is None or total >= 300:
            break
    c.close()
    assert r["hits"] and total == 300
    assert fts_rows(d.db) == 20_001
    s.close()


@pytest.mark.sqlite_only("rows written to the SQLite file past its triggers")
def test_inconsistent_index_is_rebuilt_at_start(make_daemon: Any) -> None:
    d = make_daemon()
    s = d.session()
    s.add_message("user", "indexed normally")
    s.snapshot()
    sid = s.get_session_id()
    s.close()
    assert d.stop() == 0
    c = sqlite3.connect(d.db)  # a row written past the triggers (they were dropped)
    c.execute("DROP TRIGGER sessionmem_fts_ai")
    c.execute("INSERT INTO session_messages (session_id, role, content, timestamp) VALUES (?, 'user', "
              "'smuggled text', 5)", (sid,))
    c.commit()
    c.close()
    d.start()
    r = _wait_complete(d, "smuggled")
    assert [(h["index"], h["role"]) for h in r["hits"]] == [(1, "user")]
    assert fts_rows(d.db) == 2


def test_cli_search(daemon: Daemon) -> None:
    s = daemon.session()
    s.add_message("user", "where is the config parser")
    s.add_message("assistant", "the parser lives in config.py")
    env = {**daemon.env}
    out = run_cli(["--project", str(daemon.root), "--socket", str(daemon.socket), "search", "parser"], env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and "[parser]" in out.stdout and "assistant" in out.stdout
    out = run_cli(["--project", str(daemon.root), "--socket", str(daemon.socket), "search", "parser",
                   "--role", "user", "--json"], env)
    assert out.returncode == 0, out.stderr
    import json
    hits = json.loads(out.stdout)["hits"]
    assert [h["index"] for h in hits] == [0]
    bad = run_cli(["--project", str(daemon.root), "--socket", str(daemon.socket), "search", "***"], env)
    assert bad.returncode != 0 and "word" in bad.stderr
    s.close()


def test_a_substring_scan_past_its_budget_says_incomplete() -> None:
    from sessionmemd import searchindex

    c = sqlite3.connect(":memory:")
    c.execute("CREATE TABLE t(x TEXT)")
    c.executemany("INSERT INTO t VALUES (?)", [(f"row {i}",) for i in range(200_000)])
    rows, complete = searchindex._bounded(c, "SELECT x FROM t WHERE x LIKE '%nothing%'", (), budget=0.0)
    assert rows == [] and complete is False
    rows, complete = searchindex._bounded(c, "SELECT x FROM t WHERE x LIKE '%row 1999%'", (), budget=30)
    assert complete is True and len(rows) == 111  # row 1999, 19990-19999, 199900-199999
