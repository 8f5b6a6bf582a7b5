"""A write turn undone (undo.py): after random changes of every kind, memory is again
exactly what it was, what is visible and what says what is unwritten alike; a call
undone alone leaves the calls before it; a turn that commits ends as if no undo was
recorded. Pure: a SessionHost with a fixed clock, no daemon (several daemons on
PostgreSQL use this when a commit fails: tests/test_pg_undo.py)."""

from __future__ import annotations

import itertools
import random
from typing import Any

import msgspec
import pytest
from msgspec import Raw

from sessionmem import errors
from sessionmem import protocol as p
from sessionmemd.changelog import ChangeLog
from sessionmemd.host import SessionHost
from sessionmemd.messages import MessageLog
from sessionmemd.batch import Restored
from sessionmemd.state import SessionState
from sessionmemd.transact import Op

KEYS = [f"k{i}" for i in range(6)]
FILES = [f"f{i}.py" for i in range(4)]


def make_host(max_messages: int | None = None, messages: int = 20) -> SessionHost:
    ids = (f"s{i}" for i in itertools.count(1))
    host = SessionHost(SessionState("main", 1), {}, 0, ChangeLog(0), lambda: 1000, lambda: next(ids),
                       max_messages=max_messages)
    host.set_reserved(10**9)
    s = host.current
    for i in range(messages):
        host.add_message(s, "user", f"m{i}", None, f"id{i}" if i % 3 == 0 else None,
                         b'{"n":%d}' % i if i % 4 == 0 else None)
    for k in KEYS[:4]:
        host.set_context(s, k, b'"%s"' % k.encode())
    host.track_file(s, "f0.py")
    host.track_file(s, "f1.py")
    other = host.create_session("other")
    host.add_message(host.loaded[other], "user", "hi", None, "x", None)
    host.acquire_lease("ttl", "a", 60_000, "main", None)
    host.acquire_lease("eph", "b", None, "main", object())
    host.drain(marks=True)  # all written: nothing unwritten before the turn
    return host


def view(host: SessionHost) -> dict[str, Any]:
    """Everything a read shows, and what the next drain would write."""
    out: dict[str, Any] = {
        "revision": host.revision, "current": host.current_id, "known": sorted(host.known.items()),
        "loaded": sorted(host.loaded), "log": host.log.entries(), "dirty": list(host._dirty),
        "deleted": list(host._deleted), "moved": host._current_moved,
        "leases": [(h.name, h.owner, h.token, h.expires_at, h.ttl_ms, h.session_id, id(h.conn))
                   for h in sorted(host.leases.held.values(), key=lambda h: h.name)],
        "lease_dirty": sorted(host.leases.dirty.items()), "pending": host.pending_changes,
    }
    for sid, s in sorted(host.loaded.items()):
        out[sid] = {
            "task": s.current_task, "ticket": s.active_ticket, "revision": s.revision,
            "messages": bytes(s.recent_full(10**6)), "count": s.messages_count,
            "ids": [m for m in (f"id{i}" for i in range(40)) if s.message_log().has_id(m)],
            "files": s.open_files(), "context": s.context_items(),
            "listed": bytes(s.list_context("", None, 100, False)),
            "tracking": (s._saved_messages, s._trim_saved, s._pop_saved, s._wiped, list(s._dirty_files),
                         list(s._dirty_context), s._dirty_row, s.pending_changes),
        }
    return out


def random_call(host: SessionHost, rng: random.Random) -> None:
    """One call of any kind, as the methods make it (errors are the call's own)."""
    sid = rng.choice(sorted(host.loaded))
    s = host.loaded[sid]
    kind = rng.randrange(17)
    if kind <= 3:
        n = rng.randrange(40)
        host.add_message(s, rng.choice(["user", "assistant"]), f"new{n}", None,
                         f"id{n}" if rng.random() < 0.5 else None, b"[1]" if rng.random() < 0.3 else None)
    elif kind == 4:
        host.pop_message(s)
    elif kind == 5:
        host.trim_messages(s, rng.randrange(s.messages_count + 1))
    elif kind == 6:
        host.set_context(s, rng.choice(KEYS), b"%d" % rng.randrange(3))
    elif kind == 7:
        host.delete_context(s, rng.choice(KEYS))
    elif kind == 8:
        host.track_file(s, rng.choice(FILES))
    elif kind == 9:
        host.untrack_file(s, rng.choice(FILES))
    elif kind == 10:
        host.set_current_task(s, rng.choice([None, "a", "b"]))
        host.set_active_ticket(s, rng.choice([None, "T-1"]))
    elif kind == 11:
        host.wipe(s)
    elif kind == 12:
        new = host.create_session(None, fork=s if rng.random() < 0.5 else None, make_current=rng.random() < 0.5)
        host.set_context(host.loaded[new], "fresh", b"1")
    elif kind == 13:
        if sid != host.current_id:
            host.delete_session(sid) if rng.random() < 0.5 else host.set_current_session(sid)
        else:
            host.clear()
    elif kind == 14:
        name = rng.choice(["ttl", "eph", "new"])
        if rng.random() < 0.5:
            host.acquire_lease(name, rng.choice(["a", "b"]), rng.choice([None, 5_000]), sid, object())
        else:
            h = host.leases.held.get(name)
            if h is not None:
                host.release_lease(name, h.token)
    elif kind == 15:
        h = host.leases.held.get("ttl")
        if h is not None:
            host.renew_lease("ttl", h.token, rng.choice([None, 9_000]))
    else:
        ops = [Op("setContext", p.SetContextParams(key=rng.choice(KEYS), value=Raw(b"7"))),
               Op("addMessage", p.AddMessageParams(role="user", content="in a transaction")),
               Op("deleteContext", p.DeleteContextParams(key=rng.choice(KEYS))),
               Op("popMessage", p.PopMessageParams())]
        host.transact(s, ops[: rng.randrange(1, 5)])


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("max_messages", [None, 25])
def test_a_turn_undone_leaves_memory_exactly_as_before(seed: int, max_messages: int | None) -> None:
    host = make_host(max_messages)
    before = view(host)
    rng = random.Random(seed)
    host.begin_turn()
    for _ in range(rng.randrange(1, 30)):
        mark = host.call_begins()
        try:
            random_call(host, rng)
        except errors.SessionmemError:
            host.call_undone(mark)
    assert host.revision > before["revision"] or view(host) == before
    host.drain(marks=True)  # the turn's batch was taken before its commit failed
    host.end_turn(committed=False)
    assert view(host) == before


