"""``list_contexts``: several ``listContext`` pages in one JSON-RPC batch (what the
LangGraph saver reads a checkpoint and its writes with, in one round trip)."""

from __future__ import annotations

import asyncio

import pytest

from conftest import Daemon
from sessionmem import AsyncSession
from sessionmem.errors import NoSuchSession

pytestmark = pytest.mark.both_stores


def test_pages_in_query_order_sync_and_async(daemon: Daemon) -> None:
    with daemon.session() as s:
        for key in ("a/1", "a/2", "a/3", "b/1", "c"):
            s.set_context(key, key.upper())
        queries = [{"prefix": "a/", "limit": 2}, {"prefix": "a/", "reverse": True, "limit": 1},
                   {"prefix": "a/", "after": "a/1"}, {"prefix": "b/1", "limit": 1}, {"prefix": "zzz"}]
        pages = s.list_contexts(queries)
        assert [([e.key for e in p.entries], p.more) for p in pages] == [
            (["a/1", "a/2"], True), (["a/3"], True), (["a/2", "a/3"], False), (["b/1"], False), ([], False)]
        assert pages[0].entries[0].value == "A/1"
        assert s.list_contexts([]) == []
        with pytest.raises(TypeError, match="unknown"):
            s.list_contexts([{"prefx": "a/"}])
        s.create_session("other")
        assert s.bound("other").list_contexts([{"prefix": "a/"}])[0].entries == []
        with pytest.raises(NoSuchSession):
            s.bound("nope").list_contexts([{"prefix": "a/"}, {"prefix": "b/"}])

    async def main() -> None:
        async with AsyncSession(project=daemon.root, socket=daemon.socket, autostart=False) as a:
            got = await a.list_contexts(queries)
            assert [[e.key for e in p.entries] for p in got] == [[e.key for e in p.entries] for p in pages]

    asyncio.run(main())
