"""Every method against a real daemon: over the raw socket, the blocking client and the asyncio client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sessionmem import AsyncSession, Message, Session, errors
from sessionmem import protocol as p

from conftest import Daemon

# Every daemon test here runs against both stores (conftest.pytest_generate_tests).
pytestmark = pytest.mark.both_stores


@pytest.mark.sqlite_only("its snapshot counts what periodic durability left unsaved")
def test_every_method_over_the_raw_socket(daemon: Daemon) -> None:
    c = daemon.conn()
    sid = c.result("getSessionId")
    assert isinstance(sid, str) and len(sid) == 36
    assert c.result("getCurrentTask") is None
    assert c.result("setCurrentTask", {"task": "Build X"}) is None
    assert c.result("getCurrentTask") == "Build X"
    assert c.result("setCurrentTask", {"task": "Build Y"}) is None  # overwrite
    assert c.result("getCurrentTask") == "Build Y"
    assert c.result("addMessage", {"role": "user", "content": "hi", "timestamp": 5}) is None
    assert c.result("addMessage", {"role": "assistant", "content": "hello"}) is None
    msgs = c.result("getAllMessages")
    assert msgs[0] == {"role": "user", "content": "hi", "timestamp": 5}
    assert msgs[1]["role"] == "assistant" and msgs[1]["timestamp"] > 1_700_000_000_000
    assert set(msgs[1]) == {"role", "content", "timestamp"}
    assert c.result("getRecentMessages", {"count": 1}) == msgs[1:]
    assert c.result("getRecentMessages", {"count": 0}) == []
    assert c.result("trackOpenFile", {"filePath": "b.py"}) is None
    c.result("trackOpenFile", {"filePath": "a.py"})
    c.result("trackOpenFile", {"filePath": "b.py"})
    assert c.result("getOpenFiles") == ["b.py", "a.py"]
    assert c.result("untrackFile", {"filePath": "b.py"}) is None
    assert c.result("getOpenFiles") == ["a.py"]
    assert c.result("getActiveTicket") is None
    assert c.result("setActiveTicket", {"ticketId": "T-7"}) is None
    assert c.result("getActiveTicket") == "T-7"
    c.result("setActiveTicket", {"ticketId": None})
    assert c.result("getActiveTicket") is None
    assert c.result("setContext", {"key": "k", "value": {"a": [1, None]}}) is None
    assert c.result("getContext", {"key": "k"}) == {"a": [1, None]}
    assert c.result("getContext", {"key": "nope"}) is None
    assert c.result("getAllContext") == {"k": {"a": [1, None]}}
    assert c.result("deleteContext", {"key": "k"}) is None
    assert c.result("getAllContext") == {}
    snap = c.result("snapshot")
    assert snap["written"] is True and snap["messages"] == 2
    assert c.result("snapshot")["written"] is False  # nothing changed since
    stats = c.result("getStats")
    assert stats["sessionId"] == sid and stats["messagesCount"] == 2 and stats["filesOpenCount"] == 1
    assert stats["contextKeysCount"] == 0 and stats["dbPath"] == str(daemon.db)
    assert stats["pendingChanges"] == 0 and stats["lastSnapshotAt"] and stats["lastSnapshotError"] is None
    hello = c.result("hello", {"clientVersion": "test"})
    assert hello["protocolVersion"] == p.PROTOCOL_VERSION and hello["pid"] == daemon.pid
    assert hello["projectRoot"] == str(daemon.root) and hello["socketPath"] == str(daemon.socket)
    c.result("addMessage", {"role": "user", "content": "unsaved"})
    assert c.result("restore") is None  # back to the snapshot: the unsaved message is gone
    assert len(c.result("getAllMessages")) == 2
    new = c.result("clear")
    assert new != sid and c.result("getSessionId") == new
    assert c.result("getAllMessages") == [] and c.result("getOpenFiles") == [] and c.result("getCurrentTask") is None
    assert c.result("shutdown") is None
    assert daemon.proc is not None and daemon.proc.wait(10) == 0


def test_pipelined_requests_and_many_connections(daemon: Daemon) -> None:
    c = daemon.conn()
    n = 500
    frames = b"".join(
        b'{"jsonrpc":"2.0","method":"addMessage","params":{"role":"user","content":"%d"},"id":%d}\n' % (i, i)
        for i in range(n)
    )
    c.send(frames)  # all in flight before reading one reply
    ids = [c.recv()["id"] for _ in range(n)]
    assert sorted(ids) == list(range(n))
    conns = [daemon.conn() for _ in range(50)]
    for i, k in enumerate(conns):
        k.result("setContext", {"key": f"c{i}", "value": i})
    assert len(c.result("getAllContext")) == 50
    assert [m["content"] for m in c.result("getAllMessages")] == [str(i) for i in range(n)]


def test_errors_keep_the_connection_alive(daemon: Daemon) -> None:
    c = daemon.conn()
    c.send(b"this is not json\n")
    assert c.recv()["error"]["code"] == p.PARSE_ERROR
    c.send(b'{"jsonrpc":"2.0","method":"nope","id":1}\n')
    assert c.recv()["error"]["code"] == p.METHOD_NOT_FOUND
    c.send(b'{"jsonrpc":"2.0","method":"addMessage","params":{"role":"user"},"id":2}\n')
    err = c.recv()["error"]
    assert err["code"] == p.INVALID_PARAMS and "content" in err["message"]
    c.send(b"[]\n")
    assert c.recv()["error"]["code"] == p.INVALID_REQUEST
    c.send(b'[{"jsonrpc":"2.0","method":"getSessionId"}]\n')  # all notifications: no reply
    c.send(b'{"jsonrpc":"2.0","method":"getCurrentTask","id":3}\n')
    assert c.recv() == {"jsonrpc": "2.0", "id": 3, "result": None}
    c.send(b'[{"jsonrpc":"2.0","method":"getCurrentTask","id":4},{"jsonrpc":"2.0","method":"x","id":5}]\n')
    batch = c.recv()
    assert {r["id"] for r in batch} == {4, 5}


def test_blocking_client_every_method(daemon: Daemon, store: str | None) -> None:
    with daemon.session() as s:
        assert s.daemon.pid == daemon.pid
        sid = s.get_session_id()
        s.set_current_task("t")
        assert s.get_current_task() == "t"
        s.add_message("user", "one", timestamp=10)
        s.add_message("assistant", "two")
        recent = s.get_recent_messages(5)
        assert isinstance(recent[0], Message) and recent[0] == Message("user", "one", 10)
        assert recent[1].role == "assistant" and recent[1].content == "two" and recent[1].timestamp > 10
        assert s.get_all_messages() == recent
        s.track_open_file("x")
        s.track_open_file("y")
        s.untrack_file("x")
        assert s.get_open_files() == ["y"]
        s.set_active_ticket("T")
        assert s.get_active_ticket() == "T"
        for v in ["s", 1, 2.5, True, None, [1, "a"], {"o": {"p": []}}]:
            s.set_context("k", v)
            assert s.get_context("k") == v
        s.delete_context("k")
        assert s.get_all_context() == {}
        # PostgreSQL: every change was committed by its write turn, nothing is left to write.
        assert s.snapshot().written is (store is None)
        st = s.get_stats()
        assert st.sessionId == sid and st.messagesCount == 2 and st.filesOpenCount == 1
        with pytest.raises(errors.InvalidParams) as ei:
            s.get_recent_messages(-1)
        assert ei.value.code == -32602 and "count" in ei.value.message
        with pytest.raises(errors.MethodNotFound):
            s.call("noSuchMethod")
        s.restore()
        new = s.clear()
        assert new != sid and s.get_session_id() == new


def test_results_are_copies(daemon: Daemon) -> None:
    with daemon.session() as s:
        s.set_context("k", {"list": [1]})
        v = s.get_context("k")
        v["list"].append(2)
        assert s.get_context("k") == {"list": [1]}


def test_asyncio_client_every_method_and_concurrency(daemon: Daemon, store: str | None) -> None:
    async def main() -> None:
        async with AsyncSession(project=daemon.root, socket=daemon.socket, autostart=False) as s:
            assert s.daemon is not None and s.daemon.pid == daemon.pid
            await s.set_current_task("async")
            assert await s.get_current_task() == "async"
            await asyncio.gather(*(s.add_message("user", f"m{i}", timestamp=i) for i in range(200)))
            msgs = await s.get_all_messages()
            assert [m.content for m in msgs] == [f"m{i}" for i in range(200)]  # sent in order, kept in order
            assert (await s.get_recent_messages(1))[0].content == "m199"
            await s.track_open_file("f")
            assert await s.get_open_files() == ["f"]
            await s.untrack_file("f")
            await s.set_active_ticket("A-1")
            assert await s.get_active_ticket() == "A-1"
            await s.set_context("k", [1, 2])
            assert await s.get_context("k") == [1, 2]
            assert await s.get_all_context() == {"k": [1, 2]}
            await s.delete_context("k")
            assert (await s.snapshot()).written is (store is None)  # PostgreSQL: committed by its turn
            assert (await s.get_stats()).messagesCount == 200
            with pytest.raises(errors.InvalidParams):
                await s.add_message("robot", "x")
            await s.restore()
            sid = await s.get_session_id()
            assert await s.clear() != sid

    asyncio.run(main())


def test_no_daemon_without_autostart_is_a_clear_error(tmp_path: Any) -> None:
    with pytest.raises(errors.ConnectionFailed, match="no sessionmemd answers"):
        Session(project=tmp_path, socket=tmp_path / "none.sock", autostart=False)


@pytest.mark.skipif(not __import__("shutil").which("socat"), reason="needs socat (Debian package socat)")
@pytest.mark.sqlite_only("replies in request order: periodic durability (under always a read answers before an earlier write commits)")
def test_the_documented_socat_session(daemon: Daemon) -> None:
    import subprocess

    lines = (
        '{"jsonrpc":"2.0","method":"setCurrentTask","params":{"task":"Fix the parser"},"id":1}\n'
        '{"jsonrpc":"2.0","method":"getCurrentTask","id":2}\n'
    )
    r = subprocess.run(["socat", "-t", "2", "-", f"UNIX-CONNECT:{daemon.socket}"], input=lines,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ['{"jsonrpc":"2.0","id":1,"result":null}',
                                     '{"jsonrpc":"2.0","id":2,"result":"Fix the parser"}']


def test_calls_time_out_when_the_daemon_hangs(daemon: Daemon) -> None:
    import signal

    s = Session(project=daemon.root, socket=daemon.socket, autostart=False, timeout=0.5)

    async def async_call() -> None:
        async with AsyncSession(project=daemon.root, socket=daemon.socket, autostart=False, timeout=0.5) as a:
            daemon.send_signal(signal.SIGSTOP)  # a hung daemon: alive, silent
            try:
                with pytest.raises(errors.ConnectionFailed, match="no reply to getSessionId within 0.5s"):
                    await a.get_session_id()
            finally:
                daemon.send_signal(signal.SIGCONT)

    daemon.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(errors.ConnectionFailed, match="no reply to getSessionId within 0.5s"):
            s.get_session_id()
    finally:
        daemon.send_signal(signal.SIGCONT)
    asyncio.run(async_call())
    with daemon.session() as fresh:  # and the daemon is fine afterwards
        assert fresh.get_session_id()
