"""Issue 16, the client's part: promises of the client library tried against a real
daemon (real processes, sockets, SQLite files)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import queue
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import CLI, Daemon, answers, run_cli, wait_for
from sessionmem import AsyncSession, Session, errors
from sessionmem import protocol as p
from sessionmem.paths import resolve
from test_lifecycle import autostart_env, daemons_for


# -- 2. an explicit socket is the only socket tried -------------------------------------------
# The project's local daemon serves its database on its own socket, which the database's
# lock file names. The socket given (--socket, SESSIONMEM_SOCKET) stands for an SSH forward
# that is down: nothing answers it, and nothing may be written to the local copy instead.


@pytest.fixture
def local(make_daemon: Any) -> Daemon:
    d: Daemon = make_daemon(name="local")
    with d.session() as s:
        s.set_current_task("local")
    return d


def forward(tmp_path: Path) -> Path:
    return tmp_path / "forward.sock"  # nobody listens: the forwarding is down


def assert_untouched(d: Daemon) -> None:
    with d.session() as s:
        assert s.get_current_task() == "local"
        assert s.get_all_messages() == []


@pytest.mark.parametrize("autostart", [False, True])
def test_session_given_a_dead_socket_does_not_fall_back_to_the_local_daemon(local: Daemon, tmp_path: Path,
                                                                           autostart: bool) -> None:
    fwd = forward(tmp_path)
    with pytest.raises(errors.ConnectionFailed, match=f"no sessionmemd answers on {fwd}"):
        Session(project=local.root, socket=fwd, autostart=autostart)
    assert_untouched(local)


def test_session_from_the_environment_does_not_fall_back(local: Daemon, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fwd = forward(tmp_path)
    monkeypatch.setenv("SESSIONMEM_SOCKET", str(fwd))
    with pytest.raises(errors.ConnectionFailed, match=f"no sessionmemd answers on {fwd}"):
        Session(project=local.root, autostart=False)


def test_async_session_given_a_dead_socket_does_not_fall_back(local: Daemon, tmp_path: Path) -> None:
    fwd = forward(tmp_path)

    async def main() -> None:
        with pytest.raises(errors.ConnectionFailed, match=f"no sessionmemd answers on {fwd}"):
            async with AsyncSession(project=local.root, socket=fwd, autostart=False) as s:
                await s.add_message("user", "meant for the remote daemon")

    asyncio.run(main())
    assert_untouched(local)


@pytest.mark.parametrize("how", ["--socket", "SESSIONMEM_SOCKET"])
@pytest.mark.parametrize("args", [["call", "getSessionId"], ["msg", "add", "user", "hi"], ["task", "set", "remote"]])
def test_cli_given_a_dead_socket_exits_3_and_writes_nothing(local: Daemon, tmp_path: Path, env: dict[str, str],
                                                            how: str, args: list[str]) -> None:
    # The one-shot path tries the socket itself, then takes the full path (connect.py).
    fwd = forward(tmp_path)
    e = autostart_env(env)  # a given socket is never autostarted either
    if how == "--socket":
        r = run_cli(["--socket", str(fwd), *args], e, cwd=local.root)
    else:
        r = run_cli(args, dict(e, SESSIONMEM_SOCKET=str(fwd)), cwd=local.root)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert f"no sessionmemd answers on {fwd}" in r.stderr
    assert r.stdout == ""
    assert_untouched(local)


def test_a_watch_whose_socket_goes_away_does_not_resume_on_the_local_daemon(local: Daemon, make_daemon: Any,
                                                                           tmp_path: Path) -> None:
    # The remote daemon (another database) is reached through the given socket; it goes
    # away, and the lock file of the project's database names the local daemon.
    remote: Daemon = make_daemon(name="remote", db=tmp_path / "remote.db")
    got: queue.Queue[Any] = queue.Queue()

    def watch() -> None:
        try:
            with Session(project=local.root, socket=remote.socket, autostart=False, timeout=2) as s:
                for ch in s.watch():
                    got.put(ch)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            got.put(e)

    threading.Thread(target=watch, daemon=True).start()
    wait_for(lambda: watchers(remote) == 1, what="the watch")
    remote.kill9()
    with local.session() as s:
        s.add_message("user", "on the local daemon")
    outcome = got.get(timeout=60)
    assert isinstance(outcome, errors.ConnectionFailed), outcome
    assert str(remote.socket) in outcome.message


def watchers(d: Daemon) -> int:
    with d.session() as s:
        return s.get_stats().watchers


def test_agents_adapter_given_a_dead_socket_does_not_fall_back(local: Daemon, tmp_path: Path) -> None:
    pytest.importorskip("agents", reason="needs the extra sessionmem[openai-agents]")
    from sessionmem.integrations.openai_agents import SessionmemSession

    session = SessionmemSession("support-42", project=str(local.root), socket=str(forward(tmp_path)),
                                autostart=False)
    with pytest.raises(errors.ConnectionFailed, match="no sessionmemd answers"):
        asyncio.run(session.add_items([{"role": "user", "content": "hi"}]))
    with local.session() as s:
        assert "support-42" not in [i.sessionId for i in s.list_sessions()]


# -- 4. a watch that fails closes its connection ---------------------------------------------


def compact(d: Daemon) -> None:
    """Push the change log past what it keeps (64 MiB), so `since: 0` is Compacted."""
    with d.session() as s:
        big = "x" * (1 << 20)
        for i in range(70):
            s.set_context("big", f"{i}{big}")
        s.set_context("big", None)
    with pytest.raises(errors.Compacted):
        with d.session() as s:
            next(iter(s.watch(since=0)))


def connections(d: Daemon) -> int:
    with d.session() as s:
        return s.get_stats().connections - 1  # not this one


def test_failed_async_watches_leave_no_connection_behind(make_daemon: Any) -> None:
    d: Daemon = make_daemon("--max-connections", "20")
    compact(d)
    assert wait_for(lambda: connections(d) == 0, what="no client connected")

    async def main() -> None:
        async with AsyncSession(project=d.root, socket=d.socket, autostart=False) as s:
            for _ in range(50):  # more than --max-connections: a leak would be refused
                with pytest.raises(errors.Compacted):
                    async for _ch in s.watch(since=0):
                        pass
                with pytest.raises(errors.InvalidParams):  # bad params
                    async for _ch in s.watch(since=-1):
                        pass
            assert (await s.get_stats()).watchers == 0

    asyncio.run(main())
    wait_for(lambda: connections(d) == 0, what="every failed watch's connection closed")


def test_failed_blocking_watches_leave_no_connection_behind(make_daemon: Any) -> None:
    d: Daemon = make_daemon("--max-connections", "20")
    compact(d)
    with d.session() as s:
        for _ in range(50):
            with pytest.raises(errors.Compacted):
                next(iter(s.watch(since=0)))
            with pytest.raises(errors.InvalidParams):
                next(iter(s.watch(since=-1)))
    wait_for(lambda: connections(d) == 0, what="every failed watch's connection closed")


# -- 10. NaN and infinities are refused before sending ----------------------------------------


NAN, INF = float("nan"), float("inf")


def test_non_finite_numbers_are_refused_naming_the_param(daemon: Daemon) -> None:
    with daemon.session() as s:
        with pytest.raises(ValueError, match=r"param value is not a finite number"):
            s.set_context("k", INF)
        with pytest.raises(ValueError, match=r"param expect is not a finite number"):
            s.set_context("k", 1, expect=NAN)  # sent as null, it matched the absent key
        with pytest.raises(ValueError, match=r"param value\['a'\]\[1\]"):
            s.set_context("k", {"a": [1.5, -INF]})
        with pytest.raises(ValueError, match=r"param data\['score'\]"):
            s.add_message("user", "hi", data={"score": NAN})
        with pytest.raises(ValueError, match=r"param data"):  # in a batch: none of it sent
            s.add_messages([{"role": "user", "content": "a"}, {"role": "user", "content": "b", "data": [INF]}])
        with pytest.raises(ValueError, match=r"param value"):
            s.call("setContext", {"key": "k", "value": NAN})
        # Nothing was sent; the connection is in step; finite numbers still go.
        assert s.get_all_context() == {}
        assert s.get_all_messages() == []
        s.set_context("k", {"a": [1.5, -2.0, 1e308]})
        assert s.get_context("k") == {"a": [1.5, -2.0, 1e308]}
        s.set_context("n", None, expect=None)
        assert s.get_all_context() == {"k": {"a": [1.5, -2.0, 1e308]}, "n": None}


def test_async_client_refuses_non_finite_numbers_and_stays_usable(daemon: Daemon) -> None:
    async def main() -> None:
        async with AsyncSession(project=daemon.root, socket=daemon.socket, autostart=False) as s:
            with pytest.raises(ValueError, match=r"param value is not a finite number"):
                await s.set_context("k", -INF)
            with pytest.raises(ValueError, match=r"param expect"):
                await s.set_active_ticket("T-1", expect=NAN)
            with pytest.raises(ValueError, match=r"param data\[0\]\['x'\]"):
                await s.add_messages([{"role": "user", "content": "a", "data": [{"x": NAN}]}])
            assert await s.get_all_context() == {}
            assert await s.get_active_ticket() is None
            assert await s.get_all_messages() == []
            await s.set_context("k", math.pi)
            assert await s.get_context("k") == math.pi

    asyncio.run(main())


# -- 13. a watch resumes across -32003 (shutting down) -----------------------------------------

SHUTTING_DOWN = b'{"jsonrpc":"2.0","id":null,"error":{"code":-32003,"message":"daemon is shutting down"}}\n'


@contextlib.contextmanager
def stand_in(path: Path, answer: Callable[[socket.socket], bool]) -> Iterator[None]:
    """Stands on the daemon's socket, handing each connection to ``answer`` until it
    returns True; then the socket is gone, as a stopped daemon's is, and clients wait
    for the next daemon."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener.bind(str(path))
    listener.listen(16)
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn, contextlib.suppress(OSError):
                conn.settimeout(5)
                if answer(conn):
                    break
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(10)


