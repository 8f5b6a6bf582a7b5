"""`transact`: several changes to one session, all or none, in consecutive revisions,
one transaction on disk (design §14; issue 18)."""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import pytest

from sessionmem import AsyncSession, Conflict, InvalidParams, errors
from sessionmem import protocol as p

from conftest import Daemon, Raw


# The same rules on both stores (the leases and transactions are decided by the daemon
# serving the project; under PostgreSQL, the one daemon its project key admits).
pytestmark = pytest.mark.both_stores


def _ops(*ops: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"method": m, "params": params} for m, params in ops]


def test_every_op_applies_in_consecutive_revisions_with_its_result(daemon: Daemon) -> None:
    c = daemon.conn()
    w = daemon.conn()
    start = w.result("watch")["revision"]
    c.result("addMessage", {"role": "user", "content": "first"})
    results = c.result("transact", {"ops": _ops(
        ("setCurrentTask", {"task": "plan"}),
        ("setContext", {"key": "step", "value": 1, "expect": None}),
        ("addMessage", {"role": "assistant", "content": "planned", "data": {"n": 1}}),
        ("setContext", {"key": "step", "value": 2, "expect": 1}),  # sees the op before it
        ("trackOpenFile", {"filePath": "a.py"}),
        ("setActiveTicket", {"ticketId": "T-1", "expect": None}),
        ("trimMessages", {"keep": 1}),
    )})
    assert results == [None, None, None, None, None, None, 1]
    notes = [w.recv()["params"] for _ in range(8)]
    assert [n["revision"] for n in notes] == list(range(start + 1, start + 9))
    assert [n["op"] for n in notes[1:]] == ["setCurrentTask", "setContext", "addMessage", "setContext",
                                            "trackOpenFile", "setActiveTicket", "trimMessages"]
    assert len({n["at"] for n in notes[1:]}) == 1  # one clock reading for the whole transaction
    assert c.result("getContext", {"key": "step"}) == 2
    assert [m["content"] for m in c.result("getAllMessages")] == ["planned"]
    c.close()
    w.close()


def test_a_failing_op_fails_them_all_naming_its_index(daemon: Daemon) -> None:
    c = daemon.conn()
    c.result("setContext", {"key": "k", "value": "v"})
    before = c.result("getStats")["revision"]
    r = c.call("transact", {"ops": _ops(
        ("setCurrentTask", {"task": "never"}),
        ("addMessage", {"role": "user", "content": "never"}),
        ("deleteContext", {"key": "k", "expect": "v"}),
        ("setContext", {"key": "k", "value": 1, "expect": "v"}),  # deleted by op 2: fails
    )})
    assert r["error"]["code"] == p.CONFLICT, r
    assert r["error"]["data"]["index"] == 3 and r["error"]["data"]["current"] is None
    assert "op 3 (setContext)" in r["error"]["message"]
    stats = c.result("getStats")
    assert stats["revision"] == before and stats["messagesCount"] == 0
    assert c.result("getCurrentTask") is None and c.result("getContext", {"key": "k"}) == "v"
    # A pop's expect sees the message an earlier op added.
    r = c.call("transact", {"ops": _ops(
        ("addMessage", {"role": "user", "content": "x", "timestamp": 5}),
        ("popMessage", {"expect": {"role": "user", "content": "y", "timestamp": 5}}),
    )})
    assert r["error"]["data"]["index"] == 1 and r["error"]["data"]["current"]["content"] == "x"
    assert c.result("getStats")["messagesCount"] == 0
    popped = c.result("transact", {"ops": _ops(
        ("addMessage", {"role": "user", "content": "x", "timestamp": 5, "id": "m1"}),
        ("addMessage", {"role": "user", "content": "x again", "id": "m1"}),  # a repeat: nothing
        ("popMessage", {"expect": {"role": "user", "content": "x", "timestamp": 5}}),
    )})
    assert popped[2]["content"] == "x" and popped[2]["id"] == "m1"
    c.close()


def test_bad_transactions_are_refused_whole_with_the_reason(daemon: Daemon) -> None:
    c = daemon.conn()
    before = c.result("getStats")["revision"]
    cases = [
        ({"ops": []}, "empty"),
        ({"ops": _ops(("clear", {}))}, "cannot be part of a transaction"),
        ({"ops": _ops(("setContext", {"key": "a", "value": 1}), ("setContext", {"key": "b"}))}, "ops[1]"),
        ({"ops": _ops(("setContext", {"key": "a", "value": 1, "session": "other"}))}, "session"),
        ({"ops": [{"method": "setContext", "params": {"key": "a", "value": 1}}] * 10_001}, "at most 10000"),
        ({"ops": _ops(("addMessage", {"role": "robot", "content": "x"}))}, "ops[0].params.role"),
    ]
    for params, says in cases:
        r = c.call("transact", params)
        assert r["error"]["code"] == p.INVALID_PARAMS and says in r["error"]["message"], (says, r)
    r = c.call("transact", {"ops": _ops(("setCurrentTask", {"task": "x"})), "expectRevision": 123456})
    assert r["error"]["code"] == p.CONFLICT and r["error"]["data"]["current"] == 0
    assert c.result("getStats")["revision"] == before
    c.close()


