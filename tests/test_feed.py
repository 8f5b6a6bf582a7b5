"""The change feed on real daemons: an audit of many writer processes against several
watchers, slow watchers, compaction, clean restarts, durability=always, bad input,
and the clients' and CLI's watch."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from sessionmem import AsyncSession, Session, errors
from sessionmem import protocol as p

from conftest import CLI, Daemon, Raw, wait_for


def watch_raw(d: Daemon, since: int | None = None) -> tuple[Raw, int]:
    c = d.conn()
    params = {} if since is None else {"since": since}
    return c, c.result("watch", params)["revision"]


def read_changes(c: Raw, n: int, timeout: float = 30) -> list[dict[str, Any]]:
    c.sock.settimeout(timeout)
    out = []
    while len(out) < n:
        frame = c.recv()
        assert frame.get("method") == "changed", frame
        out.append(frame["params"])
    return out


# -- the audit -----------------------------------------------------------------------------
WRITER = """
import json, sys
from sessionmem import Session
sock, root, k, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with Session(project=root, socket=sock, autostart=False) as s:
    for i in range(n):
        kind = i % 4
        if kind == 0:
            s.add_message("user", f"w{k}-{i}")
        elif kind == 1:
            s.set_context(f"w{k}", {"i": i})
        elif kind == 2:
            s.track_open_file(f"w{k}/{i}.py")
        else:
            s.set_current_task(f"w{k}-{i}")
"""


def expected_change(k: int, i: int) -> tuple[str, Any]:
    kind = i % 4
    if kind == 0:
        return "addMessage", f"w{k}-{i}"
    if kind == 1:
        return "setContext", {"i": i}
    if kind == 2:
        return "trackOpenFile", f"w{k}/{i}.py"
    return "setCurrentTask", f"w{k}-{i}"


def gist(ch: dict[str, Any]) -> tuple[int, int, str, Any] | None:
    """(writer, index, op, what) of a change the audit's writers made."""
    op = ch["op"]
    if op == "addMessage":
        what = ch["message"]["content"]
        k, i = what[1:].split("-")
    elif op == "setContext":
        what = ch["value"]
        k, i = ch["key"][1:], what["i"]
    elif op == "trackOpenFile":
        what = ch["filePath"]
        k, i = what[1:].split("/")[0], what.split("/")[1].split(".")[0]
    elif op == "setCurrentTask":
        what = ch["task"]
        k, i = what[1:].split("-")
    else:
        return None
    return int(k), int(i), op, what


def test_feed_audit_every_watcher_sees_every_change_once_in_order(daemon: Daemon) -> None:
    writers, per_writer = 4, 5000  # 20,000 changes
    with daemon.session() as s:
        for i in range(10):
            s.add_message("system", f"before {i}")
        past = s.get_stats().revision - 5  # a watcher that starts in the past
    start_rev = past + 5
    recorded: dict[str, list[dict[str, Any]]] = {"live": [], "past": [], "reconnecting": []}
    total = writers * per_writer

    def live() -> None:
        with Session(project=daemon.root, socket=daemon.socket, autostart=False) as s:
            for ch in s.watch(since=start_rev):
                recorded["live"].append(msgspec_to_dict(ch))
                if len(recorded["live"]) == total:
                    return

    def from_the_past() -> None:
        c, _ = watch_raw(daemon, since=past)
        recorded["past"] = read_changes(c, total + 5, timeout=120)

    def reconnecting() -> None:
        c, _ = watch_raw(daemon, since=start_rev)
        first = read_changes(c, total // 2, timeout=120)
        c.close()  # halfway: gone, then back where it was
        c, _ = watch_raw(daemon, since=first[-1]["revision"])
        recorded["reconnecting"] = first + read_changes(c, total - len(first), timeout=120)

    threads = [threading.Thread(target=f) for f in (live, from_the_past, reconnecting)]
    for t in threads:
        t.start()
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), str(daemon.socket),
                               str(daemon.root), str(k), str(per_writer)]) for k in range(writers)]
    for proc in procs:
        assert proc.wait(180) == 0
    for t in threads:
        t.join(120)
        assert not t.is_alive()
    with daemon.session() as s:
        final = s.get_stats().revision
    assert final == start_rev + total  # every write changed something: one revision each
    for name, changes in recorded.items():
        first = past + 1 if name == "past" else start_rev + 1
        assert [ch["revision"] for ch in changes] == list(range(first, final + 1)), name  # once, in order, no gap
        if name == "past":
            assert [ch["message"]["content"] for ch in changes[:5]] == [f"before {i}" for i in range(5, 10)]
            changes = changes[5:]
        seen: dict[int, list[int]] = {k: [] for k in range(writers)}
        for ch in changes:
            g = gist(ch)
            assert g is not None, ch
            k, i, op, what = g
            assert (op, what) == expected_change(k, i), ch  # the contents that were written
            seen[k].append(i)
        assert all(seen[k] == list(range(per_writer)) for k in seen), name  # each writer's, in its order


