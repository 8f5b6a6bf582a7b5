"""Calls run in the order they arrived, also when the session they name is still
loading and a later call changes the set of sessions or which one is current
(issue 16, item 7). Each test pipelines its calls in one write, so the later ones
arrive while the first waits for its session to be read from the database."""

from __future__ import annotations

import json
from typing import Any

from conftest import Daemon, Raw


def _pipeline(d: Daemon, calls: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    c = Raw(d.socket)
    c.send(b"".join(json.dumps({"jsonrpc": "2.0", "id": i, "method": m, "params": p}).encode() + b"\n"
                    for i, (m, p) in enumerate(calls)))
    replies = {}
    while len(replies) < len(calls):
        r = c.recv()
        replies[r["id"]] = r
    c.close()
    return [replies[i] for i in range(len(calls))]


def _with_unloaded_session(make_daemon: Any, messages: int = 2_000) -> tuple[Daemon, str, str]:
    """A daemon whose session "other" is in the database only (not in memory), and whose
    current session has older history still to load."""
    d: Daemon = make_daemon()
    with d.session() as s:
        current = s.get_session_id()
        s.create_session("other")
        s.add_messages({"role": "user", "content": f"current {i}"} for i in range(messages))
    with d.session("other") as o:
        o.add_messages({"role": "user", "content": f"other {i}"} for i in range(messages))
    d.stop()
    d.start()
    return d, current, "other"


def test_delete_waits_for_the_calls_queued_on_its_session(make_daemon: Any) -> None:
    d, _, other = _with_unloaded_session(make_daemon)
    read, delete, again = _pipeline(d, [
        ("getAllMessages", {"session": other}),
        ("deleteSession", {"sessionId": other}),
        ("createSession", {"sessionId": other}),  # the id is free once the delete ran
    ])
    assert "result" in read, read
    assert len(read["result"]) == 2_000
    assert delete["result"] is None, delete
    assert again["result"] == {"sessionId": other}, again


def test_clear_waits_for_the_calls_queued_on_the_current_session(make_daemon: Any) -> None:
    d, current, _ = _with_unloaded_session(make_daemon)
    read, cleared, after = _pipeline(d, [
        ("getAllMessages", {}),  # the current session's older history is still loading
        ("clear", {}),
        ("getAllMessages", {}),
    ])
    assert len(read["result"]) == 2_000, read
    assert "result" in cleared, cleared
    assert after["result"] == []


def test_calls_after_a_switch_go_to_the_new_current_session(make_daemon: Any) -> None:
    d, current, other = _with_unloaded_session(make_daemon)
    switched, added, sid, deleted = _pipeline(d, [
        ("setCurrentSession", {"sessionId": other}),  # waits while "other" loads
        ("addMessage", {"role": "user", "content": "after the switch"}),
        ("getSessionId", {}),
        ("deleteSession", {"sessionId": current}),  # no longer the current one
    ])
    assert switched["result"] is None, switched
    assert added["result"] is None, added
    assert sid["result"] == other
    assert deleted["result"] is None, deleted
    c = Raw(d.socket)
    assert c.result("getRecentMessages", {"count": 1, "session": other})[0]["content"] == "after the switch"
    c.close()


def test_import_and_create_with_make_current_are_gates_too(make_daemon: Any) -> None:
    d, current, other = _with_unloaded_session(make_daemon)
    c = Raw(d.socket)
    records = c.result("exportSession", {"session": current})
    c.close()
    calls: list[tuple[str, dict[str, Any]]] = [
        ("getAllMessages", {"session": other}),
        ("deleteSession", {"sessionId": other}),
        ("importSession", {"records": records, "sessionId": other, "makeCurrent": True}),
        ("getSessionId", {}),
    ]
    read, deleted, imported, sid = _pipeline(d, calls)
    assert len(read["result"]) == 2_000
    assert deleted["result"] is None and imported["result"] == {"sessionId": other}, (deleted, imported)
    assert sid["result"] == other
