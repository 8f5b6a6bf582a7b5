"""getRecentMessages {count, before}: a long history read back page by page, newest
first, through a real daemon on each store, from a session just restarted (its older
messages not loaded yet: storage.TAIL) and from one in memory; both typed clients."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conftest import Daemon

pytestmark = pytest.mark.both_stores

TOTAL = 2500  # more than storage.TAIL (1000): a restart loads the newest first


def pages(d: Daemon, size: int, before: int, full: bool = False) -> list[list[dict[str, Any]]]:
    c = d.conn()
    out = []
    try:
        while True:
            page = c.result("getRecentMessages", {"count": size, "before": before, "full": full})
            if not page:
                return out
            out.append(page)
            before = min(before, TOTAL) - len(page)
    finally:
        c.close()


def test_paging_back_reads_every_message_once_in_order(make_daemon: Any) -> None:
    d = make_daemon()
    s = d.session()
    s.add_messages([{"role": "user" if i % 2 else "assistant", "content": f"m{i}", "message_id": f"id{i}"}
                    for i in range(TOTAL)])
    s.close()
    for restarted in (False, True):
        if restarted:
            assert d.stop() == 0
            d.start()  # the older 1,500 are not in memory: the first page back loads them
        got = pages(d, 700, 10**9)  # past the end: the end
        assert [len(p) for p in got] == [700, 700, 700, 400]
        assert [m["content"] for p in reversed(got) for m in p] == [f"m{i}" for i in range(TOTAL)]
        full = pages(d, 1000, TOTAL, full=True)
        assert [m["id"] for p in reversed(full) for m in p] == [f"id{i}" for i in range(TOTAL)]
    c = d.conn()
    assert [m["content"] for m in c.result("getRecentMessages", {"count": 3, "before": 5})] == ["m2", "m3", "m4"]
    assert c.result("getRecentMessages", {"count": 3, "before": 0}) == []
    assert c.result("getRecentMessages", {"count": 0, "before": 9}) == []
    assert [m["content"] for m in c.result("getRecentMessages", {"count": 9, "before": 2})] == ["m0", "m1"]
    for bad in (-1, "3", 1.5, None):
        reply = c.call("getRecentMessages", {"count": 3, "before": bad})
        assert reply["error"]["code"] == -32602, reply
    assert c.result("getSessionId")  # still serving
    c.close()


def test_typed_clients_page_back(daemon: Daemon) -> None:
    from sessionmem import AsyncSession

    s = daemon.session()
    s.add_messages([{"role": "user", "content": f"m{i}"} for i in range(10)])
    assert [m.content for m in s.get_recent_messages(4, before=6)] == ["m2", "m3", "m4", "m5"]
    assert [m.content for m in s.get_recent_messages(2)] == ["m8", "m9"]
    assert [m.content for m in s.get_recent_messages(1, True, before=1)] == ["m0"]
    s.close()

    async def run() -> list[str]:
        async with AsyncSession(project=daemon.root, socket=daemon.socket, autostart=False) as a:
            return [m.content for m in await a.get_recent_messages(3, before=3)]
    assert asyncio.run(run()) == ["m0", "m1", "m2"]
