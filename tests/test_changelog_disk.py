"""The change log on disk: each snapshot adds the changes it carries, a clean stop adds
only the rest, and a start answers before reading it back (issue 16, item 23)."""

from __future__ import annotations

import sqlite3
from typing import Any

from sessionmem import protocol as p

from conftest import Daemon, wait_for


def _logged(d: Daemon) -> tuple[int, int, int]:
    """(rows, oldest, newest) of the change log in the database file."""
    c = sqlite3.connect(d.db)
    try:
        n, lo, hi = c.execute("SELECT count(*), min(revision), max(revision) FROM sessionmem_changes").fetchone()
        return n, lo or 0, hi or 0
    finally:
        c.close()


def test_snapshots_carry_the_log_to_disk_and_a_restart_resumes_from_it(make_daemon: Any) -> None:
    d: Daemon = make_daemon("--snapshot-interval", "0.05")
    with d.session() as s:
        start = s.get_stats().revision
        for i in range(200):
            s.set_context("k", i)
        rev = s.get_stats().revision
    # Written by the periodic snapshots while the daemon runs, not by the stop.
    wait_for(lambda: _logged(d)[2] == rev, what="the log on disk to reach the last change")
    assert _logged(d)[0] >= 200
    d.stop()
    d.start()
    c = d.conn()
    assert c.result("watch", {"since": start})["revision"] == rev
    got = [c.recv()["params"] for _ in range(200)]
    assert [g["revision"] for g in got] == list(range(start + 1, rev + 1))
    assert [g["value"] for g in got] == list(range(200))
    c.close()


def test_the_log_on_disk_is_trimmed_with_the_log_in_memory(make_daemon: Any) -> None:
    """The copy on disk keeps what the daemon keeps (10,000 changes and up to 1,024 more),
    not every change ever made."""
    d: Daemon = make_daemon("--snapshot-interval", "0.05")
    c = d.conn()
    note = b'{"jsonrpc":"2.0","method":"setContext","params":{"key":"k","value":%d}}\n'
    c.send(b"".join(note % i for i in range(25_000)))
    rev = c.result("getStats")["revision"]
    wait_for(lambda: _logged(d)[2] == rev, what="the log on disk to reach the last change")
    wait_for(lambda: _logged(d)[0] <= 10_000 + 1_024, what="the log on disk trimmed")
    n, lo, hi = _logged(d)
    assert hi - lo + 1 == n  # consecutive, ending at the last change
    c.close()


def test_after_a_crash_the_old_log_is_not_replayed(make_daemon: Any) -> None:
    d: Daemon = make_daemon("--snapshot-interval", "0.05")
    with d.session() as s:
        start = s.get_stats().revision
        for i in range(50):
            s.set_context("k", i)
        rev = s.get_stats().revision
    wait_for(lambda: _logged(d)[2] == rev, what="the log on disk")
    d.kill9()
    d.start()
    c = d.conn()
    r = c.call("watch", {"since": start})
    assert r["error"]["code"] == p.COMPACTED, r  # the revisions after it may have a gap
    now = c.result("getStats")["revision"]
    assert c.result("watch", {"since": now})["revision"] == now
    c.close()
    # The stale rows go with the first snapshot that writes new ones.
    with d.session() as s:
        s.set_context("k", "after")
        rev2 = s.get_stats().revision
    wait_for(lambda: _logged(d)[1] == rev2, what="the stale rows dropped")
