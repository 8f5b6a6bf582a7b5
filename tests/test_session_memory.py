"""Sessions in and out of memory: loaded on first use (newest messages first), dropped
when idle, a database of 10,000 sessions opened as fast as one of a single session."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from conftest import wait_for


def fill(db: Path, sessions: dict[str, int], current: str | None = None) -> None:
    """Add sessions with that many messages each, as another writer would (plain SQL
    into a database the daemon made and has stopped using)."""
    c = sqlite3.connect(db)
    with c:
        for sid, n in sessions.items():
            c.execute("INSERT INTO sessions (id, start_time, current_task) VALUES (?, ?, ?)", (sid, 1, f"task {sid}"))
            c.executemany("INSERT INTO session_messages (session_id, role, content, timestamp, message_id) "
                          "VALUES (?, 'user', ?, ?, ?)", ((sid, f"{sid}:{i}", i, f"{sid}-id-{i}") for i in range(n)))
            c.execute("INSERT INTO session_files (session_id, file_path) VALUES (?, ?)", (sid, f"{sid}.py"))
            c.execute("INSERT INTO session_context (session_id, key, value) VALUES (?, 'k', ?)", (sid, f'"{sid}"'))
        if current is not None:
            c.execute("UPDATE sessionmem_meta SET value = ? WHERE key = 'current_session'", (current,))
    c.close()


def test_a_big_session_answers_from_its_newest_messages_while_the_rest_loads(make_daemon) -> None:
    d = make_daemon()
    assert d.stop() == 0
    n = 30_000
    fill(d.db, {"big": n, "other": n}, current="big")
    d.start()
    with d.session() as s:
        # The first answers come from the newest messages; the count is the whole one.
        assert s.get_stats().messagesCount == n
        assert [m.content for m in s.get_recent_messages(3)] == [f"big:{i}" for i in range(n - 3, n)]
        # A retried append of an old message (its id among the older part) is not added again,
        # whether or not that part has loaded yet.
        s.add_message("user", "big:5 again", message_id="big-id-5")
        s.add_message("user", "new")
        assert [m.content for m in s.get_all_messages()] == [f"big:{i}" for i in range(n)] + ["new"]
        assert s.get_stats().historyComplete
        # Another session, loaded on first use, the same way.
        with d.session(session_id="other") as o:
            assert o.get_current_task() == "task other" and o.get_open_files() == ["other.py"]
            assert [m.content for m in o.get_recent_messages(2)] == [f"other:{n - 2}", f"other:{n - 1}"]
            o.add_message("user", "other:0 again", message_id="other-id-0")
            assert len(o.get_all_messages()) == n and o.get_stats().messagesCount == n
    assert f"{n} messages ({n - 1000} loading behind)" in d.read_log()


def test_sessions_are_loaded_on_use_and_dropped_when_idle(make_daemon) -> None:
    # Long enough that a loaded machine creates and fills the 200 before any is idle.
    d = make_daemon("--session-idle", "2")
    with d.session() as s:
        for i in range(200):
            s.create_session(f"s{i}")
        for i in range(200):
            s.call("addMessage", {"role": "user", "content": f"in s{i}", "session": f"s{i}", "data": {"i": i}})
        assert s.get_stats().sessionsLoaded == 201
        wait_for(lambda: s.get_stats().sessionsLoaded == 1, timeout=20, what="idle sessions dropped")
        st = s.get_stats()
        assert st.sessions == 201 and st.pendingChanges == 0
        # Dropped, not lost: each comes back on its next use, changes and all.
        listed = {i.sessionId: i for i in s.list_sessions()}
        assert listed["s7"].messagesCount == 1 and not listed["s7"].current
        full = s.call("getAllMessages", {"session": "s7", "full": True})
        assert [(m.content, m.data) for m in full] == [("in s7", {"i": 7})]
        assert s.get_stats().sessionsLoaded == 2
        # The current session is never dropped.
        wait_for(lambda: s.get_stats().sessionsLoaded == 1, timeout=20, what="s7 dropped again")
        assert s.get_stats().sessionId == s.get_session_id()


def test_calls_on_a_session_run_in_order_while_it_loads(make_daemon) -> None:
    d = make_daemon()
    assert d.stop() == 0
    fill(d.db, {"cold": 20_000})
    d.start()
    c = d.conn()
    # Pipelined on a session not in memory: a write, then reads that need all, part or none
    # of its history. Each read sees the write.
    reqs = [
        {"jsonrpc": "2.0", "id": 1, "method": "addMessage", "params": {"role": "user", "content": "w", "session": "cold"}},
        {"jsonrpc": "2.0", "id": 2, "method": "getRecentMessages", "params": {"count": 1, "session": "cold"}},
        {"jsonrpc": "2.0", "id": 3, "method": "getStats", "params": {"session": "cold"}},
        {"jsonrpc": "2.0", "id": 4, "method": "getAllMessages", "params": {"session": "cold"}},
        {"jsonrpc": "2.0", "id": 5, "method": "popMessage", "params": {"session": "cold"}},
        {"jsonrpc": "2.0", "id": 6, "method": "getRecentMessages", "params": {"count": 1, "session": "cold"}},
    ]
    c.send(b"".join(__import__("json").dumps(r).encode() + b"\n" for r in reqs))
    replies = {r["id"]: r for r in (c.recv() for _ in reqs)}
    assert replies[1]["result"] is None
    assert replies[2]["result"][0]["content"] == "w"
    assert replies[3]["result"]["messagesCount"] == 20_001
    assert len(replies[4]["result"]) == 20_001 and replies[4]["result"][-1]["content"] == "w"
    assert replies[5]["result"]["content"] == "w"
    assert replies[6]["result"][0]["content"] == "cold:19999"


def test_ten_thousand_sessions_open_like_one(make_daemon, tmp_path: Path) -> None:
    one = make_daemon(name="one", root=tmp_path / "one")
    many = make_daemon(name="many", root=tmp_path / "many")
    for d in (one, many):
        assert d.stop() == 0
    fill(many.db, {f"s{i:05}": 3 for i in range(10_000)})
    figures = {}
    for d in (one, many):
        t = time.perf_counter()
        d.start()
        figures[d.socket.stem] = time.perf_counter() - t
    print(f"start to first answer: one session {figures['one'] * 1000:.0f} ms, "
          f"10,000 sessions {figures['many'] * 1000:.0f} ms (ratio {figures['many'] / figures['one']:.2f})")
    with many.session() as s:
        st = s.get_stats()
        assert st.sessions == 10_001 and st.sessionsLoaded == 1  # none read but the current one
        listed = s.list_sessions()
        assert len(listed) == 10_001 and sum(i.messagesCount for i in listed) == 30_000
        with many.session(session_id="s04321") as x:
            assert [m.content for m in x.get_all_messages()] == [f"s04321:{i}" for i in range(3)]
            assert x.get_all_context() == {"k": "s04321"}
