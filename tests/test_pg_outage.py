"""PostgreSQL stopped under load and started again (design §12's faults): writes fail at
once with -32004 naming the store, reads keep answering, nothing is acknowledged that is
not committed, nothing refused is kept; once the server is back the daemon reconnects by
itself, and a watcher has every committed change, once, in order. Real processes, a
real server (the run's cluster, stopped and started here)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon, Raw, wait_for

pytest.importorskip("psycopg", reason="the extra sessionmem[postgres] is not installed")

WRITERS = 4


class Writer(threading.Thread):
    """Adds messages one at a time on its own connection, each with an id, and keeps
    what was acknowledged and what was refused (with the errors)."""

    def __init__(self, d: Daemon, n: int) -> None:
        super().__init__(daemon=True)
        self.c = d.conn()
        self.n = n
        self.acked: list[str] = []
        self.refused: list[str] = []
        self.gated: list[str] = []  # refused before anything was applied (not the failed turn's)
        self.errors: list[dict[str, Any]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            content = f"w{self.n}-{i}"
            try:
                r = self.c.call("addMessage", {"role": "user", "content": content, "id": content})
            except OSError:  # the daemon was killed: this call's fate is unknown
                break
            (self.refused if "error" in r else self.acked).append(content)
            if "error" in r:
                self.errors.append(r["error"])
                if r["error"]["message"].startswith("writes are refused"):
                    self.gated.append(content)
                time.sleep(0.005)  # a refused write comes back at once: do not spin
            i += 1
        self.c.close()


def feed(c: Raw, since: int, until: int, timeout: float = 30) -> list[dict[str, Any]]:
    """The notifications after ``since`` up to revision ``until``."""
    got: list[dict[str, Any]] = []
    c.sock.settimeout(timeout)
    while not got or got[-1]["revision"] < until:
        msg = c.recv()
        assert msg.get("method") == "changed", msg
        got.append(msg["params"])
    return got


def test_postgresql_stopped_under_load_and_started_again(
        make_daemon: Any, pg_url: str, pg_cluster: Any, tmp_path: Path) -> None:
    d: Daemon = make_daemon("--store", pg_url, "--project-key", "outage", root=tmp_path / "proj")
    # A second daemon of the project (another host): its watcher must get the same.
    d2: Daemon = make_daemon("--store", pg_url, "--project-key", "outage", root=tmp_path / "host2", name="d2")
    watcher = d.conn()
    start = watcher.result("watch")["revision"]
    watcher2 = d2.conn()
    watcher2.result("watch", {"since": start})
    writers = [Writer(d, n) for n in range(WRITERS)]
    for w in writers:
        w.start()
    try:
        wait_for(lambda: sum(len(w.acked) for w in writers) >= 200, 30, "writes before the stop")
        pg_cluster.stop()
        wait_for(lambda: all(len(w.refused) >= 5 for w in writers), 30, "writes refused while it is down")
        reader = d.conn()
        # Refused at once, saying which store and why, never blaming a disk.
        t = time.perf_counter()
        r = reader.call("setContext", {"key": "k", "value": 1})
        assert time.perf_counter() - t < 1.0
        err = r["error"]
        assert err["code"] == -32004 and "PostgreSQL store" in err["message"], err
        assert "disk" not in err["message"] and "nothing was changed" in err["message"]
        assert err["data"]["store"].endswith("#outage")
        # sync cannot say what is committed: it says why instead of answering stale.
        r = reader.call("sync")
        assert r["error"]["code"] == -32004 and "PostgreSQL store" in r["error"]["message"], r
        # Reads keep answering from memory, which holds no write that was refused: not
        # those refused at the gate, nor those of the turn the outage broke (undone).
        gated = {c for w in writers for c in w.gated}
        seen = {m["content"] for m in reader.result("getAllMessages")}
        refused_now = {c for w in writers for c in w.refused}
        assert gated and seen and seen.isdisjoint(refused_now)
        assert reader.result("getContext", {"key": "k"}) is None
        stats = reader.result("getStats")
        assert stats["projectKey"] == "outage" and "PostgreSQL" not in stats["store"]
        assert stats["store"].startswith("postgresql://")
        time.sleep(0.3)  # a few reconnect attempts fail meanwhile
    finally:
        pg_cluster._pg_ctl_start()
    # Back: the daemon reconnects by itself and writes go through again.
    wait_for(lambda: reader.call("setContext", {"key": "k", "value": 2}).get("result", 0) is None, 30,
             "a write after PostgreSQL started again")
    time.sleep(0.3)
    for w in writers:
        w.stop.set()
    for w in writers:
        w.join(30)
    acked = [c for w in writers for c in w.acked]
    refused = {c for w in writers for c in w.refused}
    assert refused and acked
    for w in writers:
        for e in w.errors:
            assert e["code"] == -32004 and "PostgreSQL store" in e["message"] and "disk" not in e["message"], e
    # Memory and the store hold exactly what was acknowledged: nothing refused was
    # kept, in memory or retried into the database later.
    contents = [m["content"] for m in reader.result("getAllMessages")]
    assert sorted(contents) == sorted(acked)
    db = pg_url.split("/")[3].split("?")[0]
    stored = pg_cluster.psql("SELECT convert_from(content, 'UTF8') FROM sessionmem_messages "
                             "WHERE project_key = 'outage' ORDER BY seq", database=db).splitlines()
    assert sorted(stored) == sorted(acked)
    for w in writers:  # each writer's own order is kept
        mine = [c for c in contents if c.startswith(f"w{w.n}-")]
        assert mine == w.acked
    # The watcher got every committed change once, in revision order, no gap.
    last = reader.result("sync")["revision"]
    changes = feed(watcher, start, last)
    revisions = [ch["revision"] for ch in changes]
    assert revisions == list(range(start + 1, last + 1))
    assert sorted(ch["message"]["content"] for ch in changes if ch["op"] == "addMessage") == sorted(acked)
    assert [ch["value"] for ch in changes if ch["op"] == "setContext"] == [2]
    assert d2.conn().result("sync")["revision"] == last
    assert feed(watcher2, start, last) == changes  # the other daemon's watcher: the same, once
    stats = reader.result("getStats")
    assert stats["appliedRevision"] == stats["revision"] == last
    # A watcher resuming from before the outage on a new connection gets the same.
    again = d.conn()
    again.result("watch", {"since": start})
    assert [ch["revision"] for ch in feed(again, start, last)] == revisions
    assert "reconnected" in d.read_log()


def test_a_kill9_mid_write_loses_nothing_acknowledged(make_daemon: Any, pg_url: str, tmp_path: Path) -> None:
    root = tmp_path / "proj"
    d: Daemon = make_daemon("--store", pg_url, "--project-key", "k9-mid", root=root)
    writers = [Writer(d, n) for n in range(WRITERS)]
    for w in writers:
        w.start()
    wait_for(lambda: sum(len(w.acked) for w in writers) >= 300, 30, "writes before the kill")
    d.kill9()
    for w in writers:
        w.stop.set()
    for w in writers:
        w.join(30)
    d.start()
    c = d.conn()
    contents = [m["content"] for m in c.result("getAllMessages")]
    for w in writers:
        mine = [x for x in contents if x.startswith(f"w{w.n}-")]
        # Every acknowledged write is there, in order; at most the one in flight beyond.
        assert mine[:len(w.acked)] == w.acked
        assert len(mine) <= len(w.acked) + 1
    c.close()