@contextlib.contextmanager
def shutting_down(path: Path) -> Iterator[list[int]]:
    """Answers every connection as a daemon does in the moment it shuts down
    (server.Connection.connection_made when stopping): -32003 with id null, then closed.
    Reads the client's request first, so the answer is read as the reply to it. Yields
    the count of connections answered."""
    answered = [0]

    def answer(conn: socket.socket) -> bool:
        conn.recv(1 << 16)
        conn.sendall(SHUTTING_DOWN)
        answered[0] += 1
        return False

    with stand_in(path, answer):
        yield answered


def test_blocking_watch_resumes_across_shutting_down(daemon: Daemon) -> None:
    got: queue.Queue[Any] = queue.Queue()
    with daemon.session() as s:
        since = s.get_stats().revision

    def watch() -> None:
        try:
            with Session(project=daemon.root, socket=daemon.socket, autostart=False) as s:
                for ch in s.watch(since=since):
                    got.put(ch)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            got.put(e)

    threading.Thread(target=watch, daemon=True).start()
    with daemon.session() as s:
        s.set_current_task("before")
    first = got.get(timeout=30)
    assert isinstance(first, p.Change) and first.task == "before", first
    assert daemon.stop() == 0
    with shutting_down(daemon.socket) as answered:
        wait_for(lambda: answered[0] >= 3, what="the watch to be told -32003 three times")
    daemon.start()
    with daemon.session() as s:
        s.set_current_task("after")
    second = got.get(timeout=30)
    assert isinstance(second, p.Change), second
    assert (second.revision, second.task) == (first.revision + 1, "after")  # resumed with since


