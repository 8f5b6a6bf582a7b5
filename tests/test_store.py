"""SQLite persistence on real files: schema, order, incremental writes, bad files."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from pathlib import Path

import msgspec
import pytest

from sessionmemd.changelog import ChangeLog
from sessionmemd.host import SessionHost
from sessionmemd.batch import Batch
from sessionmemd.state import SessionState
from sessionmemd.dbcheck import SCHEMA_VERSION, BadDatabase, move_aside
from sessionmemd.store import Store

obj = msgspec.json.decode

# The original tool's own DDL and queries (seed/session.js), to prove both-way compatibility.
ORIGINAL_DDL = """
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, start_time INTEGER NOT NULL,
  current_task TEXT, active_ticket TEXT, created_at INTEGER DEFAULT (strftime('%s', 'now')));
CREATE TABLE IF NOT EXISTS session_files (session_id TEXT NOT NULL, file_path TEXT NOT NULL,
  opened_at INTEGER DEFAULT (strftime('%s', 'now')), FOREIGN KEY (session_id) REFERENCES sessions(id));
CREATE TABLE IF NOT EXISTS session_messages (session_id TEXT NOT NULL, role TEXT NOT NULL,
  content TEXT NOT NULL, timestamp INTEGER DEFAULT (strftime('%s', 'now')),
  FOREIGN KEY (session_id) REFERENCES sessions(id));
CREATE TABLE IF NOT EXISTS session_context (session_id TEXT NOT NULL, key TEXT NOT NULL,
  value TEXT NOT NULL, FOREIGN KEY (session_id) REFERENCES sessions(id), PRIMARY KEY (session_id, key));
"""


def original_restore(db: Path) -> dict:
    """What the original's restore() reads, with its own queries."""
    c = sqlite3.connect(db)
    sid, start, task, ticket = c.execute(
        "SELECT id, start_time, current_task, active_ticket FROM sessions ORDER BY created_at DESC LIMIT 1"
    ).fetchone()
    files = [r[0] for r in c.execute("SELECT file_path FROM session_files WHERE session_id = ? ORDER BY opened_at", (sid,))]
    msgs = c.execute("SELECT role, content, timestamp FROM session_messages WHERE session_id = ? ORDER BY timestamp", (sid,)).fetchall()
    ctx = {k: obj(v) for k, v in c.execute("SELECT key, value FROM session_context WHERE session_id = ?", (sid,))}
    c.close()
    return {"id": sid, "start": start, "task": task, "ticket": ticket, "files": files, "messages": msgs, "context": ctx}


def original_snapshot(db: Path, sid: str, start: int, task: str | None, files: list[str], msgs: list[tuple], ctx: dict) -> None:
    """The original's snapshot(): delete everything of the session, insert it all again."""
    c = sqlite3.connect(db)
    c.execute("PRAGMA journal_mode = WAL")
    c.executescript(ORIGINAL_DDL)
    with c:
        for t in ("session_context", "session_messages", "session_files"):
            c.execute(f"DELETE FROM {t} WHERE session_id = ?", (sid,))
        c.execute("DELETE FROM sessions WHERE id = ?", (sid,))
        c.execute("INSERT INTO sessions (id, start_time, current_task, active_ticket) VALUES (?, ?, ?, ?)", (sid, start, task, None))
        for f in files:
            c.execute("INSERT INTO session_files (session_id, file_path) VALUES (?, ?)", (sid, f))
        for r, content, ts in msgs:
            c.execute("INSERT INTO session_messages (session_id, role, content, timestamp) VALUES (?, ?, ?, ?)", (sid, r, content, ts))
        for k, v in ctx.items():
            c.execute("INSERT INTO session_context (session_id, key, value) VALUES (?, ?, ?)", (sid, k, msgspec.json.encode(v).decode()))
    c.close()


def save(store: Store, state: SessionState) -> int:
    ch = state.drain()
    return store.write([Batch.of(ch, current=ch.session_row)]) if ch else 0


