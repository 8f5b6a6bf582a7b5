"""Agents on three daemons of one PostgreSQL project race on one counter with `expect`
(compare and set), each deciding on what it last saw: a turn decided on a daemon's
memory that finds another daemon committed first is undone and decided again
(turns.py), so every success is one increment, none is lost or doubled, and every
daemon's watcher sees the values 1..N once each, in order. Real processes, a real
PostgreSQL server."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon
from test_pg_shared import changes, daemons

pytest.importorskip("psycopg", reason="the extra sessionmem[postgres] is not installed")

AGENTS_PER_DAEMON = 3
SUCCESSES_EACH = 15


def test_compare_and_set_races_across_daemons_lose_nothing(make_daemon: Any, pg_url: str, tmp_path: Path) -> None:
    ds: list[Daemon] = daemons(make_daemon, pg_url, tmp_path, 3)
    setup = ds[0].conn()
    setup.result("setContext", {"key": "n", "value": 0})
    watchers = []
    for d in ds:
        w = d.conn()
        w.result("sync")
        watchers.append((w, w.result("watch")["revision"]))
    conflicts = [0]
    failures: list[Any] = []

    def agent(d: Daemon) -> None:
        c = d.conn()
        seen = c.result("getContext", {"key": "n"})
        won = 0
        while won < SUCCESSES_EACH:
            r = c.call("setContext", {"key": "n", "value": seen + 1, "expect": seen})
            if "error" in r:
                if r["error"]["code"] != -32009:
                    failures.append(r)
                    return
                conflicts[0] += 1
                seen = r["error"]["data"]["current"]  # decided on the store's latest state
            else:
                seen += 1
                won += 1
        c.close()

    threads = [threading.Thread(target=agent, args=(d,)) for d in ds for _ in range(AGENTS_PER_DAEMON)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures and not any(t.is_alive() for t in threads)
    total = len(threads) * SUCCESSES_EACH
    assert conflicts[0] > 0  # they did race
    for d in ds:
        c = d.conn()
        c.result("sync")
        assert c.result("getContext", {"key": "n"}) == total
        c.close()
    for w, start in watchers:
        got = changes(w, start + total)
        assert [ch["value"] for ch in got] == list(range(1, total + 1))
        assert [ch["revision"] for ch in got] == list(range(start + 1, start + total + 1))
