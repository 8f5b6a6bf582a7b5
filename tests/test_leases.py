"""Leases (design §13, issue 18): claims with an owner, an expiry and a fencing token,
through a real daemon. No fixed sleeps: each test waits for a notification or a state."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from typing import Any

import pytest

from sessionmem import protocol as p

from conftest import Daemon, Raw, wait_for

HELD = p.LEASE_HELD


# The same rules on both stores (the leases and transactions are decided by the daemon
# serving the project; under PostgreSQL, the one daemon its project key admits).
pytestmark = pytest.mark.both_stores


def _error(reply: dict[str, Any], code: int = HELD) -> dict[str, Any]:
    assert "error" in reply, reply
    assert reply["error"]["code"] == code, reply
    return reply["error"]  # type: ignore[no-any-return]


def _next_note(w: Raw, op: str) -> dict[str, Any]:
    """The next ``changed`` notification with ``op`` (others skipped)."""
    while True:
        msg = w.recv()
        if msg.get("method") == "changed" and msg["params"]["op"] == op:
            return msg["params"]  # type: ignore[no-any-return]


def test_acquire_renew_release_list_and_the_held_error(daemon: Daemon) -> None:
    a, b, w = daemon.conn(), daemon.conn(), daemon.conn()
    assert "leases" in a.result("hello")["capabilities"]
    w.result("watch")
    lease = a.result("acquireLease", {"name": "build", "owner": "agent-a", "ttlMs": 60_000})
    sid = a.result("getSessionId")
    assert lease["name"] == "build" and lease["owner"] == "agent-a" and lease["sessionId"] == sid
    note = _next_note(w, "acquireLease")
    assert lease["token"] == note["revision"]  # the token is the revision of the acquisition
    assert note["lease"]["token"] == lease["token"] and note["sessionId"] == sid
    assert lease["expiresAt"] >= note["at"] + 60_000 - 5

    err = _error(b.call("acquireLease", {"name": "build", "owner": "agent-b", "ttlMs": 1000}))
    assert err["data"]["owner"] == "agent-a" and err["data"]["token"] == lease["token"]
    assert err["data"]["expiresAt"] == lease["expiresAt"]
    assert "agent-a" in err["message"]

    # The same owner again: renewed, token kept, no change.
    again = a.result("acquireLease", {"name": "build", "owner": "agent-a", "ttlMs": 120_000})
    assert again["token"] == lease["token"] and again["expiresAt"] > lease["expiresAt"]
    renewed = a.result("renewLease", {"name": "build", "token": lease["token"], "ttlMs": 90_000})
    assert renewed["token"] == lease["token"]
    _error(a.call("renewLease", {"name": "build", "token": lease["token"] + 1}))
    assert [x["name"] for x in b.result("listLeases")] == ["build"]
    assert b.result("listLeases", {"session": sid})[0]["owner"] == "agent-a"

    _error(b.call("releaseLease", {"name": "build", "token": lease["token"] - 1}))
    assert b.result("releaseLease", {"name": "build", "token": lease["token"]}) is None
    note = _next_note(w, "releaseLease")
    assert note["lease"]["name"] == "build"
    assert b.result("listLeases") == []
    _error(b.call("releaseLease", {"name": "build", "token": lease["token"]}))  # stale now
    second = b.result("acquireLease", {"name": "build", "owner": "agent-b", "ttlMs": 1000})
    assert second["token"] > lease["token"]  # a later holder's token is larger

    _error(a.call("acquireLease", {"name": "", "owner": "x"}), p.INVALID_PARAMS)
    _error(a.call("acquireLease", {"name": "n" * 257, "owner": "x"}), p.INVALID_PARAMS)
    _error(a.call("acquireLease", {"name": "n", "owner": "o" * 129}), p.INVALID_PARAMS)
    for c in (a, b, w):
        c.close()


RACER = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rwb")
sys.stdin.readline()  # the start signal: every racer is connected
f.write(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "acquireLease",
                    "params": {"name": "race", "owner": sys.argv[2], "ttlMs": 60000}}).encode() + b"\n")
f.flush()
reply = json.loads(f.readline())
print("won" if "result" in reply else reply["error"]["code"], flush=True)
sys.stdin.readline()  # hold the connection until told
"""