def digest(path: Path) -> dict[str, str]:
    out = {}
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            out[suffix] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "memory" / "session.db"


def test_new_database_is_private_versioned_and_in_the_original_schema(db: Path) -> None:
    Store(db).close()
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(db.parent).st_mode) == 0o700
    c = sqlite3.connect(db)
    assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sessions", "session_files", "session_messages", "session_context"} <= tables
    assert not list(db.parent.glob(".*creating*"))


def test_round_trip_keeps_every_field_in_order(db: Path) -> None:
    store = Store(db)
    s = SessionState("sid", 123)
    s.set_current_task("task")
    s.set_active_ticket("T-1")
    for i, ts in enumerate([300, 100, 200, 100]):  # out-of-order and equal timestamps
        s.add_message(["user", "assistant", "system", "tool"][i], f"m{i} ✓\n\x00", ts)
    for f in ["z.py", "a.py", "m.py"]:
        s.track_file(f)
    s.set_context("b", b'{"x":[1,2.5,null,true]}')
    s.set_context("a", b'"s"')
    save(store, s)
    store.close()
    r = Store(db).load()
    assert r is not None
    assert (r.session_id, r.start_time, r.current_task, r.active_ticket) == ("sid", 123, "task", "T-1")
    assert [obj(m)["content"] for m in r.messages.since(0).encoded()] == [f"m{i} ✓\n\x00" for i in range(4)]
    assert [obj(m)["timestamp"] for m in r.messages.since(0).encoded()] == [300, 100, 200, 100]
    assert r.files == ["z.py", "a.py", "m.py"]
    assert list(r.context) == ["b", "a"] and obj(r.context["b"]) == {"x": [1, 2.5, None, True]}


def test_snapshots_are_incremental(db: Path) -> None:
    store = Store(db)
    s = SessionState("sid", 1)
    for i in range(2000):
        s.add_message("user", f"m{i}", i)
    save(store, s)
    before = store.total_changes
    s.add_message("user", "one more", 1)
    save(store, s)
    # One row, not a rewrite of 2001 (total_changes also counts the few rows the search
    # index's trigger writes into its FTS5 tables for that one message).
    assert store.total_changes - before < 20
    before = store.total_changes
    assert s.drain() is None  # nothing changed: nothing to write
    assert store.total_changes == before


def test_file_and_context_edits_persist_in_order(db: Path) -> None:
    store = Store(db)
    s = SessionState("sid", 1)
    for f in "abcd":
        s.track_file(f)
    s.set_context("k1", b"1")
    s.set_context("k2", b"2")
    save(store, s)
    s.untrack_file("b")
    s.untrack_file("a")
    s.track_file("a")
    s.set_context("k1", b"10")
    s.delete_context("k2")
    s.set_context("k3", b"3")
    save(store, s)
    r = Store(db).load()
    assert r is not None and r.files == s.open_files() == ["c", "d", "a"]
    assert {k: obj(v) for k, v in r.context.items()} == {"k1": 10, "k3": 3}


def test_clear_is_persisted_atomically(db: Path) -> None:
    store = Store(db)
    host = SessionHost(SessionState("old", 1), {}, 0, ChangeLog(0), lambda: 2, lambda: "new")
    host.reserved = 1 << 40
    host.add_message(host.current, "user", "x", 1, None)
    host.track_file(host.current, "f")
    host.set_context(host.current, "k", b"1")
    store.write([host.drain()])  # type: ignore[list-item]
    host.clear()
    host.add_message(host.current, "user", "fresh", 3, None)
    batch = host.drain()
    assert batch is not None and batch.deleted == ["old"] and batch.current == "new"
    store.write([batch])
    c = sqlite3.connect(db)
    for table, col in [("sessions", "id"), ("session_messages", "session_id"), ("session_files", "session_id"), ("session_context", "session_id")]:
        assert c.execute(f"SELECT count(*) FROM {table} WHERE {col} = 'old'").fetchone()[0] == 0, table
    r = Store(db).load()
    assert r is not None and r.session_id == "new" and len(r.messages) == 1


