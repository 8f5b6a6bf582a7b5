"""Several daemons (their own folders and sockets, one --project-key, one database) serve
one project (design §12): what one makes is on every other after `sync`, revisions form
one order, decisions (expect, message ids, the current session, leases) are made on the
store's latest state, and a watcher on any daemon gets every change of every daemon,
once, in order. Real processes, a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import CLI, Daemon, Raw

pytest.importorskip("psycopg", reason="the extra sessionmem[postgres] is not installed")

KEY = "example.com/team/proj"


def daemons(make_daemon: Any, pg_url: str, tmp_path: Path, n: int) -> list[Daemon]:
    return [make_daemon("--store", pg_url, "--project-key", KEY, root=tmp_path / f"host{i}", name=f"h{i}")
            for i in range(n)]


def changes(c: Raw, until: int, timeout: float = 30) -> list[dict[str, Any]]:
    """The notifications ``c`` (watching) gets, up to revision ``until``."""
    got: list[dict[str, Any]] = []
    c.sock.settimeout(timeout)
    while not got or got[-1]["revision"] < until:
        msg = c.recv()
        assert msg.get("method") == "changed", msg
        got.append(msg["params"])
    return got


def test_three_daemons_serve_one_project(make_daemon: Any, pg_url: str, tmp_path: Path) -> None:
    ds = daemons(make_daemon, pg_url, tmp_path, 3)
    a, b, c = (d.conn() for d in ds)
    start = a.result("sync")["revision"]
    watchers = [d.conn() for d in ds]
    for w in watchers:
        w.result("watch", {"since": start})
    assert a.result("getSessionId") == b.result("getSessionId") == c.result("getSessionId")
    sid = a.result("createSession", {"sessionId": "review"})["sessionId"]
    b.result("sync")
    b.result("addMessage", {"role": "user", "content": "from b", "session": "review", "id": "m-1"})
    c.result("sync")
    c.result("setContext", {"key": "plan", "value": {"step": 2}, "session": sid})
    a.result("setCurrentTask", {"task": "ship it"})
    last = c.result("sync")["revision"]
    assert last == start + 4
    for conn in (a, b, c):
        assert conn.result("sync")["revision"] == last
        assert [m["content"] for m in conn.result("getAllMessages", {"session": sid})] == ["from b"]
        assert conn.result("getContext", {"key": "plan", "session": sid}) == {"step": 2}
        assert conn.result("listContext", {"prefix": "pl", "session": sid}) == {
            "entries": [{"key": "plan", "value": {"step": 2}}], "more": False}
        assert conn.result("getCurrentTask") == "ship it"
        assert {s["sessionId"] for s in conn.result("listSessions")} >= {sid}
        stats = conn.result("getStats")
        assert stats["appliedRevision"] == last and stats["projectKey"] == KEY
    # A retry through another daemon is not a second message.
    a.result("addMessage", {"role": "user", "content": "from b", "session": sid, "id": "m-1"})
    assert len(a.result("getAllMessages", {"session": sid})) == 1
    assert b.result("sync")["revision"] == last  # and no change
    # One order: every watcher got the same changes, consecutive, once.
    seen = [changes(w, last) for w in watchers]
    assert [ch["revision"] for ch in seen[0]] == list(range(start + 1, last + 1))
    assert seen[0] == seen[1] == seen[2]
    assert [ch["op"] for ch in seen[0]] == ["createSession", "addMessage", "setContext", "setCurrentTask"]


def test_decisions_are_made_on_the_stores_latest_state(make_daemon: Any, pg_url: str, tmp_path: Path) -> None:
    a, b = (d.conn() for d in daemons(make_daemon, pg_url, tmp_path, 2))
    a.result("setContext", {"key": "plan", "value": 1})
    # b has not synced: its expect is still decided on what a committed.
    r = b.call("setContext", {"key": "plan", "value": 2, "expect": None})
    assert r["error"]["code"] == -32009 and r["error"]["data"]["current"] == 1
    b.result("setContext", {"key": "plan", "value": 2, "expect": 1})
    # The current session, moved on a: b cannot delete it.
    a.result("createSession", {"sessionId": "next"})
    a.result("setCurrentSession", {"sessionId": "next"})
    r = b.call("deleteSession", {"sessionId": "next"})
    assert r["error"]["code"] == -32013, r
    # A lease held through a is held on b.
    held = a.result("acquireLease", {"name": "deploy", "owner": "agent-a", "ttlMs": 60_000})
    r = b.call("acquireLease", {"name": "deploy", "owner": "agent-b", "ttlMs": 60_000})
    assert r["error"]["code"] == -32014 and r["error"]["data"]["owner"] == "agent-a"
    a.result("releaseLease", {"name": "deploy", "token": held["token"]})
    got = b.result("acquireLease", {"name": "deploy", "owner": "agent-b", "ttlMs": 60_000})
    assert got["token"] > held["token"]
    # A transaction's condition too.
    rev = a.result("listSessions")
    cur = next(s for s in rev if s["sessionId"] == "next")
    b.result("addMessage", {"role": "user", "content": "x", "session": "next"})
    r = a.call("transact", {"session": "next", "expectRevision": cur["revision"],
                            "ops": [{"method": "setCurrentTask", "params": {"task": "t"}}]})
    assert r["error"]["code"] == -32009, r


def test_three_daemons_by_five_agents_claim_one_ticket(
        make_daemon: Any, pg_url: str, tmp_path: Path, env: dict[str, str]) -> None:
    ds = daemons(make_daemon, pg_url, tmp_path, 3)
    admin = ds[0].conn()
    for round_ in range(5):
        admin.result("setActiveTicket", {"ticketId": None})
        procs = []
        for d in ds:
            for _agent in range(5):
                procs.append(subprocess.Popen(
                    [*CLI, "--socket", str(d.socket), "--project", str(d.root), "ticket", "claim", "T-1"],
                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        results = [(p.wait(60), p.stdout.read() if p.stdout else "", p.stderr.read() if p.stderr else "")
                   for p in procs]
        for p in procs:
            for f in (p.stdout, p.stderr):
                if f:
                    f.close()
        winners = [r for r in results if r[0] == 0]
        assert len(winners) == 1, (round_, results)
        assert all(r[0] == 1 and "already T-1" in r[2] for r in results if r[0] != 0), results
        for d in ds:
            c = d.conn()
            c.result("sync")
            assert c.result("getActiveTicket") == "T-1"
            c.close()


def test_a_watcher_resumes_on_another_daemon(make_daemon: Any, pg_url: str, tmp_path: Path) -> None:
    d1, d2 = daemons(make_daemon, pg_url, tmp_path, 2)
    a, b = d1.conn(), d2.conn()
    start = a.result("sync")["revision"]
    w = d1.conn()
    w.result("watch", {"since": start})
    for i in range(30):
        (a if i % 2 else b).result("addMessage", {"role": "user", "content": f"m{i}"})
    last = b.result("sync")["revision"]
    first = changes(w, start + 10)[:10]
    w.close()
    # Resume on the other daemon from where it stopped: the rest, once, in order.
    w2 = d2.conn()
    w2.result("watch", {"since": first[-1]["revision"]})
    rest = changes(w2, last)
    got = [ch["message"]["content"] for ch in first + rest]
    assert [ch["revision"] for ch in first + rest] == list(range(start + 1, last + 1))
    assert got == [f"m{i}" for i in range(30)]
    # A daemon started later serves the older changes too (read back from the store).
    d3 = make_daemon("--store", pg_url, "--project-key", KEY, root=tmp_path / "late", name="late")
    w3 = d3.conn()
    w3.result("watch", {"since": start})
    assert [ch["message"]["content"] for ch in changes(w3, last)] == got
    assert os.path.exists(d3.socket)


def test_a_read_pipelined_behind_a_write_sees_it(make_daemon: Any, pg_url: str, tmp_path: Path) -> None:
    (d,) = daemons(make_daemon, pg_url, tmp_path, 1)
    c = d.conn()
    reqs = [{"jsonrpc": "2.0", "id": i, "method": "addMessage", "params": {"role": "user", "content": f"p{i}"}}
            for i in range(1, 51)]
    reqs.append({"jsonrpc": "2.0", "id": 99, "method": "getAllMessages"})
    c.send(b"".join(json.dumps(r).encode() + b"\n" for r in reqs))
    replies = {r["id"]: r for r in (c.recv() for _ in reqs)}
    assert [m["content"] for m in replies[99]["result"]] == [f"p{i}" for i in range(1, 51)]
    assert all(replies[i]["result"] is None for i in range(1, 51))


def test_sync_pipelined_behind_a_write(make_daemon: Any, pg_url: str, tmp_path: Path) -> None:
    """sync sent right behind a write on one connection waits for it, and does not
    wait for itself (it runs in that write's turn)."""
    (d,) = daemons(make_daemon, pg_url, tmp_path, 1)
    c = d.conn()
    before = c.result("sync")["revision"]
    c.send(b'{"jsonrpc":"2.0","id":1,"method":"addMessage","params":{"role":"user","content":"a"}}\n'
           b'{"jsonrpc":"2.0","id":2,"method":"sync"}\n')
    replies = {r["id"]: r for r in (c.recv(), c.recv())}
    assert replies[1]["result"] is None and replies[2]["result"] == {"revision": before + 1}


def test_a_daemon_killed_mid_write_the_others_go_on(make_daemon: Any, pg_url: str, tmp_path: Path) -> None:
    import threading

    d1, d2 = daemons(make_daemon, pg_url, tmp_path, 2)
    acked: list[str] = []

    def write() -> None:
        c = d1.conn()
        for i in range(100_000):
            try:
                r = c.call("addMessage", {"role": "user", "content": f"k{i}", "id": f"k{i}"})
            except OSError:
                return
            assert "error" not in r, r
            acked.append(f"k{i}")

    t = threading.Thread(target=write, daemon=True)
    t.start()
    b = d2.conn()
    while len(acked) < 300:
        b.result("sync")
    d1.kill9()
    t.join(30)
    # The survivor has every acknowledged write (at most the one in flight beyond), and
    # takes writes; a retry of the one in flight is not a second message.
    b.result("sync")
    got = [m["content"] for m in b.result("getAllMessages")]
    assert got[:len(acked)] == acked and len(got) <= len(acked) + 1
    nxt = f"k{len(acked)}"
    b.result("addMessage", {"role": "user", "content": nxt, "id": nxt})
    assert [m["content"] for m in b.result("getAllMessages")] == acked + [nxt]


def test_every_kind_of_change_is_replayed_the_same(make_daemon: Any, pg_url: str, tmp_path: Path) -> None:
    """Changes of every kind, made on one daemon or the other while both hold the
    sessions in memory: after sync both serve the same sessions, field for field."""
    a, b = (d.conn() for d in daemons(make_daemon, pg_url, tmp_path, 2))
    for c in (a, b):  # both hold both sessions in memory
        c.result("getAllMessages")
    a.result("createSession", {"sessionId": "s2"})
    for c in (a, b):
        c.result("sync")
        c.result("getAllMessages", {"session": "s2"})
    steps: list[tuple[Raw, str, dict[str, Any]]] = [
        (a, "addMessage", {"role": "user", "content": "one", "id": "i1", "data": {"k": [1]}}),
        (b, "addMessage", {"role": "assistant", "content": "two", "timestamp": 5}),
        (a, "addMessage", {"role": "user", "content": "three", "session": "s2"}),
        (b, "setCurrentTask", {"task": "t"}),
        (a, "setActiveTicket", {"ticketId": "T-9"}),
        (b, "trackOpenFile", {"filePath": "a.py"}),
        (a, "trackOpenFile", {"filePath": "b.py"}),
        (b, "untrackFile", {"filePath": "a.py"}),
        (a, "setContext", {"key": "x", "value": {"deep": [1, 2]}}),
        (b, "setContext", {"key": "y", "value": "v"}),
        (a, "deleteContext", {"key": "x"}),
        (b, "popMessage", {}),
        (a, "addMessage", {"role": "user", "content": "four"}),
        (b, "trimMessages", {"keep": 1}),
        (a, "transact", {"ops": [{"method": "addMessage", "params": {"role": "user", "content": "t1"}},
                                 {"method": "setContext", "params": {"key": "z", "value": 3}}]}),
        (b, "clear", {"session": "s2"}),
        (a, "createSession", {"sessionId": "fork", "forkFrom": "s2"}),
        (b, "importSession", {"records": [{"type": "session", "format": 1, "sessionId": "imp", "startTime": 7,
                                           "currentTask": None, "activeTicket": None, "messages": 1},
                                          {"type": "message", "role": "user", "content": "im", "timestamp": 8}]}),
        (a, "deleteSession", {"sessionId": "fork"}),
        (b, "acquireLease", {"name": "l", "owner": "o", "ttlMs": 60_000}),
    ]
    for conn, method, params in steps:
        conn.result("sync")
        conn.result(method, params)
    for c in (a, b):
        c.result("sync")

    def view(c: Raw) -> Any:
        sessions = sorted((s["sessionId"], s["messagesCount"], s["filesOpenCount"], s["contextKeysCount"],
                           s["current"]) for s in c.result("listSessions"))
        exports = {sid: c.result("exportSession", {"session": sid}) for sid, *_ in sessions}
        leases = [(x["name"], x["owner"], x["token"]) for x in c.result("listLeases")]
        return sessions, exports, leases, c.result("getStats")["revision"]

    va = view(a)
    assert va == view(b)
    assert {s[0] for s in va[0]} >= {"s2", "imp"} and "fork" not in {s[0] for s in va[0]}
    # A daemon started now reads the same from the store.
    c = make_daemon("--store", pg_url, "--project-key", KEY, root=tmp_path / "late", name="late").conn()
    assert view(c) == va
    # And the current session clears on one and moves on both.
    old = a.result("getSessionId")
    new = b.result("clear")
    a.result("sync")
    assert a.result("getSessionId") == new != old
    assert view(a) == view(b)


def test_a_turn_waits_for_the_project_row_at_most_ten_seconds(
        make_daemon: Any, pg_url: str, tmp_path: Path) -> None:
    """A daemon whose host stopped answering mid-turn holds the project's row: the
    others' writes fail after the lock timeout (-32004), reads go on, and writes go
    through again once the row is free."""
    import time

    import psycopg

    (d,) = daemons(make_daemon, pg_url, tmp_path, 1)
    c = d.conn()
    c.sock.settimeout(60)
    c.result("setContext", {"key": "k", "value": 1})
    holder = psycopg.connect(pg_url)  # a turn that never ends, as a vanished daemon's
    holder.execute("SELECT 1 FROM sessionmem_projects WHERE project_key = %s FOR UPDATE", (KEY,))
    t = time.monotonic()
    r = c.call("setContext", {"key": "k", "value": 2})
    waited = time.monotonic() - t
    assert r["error"]["code"] == -32004 and "lock timeout" in r["error"]["message"], r
    assert 9 < waited < 30, waited
    assert c.result("getContext", {"key": "k"}) == 1  # reads answer meanwhile
    holder.rollback()
    holder.close()
    deadline = time.monotonic() + 30
    while "error" in c.call("setContext", {"key": "k", "value": 3}):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert c.result("getContext", {"key": "k"}) == 3


def test_a_turn_bigger_than_one_query_commits_whole_and_in_order(
        make_daemon: Any, pg_url: str, tmp_path: Path) -> None:
    """A small turn's writing and commit go as one query, its values bound on the
    client (40 writes pipelined into one turn; quotes, %s, backslashes, NUL in the
    text); a turn of more than pgshared.SMALL rows (an import of 1,200 messages) sends
    its rows first: all of it is there, in order, with its ids, on another daemon and
    on one started afterwards from the store."""
    from sessionmemd.pgshared import SMALL

    a, b = (d.conn() for d in daemons(make_daemon, pg_url, tmp_path, 2))
    n = 6 * SMALL
    records: list[dict[str, Any]] = [{"type": "session", "format": 1, "sessionId": "big", "startTime": 1,
                                      "currentTask": "t", "activeTicket": None, "messages": n}]
    records += [{"type": "message", "role": "user", "content": f"m{i} 'q' %s \\ \x00", "timestamp": i,
                 "id": f"id-{i}"} for i in range(n)]
    a.result("importSession", {"records": records, "sessionId": "big"})
    # Many calls sent at once run in one turn (group commit): one query's worth and more.
    for i in range(40):
        a.send(json.dumps({"jsonrpc": "2.0", "id": 1000 + i, "method": "addMessage",
                           "params": {"role": "user", "content": f"p{i} 'q' %s \\ \x00", "session": "big",
                                      "id": f"p-{i}"}}).encode() + b"\n")
    for _ in range(40):
        assert "error" not in a.recv()
    want = [f"m{i} 'q' %s \\ \x00" for i in range(n)] + [f"p{i} 'q' %s \\ \x00" for i in range(40)]
    b.result("sync")
    assert [m["content"] for m in b.result("getAllMessages", {"session": "big"})] == want
    # The ids went with their messages: a retry through the other daemon is no new one.
    b.result("addMessage", {"role": "user", "content": "again", "session": "big", "id": "id-7"})
    b.result("addMessage", {"role": "user", "content": "again", "session": "big", "id": "p-7"})
    later = make_daemon("--store", pg_url, "--project-key", KEY, root=tmp_path / "later", name="later").conn()
    later.result("sync")
    assert [m["content"] for m in later.result("getAllMessages", {"session": "big"})] == want


def test_statements_go_in_parts_with_their_values() -> None:
    """pgstatements.Statements: the collected statements as queries of at most ``size``,
    each with exactly its own statements' values, in order."""
    from sessionmemd.pgstatements import Statements

    out = Statements()
    out.execute("A")
    out.executemany("B %s %s", [(1, 2), (3, 4)])
    out.execute("COMMIT")
    out.execute("C %s", ("x",))
    assert list(out.chunks(2)) == [("A; B %s %s", [1, 2]), ("B %s %s; COMMIT", [3, 4]), ("C %s", ["x"])]
    assert list(out.chunks(10)) == [("A; B %s %s; B %s %s; COMMIT; C %s", [1, 2, 3, 4, "x"])]