def test_async_watch_resumes_across_shutting_down(daemon: Daemon) -> None:
    async def main() -> None:
        async with AsyncSession(project=daemon.root, socket=daemon.socket, autostart=False) as s:
            feed = s.watch(since=(await s.get_stats()).revision)
            await s.set_current_task("before")
            first = await anext(feed)
            assert first.task == "before"
            nxt = asyncio.ensure_future(anext(feed))  # the feed reconnects while we wait
            assert await asyncio.to_thread(daemon.stop) == 0
            with shutting_down(daemon.socket) as answered:
                await asyncio.to_thread(wait_for, lambda: answered[0] >= 3, 10.0, "three -32003 answers")
                assert not nxt.done()
            await asyncio.to_thread(daemon.start)
            await asyncio.to_thread(lambda: daemon.session().set_current_task("after"))
            second = await asyncio.wait_for(nxt, 30)
            assert (second.revision, second.task) == (first.revision + 1, "after")
            await feed.aclose()

    asyncio.run(main())


# -- 17. a reconnect never autostarts ------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project whose daemon is found by its default socket (no --socket), autostart on."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", env["XDG_RUNTIME_DIR"])  # find the same socket
    monkeypatch.delenv("SESSIONMEM_NO_AUTOSTART", raising=False)
    monkeypatch.delenv("SESSIONMEM_SOCKET", raising=False)
    root = tmp_path / "auto"
    root.mkdir()
    try:
        yield root
    finally:
        for pid in daemons_for(root):
            os.kill(pid, signal.SIGKILL)