@pytest.mark.parametrize("round_", range(3))
def test_ten_processes_race_one_lease_and_one_holds_it(daemon: Daemon, round_: int) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(daemon.socket), f"racer-{i}"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for i in range(10)]
    try:
        for pr in procs:
            assert pr.stdin is not None
            pr.stdin.write("go\n")
            pr.stdin.flush()
        outcomes = []
        for pr in procs:
            assert pr.stdout is not None
            outcomes.append(pr.stdout.readline().strip())
        assert outcomes.count("won") == 1, outcomes
        assert outcomes.count(str(HELD)) == 9, outcomes
        holders = daemon.conn().result("listLeases")
        assert len(holders) == 1 and holders[0]["owner"] == f"racer-{outcomes.index('won')}"
    finally:
        for pr in procs:
            pr.kill()
            pr.wait(10)
    daemon.conn().result("releaseLease", {"name": "race", "token": holders[0]["token"]})


HOLDER = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "acquireLease",
                      "params": {"name": "eph", "owner": "holder"}}).encode() + b"\n")
print(s.makefile().readline(), flush=True)
sys.stdin.readline()
"""


def test_an_ephemeral_lease_ends_when_its_client_is_killed(daemon: Daemon) -> None:
    w = daemon.conn()
    w.result("watch")
    pr = subprocess.Popen([sys.executable, "-c", HOLDER, str(daemon.socket)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
    try:
        assert pr.stdout is not None
        got = pr.stdout.readline()
        assert '"result"' in got and '"expiresAt":null' in got, got
        other = daemon.conn()
        _error(other.call("acquireLease", {"name": "eph", "owner": "other", "ttlMs": 5000}))
        os.kill(pr.pid, signal.SIGKILL)
        note = _next_note(w, "leaseExpired")
        assert note["lease"]["name"] == "eph" and note["lease"]["owner"] == "holder"
        assert other.result("listLeases") == []
        assert other.result("acquireLease", {"name": "eph", "owner": "other", "ttlMs": 5000})["owner"] == "other"
    finally:
        pr.kill()
        pr.wait(10)


def test_a_ttl_lease_expires_while_the_daemon_is_idle(daemon: Daemon) -> None:
    w = daemon.conn()
    w.result("watch")
    c = daemon.conn()
    lease = c.result("acquireLease", {"name": "short", "owner": "a", "ttlMs": 1500})
    c.close()  # a ttl lease does not end with its connection
    note = _next_note(w, "acquireLease")
    assert note["lease"]["token"] == lease["token"]
    # No call meanwhile: only the daemon's timer can end it.
    w.sock.settimeout(30)
    note = _next_note(w, "leaseExpired")
    assert note["lease"]["name"] == "short" and note["at"] >= lease["expiresAt"]
    assert note["revision"] == lease["token"] + 1


def test_a_stale_holders_write_is_refused_after_a_successor_took_the_lease(daemon: Daemon) -> None:
    old, new = daemon.conn(), daemon.conn()
    first = old.result("acquireLease", {"name": "doc", "owner": "old", "ttlMs": 1200})
    fence = {"name": "doc", "token": first["token"]}
    old.result("setContext", {"key": "doc", "value": "v1", "lease": fence})
    # The old holder stalls past its expiry; the successor takes the lease.
    wait_for(lambda: "error" not in new.call("acquireLease", {"name": "doc", "owner": "new", "ttlMs": 60_000}),
             20, "the lease to expire")
    second = new.result("listLeases")[0]
    assert second["owner"] == "new" and second["token"] > first["token"]
    rev = old.result("getStats")["revision"]
    for method, params in [("setContext", {"key": "doc", "value": "stale"}),
                           ("addMessage", {"role": "user", "content": "stale"}),
                           ("setCurrentTask", {"task": "stale"}),
                           ("trackOpenFile", {"filePath": "stale.py"}),
                           ("deleteContext", {"key": "doc"}),
                           ("transact", {"ops": [{"method": "setContext", "params": {"key": "doc", "value": "x"}}]})]:
        err = _error(old.call(method, {**params, "lease": fence}))
        assert err["data"]["owner"] == "new" and err["data"]["token"] == second["token"], method
    assert old.result("getStats")["revision"] == rev  # nothing changed
    assert old.result("getContext", {"key": "doc"}) == "v1"
    assert old.result("getAllMessages") == []
    new.result("setContext", {"key": "doc", "value": "v2", "lease": {"name": "doc", "token": second["token"]}})
    assert new.result("getContext", {"key": "doc"}) == "v2"
    # A lease inside a transaction's op is refused: the transaction is fenced as a whole.
    _error(new.call("transact", {"ops": [{"method": "setContext", "params": {
        "key": "k", "value": 1, "lease": {"name": "doc", "token": second["token"]}}}]}), p.INVALID_PARAMS)


def test_an_expired_lease_fences_before_the_timer_ran(daemon: Daemon) -> None:
    c = daemon.conn()
    lease = c.result("acquireLease", {"name": "quick", "owner": "a", "ttlMs": 1000})
    fence = {"name": "quick", "token": lease["token"]}
    wait_for(lambda: time.time() * 1000 > lease["expiresAt"] + 1, 10, "the expiry time")
    # Whether or not the timer ended it yet, the write is refused.
    _error(c.call("setContext", {"key": "k", "value": 1, "lease": fence}))
    assert c.result("getContext", {"key": "k"}) is None


def _rows(daemon: Daemon) -> list[tuple[Any, ...]]:
    with sqlite3.connect(daemon.db) as db:
        return db.execute("SELECT name, owner, token, expires_at FROM sessionmem_leases ORDER BY name").fetchall()


@pytest.mark.sqlite_only("reads the SQLite file; PostgreSQL: test_pg_daemon.py::test_ttl_leases_survive_a_kill9_under_postgresql")
@pytest.mark.parametrize("stop", ["clean", "kill9"])
def test_leases_survive_a_restart_ephemeral_ones_end(make_daemon: Any, stop: str) -> None:
    d = make_daemon()
    c = d.conn()
    long = c.result("acquireLease", {"name": "long", "owner": "a", "ttlMs": 600_000})
    soon = c.result("acquireLease", {"name": "soon", "owner": "a", "ttlMs": 2000})
    c.result("acquireLease", {"name": "eph", "owner": "a"})
    c.result("renewLease", {"name": "long", "token": long["token"], "ttlMs": 700_000})
    if stop == "clean":
        d.stop()
    else:
        c.result("snapshot")
        d.kill9()
    c.close()
    d.start()
    w = d.conn()
    w.result("watch", {"since": 0}) if stop == "clean" else w.result("watch")
    c = d.conn()
    names = {x["name"]: x for x in c.result("listLeases")}
    assert "eph" not in names  # ephemeral: ended with its connection, and with the daemon
    assert names["long"]["token"] == long["token"] and names["long"]["expiresAt"] > long["expiresAt"]
    # Its expiry still counted in wall-clock time across the restart.
    w.sock.settimeout(30)
    note = _next_note(w, "leaseExpired")
    while note["lease"]["name"] != "soon":
        note = _next_note(w, "leaseExpired")
    assert note["at"] >= soon["expiresAt"]
    assert [x["name"] for x in c.result("listLeases")] == ["long"]
    # The token of a new acquisition is still larger than any before the restart.
    again = c.result("acquireLease", {"name": "soon", "owner": "b", "ttlMs": 60_000})
    assert again["token"] > long["token"]
    d.stop()
    assert {r[0] for r in _rows(d)} == {"long", "soon"}


@pytest.mark.sqlite_only("reads the SQLite file; PostgreSQL: test_pg_daemon.py::test_ttl_leases_survive_a_kill9_under_postgresql")
def test_under_always_an_acquire_is_acknowledged_only_once_committed(make_daemon: Any) -> None:
    d = make_daemon("--durability", "always")
    c = d.conn()
    lease = c.result("acquireLease", {"name": "durable", "owner": "a", "ttlMs": 600_000})
    assert _rows(d) == [("durable", "a", lease["token"], lease["expiresAt"])]  # on disk before the reply
    renewed = c.result("renewLease", {"name": "durable", "token": lease["token"]})
    assert _rows(d)[0][3] == renewed["expiresAt"]
    d.kill9()
    d.start()
    assert d.conn().result("listLeases")[0]["token"] == lease["token"]
    c = d.conn()
    c.result("releaseLease", {"name": "durable", "token": lease["token"]})
    assert _rows(d) == []


# -- the pure rules of a shared store's lease table (leases.py; no daemon) ----------------
def test_a_shared_table_writes_its_own_ephemeral_leases_only() -> None:
    from sessionmemd.leases import Held, Leases

    sqlite, shared = Leases(), Leases(shared=True)
    mine = object()
    for t in (sqlite, shared):
        t.put(Held("eph", "a", 5, None, None, "s", mine))
        t.put(Held("ttl", "a", 6, 1_000, 500, "s"))
        t.put(Held("theirs", "b", 7, None, None, "s"))  # another daemon's (no connection here)
    assert sqlite.drain() == [("eph", None), ("ttl", ("ttl", "a", 6, 1_000, 500, "s")), ("theirs", None)]
    # Shared: its own ephemeral lease is written (the store adds the holder); another
    # daemon's is not (its row names that daemon), even renewed here without a ttl.
    assert shared.drain() == [("eph", ("eph", "a", 5, None, None, "s")), ("ttl", ("ttl", "a", 6, 1_000, 500, "s"))]
    shared.extend(shared.held["theirs"], None, 0)
    assert shared.drain() == []


def test_a_shared_table_reloaded_keeps_connections_and_ends_gone_holders() -> None:
    from sessionmemd.leases import Held, Leases

    mine, closed = object(), object()
    t = Leases(shared=True)
    t.put(Held("live", "a", 5, None, None, "s", mine))
    t.put(Held("closing", "a", 6, 900, None, "s", None))  # its connection closed at 900
    t.put(Held("cut", "a", 7, None, None, "s", closed))  # ours, holder gone (reconnected)
    t.put(Held("lost", "a", 12, None, None, "s", mine))  # taken by a change never committed
    t.put(Held("old", "a", 8, None, None, "s", mine))  # ended and taken again elsewhere
    t.put(Held("seen", "b", 9, 950, None, "s"))  # found gone before, at 950
    rows = [("live", "a", 5, None, None, "s"), ("closing", "a", 6, None, None, "s"),
            ("cut", "a", 7, 1_000, None, "s"), ("lost", "b", 12, None, None, "s"),
            ("old", "c", 11, None, None, "s"), ("seen", "b", 9, 1_000, None, "s"),
            ("ttl", "a", 3, 5_000, 100, "s")]
    new = t.reloaded(rows, 2_000, upto=11)
    assert new.shared
    h = new.held
    assert h["live"].conn is mine and h["live"].expires_at is None and new.of_connection(mine) == ["live"]
    assert h["closing"].expires_at == 900  # still ends, at its close
    assert h["cut"].conn is None and h["cut"].expires_at == 1_000  # gone: ends, nobody's
    assert h["lost"].owner == "b" and h["lost"].conn is None  # token 12 > upto: the store's
    assert h["old"].owner == "c" and h["old"].token == 11
    assert h["seen"].expires_at == 950  # the first time it was found gone stays
    assert h["ttl"].ttl_ms == 100
    # A store clock ahead of ours cannot put an end off: ours is the latest it can be.
    assert t.reloaded([("cut", "a", 7, 9_000, None, "s")], 2_000).held["cut"].expires_at == 2_000
    assert sorted(new.due(1_000)) == ["closing", "cut", "seen"]
    assert [x.name for x in new.listed(None, 1_000)] == ["live", "lost", "old", "ttl"]
    # Nothing of a reload is to be written.
    assert new.drain() == []


def test_a_shared_table_never_writes_a_lease_that_is_ending() -> None:
    """A renewal without a ttl of an ephemeral lease whose connection closed (or whose
    holder was found gone, with an end a store clock ahead of ours put in the future)
    writes nothing: deleting its row without its change would hide its end."""
    from sessionmemd.leases import Held, Leases

    t = Leases(shared=True)
    h = Held("x", "a", 5, 2_000, None, "s", None)
    t.held["x"] = h
    assert t.live("x", 1_000) is h
    t.extend(h, None, 1_000)
    assert t.drain() == [] and h.expires_at == 2_000
    t.extend(h, 300, 1_000)  # a ttl given: a ttl lease from now on, written
    assert t.drain() == [("x", ("x", "a", 5, 1_300, 300, "s"))]
