"""Many sessions in one project: every new method over the raw socket, both clients and
the CLI; restarts; forks under concurrent writes; export/import; --max-messages."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon, run_cli, wait_for
from sessionmem import AsyncSession, errors
from sessionmem import protocol as p

# Every daemon test here runs against both stores (conftest.pytest_generate_tests).
pytestmark = pytest.mark.both_stores


def err(reply: dict[str, Any]) -> int:
    assert "error" in reply, reply
    return int(reply["error"]["code"])


# -- the wire ------------------------------------------------------------------------------
def test_every_session_method_over_the_raw_socket(daemon: Daemon) -> None:
    c = daemon.conn()
    first = c.result("getSessionId")
    c.result("addMessage", {"role": "user", "content": "a", "timestamp": 1, "id": "m1", "data": {"k": [1, None]}})
    c.result("addMessage", {"role": "assistant", "content": "b", "timestamp": 2})
    assert c.result("getRecentMessages", {"count": 1}) == [{"role": "assistant", "content": "b", "timestamp": 2}]
    assert c.result("getAllMessages", {"full": True}) == [
        {"role": "user", "content": "a", "timestamp": 1, "id": "m1", "data": {"k": [1, None]}},
        {"role": "assistant", "content": "b", "timestamp": 2}]
    assert c.result("createSession", {"sessionId": "two", "forkFrom": first, "forkUpTo": 1}) == {"sessionId": "two"}
    assert err(c.call("createSession", {"sessionId": "two"})) == p.SESSION_EXISTS
    assert err(c.call("createSession", {"forkFrom": "nope"})) == p.NO_SUCH_SESSION
    assert err(c.call("createSession", {"forkUpTo": 1})) == p.INVALID_PARAMS
    # Every session method takes `session`; an unknown one is -32011.
    for method, params in [("getSessionId", {}), ("getCurrentTask", {}), ("setCurrentTask", {"task": "t"}),
                           ("addMessage", {"role": "user", "content": "x"}), ("getRecentMessages", {"count": 1}),
                           ("getAllMessages", {}), ("trackOpenFile", {"filePath": "f"}), ("untrackFile", {"filePath": "f"}),
                           ("getOpenFiles", {}), ("setActiveTicket", {"ticketId": "T"}), ("getActiveTicket", {}),
                           ("setContext", {"key": "k", "value": 1}), ("getContext", {"key": "k"}),
                           ("deleteContext", {"key": "k"}), ("getAllContext", {}), ("clear", {}), ("getStats", {}),
                           ("popMessage", {}), ("trimMessages", {"keep": 0}), ("exportSession", {})]:
        assert err(c.call(method, {**params, "session": "nope"})) == p.NO_SUCH_SESSION, method
    assert c.result("setCurrentTask", {"task": "in two", "session": "two"}) is None
    assert c.result("getCurrentTask") is None and c.result("getCurrentTask", {"session": "two"}) == "in two"
    assert c.result("getAllMessages", {"session": "two", "full": True}) == [
        {"role": "user", "content": "a", "timestamp": 1, "id": "m1", "data": {"k": [1, None]}}]
    listed = c.result("listSessions")
    assert [i["sessionId"] for i in listed] == ["two", first]  # the most recently changed first
    assert listed[0] == {"sessionId": "two", "startTime": listed[0]["startTime"], "currentTask": "in two",
                         "activeTicket": None, "messagesCount": 1, "filesOpenCount": 0, "contextKeysCount": 0,
                         "revision": c.result("getStats")["revision"], "current": False}
    assert listed[1]["current"] and listed[1]["messagesCount"] == 2
    # popMessage: expect is the newest as {role, content, timestamp}.
    conflict = c.call("popMessage", {"expect": {"role": "user", "content": "b", "timestamp": 2}})
    assert err(conflict) == p.CONFLICT and conflict["error"]["data"]["current"]["content"] == "b"
    assert c.result("popMessage", {"expect": {"role": "assistant", "content": "b", "timestamp": 2}}) == {
        "role": "assistant", "content": "b", "timestamp": 2}
    assert c.result("popMessage", {"session": "two"})["id"] == "m1"
    assert c.result("popMessage", {"session": "two"}) is None
    assert c.result("popMessage", {"session": "two", "expect": None}) is None
    for i in range(5):
        c.result("addMessage", {"role": "user", "content": str(i), "session": "two"})
    assert c.result("trimMessages", {"keep": 2, "session": "two"}) == 3
    assert [m["content"] for m in c.result("getAllMessages", {"session": "two"})] == ["3", "4"]
    assert err(c.call("trimMessages", {"keep": -1})) == p.INVALID_PARAMS
    # clear {session} empties it and keeps its id; clear without params is the original's.
    assert c.result("clear", {"session": "two"}) == "two"
    assert c.result("getStats", {"session": "two"})["messagesCount"] == 0
    assert c.result("getCurrentTask", {"session": "two"}) is None
    assert err(c.call("deleteSession", {"sessionId": first})) == p.SESSION_IS_CURRENT
    assert c.result("setCurrentSession", {"sessionId": "two"}) is None
    assert c.result("getSessionId") == "two"
    assert err(c.call("setCurrentSession", {"sessionId": "nope"})) == p.NO_SUCH_SESSION
    assert c.result("deleteSession", {"sessionId": first}) is None
    assert err(c.call("deleteSession", {"sessionId": first})) == p.NO_SUCH_SESSION
    new = c.result("clear")
    assert new != "two" and c.result("getSessionId") == new
    assert [i["sessionId"] for i in c.result("listSessions")] == [new]  # the old current one went
    # export / import
    c.result("addMessage", {"role": "tool", "content": "x", "timestamp": 7, "data": [1]})
    records = c.result("exportSession")
    assert records[0]["type"] == "session" and records[0]["format"] == 1 and records[0]["messages"] == 1
    assert records[1] == {"type": "message", "role": "tool", "content": "x", "timestamp": 7, "data": [1]}
    assert err(c.call("importSession", {"records": records})) == p.SESSION_EXISTS  # the header's id is taken
    assert c.result("importSession", {"records": records, "sessionId": "copy", "makeCurrent": True}) == {"sessionId": "copy"}
    assert c.result("getSessionId") == "copy"
    assert c.result("getAllMessages", {"full": True}) == c.result("getAllMessages", {"full": True, "session": new})


def test_bad_imports_name_the_record_and_import_nothing(daemon: Daemon) -> None:
    c = daemon.conn()
    c.result("addMessage", {"role": "user", "content": "m", "id": "m-1"})
    good = c.result("exportSession")
    before = c.result("listSessions")
    cases: list[tuple[list[Any], str]] = [
        ([], "empty"),
        ([good[1]], "records[0]: the first record must be the session header"),
        ([{**good[0], "format": 2}, *good[1:]], "records[0]: format 2 is not one this daemon reads"),
        ([good[0], {"type": "bogus"}], "records[1]: unknown record type 'bogus'"),
        ([good[0], {"type": "message", "role": "user"}], "records[1]: Object missing required field `content`"),
        ([good[0], {**good[1], "timestamp": "x"}], "records[1]: Expected `int`"),
        ([good[0], {**good[1], "extra": 1}], "records[1]: Object contains unknown field `extra`"),
        ([good[0], good[1], good[0]], "records[2]: a second session header"),
        ([good[0], good[1], good[1]], "records[2]: message id"),
        (good[:1], "the header says 1 messages, the records hold 0"),
        ([good[0], {"type": "context", "key": "k", "value": 1}, {"type": "context", "key": "k", "value": 2}],
         "records[2]: context key 'k' appears twice"),
    ]
    for records, message in cases:
        reply = c.call("importSession", {"records": records, "sessionId": "new"})
        assert err(reply) == p.INVALID_PARAMS and message in reply["error"]["message"], (message, reply)
        assert "nothing was imported" in reply["error"]["message"]
    assert c.result("listSessions") == before  # nothing half-imported
    c.send(b'{"jsonrpc":"2.0","method":"importSession","params":{"records":[{"type":"session"'
           b',"format":1}]},"id":99}\n')
    assert c.recv()["error"]["code"] == p.INVALID_PARAMS
    assert c.result("getSessionId")  # still serving


def test_a_1gb_import_is_refused_at_the_frame_limit_naming_the_line(daemon: Daemon, tmp_path: Path, env) -> None:
    big = tmp_path / "big.jsonl"
    with open(big, "wb") as f:
        f.write(json.dumps({"type": "session", "format": 1, "sessionId": "b", "startTime": 1, "messages": 10}).encode() + b"\n")
        for i in range(10):
            f.write(json.dumps({"type": "message", "role": "user", "content": str(i), "timestamp": 1}).encode() + b"\n")
        f.truncate(1 << 30)  # then 1 GB more of one endless line (sparse: no disk used)
    r = run_cli(["--socket", str(daemon.socket), "import", str(big)], env, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "line 12: the export is larger than the daemon takes in one request" in r.stderr
    assert "--max-frame" in r.stderr and "nothing was imported" in r.stderr
    with daemon.session() as s:
        assert [i.sessionId for i in s.list_sessions()] == [s.get_session_id()]


# -- the clients and the CLI ---------------------------------------------------------------------
def test_blocking_client_binds_a_session_and_has_every_method(daemon: Daemon) -> None:
    with daemon.session() as s:
        main = s.get_session_id()
        assert s.create_session("agent-1") == "agent-1"
        with daemon.session(session_id="agent-1") as a:
            a.set_current_task("bound")
            a.add_message("user", "one", data={"item": {"type": "message"}})
            a.add_message("assistant", "two")
            assert a.get_session_id() == "agent-1" and a.get_current_task() == "bound"
            [m] = a.get_recent_messages(1)
            assert isinstance(m, p.Message) and m.content == "two"
            full = a.get_all_messages(full=True)
            assert isinstance(full[0], p.FullMessage) and full[0].data == {"item": {"type": "message"}}
            assert full[0].id and full[1].data is p.UNSET
            popped = a.pop_message(expect=p.Message(m.role, m.content, m.timestamp))
            assert popped is not None and popped.content == "two"
            with pytest.raises(errors.Conflict):
                a.pop_message(expect=None)
            assert a.trim_messages(0) == 1 and a.pop_message() is None
            assert a.clear() == "agent-1"  # bound: emptied, id kept
        assert s.get_session_id() == main and s.get_current_task() is None
        fork = s.create_session(fork_from="agent-1", make_current=True)
        assert s.get_session_id() == fork
        infos = s.list_sessions()
        assert infos[0].sessionId == fork and infos[0].current and isinstance(infos[0], p.SessionInfo)
        records = s.export_session("agent-1")
        assert isinstance(records[0], p.SessionRecord) and records[0].sessionId == "agent-1"
        assert s.import_session(records, "agent-2") == "agent-2"
        s.set_current_session(main)
        s.delete_session("agent-2")
        with pytest.raises(errors.NoSuchSession):
            s.delete_session("agent-2")
        with pytest.raises(errors.SessionIsCurrent):
            s.delete_session(main)
        with pytest.raises(errors.SessionExists):
            s.create_session("agent-1")


def test_async_client_binds_a_session_and_has_every_method(daemon: Daemon) -> None:
    async def go() -> None:
        async with AsyncSession(project=daemon.root, socket=daemon.socket, autostart=False) as s:
            sid = await s.create_session("a1")
            async with AsyncSession(project=daemon.root, socket=daemon.socket, autostart=False, session_id=sid) as a:
                await asyncio.gather(*(a.add_message("user", f"m{i}", data={"i": i}) for i in range(20)))
                full = await a.get_recent_messages(20, full=True)
                assert sorted(m.data["i"] for m in full) == list(range(20))
                assert (await a.pop_message()).content == full[-1].content
                assert await a.trim_messages(10) == 9
                assert await a.get_stats() is not None and (await a.get_stats()).sessionId == "a1"
                records = await a.export_session()
                assert len(records) == 11
            assert await s.import_session(records, "a2", make_current=True) == "a2"
            assert await s.get_session_id() == "a2"
            assert {i.sessionId for i in await s.list_sessions()} >= {"a1", "a2"}
            assert (await s.get_all_messages(full=True)) == (await s.call("getAllMessages", {"full": True, "session": "a1"}))
            await s.set_current_session("a1")
            await s.delete_session("a2")
            with pytest.raises(errors.NoSuchSession):
                await s.call("getCurrentTask", {"session": "a2"})

    asyncio.run(go())


def test_cli_sessions_export_import_pop_trim(daemon: Daemon, env, tmp_path: Path) -> None:
    base = ["--socket", str(daemon.socket)]

    def cli(*args: str, code: int = 0) -> str:
        r = run_cli([*base, *args], env)
        assert r.returncode == code, (args, r.stdout, r.stderr)
        return r.stdout if code == 0 else r.stderr

    main = cli("id").strip()
    cli("msg", "add", "user", "hello ✓")
    cli("msg", "add", "assistant", "")
    assert cli("sessions", "new", "--id", "f", "--fork-from", main, "--up-to", "1").strip() == "f"
    assert "hello ✓" in cli("--session", "f", "msg", "all")
    listing = cli("sessions", "list")
    assert listing.splitlines()[0].startswith("  f ") and f"* {main}" in listing
    out = tmp_path / "s.jsonl"
    cli("export", "-o", str(out))
    lines = out.read_text().splitlines()
    assert json.loads(lines[0])["type"] == "session" and len(lines) == 3
    assert cli("export") == out.read_text()  # stdout by default
    assert cli("import", str(out), "--id", "imported").strip() == "imported"
    assert run_cli([*base, "import", "-", "--id", "piped"], env, input=out.read_text()).stdout.strip() == "piped"
    assert "assistant:" in cli("--session", "imported", "msg", "pop")
    assert cli("--session", "imported", "msg", "trim", "--keep", "0").strip() == "removed 1 message(s)"
    assert "no message" in cli("--session", "imported", "msg", "pop")
    cli("sessions", "use", "f")
    assert cli("id").strip() == "f"
    cli("sessions", "delete", main)
    assert "-32011" in cli("sessions", "delete", main, code=1)
    assert "-32013" in cli("sessions", "delete", "f", code=1)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(lines[0] + "\n\n" + lines[1][:20] + "\n")
    assert "line 3: not a JSON object" in cli("import", str(broken), code=1)
    broken.write_text(lines[0] + "\n" + json.dumps({"type": "nope"}) + "\n")
    assert "line 2: unknown record type 'nope'" in cli("import", str(broken), code=1)
    assert "-32012" in cli("import", str(out), "--id", "f", code=1)
    assert json.loads(cli("--json", "sessions", "list"))[0]["sessionId"] == "f"  # made current last


# -- restarts -----------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_restart_keeps_every_session_and_the_current_one(make_daemon, how: str) -> None:
    d = make_daemon("--durability", "always")
    with d.session() as s:
        first = s.get_session_id()
        for name in ("a", "b", "c"):
            s.create_session(name)
            with d.session(session_id=name) as x:
                x.add_message("user", f"in {name}", data={"n": name})
                x.set_context("k", name)
                x.track_open_file(f"{name}.py")
        s.set_current_session("b")
        s.delete_session("c")
        before = [(i.sessionId, i.messagesCount, i.current, i.revision) for i in s.list_sessions()]
        exported = s.export_session("a")
    if how == "kill9":
        d.kill9()
    else:
        assert d.stop() == 0
    d.start()
    with d.session() as s:
        assert s.get_session_id() == "b"
        after = [(i.sessionId, i.messagesCount, i.current, i.revision) for i in s.list_sessions()]
        if how == "sigterm":
            assert after == before
        else:  # each session's last revision is written by the periodic snapshot, not each commit
            assert sorted(x[:3] for x in after) == sorted(x[:3] for x in before)
        assert s.export_session("a") == exported
        assert {i.sessionId for i in s.list_sessions()} == {first, "a", "b"}


# -- fork while another process writes ---------------------------------------------------------------
def test_fork_while_another_client_writes_holds_exactly_its_prefix(daemon: Daemon) -> None:
    with daemon.session() as s:
        src = s.get_session_id()
    stop = threading.Event()
    written: list[str] = []

    def writer() -> None:
        with daemon.session() as w:
            i = 0
            while not stop.is_set():
                w.add_message("user", f"w{i}")
                written.append(f"w{i}")
                i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        wait_for(lambda: len(written) > 200, what="writes")
        forks = []
        with daemon.session() as s:
            for k in range(5):
                n = len(written) // 2 + k
                forks.append((s.create_session(f"fork{k}", fork_from=src, up_to=n), n))
    finally:
        stop.set()
        t.join(30)
    with daemon.session() as s:
        everything = [m.content for m in s.get_all_messages()]
        assert everything == written  # the source lost nothing to the forks
        for fid, n in forks:
            with daemon.session(session_id=fid) as f:
                assert [m.content for m in f.get_all_messages()] == written[:n]
                f.add_message("user", "only in the fork")
        assert "only in the fork" not in [m.content for m in s.get_all_messages()]
        s.add_message("user", "only in the source")
        with daemon.session(session_id=forks[0][0]) as f:
            assert [m.content for m in f.get_all_messages()][-1] == "only in the fork"


# -- export / import round trip ---------------------------------------------------------------------
MIXED = ["plain", "", "ünïcødé ✓ 🚀", "new\nline", 'quote " \\ backslash', "\x00nul", "x" * 5000, "],[{"]


def test_export_import_round_trip_of_10000_messages_field_for_field(daemon: Daemon, env, tmp_path: Path) -> None:
    with daemon.session() as s:
        s.set_current_task("")
        s.set_active_ticket("T-✓")
        for f in ("b.py", "a.py", ""):
            s.track_open_file(f)
        s.set_context("", {"nested": [1, 2.5, None, True, {"": ""}]})
        s.set_context("n", 0)
        with daemon.session() as w:
            for i in range(10_000):
                data: Any = p.UNSET
                if i % 3 == 0:
                    data = {"i": i, "s": MIXED[i % len(MIXED)], "l": [None, False]}
                elif i % 3 == 1:
                    data = MIXED[i % len(MIXED)]
                kw = {} if data is p.UNSET else {"data": data}
                w.add_message(["user", "assistant", "system", "tool"][i % 4], MIXED[i % len(MIXED)] + str(i),
                              timestamp=i * 7, message_id=None if i % 5 else f"id-{i}", **kw)
        out = tmp_path / "x.jsonl"
        r = run_cli(["--socket", str(daemon.socket), "export", "-o", str(out)], env)
        assert r.returncode == 0, r.stderr
        r = run_cli(["--socket", str(daemon.socket), "import", str(out), "--id", "copy"], env)
        assert r.returncode == 0 and r.stdout.strip() == "copy", r.stderr
        orig, copy = s.export_session(), s.export_session("copy")
        assert copy[0].sessionId == "copy" and orig[0].startTime == copy[0].startTime
        assert copy[1:] == orig[1:] and len(orig) == 1 + 10_000 + 3 + 2
        a, b = s.get_all_messages(full=True), s.call("getAllMessages", {"session": "copy", "full": True})
        assert a == b and a[3].data == {"i": 3, "s": MIXED[3], "l": [None, False]} and a[5].id == "id-5"
        with daemon.session(session_id="copy") as c:
            assert (c.get_current_task(), c.get_active_ticket(), c.get_open_files(), c.get_all_context()) == (
                "", "T-✓", ["b.py", "a.py", ""], {"": {"nested": [1, 2.5, None, True, {"": ""}]}, "n": 0})


# -- --max-messages ---------------------------------------------------------------------------------
@pytest.mark.sqlite_only("reads the SQLite file")
def test_max_messages_with_8_concurrent_writers_keeps_the_newest_n_on_disk_too(make_daemon) -> None:
    n = 50
    d = make_daemon("--max-messages", str(n), "--snapshot-interval", "0.05")
    acked: list[list[str]] = [[] for _ in range(8)]

    def writer(k: int) -> None:
        with d.session() as s:
            for i in range(300):
                s.add_message("user", f"w{k}-{i:03}")
                acked[k].append(f"w{k}-{i:03}")
                if i % 50 == 0:
                    assert s.get_stats().messagesCount <= n

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(len(a) == 300 for a in acked)
    with d.session() as s:
        kept = [m.content for m in s.get_all_messages()]
        assert len(kept) == n
        # The newest N: each writer's kept messages are its last ones, in order.
        for k in range(8):
            mine = [c for c in kept if c.startswith(f"w{k}-")]
            assert mine == acked[k][len(acked[k]) - len(mine):]
        sid = s.get_session_id()
        s.snapshot()
    rows = [r[0] for r in sqlite3.connect(d.db).execute(
        "SELECT content FROM session_messages WHERE session_id = ? ORDER BY rowid", (sid,))]
    assert rows == kept
    assert d.stop() == 0
    d.start("--max-messages", "10")  # a lower bound trims at start, on disk too
    with d.session() as s:
        assert [m.content for m in s.get_all_messages()] == kept[-10:]
        s.snapshot()
    assert sqlite3.connect(d.db).execute("SELECT count(*) FROM session_messages").fetchone()[0] == 10


# -- the change feed -------------------------------------------------------------------------------
def test_every_change_of_the_session_methods_is_in_the_feed(make_daemon) -> None:
    d = make_daemon("--max-messages", "3")
    w = d.conn()
    first = w.result("getSessionId")
    start = w.result("watch")["revision"]
    c = d.conn()
    c.result("createSession", {"sessionId": "s"})
    for i in range(4):
        c.result("addMessage", {"role": "user", "content": f"m{i}", "session": "s", "data": {"i": i}})
    c.result("popMessage", {"session": "s"})
    c.result("trimMessages", {"keep": 1, "session": "s"})
    c.result("trimMessages", {"keep": 1, "session": "s"})  # nothing to trim: no change
    c.result("createSession", {"sessionId": "f", "forkFrom": "s", "makeCurrent": True})
    c.result("clear", {"session": "s"})
    records = c.result("exportSession", {"session": "f"})
    c.result("importSession", {"records": records, "sessionId": "i"})
    c.result("setCurrentSession", {"sessionId": "i"})
    c.result("setCurrentSession", {"sessionId": "i"})  # already current: no change
    c.result("deleteSession", {"sessionId": "f"})
    c.result("clear")
    end = c.result("getStats")["revision"]
    got = [w.recv()["params"] for _ in range(end - start)]
    assert [x["revision"] for x in got] == list(range(start + 1, end + 1))  # none missed, none twice
    ops = [(x["op"], x["sessionId"]) for x in got]
    new = got[-1]["newSessionId"]
    assert ops == [("createSession", "s")] + [("addMessage", "s")] * 4 + [
        ("popMessage", "s"), ("trimMessages", "s"), ("createSession", "f"), ("clear", "s"),
        ("importSession", "i"), ("setCurrentSession", "i"), ("deleteSession", "f"), ("clear", "i")]
    assert got[4]["removed"] == 1 and got[4]["data"] == {"i": 3}  # the 4th message trimmed the 1st
    assert got[5]["message"] == {"role": "user", "content": "m3", "timestamp": got[4]["message"]["timestamp"]}
    assert got[6]["removed"] == 1
    assert got[7]["forkFrom"] == "s" and got[7]["forkUpTo"] == 1
    assert "newSessionId" not in got[8]  # clear {session} keeps the id
    assert new == c.result("getSessionId") and first != new


@pytest.mark.sqlite_only("changes left unsaved by periodic durability")
def test_restore_reloads_every_session_from_the_last_snapshot(make_daemon) -> None:
    d = make_daemon("--snapshot-interval", "3600")
    with d.session() as s:
        first = s.get_session_id()
        s.create_session("saved")
        with d.session(session_id="saved") as x:
            x.set_current_task("saved task")
        s.snapshot()
        s.create_session("unsaved", make_current=True)
        with d.session(session_id="saved") as x:
            x.set_current_task("changed, not saved")
        s.delete_session(first)  # not saved either
        s.restore()
        assert s.get_session_id() == first  # the current one as saved
        assert {i.sessionId for i in s.list_sessions()} == {first, "saved"}
        with d.session(session_id="saved") as x:
            assert x.get_current_task() == "saved task"
        with pytest.raises(errors.NoSuchSession):
            s.call("getCurrentTask", {"session": "unsaved"})


def test_hello_lists_the_capabilities_of_protocol_3(daemon: Daemon) -> None:
    """Clients test for each by name (#16 item 11: export was missing)."""
    c = daemon.conn()
    hello = c.result("hello", {"clientVersion": "test", "protocolVersion": 3})
    c.close()
    assert {"sessions", "messageData", "export", "watch", "expect", "messageIds", "revisions",
            "transact", "leases", "search", "listContext"} <= set(
        hello["capabilities"])
