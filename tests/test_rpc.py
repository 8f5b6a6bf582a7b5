"""JSON-RPC 2.0 dispatch over the real state, without sockets (microseconds per case)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sessionmem import protocol as p
from sessionmemd.changelog import ChangeLog
from sessionmemd.feed import Feed
from sessionmemd.host import SessionHost
from sessionmemd.loader import Loader
from sessionmemd.methods import build_handlers
from sessionmemd.rpc import Dispatcher, PendingReply
from sessionmemd.state import SessionState


class Shell:
    """The shell's side of the method table, reduced to what dispatch needs."""

    async def snapshot(self) -> p.SnapshotResult:
        return p.SnapshotResult(False, 0, 0, 0, False, 0.0)

    async def restore(self) -> None:
        return None

    async def shutdown_method(self) -> None:
        return None

    def stats(self, session: Any) -> Any:
        raise RuntimeError("boom")  # stands for a bug in a handler

    def hello(self, params: p.HelloParams) -> Any:
        return {"protocolVersion": p.PROTOCOL_VERSION}


@pytest.fixture
def d() -> Dispatcher:
    ids = iter(f"id{i}" for i in range(100))
    host = SessionHost(SessionState("sid", 1), {}, 0, ChangeLog(0), lambda: 42, lambda: next(ids))
    host.reserved = 1 << 40

    def no_reader() -> Any:
        raise AssertionError("every session of these tests is in memory")

    loader = Loader(host, no_reader)
    return Dispatcher(build_handlers(host, loader, Feed(host.log, publish_when_committed=False), Shell(), max_depth=8))


def one(d: Dispatcher, frame: bytes | str | dict[str, Any] | list[Any]) -> Any:
    if isinstance(frame, (dict, list)):
        frame = json.dumps(frame)
    if isinstance(frame, str):
        frame = frame.encode()
    out = d.handle_frame(frame)
    if out is None:
        return None
    assert isinstance(out, bytes) and out.endswith(b"\n") and out.count(b"\n") == 1
    return json.loads(out)