def msgspec_to_dict(ch: p.Change) -> dict[str, Any]:
    import msgspec

    return msgspec.json.decode(msgspec.json.encode(ch))


# -- slow watchers, compaction --------------------------------------------------------------
def test_a_watcher_that_never_reads_is_cut_off_alone_and_resumes(daemon: Daemon) -> None:
    """It is sent what fits under its connection's high-water mark, then nothing until
    it reads; once it falls behind the change log (10,000 changes) it is cut off. The
    writers never wait for it; it resumes with `since` from what the log still holds,
    however much that is to replay."""
    hog, rev0 = watch_raw(daemon)
    c = daemon.conn()
    note = b'{"jsonrpc":"2.0","method":"addMessage","params":{"role":"user","content":"%d:' + b"x" * 1000 + b'"}}\n'
    n = 15_000  # past the 10,000 the log keeps, and its trimming slack
    for start in range(0, n, 1000):
        c.send(b"".join(note % i for i in range(start, start + 1000)))
    current = c.result("getStats")["revision"]
    assert current == rev0 + n  # the writer was never held up
    wait_for(lambda: "fell behind the change log" in daemon.read_log(), what="the cut-off")
    got: list[dict[str, Any]] = []
    hog.sock.settimeout(10)
    with pytest.raises((ConnectionResetError, OSError)):
        while True:
            got.append(hog.recv())
    last = got[-1]["params"]["revision"]
    assert [f["params"]["revision"] for f in got] == list(range(rev0 + 1, last + 1))  # what it had, in order
    r = c.call("watch", {"since": last})  # what it missed is partly gone from the log
    assert r["error"]["code"] == p.COMPACTED
    oldest = r["error"]["data"]["oldest"]
    assert oldest <= current - 10_000 + 1
    w, _ = watch_raw(daemon, since=oldest - 1)  # 10,000+ changes, ~10 MB, replayed as it reads
    rest = read_changes(w, current - oldest + 1)
    assert [ch["revision"] for ch in rest] == list(range(oldest, current + 1))
    assert rest[-1]["message"]["content"].startswith(f"{n - 1}:")
    assert c.result("getStats")["watchers"] == 1


def test_since_older_than_the_log_is_compacted(daemon: Daemon) -> None:
    c = daemon.conn()
    note = b'{"jsonrpc":"2.0","method":"setContext","params":{"key":"k","value":%d}}\n'
    c.send(b"".join(note % i for i in range(12_000)))  # past 10,000 and the trim's slack
    current = c.result("getStats")["revision"]
    assert current >= 12_000
    r = c.call("watch", {"since": 0})
    assert r["error"]["code"] == p.COMPACTED
    oldest = r["error"]["data"]["oldest"]
    assert 1 < oldest <= current - 10_000 + 1  # at least the last 10,000 are kept
    assert c.result("watch", {"since": oldest - 1})["revision"] == current  # just kept
    with daemon.session() as s, pytest.raises(errors.Compacted) as ei:
        next(iter(s.watch(since=oldest - 2)))
    assert ei.value.oldest == oldest


# -- restarts and durability -------------------------------------------------------------------
@pytest.mark.parametrize("how", ["SIGTERM", "shutdown", "idle"])
def test_a_clean_restart_loses_no_part_of_the_feed(make_daemon, how: str) -> None:
    d = make_daemon("--idle-timeout", "0.5") if how == "idle" else make_daemon()
    c, rev0 = watch_raw(d)
    with d.session() as s:
        for i in range(30):
            s.add_message("user", f"m{i}")
    seen = read_changes(c, 10)  # a watcher that had read only part of it
    c.close()
    if how == "SIGTERM":
        assert d.stop() == 0
    elif how == "shutdown":
        with d.session() as s:
            s.shutdown()
        assert d.proc is not None and d.proc.wait(30) == 0
    else:
        assert d.proc is not None and d.proc.wait(30) == 0
    d.start()
    with d.session() as s:
        s.add_message("user", "after the restart")
    c, _ = watch_raw(d, since=seen[-1]["revision"])
    rest = read_changes(c, 21)
    assert [ch["revision"] for ch in seen + rest] == list(range(rev0 + 1, rev0 + 32))
    assert [ch["message"]["content"] for ch in seen + rest] == [f"m{i}" for i in range(30)] + ["after the restart"]


