"""Ephemeral leases across several daemons of one PostgreSQL project (issue 17, design
§12-§13): an ephemeral lease (no ttl) is in the store with its holder, the PostgreSQL
connection of the daemon that granted it, so a daemon started later knows it, and when
that daemon dies (kill -9) or loses its connection the lease ends, by one daemon's
leaseExpired change every watcher sees once, in revision order. Real processes, a
real PostgreSQL server, a real kill -9."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon, Raw, wait_for
from test_pg_shared import changes

pytest.importorskip("psycopg", reason="the extra sessionmem[postgres] is not installed")

KEY = "example.com/team/leases"
HELD = -32014
# The bound the docs promise for a lease whose daemon died: PostgreSQL sees its
# connection end (at once on a kill: the socket closes), a surviving daemon's next
# heartbeat read (each second) finds the holder gone, a write turn ends it.
BOUND = 5.0


def start(make_daemon: Any, pg_url: str, tmp_path: Path, name: str) -> Daemon:
    return make_daemon("--store", pg_url, "--project-key", KEY, root=tmp_path / name, name=name)


def held_by(c: Raw, name: str, owner: str) -> dict[str, Any]:
    r = c.call("acquireLease", {"name": name, "owner": owner})
    assert "error" in r and r["error"]["code"] == HELD, r
    return r["error"]["data"]  # type: ignore[no-any-return]


def test_a_daemon_started_later_knows_an_ephemeral_lease(make_daemon: Any, pg_url: str, tmp_path: Path) -> None:
    a = start(make_daemon, pg_url, tmp_path, "a")
    holder = a.conn()
    lease = holder.result("acquireLease", {"name": "deploy", "owner": "agent-a"})
    assert lease["expiresAt"] is None and lease["ttlMs"] is None
    b = start(make_daemon, pg_url, tmp_path, "b")  # started after the lease was taken
    cb = b.conn()
    watcher = b.conn()
    watcher.result("watch", {"since": lease["token"]})
    # Listed, and held: neither an ephemeral nor a ttl acquire by another owner gets it.
    assert [(x["name"], x["owner"], x["token"]) for x in cb.result("listLeases")] == [
        ("deploy", "agent-a", lease["token"])]
    data = held_by(cb, "deploy", "agent-b")
    assert data["owner"] == "agent-a" and data["token"] == lease["token"] and data["expiresAt"] is None
    r = cb.call("acquireLease", {"name": "deploy", "owner": "agent-b", "ttlMs": 60_000})
    assert r["error"]["code"] == HELD, r
    # Fencing on b by a's lease works (it is held), and a stale token does not.
    cb.result("setContext", {"key": "k", "value": 1, "lease": {"name": "deploy", "token": lease["token"]}})
    r = cb.call("setContext", {"key": "k", "value": 2, "lease": {"name": "deploy", "token": lease["token"] - 1}})
    assert r["error"]["code"] == HELD, r
    # The same on a third daemon started later still.
    c = start(make_daemon, pg_url, tmp_path, "c").conn()
    assert held_by(c, "deploy", "agent-c")["owner"] == "agent-a"
    # Its connection closes: the lease ends (a's change), and then b can take it.
    holder.close()
    got = wait_for(lambda: "result" in (r := cb.call("acquireLease", {"name": "deploy", "owner": "agent-b"}))
                   and r["result"], 10, "the lease to end on b")
    assert got["token"] > lease["token"]
    seen = changes(watcher, got["token"])
    ops = [(ch["op"], ch["lease"]["name"], ch["lease"]["owner"]) for ch in seen if "lease" in ch]
    assert ops == [("leaseExpired", "deploy", "agent-a"), ("acquireLease", "deploy", "agent-b")]
    assert [ch["revision"] for ch in seen] == list(range(lease["token"] + 1, got["token"] + 1))
    # b's own ephemeral lease is known on a, and c, as the holder's.
    assert held_by(a.conn(), "deploy", "agent-x")["owner"] == "agent-b"
    assert held_by(c, "deploy", "agent-x")["owner"] == "agent-b"


def test_a_killed_daemons_ephemeral_leases_end_within_the_bound(
        make_daemon: Any, pg_url: str, tmp_path: Path) -> None:
    a, b, c = (start(make_daemon, pg_url, tmp_path, n) for n in ("a", "b", "c"))
    cb, cc = b.conn(), c.conn()
    since = cb.result("sync")["revision"]
    watchers = [b.conn(), c.conn()]
    for w in watchers:
        w.result("watch", {"since": since})
    ca = a.conn()
    one = ca.result("acquireLease", {"name": "one", "owner": "agent-a"})
    two = ca.result("acquireLease", {"name": "two", "owner": "agent-a", "session": ca.result("getSessionId")})
    ttl = ca.result("acquireLease", {"name": "ttl", "owner": "agent-a", "ttlMs": 600_000})
    for conn in (cb, cc):
        conn.result("sync")
        assert held_by(conn, "one", "agent-b")["owner"] == "agent-a"
    a.kill9()
    killed = time.monotonic()
    # Nobody writes: the survivors end the leases by themselves (reads only, here).
    wait_for(lambda: [x["name"] for x in cb.result("listLeases")] == ["ttl"], 30, "the leases to end on b")
    took = time.monotonic() - killed
    assert took < BOUND, took
    wait_for(lambda: [x["name"] for x in cc.result("listLeases")] == ["ttl"], 10, "the leases to end on c")
    got = cc.result("acquireLease", {"name": "one", "owner": "agent-c"})
    assert got["token"] > two["token"]
    # The ttl lease is untouched (it ends by its time, not by its daemon).
    assert held_by(cb, "ttl", "agent-b")["token"] == ttl["token"]
    # Every watcher saw each end once, in revision order, the same on both daemons.
    seen = [changes(w, got["token"]) for w in watchers]
    assert seen[0] == seen[1]
    assert [ch["revision"] for ch in seen[0]] == list(range(since + 1, got["token"] + 1))
    ends = sorted((ch["lease"]["name"], ch["lease"]["token"]) for ch in seen[0] if ch["op"] == "leaseExpired")
    assert ends == [("one", one["token"]), ("two", two["token"])]
    # And a daemon started now (a's host back) sees them ended, the new one held.
    a2 = start(make_daemon, pg_url, tmp_path, "a2").conn()
    assert sorted((x["name"], x["owner"]) for x in a2.result("listLeases")) == [("one", "agent-c"), ("ttl", "agent-a")]


def test_a_daemon_that_lost_its_connection_drops_its_ephemeral_leases(
        make_daemon: Any, pg_url: str, pg_cluster: Any, tmp_path: Path) -> None:
    """The PostgreSQL connection a lease was granted on ends (here: terminated by the
    server) while the daemon and its client live on: the lease ends (whoever turns
    first), once; the daemon does not go on believing its client holds it, and the
    client's fenced writes are refused."""
    a, b = (start(make_daemon, pg_url, tmp_path, n) for n in ("a", "b"))
    ca, cb = a.conn(), b.conn()
    since = ca.result("sync")["revision"]
    wa = a.conn()
    wa.result("watch", {"since": since})
    lease = ca.result("acquireLease", {"name": "doc", "owner": "agent-a"})
    ref = {"name": "doc", "token": lease["token"]}
    ca.result("setContext", {"key": "k", "value": 1, "lease": ref})
    db = pg_url.split("/")[3].split("?")[0]
    ended = pg_cluster.psql("SELECT pg_terminate_backend(holder_pid) FROM sessionmem_leases "
                            f"WHERE project_key = '{KEY}'", database=db)
    assert ended == "t"
    # a reconnects by itself; the lease ends (a's or b's change), and a agrees.
    wait_for(lambda: ca.call("setContext", {"key": "k", "value": 2, "lease": ref}).get("error", {}).get("code")
             == HELD, 30, "a's fenced write to be refused")
    assert [x["name"] for x in ca.result("listLeases")] == []
    got = cb.result("acquireLease", {"name": "doc", "owner": "agent-b"})
    ca.result("sync")
    assert held_by(ca, "doc", "agent-a")["owner"] == "agent-b"
    seen = changes(wa, got["token"])
    assert [ch["revision"] for ch in seen] == list(range(since + 1, got["token"] + 1))
    assert [ch["op"] for ch in seen if "lease" in ch] == ["acquireLease", "leaseExpired", "acquireLease"]
    assert ca.result("getContext", {"key": "k"}) == 1