def test_daemon_stop_is_not_undone_by_a_running_watch(project: Path, env: dict[str, str]) -> None:
    e = autostart_env(env)
    r = run_cli(["daemon", "start"], e, cwd=project)
    assert r.returncode == 0, r.stderr
    watch = subprocess.Popen([*CLI, "watch"], env=e, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        with Session(project=project, autostart=False) as s:
            wait_for(lambda: s.get_stats().watchers == 1, 30, "the CLI's watch")
        r = run_cli(["daemon", "stop"], e, cwd=project)
        assert r.returncode == 0 and r.stdout.strip() == "stopped", r.stderr
        _, err = watch.communicate(timeout=90)  # gives up once its patience is out
        assert watch.returncode == 3, err
        assert "no sessionmemd answers" in err
        assert daemons_for(project) == []
        assert not answers(resolve(project).socket)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait(10)


def test_async_session_does_not_autostart_when_it_reconnects(project: Path) -> None:
    async def main() -> None:
        async with AsyncSession(project=project) as s:  # its first connection autostarts
            assert s.daemon is not None and daemons_for(project) == [s.daemon.pid]
            await s.shutdown()
            await asyncio.to_thread(wait_for, lambda: not daemons_for(project), 30.0, "the daemon to exit")
            with pytest.raises(errors.ConnectionFailed, match="no sessionmemd answers"):
                await s.get_stats()

    asyncio.run(main())
    assert daemons_for(project) == []


def test_blocking_session_does_not_autostart_when_it_reconnects(project: Path) -> None:
    with Session(project=project) as s:  # its first connection autostarts
        s.shutdown()
        wait_for(lambda: not daemons_for(project), 30, "the daemon to exit")
        with pytest.raises(errors.ConnectionFailed, match="no sessionmemd answers"):
            s.get_stats()
    assert daemons_for(project) == []
    with Session(project=project) as s:  # a new client's first connection does
        assert s.get_current_task() is None
        s.shutdown()


def test_the_reconnect_rule_waits_out_only_a_gap() -> None:
    from sessionmem import connect as c

    with pytest.raises(errors.InvalidParams):
        c.Patience(30).pause(errors.InvalidParams("no gap to wait out"))
    with pytest.raises(errors.DaemonStartError):  # the daemon's own error: waiting will not mend it
        c.Patience(30).pause(errors.DaemonStartError("corrupt database"))
    assert c.Patience(30).pause(errors.ShuttingDown("going")) > 0
    assert c.Patience(30).pause(errors.ConnectionFailed("not yet")) > 0
    with pytest.raises(errors.ConnectionFailed):
        c.Patience(-1).pause(errors.ConnectionFailed("out of patience"))



@contextlib.contextmanager
def stops_before_running(path: Path, hello: dict[str, Any]) -> Iterator[list[str]]:
    """Answers as a daemon that began to stop after it read a call (a pipelining
    client's backlog): hello is answered, the call after it gets -32003 with its own id
    (rpc: Dispatcher.refusing), then the connection is closed and the socket is gone.
    Yields the methods so answered."""
    refused: list[str] = []

    def answer(conn: socket.socket) -> bool:
        for line in conn.makefile("rb"):
            req = json.loads(line)
            if req["method"] == "hello":
                conn.sendall(json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": hello}).encode() + b"\n")
                continue
            conn.sendall(json.dumps({"jsonrpc": "2.0", "id": req["id"], "error": {
                "code": -32003, "message": "daemon is shutting down; the call was not run"}}).encode() + b"\n")
            refused.append(req["method"])
            return True
        return False

    with stand_in(path, answer):
        yield refused


@pytest.mark.parametrize("client", ["Session", "AsyncSession"])
def test_a_call_answered_shutting_down_is_sent_again_to_the_next_daemon(daemon: Daemon, client: str) -> None:
    """-32003 to a call means it was not run: even a write that is not safe to repeat
    (no expect, no id) goes once more, to the daemon that comes back."""
    hello = daemon.conn().result("hello", {"clientVersion": "0", "protocolVersion": p.PROTOCOL_VERSION})
    assert daemon.stop() == 0
    result: queue.Queue[Any] = queue.Queue()

    def call() -> None:
        try:
            if client == "Session":
                with Session(project=daemon.root, socket=daemon.socket, autostart=False) as s:
                    s.set_context("k", "once")
                    result.put(s.get_context("k"))
            else:
                async def main() -> Any:
                    async with AsyncSession(project=daemon.root, socket=daemon.socket, autostart=False) as s:
                        await s.set_context("k", "once")
                        return await s.get_context("k")
                result.put(asyncio.run(main()))
        except BaseException as e:  # noqa: BLE001 - handed to the test
            result.put(e)

    with stops_before_running(daemon.socket, hello) as refused:
        threading.Thread(target=call, daemon=True).start()
        wait_for(lambda: refused and not daemon.socket.exists(), what="the call refused with -32003")
    assert refused[0] == "setContext"
    daemon.start()
    assert result.get(timeout=30) == "once"