@pytest.mark.parametrize("seed", range(40))
def test_a_call_undone_alone_keeps_the_calls_before_it(seed: int) -> None:
    host = make_host()
    rng = random.Random(1000 + seed)
    host.begin_turn()
    for _ in range(rng.randrange(0, 10)):
        try:
            random_call(host, rng)
        except errors.SessionmemError:
            pass
    at_mark = view(host)
    mark = host.call_begins()
    for _ in range(rng.randrange(1, 6)):  # one call that changes several things, then breaks
        try:
            random_call(host, rng)
        except errors.SessionmemError:
            pass
    host.call_undone(mark)
    assert view(host) == at_mark


@pytest.mark.parametrize("seed", range(20))
def test_a_committed_turn_ends_as_if_nothing_was_recorded(seed: int) -> None:
    plain, journaled = make_host(), make_host()
    rngs = random.Random(seed), random.Random(seed)
    journaled.begin_turn()
    for host, rng in ((plain, rngs[0]), (journaled, rngs[1])):
        for _ in range(25):
            try:
                random_call(host, rng)
            except errors.SessionmemError:
                pass
    journaled.end_turn(committed=True)
    a, b = view(plain), view(journaled)
    a["leases"] = [x[:-1] for x in a["leases"]]  # the connections are other objects
    b["leases"] = [x[:-1] for x in b["leases"]]
    assert a == b
    assert journaled.undo is None and all(not s.undoing for s in journaled.loaded.values())


def test_trims_in_a_turn_compact_only_once_it_is_settled() -> None:
    host = make_host(messages=10_000)
    s = host.current
    before, newest = view(host), s.newest_message()
    host.begin_turn()
    host.trim_messages(s, 1_000)  # 9,000 go: past the compaction threshold
    assert s.messages_count == 1_000
    host.end_turn(committed=False)
    assert view(host) == before
    host.begin_turn()
    host.trim_messages(s, 1_000)
    host.end_turn(committed=True)
    assert s.messages_count == 1_000 and s.newest_message() == newest
    assert s.message_log()._head == 0  # the trimmed ones are gone from the buffer now


def _incomplete(host: SessionHost, sid: str, older: int, tail: int) -> tuple[SessionState, MessageLog]:
    """A session loaded tail first (its ``older`` oldest messages not yet), and those."""
    def log(lo: int, hi: int) -> MessageLog:
        m = MessageLog()
        m.extend((("user", f"m{i}", 1, f"id{i}", None) for i in range(lo, hi)))
        return m
    s = SessionState.from_restored(Restored(sid, 1, None, None, log(older, older + tail), [], {}, 0, older, "cursor"))
    host.adopt(s)
    host.known[sid] = 0
    return s, log(0, older)


@pytest.mark.parametrize("committed", [False, True])
def test_history_spliced_in_during_a_turn_is_taken_out_again_when_it_is_undone(committed: bool) -> None:
    host = make_host()
    s, older = _incomplete(host, "big", 30, 10)
    before = view(host)
    host.begin_turn()
    host.call_begins()
    host.add_message(s, "user", "new", None, "n1", None)
    s.add_older(older)  # a later call of the turn waits for the whole history (loader.py)
    host.call_begins()
    host.pop_message(s)
    host.add_message(s, "user", "newer", None, "id3", None)  # a retry of an older message: nothing
    assert s.complete and s.messages_count == 40
    host.end_turn(committed)
    if committed:
        assert s.complete and [m["content"] for m in msgspec.json.decode(bytes(s.all_messages()))] == \
            [f"m{i}" for i in range(40)]
    else:
        assert view(host) == before and not s.complete and s.older == 30 and s.older_cursor == "cursor"
        s.add_older(_incomplete(host, "again", 30, 0)[1])  # loaded again later: whole, once
        assert [m["content"] for m in msgspec.json.decode(bytes(s.all_messages()))] == [f"m{i}" for i in range(40)]


def test_no_session_is_unloaded_while_a_turn_may_be_undone() -> None:
    host = make_host()
    host.tick = 10
    host.begin_turn()
    host.set_context(host.loaded["other"], "k", b"1")
    host.drain(marks=True)
    assert host.unload_idle(5, set()) == []
    host.end_turn(committed=False)
    assert host.unload_idle(5, set()) == ["other"]