def test_a_cleanly_stopped_daemons_ephemeral_leases_end_once(make_daemon: Any, pg_url: str, tmp_path: Path) -> None:
    a, b = (start(make_daemon, pg_url, tmp_path, n) for n in ("a", "b"))
    cb = b.conn()
    since = cb.result("sync")["revision"]
    wb = b.conn()
    wb.result("watch", {"since": since})
    ca = a.conn()
    lease = ca.result("acquireLease", {"name": "job", "owner": "agent-a"})
    cb.result("sync")
    assert held_by(cb, "job", "agent-b")["owner"] == "agent-a"
    assert a.stop() == 0  # its client still connected
    wait_for(lambda: cb.result("listLeases") == [], 10, "the lease to end on b")
    got = cb.result("acquireLease", {"name": "job", "owner": "agent-b"})
    seen = changes(wb, got["token"])
    assert [ch["revision"] for ch in seen] == list(range(since + 1, got["token"] + 1))
    assert [(ch["op"], ch["lease"]["token"]) for ch in seen] == [
        ("acquireLease", lease["token"]), ("leaseExpired", lease["token"]), ("acquireLease", got["token"])]


def test_a_lone_daemon_killed_ends_its_ephemeral_leases_when_it_starts_again(
        make_daemon: Any, pg_url: str, tmp_path: Path) -> None:
    """No other daemon was there to end them: the next start does, with a change."""
    a = start(make_daemon, pg_url, tmp_path, "a")
    c = a.conn()
    since = c.result("sync")["revision"]
    lease = c.result("acquireLease", {"name": "solo", "owner": "agent-a"})
    kept = c.result("acquireLease", {"name": "kept", "owner": "agent-a", "ttlMs": 600_000})
    a.kill9()
    a.start()
    c = a.conn()
    wait_for(lambda: [x["name"] for x in c.result("listLeases")] == ["kept"], 10, "the lease to end")
    w = a.conn()
    w.result("watch", {"since": since})
    last = c.result("sync")["revision"]
    seen = changes(w, last)
    assert [(ch["op"], ch["lease"]["name"]) for ch in seen] == [
        ("acquireLease", "solo"), ("acquireLease", "kept"), ("leaseExpired", "solo")]
    assert seen[-1]["lease"]["token"] == lease["token"] and last == kept["token"] + 1
    assert c.result("acquireLease", {"name": "solo", "owner": "agent-b"})["token"] > last