def test_failed_write_rolls_back_and_can_be_retried(db: Path) -> None:
    store = Store(db)
    s = SessionState("sid", 1)
    s.add_message("user", "a", 1)
    ch = s.drain()
    assert ch is not None
    c = sqlite3.connect(db, isolation_level=None, timeout=0)
    c.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    store._conn.execute("PRAGMA busy_timeout = 50")
    with pytest.raises(sqlite3.OperationalError):
        store.write([Batch.of(ch)])
    c.execute("COMMIT")
    store.write([Batch.of(ch)])  # the same batch, again: written once
    assert sqlite3.connect(db).execute("SELECT count(*) FROM session_messages").fetchone()[0] == 1


def test_database_written_by_the_original_restores_here(db: Path) -> None:
    db.parent.mkdir(parents=True)
    msgs = [("user", "first", 1000), ("assistant", "second", 2000), ("tool", "third", 3000)]
    original_snapshot(db, "orig-id", 555, "their task", ["x.ts", "a.ts"], msgs,
                      {"n": 1, "o": {"deep": [1, "two"]}, "s": "str", "nul": None})
    r = Store(db).load()
    assert r is not None
    assert (r.session_id, r.start_time, r.current_task) == ("orig-id", 555, "their task")
    assert [tuple(obj(m).values()) for m in r.messages.since(0).encoded()] == msgs
    assert r.files == ["x.ts", "a.ts"]
    assert {k: obj(v) for k, v in r.context.items()} == {"n": 1, "o": {"deep": [1, "two"]}, "s": "str", "nul": None}
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_database_written_here_restores_in_the_original(db: Path) -> None:
    store = Store(db)
    s = SessionState("ours", 77)
    s.set_current_task("our task")
    for i in range(3):
        s.add_message("user", f"m{i}", 1000 + i)
    s.track_file("b.py")
    s.track_file("a.py")
    s.set_context("k", b'{"v":[true]}')
    save(store, s)
    s.add_message("assistant", "later", 2000)  # an incremental snapshot on top
    save(store, s)
    store.close()
    got = original_restore(db)
    assert got["id"] == "ours" and got["start"] == 77 and got["task"] == "our task"
    assert [m[1] for m in got["messages"]] == ["m0", "m1", "m2", "later"]
    assert got["files"] == ["b.py", "a.py"] and got["context"] == {"k": {"v": [True]}}


def test_latest_session_is_unambiguous(db: Path) -> None:
    """Two sessions created in the same second: the original could pick either."""
    store = Store(db)
    a = SessionState("a", 1)
    save(store, a)
    b = SessionState("b", 2)  # a second session row, same created_at second
    save(store, b)
    a.set_current_task("touched later")
    save(store, a)  # the pointer now names "a" again
    r = Store(db).load()
    assert r is not None and r.session_id == "a"