def test_expect_revision_is_optimistic_concurrency_on_the_session(daemon: Daemon) -> None:
    with daemon.session() as s:
        s.set_current_task("a")
        rev = next(i.revision for i in s.list_sessions() if i.current)
        with s.transaction(expect_revision=rev) as t:
            t.set_current_task("b")
            t.add_message("user", "took b")
        assert t.results == [None, None]
        with pytest.raises(Conflict) as e, s.transaction(expect_revision=rev) as t:
            t.set_current_task("c")  # rev is stale now
        assert e.value.data["current"] == rev + 2
        assert s.get_current_task() == "b"


def test_the_clients_send_one_transact_on_exit_and_none_on_an_exception(daemon: Daemon) -> None:
    w = daemon.conn()
    start = w.result("watch")["revision"]
    with daemon.session() as s:
        with pytest.raises(RuntimeError), s.transaction() as t:
            t.set_context("never", 1)
            raise RuntimeError("changed my mind")
        assert s.get_context("never") is None
        with s.transaction() as t:
            t.set_context("k", {"v": 1})
            t.add_message("user", "with k")
            t.track_open_file("k.py")
        assert t.results == [None, None, None]
        with pytest.raises(Conflict) as e, s.transaction() as t:
            t.set_active_ticket("T-1", expect=None)
            t.set_context("k", 2, expect={"v": 999})
        assert e.value.data["index"] == 1 and s.get_active_ticket() is None

    async def main() -> list[Any] | None:
        async with AsyncSession(project=daemon.root, socket=daemon.socket, autostart=False) as a:
            async with a.transaction() as t:
                t.delete_context("k", expect={"v": 1})
                t.untrack_file("k.py")
                t.pop_message()
            return t.results

    results = asyncio.run(main())
    assert results is not None and results[:2] == [None, None] and results[2]["content"] == "with k"
    assert [w.recv()["params"]["op"] for _ in range(6)] == [
        "setContext", "addMessage", "trackOpenFile", "deleteContext", "untrackFile", "popMessage"]
    assert w.result("getStats")["revision"] == start + 6
    w.close()


def test_a_concurrent_writer_never_lands_between_the_ops(daemon: Daemon) -> None:
    w = daemon.conn()
    w.result("watch")
    seen: list[str] = []

    def read() -> None:  # keeps up with the feed while the writers write
        while sum(k.startswith("t") for k in seen) < 250:
            seen.append(w.recv()["params"]["key"])

    reader = threading.Thread(target=read)
    reader.start()
    stop = threading.Event()

    def hammer() -> None:
        c = daemon.conn()
        i = 0
        while not stop.is_set():
            c.result("setContext", {"key": "other", "value": i})
            i += 1
        c.close()

    t = threading.Thread(target=hammer)
    t.start()
    try:
        c = daemon.conn()
        for k in range(50):  # each value new: a set to the value already there is no change
            c.result("transact", {"ops": _ops(*(("setContext", {"key": f"t{j}", "value": k}) for j in range(5)))})
        c.close()
    finally:
        stop.set()
        t.join()
    reader.join(30)
    runs = [seen[i : i + 5] for i, k in enumerate(seen) if k == "t0"]
    assert len(runs) == 50 and all(r == ["t0", "t1", "t2", "t3", "t4"] for r in runs)
    assert "other" in seen  # the other writer did write meanwhile
    w.close()


@pytest.mark.parametrize("durability", ["always", "periodic"])
def test_a_kill_9_keeps_all_or_none_of_each_transaction(make_daemon: Any, durability: str) -> None:
    """Transactions of two ops (a = i, b = i) until a kill -9 at a random moment: what
    the database holds after it always has a == b; under always, every acknowledged
    transaction is there."""
    d: Daemon = make_daemon("--durability", durability, "--snapshot-interval", "0.01")
    acked = [-1]
    stop = threading.Event()

    def write() -> None:
        c = Raw(d.socket)
        i = 0
        try:
            while not stop.is_set():
                c.result("transact", {"ops": _ops(("setContext", {"key": "a", "value": i}),
                                                   ("setContext", {"key": "b", "value": i}))})
                acked[0] = i
                i += 1
        except (OSError, AssertionError):
            pass  # the daemon was killed mid-call

    t = threading.Thread(target=write)
    t.start()
    threading.Event().wait(random.uniform(0.3, 0.8))
    d.kill9()
    stop.set()
    t.join(30)
    d.start()  # what the store kept, as the next daemon reads it
    c = Raw(d.socket)
    a, b = c.result("getContext", {"key": "a"}), c.result("getContext", {"key": "b"})
    c.close()
    assert acked[0] > 10
    assert a == b, (a, b)
    if durability == "always":
        assert a is not None and a >= acked[0]


def test_transact_needs_the_revisions_of_all_its_ops(daemon: Daemon) -> None:
    """The typed errors: an op refused by params is InvalidParams with the index."""
    with daemon.session() as s:
        with pytest.raises(InvalidParams) as e, s.transaction() as t:
            t.set_context("a", 1)
            t.trim_messages(-1)
        assert e.value.data == {"index": 1}
        assert isinstance(e.value, errors.SessionmemError) and s.get_context("a") is None
