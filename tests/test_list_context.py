"""`listContext`: a session's context keys under a prefix, in key order, a page at a
time: the keyed records the framework stores (LangGraph checkpoints, ADK events) list
without reading every key (design §14)."""

from __future__ import annotations

import asyncio

import pytest

from sessionmem import AsyncSession, InvalidParams
from sessionmem.errors import NoSuchSession
from sessionmem import protocol as p

from conftest import Daemon

pytestmark = pytest.mark.both_stores


def _keys(page: dict) -> list[str]:
    return [e["key"] for e in page["entries"]]


def test_lists_a_prefix_in_key_order_a_page_at_a_time(daemon: Daemon) -> None:
    c = daemon.conn()
    # Set out of order, with neighbours on both sides of the prefix.
    for i in (5, 1, 9, 3, 7, 0, 8, 2, 6, 4):
        c.result("setContext", {"key": f"ckpt/{i:03d}", "value": {"n": i}})
    for k in ("ckpt", "ckpt0", "ckpu/1", "a", "z"):
        c.result("setContext", {"key": k, "value": k})
    first = c.result("listContext", {"prefix": "ckpt/", "limit": 4})
    assert first == {"entries": [{"key": f"ckpt/{i:03d}", "value": {"n": i}} for i in range(4)], "more": True}
    rest = c.result("listContext", {"prefix": "ckpt/", "after": "ckpt/003", "limit": 100})
    assert _keys(rest) == [f"ckpt/{i:03d}" for i in range(4, 10)] and rest["more"] is False
    # Newest first, before a key: a store's "latest" and "before" in one call each.
    newest = c.result("listContext", {"prefix": "ckpt/", "reverse": True, "limit": 1})
    assert newest == {"entries": [{"key": "ckpt/009", "value": {"n": 9}}], "more": True}
    before = c.result("listContext", {"prefix": "ckpt/", "reverse": True, "after": "ckpt/003"})
    assert _keys(before) == ["ckpt/002", "ckpt/001", "ckpt/000"]
    # No prefix: every key; getAllContext keeps its own order (first set).
    assert _keys(c.result("listContext")) == sorted(c.result("getAllContext"))
    assert list(c.result("getAllContext"))[:2] == ["ckpt/005", "ckpt/001"]
    assert c.result("listContext", {"prefix": "nothing"}) == {"entries": [], "more": False}


def test_keys_set_and_deleted_after_a_listing_show_in_the_next(daemon: Daemon) -> None:
    c = daemon.conn()
    c.result("setContext", {"key": "e/2", "value": 2})
    assert _keys(c.result("listContext", {"prefix": "e/"})) == ["e/2"]
    c.result("setContext", {"key": "e/1", "value": 1})
    c.result("setContext", {"key": "e/3", "value": 3})
    c.result("setContext", {"key": "e/2", "value": "two"})  # a new value, the same place
    c.result("deleteContext", {"key": "e/1"})
    assert c.result("listContext", {"prefix": "e/"})["entries"] == [
        {"key": "e/2", "value": "two"}, {"key": "e/3", "value": 3}]
    # A transaction's keys too.
    c.result("transact", {"ops": [{"method": "setContext", "params": {"key": "e/0", "value": 0}},
                                  {"method": "deleteContext", "params": {"key": "e/3"}}]})
    assert _keys(c.result("listContext", {"prefix": "e/"})) == ["e/0", "e/2"]


def test_the_order_survives_a_restart_and_applies_to_the_named_session(daemon: Daemon) -> None:
    c = daemon.conn()
    c.result("createSession", {"sessionId": "graph"})
    for k in ("t/b", "t/a", "t/c"):
        c.result("setContext", {"key": k, "value": k, "session": "graph"})
    c.result("setContext", {"key": "t/z", "value": "current session's"})
    c.close()
    daemon.stop()
    daemon.start()
    c = daemon.conn()
    assert _keys(c.result("listContext", {"prefix": "t/", "session": "graph"})) == ["t/a", "t/b", "t/c"]
    assert _keys(c.result("listContext", {"prefix": "t/"})) == ["t/z"]


@pytest.mark.parametrize("params, field", [
    ({"limit": 0}, "limit"),
    ({"limit": p.MAX_LIST_CONTEXT + 1}, "limit"),
    ({"prefix": 3}, "prefix"),
    ({"after": None}, "after"),
    ({"reverse": "yes"}, "reverse"),
])
def test_bad_params_are_refused_naming_the_field(daemon: Daemon, params: dict, field: str) -> None:
    c = daemon.conn()
    reply = c.call("listContext", params)
    assert reply["error"]["code"] == -32602 and field in reply["error"]["message"], reply
    assert c.result("getSessionId")  # the daemon keeps answering


def test_both_clients_are_typed(daemon: Daemon) -> None:
    with daemon.session() as s:
        s.set_context("r/2", {"x": [1, 2]})
        s.set_context("r/1", None)
        page = s.list_context("r/", limit=1)
        assert isinstance(page, p.ContextPage) and page.more
        assert page.entries == [p.ContextEntry("r/1", None)]
        assert s.list_context("r/", after="r/1").entries == [p.ContextEntry("r/2", {"x": [1, 2]})]
        with pytest.raises(NoSuchSession):
            s.bound("no-such").list_context()
        with pytest.raises(InvalidParams):
            s.list_context(limit=0)

    async def run() -> p.ContextPage:
        async with AsyncSession(project=daemon.root, socket=daemon.socket, autostart=False) as a:
            return await a.list_context("r/", reverse=True)
    assert [e.key for e in asyncio.run(run()).entries] == ["r/2", "r/1"]
