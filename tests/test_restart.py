"""Persistence across real restarts: SIGTERM, SIGINT, signals that snapshot, shutdown."""

from __future__ import annotations

import pytest

import signal
import sqlite3
import time

from conftest import Daemon, wait_for

# Every daemon test here runs against both stores (conftest.pytest_generate_tests).
pytestmark = pytest.mark.both_stores


def fill(d: Daemon) -> str:
    with d.session() as s:
        s.set_current_task("persist me")
        s.set_active_ticket("T-9")
        for i, ts in enumerate([50, 10, 30]):
            s.add_message("user", f"m{i}", timestamp=ts)
        for f in ["z", "a", "m"]:
            s.track_open_file(f)
        s.set_context("k", {"nested": [1, "x"]})
        return s.get_session_id()


def check(d: Daemon, sid: str) -> None:
    with d.session() as s:
        assert s.get_session_id() == sid
        assert s.get_current_task() == "persist me" and s.get_active_ticket() == "T-9"
        assert [(m.content, m.timestamp) for m in s.get_all_messages()] == [("m0", 50), ("m1", 10), ("m2", 30)]
        assert s.get_open_files() == ["z", "a", "m"]
        assert s.get_all_context() == {"k": {"nested": [1, "x"]}}


def test_sigterm_then_restart_restores_everything_in_order(make_daemon) -> None:
    d = make_daemon("--snapshot-interval", "3600")  # only the final snapshot can save it
    sid = fill(d)
    assert d.stop(signal.SIGTERM) == 0
    assert not d.socket.exists()  # our own socket is cleaned up
    d.start()
    check(d, sid)


def test_sigint_also_snapshots(make_daemon) -> None:
    d = make_daemon("--snapshot-interval", "3600")
    sid = fill(d)
    assert d.stop(signal.SIGINT) == 0
    d.start()
    check(d, sid)


def rows(d: Daemon) -> int:
    c = sqlite3.connect(d.db)
    try:
        return c.execute("SELECT count(*) FROM session_messages").fetchone()[0]
    finally:
        c.close()


@pytest.mark.sqlite_only("periodic durability: changes unsaved until a signal")
def test_sigusr1_and_sighup_snapshot_and_keep_running(make_daemon) -> None:
    d = make_daemon("--snapshot-interval", "3600")
    with d.session() as s:
        s.add_message("user", "a")
        d.send_signal(signal.SIGUSR1)
        wait_for(lambda: rows(d) == 1, what="SIGUSR1 snapshot")
        s.add_message("user", "b")
        d.send_signal(signal.SIGHUP)
        wait_for(lambda: rows(d) == 2, what="SIGHUP snapshot")
        # The row is visible once committed; the writer's bookkeeping follows a moment later.
        wait_for(lambda: s.get_stats().snapshotsWritten >= 2, what="both snapshots counted")
        assert len(s.get_all_messages()) == 2  # still serving


@pytest.mark.sqlite_only("periodic durability")
def test_periodic_snapshot_without_any_signal(make_daemon) -> None:
    d = make_daemon("--snapshot-interval", "0.05")
    with d.session() as s:
        s.add_message("user", "a")
        # The row is visible once committed; the writer's bookkeeping follows a moment later.
        wait_for(lambda: rows(d) == 1 and s.get_stats().pendingChanges == 0, what="periodic snapshot")
        assert s.get_stats().lastSnapshotAt is not None


@pytest.mark.sqlite_only("periodic durability: a kill -9 loses what was not snapshotted")
def test_kill9_after_a_snapshot_keeps_what_was_snapshotted(make_daemon) -> None:
    d = make_daemon("--snapshot-interval", "3600")
    sid = fill(d)
    with d.session() as s:
        s.snapshot()
        s.add_message("user", "after the snapshot")
    d.kill9()
    assert d.socket.exists()  # a killed daemon leaves its socket behind...
    d.start()  # ...which the next one cleans up
    check(d, sid)


def test_shutdown_method_snapshots_replies_and_exits(make_daemon) -> None:
    d = make_daemon("--snapshot-interval", "3600")
    sid = fill(d)
    c = d.conn()
    assert c.result("shutdown") is None
    assert d.proc is not None and d.proc.wait(10) == 0
    d.start()
    check(d, sid)


def test_clear_survives_a_restart(make_daemon) -> None:
    d = make_daemon("--snapshot-interval", "3600")
    fill(d)
    with d.session() as s:
        new = s.clear()
        s.add_message("user", "fresh")
    d.stop()
    d.start()
    with d.session() as s:
        assert s.get_session_id() == new
        assert [m.content for m in s.get_all_messages()] == ["fresh"]
        assert s.get_current_task() is None and s.get_open_files() == []


def test_idle_session_keeps_its_id_across_restarts(make_daemon) -> None:
    d = make_daemon()
    with d.session() as s:
        sid = s.get_session_id()
    d.stop()
    time.sleep(0.01)
    d.start()
    with d.session() as s:
        assert s.get_session_id() == sid


def test_empty_strings_survive_a_restart(make_daemon) -> None:
    d = make_daemon()
    with d.session() as s:
        s.set_current_task("")
        s.set_active_ticket("")
        s.set_context("", "")
        s.track_open_file("")
    d.stop()
    d.start()
    with d.session() as s:
        assert s.get_current_task() == "" and s.get_active_ticket() == ""
        assert s.get_all_context() == {"": ""} and s.get_open_files() == [""]