def test_the_client_watch_resumes_by_itself_after_a_restart(make_daemon) -> None:
    d = make_daemon()
    got: list[str] = []

    def watcher() -> None:
        with Session(project=d.root, socket=d.socket, autostart=False) as s:
            for ch in s.watch():
                got.append(ch.message.content if ch.op == "addMessage" else ch.op)  # type: ignore[union-attr]
                if len(got) == 4:
                    return

    with d.session() as s:
        rev = s.get_stats().revision
    t = threading.Thread(target=watcher)
    t.start()
    wait_for(lambda: d.session().get_stats().watchers == 1, what="the watch")
    with d.session() as s:
        s.add_message("user", "one")
        s.add_message("user", "two")
    assert d.stop() == 0
    d.start()
    with d.session() as s:
        s.add_message("user", "three")
        s.add_message("user", "four")
    t.join(30)
    assert got == ["one", "two", "three", "four"]
    assert rev >= 0


def test_the_async_watch_is_an_async_iterator_that_resumes(make_daemon) -> None:
    d = make_daemon()

    async def main() -> list[str]:
        got: list[str] = []
        async with AsyncSession(project=d.root, socket=d.socket, autostart=False) as s:
            async def produce() -> None:
                # The watch starts from the revision current when it registers: wait for
                # that (a fixed sleep was a guess), so "a" comes after it.
                while (await s.get_stats()).watchers < 1:
                    await asyncio.sleep(0.01)
                await s.set_current_task("a")
                await asyncio.to_thread(lambda: (d.stop(), d.start()))
                await s.set_current_task("b")  # reconnects: a write without expect is... sent anew
            task = asyncio.create_task(produce())
            async for ch in s.watch():
                got.append(ch.task)  # type: ignore[arg-type]
                if len(got) == 2:
                    break
            await task
        return got

    assert asyncio.run(asyncio.wait_for(main(), 60)) == ["a", "b"]


def test_under_always_a_change_is_published_only_once_committed(make_daemon, tiny_fs: Path) -> None:
    d = make_daemon("--durability", "always", db=tiny_fs / "session.db")
    c, rev0 = watch_raw(d)
    with d.session() as s:
        s.add_message("user", "committed")
        assert read_changes(c, 1)[0]["message"]["content"] == "committed"
        with pytest.raises(errors.PersistFailed):
            for i in range(2000):
                s.add_message("user", f"{i}:" + "x" * 8192)
        failed_rev = s.get_stats().revision
        # Nothing past the last commit reaches the watcher while the disk refuses it.
        c.sock.settimeout(0.5)
        published = []
        try:
            while True:
                published.append(c.recv()["params"]["revision"])
        except TimeoutError:
            pass
        assert published and max(published) < failed_rev
        subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_fs)], check=True)
        s.snapshot()  # the backlog is committed: now it is published
        rest = read_changes(c, failed_rev - max(published))
        assert rest[-1]["revision"] == failed_rev


# -- bad input ---------------------------------------------------------------------------
def test_bad_feed_and_expect_input_gets_clear_errors_and_the_daemon_serves_on(daemon: Daemon) -> None:
    c = daemon.conn()
    deep: Any = None
    for _ in range(100):
        deep = [deep]
    r = c.call("setCurrentTask", {"task": "t", "expect": deep})
    assert r["error"]["code"] == p.INVALID_PARAMS and "params.expect" in r["error"]["message"]
    for since in (-1, 1.5, "3", None, True):
        r = c.call("watch", {"since": since})
        assert r["error"]["code"] == p.INVALID_PARAMS and "since" in r["error"]["message"], r
    r = c.call("unwatch")
    assert r["error"]["code"] == p.INVALID_PARAMS and "no watch" in r["error"]["message"]
    r = c.call("addMessage", {"role": "user", "content": "x", "id": ""})
    assert r["error"]["code"] == p.INVALID_PARAMS and "params.id" in r["error"]["message"]
    # watch twice on one connection: the second replaces the first (one copy of each change)
    rev = c.result("watch")["revision"]
    assert c.result("watch", {"since": rev})["revision"] == rev
    with daemon.session() as s:
        s.set_current_task("once")
    frame = c.recv()
    assert frame["params"]["task"] == "once" and frame["params"]["revision"] == rev + 1
    assert c.result("getCurrentTask") == "once"  # a watching connection still makes calls
    assert c.result("unwatch") is None
    with daemon.session() as s:
        s.set_current_task("unwatched")
    assert c.result("getCurrentTask") == "unwatched"  # and no notification came before it