def req(method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:
    r: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        r["params"] = params
    return r


def test_call_and_result(d: Dispatcher) -> None:
    assert one(d, req("setCurrentTask", {"task": "t"})) == {"jsonrpc": "2.0", "id": 1, "result": None}
    assert one(d, req("getCurrentTask", id="abc"))["result"] == "t"


@pytest.mark.parametrize("rid", [0, -5, 1.5, "x", "", None])
def test_ids_are_echoed_exactly(d: Dispatcher, rid: Any) -> None:
    assert one(d, req("getSessionId", id=rid)) == {"jsonrpc": "2.0", "id": rid, "result": "sid"}


def test_parse_error(d: Dispatcher) -> None:
    r = one(d, b'{"jsonrpc": "2.0", "method": "x", ')
    assert r["error"]["code"] == p.PARSE_ERROR and r["id"] is None


def test_parse_error_wins_over_invalid_request(d: Dispatcher) -> None:
    r = one(d, b'{"jsonrpc": 1, "method": ')
    assert r["error"]["code"] == p.PARSE_ERROR


@pytest.mark.parametrize("frame", [
    '{"jsonrpc":"2.0","method":1,"id":1}',
    '{"method":"getSessionId","id":1}',
    '{"jsonrpc":"2.0","id":1}',
    '{"jsonrpc":"2.0","method":"getSessionId","id":{}}',
    '"just a string"',
    '42',
])
def test_invalid_request(d: Dispatcher, frame: str) -> None:
    r = one(d, frame)
    assert r["error"]["code"] == p.INVALID_REQUEST and r["id"] is None


def test_unknown_method(d: Dispatcher) -> None:
    r = one(d, req("nope", id=3))
    assert r["error"]["code"] == p.METHOD_NOT_FOUND and r["id"] == 3 and "nope" in r["error"]["message"]


@pytest.mark.parametrize("params,field", [
    ({"role": "user"}, "content"),
    ({"role": "robot", "content": "x"}, "params.role"),
    ({"role": "user", "content": 5}, "params.content"),
    ({"role": "user", "content": "x", "timestamp": "now"}, "params.timestamp"),
    ({"role": "user", "content": "x", "extra": 1}, "extra"),
    (["user", "x"], "object"),
])
def test_bad_params_name_the_field(d: Dispatcher, params: Any, field: str) -> None:
    r = one(d, req("addMessage", params, id=9))
    assert r["error"]["code"] == p.INVALID_PARAMS and r["id"] == 9
    assert field in r["error"]["message"]


def test_timestamp_beyond_int64_is_refused(d: Dispatcher) -> None:
    r = one(d, req("addMessage", {"role": "user", "content": "x", "timestamp": 2**64}))
    assert r["error"]["code"] == p.INVALID_PARAMS


def test_notifications_get_no_reply_even_on_error(d: Dispatcher) -> None:
    assert one(d, {"jsonrpc": "2.0", "method": "addMessage", "params": {"role": "user", "content": "n"}}) is None
    assert one(d, {"jsonrpc": "2.0", "method": "nope"}) is None
    assert one(d, {"jsonrpc": "2.0", "method": "addMessage", "params": {}}) is None
    assert one(d, req("getRecentMessages", {"count": 5}))["result"][0]["content"] == "n"


def test_batch(d: Dispatcher) -> None:
    r = one(d, [
        req("setCurrentTask", {"task": "b"}, id=1),
        {"jsonrpc": "2.0", "method": "setActiveTicket", "params": {"ticketId": "T"}},
        req("nope", id=2),
        1,
        req("getActiveTicket", id=3),
    ])
    by_id = {x["id"]: x for x in r if x["id"] is not None}
    assert by_id[1]["result"] is None and by_id[3]["result"] == "T"
    assert by_id[2]["error"]["code"] == p.METHOD_NOT_FOUND
    assert [x["error"]["code"] for x in r if x["id"] is None] == [p.INVALID_REQUEST]
    assert len(r) == 4


def test_empty_batch_and_all_notification_batch(d: Dispatcher) -> None:
    r = one(d, b"[]")
    assert r["error"]["code"] == p.INVALID_REQUEST and r["id"] is None
    assert one(d, [{"jsonrpc": "2.0", "method": "getSessionId"}] * 3) is None


def test_invalid_batch_json(d: Dispatcher) -> None:
    assert one(d, b'[{"jsonrpc":"2.0","method":"getSessionId","id":1}, ')["error"]["code"] == p.PARSE_ERROR


def test_blank_lines_are_ignored(d: Dispatcher) -> None:
    assert d.handle_frame(b"") is None and d.handle_frame(b"  \r") is None
    assert one(d, b"  " + json.dumps(req("getSessionId")).encode())["result"] == "sid"


def test_deep_nesting_is_an_error_not_a_crash(d: Dispatcher) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert one(d, deep)["error"]["code"] == p.PARSE_ERROR
    frame = b'{"jsonrpc":"2.0","method":"setContext","id":1,"params":{"key":"k","value":' + deep + b"}}"
    assert one(d, frame)["error"]["code"] in (p.PARSE_ERROR, p.INVALID_PARAMS)


def test_context_value_nesting_limit(d: Dispatcher) -> None:
    ok = json.loads("[" * 8 + "]" * 8)
    too_deep = json.loads("[" * 9 + "]" * 9)
    assert one(d, req("setContext", {"key": "k", "value": ok}))["result"] is None
    r = one(d, req("setContext", {"key": "k", "value": too_deep}))
    assert r["error"]["code"] == p.INVALID_PARAMS and "nests deeper than 8" in r["error"]["message"]
    wide = [[i] for i in range(1000)]  # many brackets, shallow: fine
    assert one(d, req("setContext", {"key": "w", "value": wide}))["result"] is None
    assert one(d, req("getContext", {"key": "k"}))["result"] == ok


def test_invalid_utf8_is_refused(d: Dispatcher) -> None:
    frame = b'{"jsonrpc":"2.0","method":"setContext","id":1,"params":{"key":"k","value":"\xff\xfe"}}'
    assert one(d, frame)["error"]["code"] == p.INVALID_PARAMS
    frame = b'{"jsonrpc":"2.0","method":"setCurrentTask","id":2,"params":{"task":"\xc3"}}'
    assert one(d, frame)["error"]["code"] in (p.INVALID_PARAMS, p.PARSE_ERROR)
    assert one(d, req("getAllContext"))["result"] == {}


def test_handler_bug_is_an_internal_error_and_dispatch_goes_on(d: Dispatcher) -> None:
    r = one(d, req("getStats", id=5))
    assert r["error"]["code"] == p.INTERNAL_ERROR and r["id"] == 5
    assert one(d, req("getSessionId"))["result"] == "sid"


def test_calls_needing_io_come_back_pending(d: Dispatcher) -> None:
    out = d.handle_frame(json.dumps(req("snapshot", id=4)).encode())
    assert isinstance(out, PendingReply)
    for part in out.parts:
        if not isinstance(part, bytes):
            part.work.close()
    frame = d.finish(out, [p.SnapshotResult(False, 0, 0, 0, False, 0.0)])
    assert frame is not None and json.loads(frame)["result"]["written"] is False


def test_clear_gives_a_new_id(d: Dispatcher) -> None:
    one(d, req("addMessage", {"role": "user", "content": "x"}))
    new = one(d, req("clear"))["result"]
    assert new != "sid" and one(d, req("getSessionId"))["result"] == new
    assert one(d, req("getAllMessages"))["result"] == []


def test_daemon_stamps_missing_timestamps(d: Dispatcher) -> None:
    one(d, req("addMessage", {"role": "user", "content": "x"}))
    one(d, req("addMessage", {"role": "user", "content": "y", "timestamp": 7}))
    one(d, req("addMessage", {"role": "user", "content": "z", "timestamp": None}))
    assert [m["timestamp"] for m in one(d, req("getAllMessages"))["result"]] == [42, 7, 42]
