"""`sync` and the store's fields of getStats/hello (design §12), on both stores: one
daemon per project, so sync answers at once with the revision it has applied."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon

pytestmark = pytest.mark.both_stores


def test_sync_returns_the_applied_revision_and_stats_name_the_store(
        make_daemon: Any, store: str | None, tmp_path: Path) -> None:
    d: Daemon = make_daemon()
    c = d.conn()
    assert "sync" in c.result("hello", {"clientVersion": "t", "protocolVersion": 2})["capabilities"]
    first = c.result("sync")["revision"]
    c.result("addMessage", {"role": "user", "content": "one"})
    c.result("setContext", {"key": "plan", "value": {"step": 1}})
    assert c.result("sync") == {"revision": first + 2}
    stats = c.result("getStats")
    assert stats["appliedRevision"] == stats["revision"] == first + 2
    if store is None:
        assert stats["store"] == str(d.db) and stats["projectKey"] is None
    else:
        assert stats["store"].startswith("postgresql://") and stats["projectKey"] == str(d.root)
    bad = c.call("sync", {"since": 3})
    assert bad["error"]["code"] == -32602  # sync takes no params
    c.close()


def test_typed_clients_sync(make_daemon: Any) -> None:
    import asyncio

    from sessionmem import AsyncSession

    d: Daemon = make_daemon()
    with d.session() as s:
        before = s.sync().revision
        s.add_message("user", "x")
        assert s.sync().revision == before + 1

    async def run() -> int:
        async with AsyncSession(project=d.root, socket=d.socket, autostart=False) as a:
            await a.add_message("user", "y")
            return (await a.sync()).revision
    assert asyncio.run(run()) == before + 2


def test_sync_from_the_cli(make_daemon: Any, env: dict[str, str]) -> None:
    from conftest import run_cli

    d: Daemon = make_daemon()
    c = d.conn()
    c.result("addMessage", {"role": "user", "content": "one"})
    rev = c.result("sync")["revision"]
    args = ["--socket", str(d.socket), "--project", str(d.root)]
    r = run_cli([*args, "sync"], env)
    assert r.returncode == 0 and r.stdout.strip() == f"revision {rev}", r.stderr
    r = run_cli([*args, "--json", "sync"], env)
    assert r.returncode == 0 and json.loads(r.stdout) == {"revision": rev}
    c.close()
