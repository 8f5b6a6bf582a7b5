"""Durability under kill -9, SIGTERM under load, full disks and file-size limits."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sessionmem import Session, errors

from conftest import Daemon, Raw, wait_for

AUDIT = Path(__file__).resolve().parent.parent / "benchmarks" / "kill9_audit.py"


@pytest.mark.parametrize("mode,interval", [("always", "1"), ("periodic", "0.05")])
def test_kill9_audit(tmp_path: Path, mode: str, interval: str) -> None:
    out = tmp_path / "audit.json"
    r = subprocess.run([sys.executable, str(AUDIT), "--cycles", "12", "--durability", mode,
                        "--interval", interval, "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert out.exists(), r.stdout + r.stderr
    figures = json.loads(out.read_text())
    assert r.returncode == 0, r.stdout + r.stderr
    assert figures["cycles"] == 12 and figures["acknowledged"] > 0
    assert figures["duplicates"] == 0 and figures["outOfOrder"] == 0 and figures["integrityFailures"] == 0
    if mode == "always":
        assert figures["lostAcknowledged"] == 0
        assert figures["restored"] >= figures["acknowledged"]


def test_periodic_loss_is_bounded_by_the_interval(make_daemon) -> None:
    d = make_daemon("--snapshot-interval", "0.1")
    with d.session() as s:
        for i in range(500):
            s.add_message("user", str(i))
        # Quiet for many intervals: everything acknowledged must be on disk by now.
        wait_for(lambda: s.get_stats().pendingChanges == 0, what="the periodic snapshot")
    d.kill9()
    d.start()
    with d.session() as s:
        assert [m.content for m in s.get_all_messages()] == [str(i) for i in range(500)]


def test_sigterm_under_load_saves_everything_acknowledged(make_daemon) -> None:
    d = make_daemon("--snapshot-interval", "3600")
    acked: dict[int, list[int]] = {k: [] for k in range(4)}
    stop = threading.Event()

    def writer(k: int) -> None:
        try:
            with Session(project=d.root, socket=d.socket, autostart=False, retry=False) as s:
                i = 0
                while not stop.is_set():
                    s.add_message("user", f"{k}-{i}")
                    acked[k].append(i)
                    i += 1
        except errors.SessionmemError:
            pass

    threads = [threading.Thread(target=writer, args=(k,)) for k in acked]
    for t in threads:
        t.start()
    wait_for(lambda: all(len(v) > 50 for v in acked.values()), what="writers under way")
    assert d.stop(signal.SIGTERM) == 0
    stop.set()
    for t in threads:
        t.join()
    d.start()
    with d.session() as s:
        got = [m.content for m in s.get_all_messages()]
    for k, idx in acked.items():
        mine = [int(c.split("-")[1]) for c in got if c.startswith(f"{k}-")]
        assert mine[: len(idx)] == idx  # every acknowledged one, in order, once


# -- full disks -------------------------------------------------------------------------
def fill_until_snapshots_fail(d: Daemon, s, size: int = 8192, limit: int = 2000) -> int:  # type: ignore[no-untyped-def]
    for i in range(limit):
        s.add_message("user", f"{i}:" + "x" * size)
        if i % 10 == 9:
            try:
                s.snapshot()
            except errors.PersistFailed:
                return i + 1
    raise AssertionError("the disk never filled up")


def test_full_disk_keeps_serving_then_recovers_with_nothing_lost(make_daemon, tiny_fs: Path) -> None:
    d = make_daemon("--snapshot-interval", "0.1", db=tiny_fs / "session.db")
    with d.session() as s:
        n = fill_until_snapshots_fail(d, s)
        st = s.get_stats()
        assert st.lastSnapshotError and ("full" in st.lastSnapshotError.lower() or "disk" in st.lastSnapshotError.lower())
        assert st.snapshotFailures >= 1 and st.pendingChanges > 0
        for i in range(n, n + 5):  # still serving from memory
            s.add_message("user", f"{i}:after")
        assert s.get_stats().messagesCount == n + 5
        subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_fs)], check=True)  # the disk recovers
        wait_for(lambda: s.get_stats().lastSnapshotError is None and s.get_stats().pendingChanges == 0,
                 what="the retried snapshot")
    assert "snapshot failed" in d.read_log() and "recovered" in d.read_log()
    assert d.stop() == 0
    d.start()
    with d.session() as s:
        assert [int(m.content.split(":")[0]) for m in s.get_all_messages()] == list(range(n + 5))


def test_sigterm_on_a_full_disk_says_what_was_not_saved(make_daemon, tiny_fs: Path) -> None:
    d = make_daemon("--snapshot-interval", "3600", db=tiny_fs / "session.db")
    with d.session() as s:
        n = fill_until_snapshots_fail(d, s)
    assert d.stop() == errors.EXIT_FAILURE
    log = d.read_log()
    assert "NOT SAVED" in log and "message(s)" in log
    dumps = list(d.socket.parent.glob("*.unsaved-*.json"))
    assert len(dumps) == 1
    doc = json.loads(dumps[0].read_text())
    unsaved = [m["content"] for b in doc["batches"] for c in b["sessions"] for m in c["messages"]]
    assert unsaved and unsaved[-1].startswith(f"{n - 1}:")


def test_always_mode_refuses_to_acknowledge_what_it_cannot_commit(make_daemon, tiny_fs: Path) -> None:
    d = make_daemon("--durability", "always", db=tiny_fs / "session.db")
    with d.session() as s:
        with pytest.raises(errors.PersistFailed) as ei:
            for i in range(2000):
                s.add_message("user", f"{i}:" + "x" * 8192)
        failed_at = i
        assert ei.value.code == -32004
        assert s.get_stats().messagesCount == failed_at + 1  # applied in memory, reported unsaved
        subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_fs)], check=True)
        s.add_message("user", f"{failed_at + 1}:later")  # commits the backlog too
        assert s.get_stats().pendingChanges == 0
    d.kill9()
    d.start()
    with d.session() as s:
        assert s.get_stats().messagesCount == failed_at + 2


def test_file_size_limit_is_an_error_not_a_crash(make_daemon) -> None:
    """RLIMIT_FSIZE makes writes fail with EFBIG (SIGXFSZ is ignored); raising the
    limit afterwards (like freeing disk space) lets the retried snapshot through."""
    d = make_daemon(start=False)
    d.args = ["--snapshot-interval", "0.1"]
    limit = 256 * 1024

    def lower_fsize() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    with open(d.log, "ab") as log:
        d.proc = subprocess.Popen(d.cmd(), stdout=log, stderr=log, env=d.env, preexec_fn=lower_fsize)
    wait_for(lambda: d._ready(), what="daemon")
    with d.session() as s:
        n = fill_until_snapshots_fail(d, s, size=4096)
        assert d.proc.poll() is None  # no SIGXFSZ death
        assert s.get_stats().lastSnapshotError
        resource.prlimit(d.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        wait_for(lambda: s.get_stats().pendingChanges == 0, what="the retried snapshot")
    assert d.stop() == 0
    d.start()
    with d.session() as s:
        assert s.get_stats().messagesCount == n


# -- bad databases at start --------------------------------------------------------------
@pytest.mark.parametrize("content", [b"", b"garbage " * 1000, b"SQLite format 3\x00" + b"\x00" * 84])
def test_daemon_refuses_a_bad_database_and_leaves_it_alone(make_daemon, content: bytes) -> None:
    d = make_daemon(start=False)
    d.db.parent.mkdir(parents=True)
    d.db.write_bytes(content)
    d.start(wait=False)
    assert d.proc is not None and d.proc.wait(30) == errors.EXIT_BAD_DATABASE
    assert d.db.read_bytes() == content
    assert not os.path.exists(str(d.db) + "-wal")
    log = d.read_log()
    assert "refusing to use" in log and str(d.db) in log and "--recover" in log
    assert not d.socket.exists()
    d.start("--recover")  # the explicit way out: moved aside, never deleted
    assert [p.read_bytes() for p in d.db.parent.glob("session.db.corrupt-*")] == [content]
    with d.session() as s:
        assert s.get_all_messages() == []


def test_a_big_first_snapshot_does_not_freeze_the_daemon(make_daemon) -> None:
    d = make_daemon("--snapshot-interval", "3600")
    c = d.conn()
    n = 200_000
    note = b'{"jsonrpc":"2.0","method":"addMessage","params":{"role":"user","content":"' + b"x" * 150 + b'"}}\n'
    for _ in range(n // 10_000):
        c.send(note * 10_000)  # notifications: no replies to read
    assert c.result("getStats")["messagesCount"] == n
    done = threading.Event()
    result: dict = {}

    def snap() -> None:
        try:
            # Its own patience: under a loaded machine the first 200k-row snapshot may
            # take longer than a connection's default 10 s; what the test checks is
            # that the other connection is answered meanwhile.
            result.update(Raw(d.socket, timeout=300).result("snapshot"))
        finally:
            done.set()  # also when it failed: the assertions below say how

    t = threading.Thread(target=snap)
    t.start()
    answered_during = 0
    other = d.conn()
    while not done.is_set():
        if other.result("getStats")["snapshotInProgress"]:
            answered_during += 1  # answered while the writer thread was busy
    t.join()
    assert result, "the snapshot call failed (see the thread's exception above)"
    assert result["written"] and result["messages"] == n
    assert answered_during > 0  # served while the snapshot was being written


def test_always_mode_big_batches_are_committed_before_their_replies(make_daemon) -> None:
    """A batch too big to commit on the loop's thread goes to the writer thread; its
    replies still wait for the commit, so a kill -9 right after them loses nothing."""
    d = make_daemon("--durability", "always", "--snapshot-interval", "3600")
    c = d.conn()
    for b in range(3):
        batch = [{"jsonrpc": "2.0", "method": "addMessage", "id": i,
                  "params": {"role": "user", "content": f"{b}-{i}"}} for i in range(1000)]
        c.send(batch)
        replies = c.recv()
        assert len(replies) == 1000 and all(r["result"] is None for r in replies)
    d.kill9()
    d.start()
    with d.session() as s:
        assert s.get_stats().messagesCount == 3000


def test_shutdown_method_refuses_to_exit_while_the_disk_refuses_writes(make_daemon, tiny_fs: Path) -> None:
    d = make_daemon("--snapshot-interval", "3600", db=tiny_fs / "session.db")
    with d.session() as s:
        n = fill_until_snapshots_fail(d, s)
        with pytest.raises(errors.PersistFailed):
            s.shutdown()
        assert d.proc is not None and d.proc.poll() is None  # still running, nothing lost
        assert s.get_stats().messagesCount == n
        subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_fs)], check=True)
        assert s.shutdown() is None
    assert d.proc.wait(30) == 0
    d.start()
    with d.session() as s:
        assert s.get_stats().messagesCount == n


def test_corruption_found_while_restoring_is_refused_then_recoverable(make_daemon) -> None:
    import sqlite3

    d = make_daemon("--snapshot-interval", "3600")
    with d.session() as s:
        for i in range(3000):
            s.add_message("user", f"{i}:" + "x" * 300)
    d.stop()
    c = sqlite3.connect(d.db)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    data = bytearray(d.db.read_bytes())
    # One page of the message table, header intact: of the newest messages (a start
    # reads them before it answers; the older ones load behind), and not a page of the
    # change log (whose frames hold the same text as JSON).
    pages = [i for i in range(4096, len(data), 4096)
             if b"x" * 300 in data[i : i + 4096] and b'"content"' not in data[i : i + 4096]]
    middle = pages[-1]
    data[middle : middle + 4096] = b"\xff" * 4096
    d.db.write_bytes(bytes(data))
    d.start(wait=False)
    assert d.proc is not None and d.proc.wait(30) == errors.EXIT_BAD_DATABASE
    assert d.db.read_bytes() == bytes(data)  # refused, untouched
    assert "refusing to use" in d.read_log()
    d.start("--recover")
    with d.session() as s:
        assert s.get_stats().messagesCount == 0
    assert [p.read_bytes() for p in d.db.parent.glob("session.db.corrupt-*") if not p.name.endswith(("-wal", "-shm"))] == [bytes(data)]


# -- shutdown at the wrong moment -------------------------------------------------------------
def _add_fast(c, n: int, size: int = 100) -> None:  # type: ignore[no-untyped-def]
    note = b'{"jsonrpc":"2.0","method":"addMessage","params":{"role":"user","content":"' + b"x" * size + b'"}}\n'
    for _ in range(n // 10_000):
        c.send(note * 10_000)  # notifications: no replies to read
    assert c.result("getStats")["messagesCount"] >= n


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_during_a_periodic_snapshot_writes_every_message_once(make_daemon, sig: int) -> None:
    """The stop cancels the snapshot timer while its write is on the writer thread; that
    write still commits, and the final snapshot must not write the same rows again."""
    d = make_daemon("--snapshot-interval", "1.5")
    c = d.conn()
    n = 300_000
    _add_fast(c, n)
    wait_for(lambda: c.result("getStats")["snapshotInProgress"], timeout=20, what="the periodic snapshot")
    d.send_signal(sig)
    assert d.proc is not None and d.proc.wait(60) == 0
    d.start()
    with d.session() as s:
        assert s.get_stats().messagesCount == n


def test_final_snapshot_failing_without_messages_still_dumps_the_unsaved_changes(make_daemon, tiny_fs: Path) -> None:
    """The unsaved batch holds a task, a file and a context change but no message (nearly
    every batch under `always`): the dump must be written all the same."""
    d = make_daemon("--snapshot-interval", "3600", db=tiny_fs / "session.db")
    with d.session() as s:
        s.add_message("user", "saved")
        s.snapshot()
        s.set_current_task("the task")
        s.track_open_file("a.py")
        s.set_context("k", {"v": 1})
    with contextlib.suppress(OSError), open(tiny_fs / "filler", "wb") as f:
        while True:  # leave the file system no room at all
            f.write(b"\0" * 4096)
            f.flush()
    assert d.stop() == errors.EXIT_FAILURE
    log = d.read_log()
    assert "NOT SAVED" in log and "Traceback" not in log
    dumps = list(d.socket.parent.glob("*.unsaved-*.json"))
    assert len(dumps) == 1, log
    doc = json.loads(dumps[0].read_text())
    [batch] = doc["batches"]
    [session] = batch["sessions"]
    assert session["messages"] == [] and session["currentTask"] == "the task"
    assert session["files"] == [{"path": "a.py", "tracked": True}]
    assert session["context"] == [{"key": "k", "value": {"v": 1}, "deleted": False}]
    assert not d.socket.exists()  # shutdown went all the way