@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated", "foreign", "newer", "no-tables", "header"])
def test_bad_databases_are_refused_and_left_untouched(db: Path, kind: str) -> None:
    db.parent.mkdir(parents=True)
    if kind == "empty":
        db.write_bytes(b"")
    elif kind == "garbage":
        db.write_bytes(os.urandom(8192))
    elif kind in ("truncated", "header"):
        s = Store(db)
        st = SessionState("sid", 1)
        for i in range(3000):
            st.add_message("user", "x" * 200, i)
        save(s, st)
        s._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        s.close()
        data = db.read_bytes()
        if kind == "truncated":
            db.write_bytes(data[: len(data) // 2])
        else:
            db.write_bytes(data[:16] + b"\x00\x03" + data[18:])  # page size 3: impossible
    elif kind == "foreign":
        c = sqlite3.connect(db)
        c.execute("PRAGMA journal_mode = WAL")
        c.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        c.execute("INSERT INTO users (name) VALUES ('alice')")
        c.commit()
        c.close()
    elif kind == "newer":
        Store(db).close()
        c = sqlite3.connect(db)
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        c.close()
    elif kind == "no-tables":
        c = sqlite3.connect(db)
        c.execute("PRAGMA user_version = 0")
        c.execute("CREATE TABLE t (x)")
        c.execute("DROP TABLE t")
        c.close()
    before = digest(db)
    with pytest.raises(BadDatabase) as ei:
        Store(db).load()
    assert str(db) in str(ei.value) and "--recover" in str(ei.value)
    assert digest(db) == before


def test_move_aside_keeps_the_files(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(b"junk")
    moved = move_aside(db)
    assert not db.exists() and len(moved) == 1 and moved[0].read_bytes() == b"junk"
    Store(db).close()  # and a fresh one can be made in its place


def _crash_writer(db: Path, sql: str) -> None:
    """A writer that dies without closing: its -wal and -shm stay behind, uncheckpointed."""
    import subprocess
    import sys

    code = (
        "import sqlite3, os, sys\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('PRAGMA journal_mode = WAL'); c.execute('PRAGMA wal_autocheckpoint = 0')\n"
        "c.executescript(sys.argv[2]); os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(db), sql], check=True)


@pytest.mark.parametrize("sql", [
    "CREATE TABLE users (id, name); INSERT INTO users VALUES (1, 'a');",
    "CREATE TABLE sessions (id TEXT PRIMARY KEY); INSERT INTO sessions VALUES ('x');",
])
def test_foreign_database_with_a_live_wal_is_refused_untouched(db: Path, sql: str) -> None:
    db.parent.mkdir(parents=True)
    _crash_writer(db, sql)
    assert Path(str(db) + "-wal").stat().st_size > 0
    before = digest(db)
    assert set(before) == {"", "-wal", "-shm"}
    with pytest.raises(BadDatabase):
        Store(db)
    assert digest(db) == before  # no checkpoint, no recovery, no deleted -wal
    assert [p.name for p in db.parent.iterdir() if "check" in p.name] == []


def test_original_database_whose_schema_is_only_in_its_wal_is_accepted(db: Path) -> None:
    db.parent.mkdir(parents=True)
    _crash_writer(db, ORIGINAL_DDL + "INSERT INTO sessions (id, start_time) VALUES ('crashed', 9);"
                  "INSERT INTO session_messages (session_id, role, content, timestamp) VALUES ('crashed', 'user', 'kept', 1);")
    r = Store(db).load()
    assert r is not None and r.session_id == "crashed" and len(r.messages) == 1


def test_odd_timestamps_written_by_other_tools_restore_as_integers(db: Path) -> None:
    db.parent.mkdir(parents=True)
    original_snapshot(db, "odd", 1, None, [], [("user", "a", 5)], {})
    c = sqlite3.connect(db)
    with c:
        c.execute("INSERT INTO session_messages (session_id, role, content, timestamp) VALUES ('odd', 'user', 'b', NULL)")
        c.execute("INSERT INTO session_messages (session_id, role, content, timestamp) VALUES ('odd', 'user', 'c', 7.9)")
        c.execute("INSERT INTO session_messages (session_id, role, content, timestamp) VALUES ('odd', 'user', 'd', '12')")
    c.close()
    r = Store(db).load()
    assert r is not None
    assert [obj(m)["timestamp"] for m in r.messages.since(0).encoded()] == [5, 0, 7, 12]


def test_saving_a_file_change_finds_its_row_by_index_not_by_scan(db: Path) -> None:
    """Each saved file change deletes the path's old row; without an index that scanned
    the table per path, so 20,000 new files took 24 s to save."""
    store = Store(db)
    state = SessionState("s", 1)
    for i in range(2000):
        state.track_file(f"src/f{i}.py")
    save(store, state)
    store.close()
    c = sqlite3.connect(db)
    plan = " ".join(r[3] for r in c.execute(
        "EXPLAIN QUERY PLAN DELETE FROM session_files WHERE session_id = ? AND file_path = ?", ("s", "x")))
    c.close()
    assert "USING INDEX" in plan, plan
    r = Store(db).load()
    assert r is not None and r.files == [f"src/f{i}.py" for i in range(2000)]