def test_cli_watch_prints_a_line_per_change_and_exits_cleanly_on_ctrl_c(daemon: Daemon, env: dict[str, str]) -> None:
    args = ["--socket", str(daemon.socket), "--project", str(daemon.root)]
    for n, extra in enumerate(([], ["--json"])):
        proc = subprocess.Popen([*CLI, *args, *extra, "watch"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        wait_for(lambda: daemon.session().get_stats().watchers == 1, what="the CLI's watch")
        with daemon.session() as s:
            s.add_message("user", "hello there")
            s.set_context("k", {"v": n})  # a new value each time: setting the same is no change
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(2)]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
        if extra:
            first = json.loads(lines[0])
            assert first["op"] == "addMessage" and first["message"]["content"] == "hello there"
        else:
            assert "addMessage" in lines[0] and "user: hello there" in lines[0] and " r" in lines[0]
            assert "setContext" in lines[1] and 'k = {"v":0}' in lines[1]
        wait_for(lambda: daemon.session().get_stats().watchers == 0, what="the watch to end")


def test_watch_one_session_only(daemon: Daemon) -> None:
    with daemon.session() as s:
        old = s.get_session_id()
        c, _ = watch_raw(daemon)
        only = daemon.conn()
        only.result("watch", {"session": old})
        s.set_current_task("in the old session")
        new = s.clear()  # notified as the old session's change
        s.set_current_task("in the new one")
    every = read_changes(c, 3)
    assert [ch["sessionId"] for ch in every] == [old, old, new]
    assert every[1]["op"] == "clear" and every[1]["newSessionId"] == new
    mine = read_changes(only, 2)
    assert [ch["op"] for ch in mine] == ["setCurrentTask", "clear"]
    only.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        only.recv()  # nothing of the new session


def test_a_slow_async_consumer_holds_a_bounded_queue_and_misses_nothing(daemon: Daemon) -> None:
    from sessionmem.aio import QUEUE_HIGH

    async def main() -> tuple[int, list[int]]:
        async with AsyncSession(project=daemon.root, socket=daemon.socket, autostart=False) as s:
            opened: list[Any] = []
            real_open = s._open_watch

            async def capture(*args: Any) -> Any:
                opened.append(await real_open(*args))
                return opened[-1]

            s._open_watch = capture  # type: ignore[method-assign]
            feed = s.watch(since=(await s.get_stats()).revision)  # it starts at the first next()
            await s.set_current_task("first")
            revisions = [(await feed.__anext__()).revision]
            c = daemon.conn()  # 15,000 changes while the consumer does not read
            note = b'{"jsonrpc":"2.0","method":"setContext","params":{"key":"k","value":%d}}\n'
            await asyncio.to_thread(c.send, b"".join(note % i for i in range(15_000)))
            await asyncio.sleep(1.5)
            held = opened[0].changes.qsize()
            async for ch in feed:
                revisions.append(ch.revision)
                if len(revisions) == 15_001:
                    break
            return held, revisions

    held, revisions = asyncio.run(asyncio.wait_for(main(), 60))
    assert held < QUEUE_HIGH + 2000  # the daemon kept the rest, not this process
    assert revisions == list(range(revisions[0], revisions[0] + 15_001))


def test_since_above_the_current_revision_is_compacted(make_daemon: Any, tmp_path: Path) -> None:
    """A watcher that read another database (here: the file swapped for an older copy
    while the daemon was stopped) resumes with a `since` this one never reached: it
    hears -32010 with the oldest revision and the current one, and re-reads."""
    d = make_daemon()
    with d.session() as s:
        s.set_current_task("before")
    d.stop()
    old = tmp_path / "old.db"
    shutil.copy(d.db, old)
    d.start()
    with d.session() as s:
        for i in range(50):
            s.set_context("k", i)
        ahead = s.get_stats().revision
    d.stop()
    shutil.copy(old, d.db)  # the database as it was before those 50 changes
    d.start()
    c = d.conn()
    current = c.result("getStats")["revision"]
    assert current < ahead
    r = c.call("watch", {"since": ahead})
    assert r["error"]["code"] == p.COMPACTED, r
    assert r["error"]["data"]["revision"] == current
    assert r["error"]["data"]["oldest"] <= current + 1
    assert c.result("watch", {"since": current})["revision"] == current  # re-read, then watch
    c.close()