def test_a_postgresql_restart_ends_every_ephemeral_lease_once(
        make_daemon: Any, pg_url: str, pg_cluster: Any, tmp_path: Path) -> None:
    """Every daemon's store connection ends with the server: every ephemeral lease ends
    (whichever daemon reconnects first ends them), ttl leases stay; each watcher sees
    each end once, the same sequence on both daemons."""
    a, b = (start(make_daemon, pg_url, tmp_path, n) for n in ("a", "b"))
    ca, cb = a.conn(), b.conn()
    since = ca.result("sync")["revision"]
    watchers = [a.conn(), b.conn()]
    for w in watchers:
        w.result("watch", {"since": since})
    mine = ca.result("acquireLease", {"name": "on-a", "owner": "agent-a"})
    theirs = cb.result("acquireLease", {"name": "on-b", "owner": "agent-b"})
    ttl = ca.result("acquireLease", {"name": "ttl", "owner": "agent-a", "ttlMs": 600_000})
    pg_cluster.restart()
    for c in (ca, cb):
        wait_for(lambda c=c: "result" in (r := c.call("listLeases")) and [x["name"] for x in r["result"]] == ["ttl"],
                 30, "the ephemeral leases to end")
    again = ca.result("acquireLease", {"name": "on-b", "owner": "agent-a"})
    cb.result("sync")
    seen = [changes(w, again["token"]) for w in watchers]
    assert seen[0] == seen[1]
    assert [ch["revision"] for ch in seen[0]] == list(range(since + 1, again["token"] + 1))
    ends = sorted((ch["lease"]["name"], ch["lease"]["token"]) for ch in seen[0] if ch["op"] == "leaseExpired")
    assert ends == [("on-a", mine["token"]), ("on-b", theirs["token"])]
    assert held_by(cb, "ttl", "agent-b")["token"] == ttl["token"]


def test_the_listener_wakes_with_every_notification_of_a_batch(pg_url: str) -> None:
    """Two NOTIFYs committed together reach the listener in one packet: it wakes with
    the newest revision (before: the second was dropped, and waited for the heartbeat)."""
    import threading

    import psycopg

    from sessionmemd.pgshared import Listener, channel

    woken: list[int | None] = []
    got = threading.Event()

    def wake(revision: int | None) -> None:
        woken.append(revision)
        if revision == 6:
            got.set()

    listener = Listener(pg_url, channel(KEY), wake, "the test store")
    try:
        wait_for(lambda: woken, 10, "the listener to listen")
        with psycopg.connect(pg_url, autocommit=True) as c:
            with c.transaction():
                c.execute("SELECT pg_notify(%s, '5'), pg_notify(%s, '6')", (channel(KEY), channel(KEY)))
        assert got.wait(0.9), woken
    finally:
        listener.close()
