"""The store seam (storage.py): the SQLite store through the interface alone, and
nothing above the seam knowing which store runs."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from sessionmemd.listener import AlreadyRunning
from sessionmemd.messages import MessageLog
from sessionmemd.sqlitestore import SqliteStore
from sessionmemd.batch import Batch
from sessionmemd.state import SessionState
from sessionmemd.storage import Storage, StoreFault

DAEMON = Path(__file__).resolve().parent.parent / "daemon" / "sessionmemd"
# Modules above the seam: they may use storage.py, never a store's driver or files.
ABOVE = ("app", "daemon", "persist", "loader", "host", "methods", "server", "replies", "rpc",
         "state", "messages", "changelog", "records", "feed")
BELOW = {"sqlite3", "store", "storeread", "sqlitestore", "dbcheck", "schema", "pgstore", "pgread", "pgshared",
         "psycopg"}


def imported(module: str) -> set[str]:
    tree = ast.parse((DAEMON / f"{module}.py").read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level and node.module is None:
                out |= {a.name for a in node.names}  # from . import x
            elif node.module is not None:
                out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("module", ABOVE)
def test_nothing_above_the_seam_imports_a_store(module: str) -> None:
    assert not imported(module) & BELOW


def contents(log: MessageLog) -> list[str]:
    return [m["content"] for m in json.loads(log.all())]


def session(sid: str, n: int) -> SessionState:
    s = SessionState(sid, 1)
    for i in range(n):
        s.add_message("user", f"m{i}", i)
    return s


def test_sqlite_store_through_the_interface(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store: Storage = SqliteStore(db)
    assert store.take_opened() == ({}, None)
    mark, whole = store.reserve_revisions(100)
    assert (mark, whole) == (0, False)
    store.write([Batch.of(session("a", 5).drain())])  # type: ignore[arg-type]
    store.close()

    store = SqliteStore(db, tail=2)
    known, current = store.take_opened()
    assert "a" in known and current is not None and current.session_id == "a"
    assert contents(current.messages) == ["m3", "m4"] and current.older == 3
    assert store.take_opened()[1] is None  # handed over once
    reader = store.reader()
    older = reader.load_older("a", current.older_cursor)  # the store's own cursor, opaque above
    assert contents(older) == ["m0", "m1", "m2"]
    assert reader.session_rows()["a"][3] == 5
    assert reader.change_rows(0, 10**9) == []
    reader.close()
    store.close()


def test_the_store_is_the_single_writer_until_closed(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = SqliteStore(db)
    with pytest.raises(AlreadyRunning):
        SqliteStore(db)
    store.close()
    store.close()  # idempotent: the lock's descriptors are closed once
    SqliteStore(db).close()


def test_a_deleted_file_is_repaired_and_a_replaced_one_refused(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = SqliteStore(db)
    store.write([Batch.of(session("a", 3).drain())])  # type: ignore[arg-type]
    assert store.fault() is None
    db.unlink()
    assert store.fault() == "deleted"
    readers_closed: list[bool] = []
    store.repair(lambda: readers_closed.append(True))
    assert readers_closed == [True] and store.fault() is None and db.exists()
    assert "a" in store.reload()[0]  # every session copied into the new file
    db.rename(tmp_path / "moved.db")
    db.write_bytes(b"someone else's file")
    assert store.fault() == "replaced"
    with pytest.raises(StoreFault, match="replaced") as e:
        store.repair(lambda: None)
    assert isinstance(e.value.cause, RuntimeError)
    assert db.read_bytes() == b"someone else's file"
    store.close()
