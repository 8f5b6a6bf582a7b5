"""The PostgreSQL store (pgstore.py) through the seam alone, on a real server (the
pg_url fixture: a database of this test's own in a throwaway cluster), and the store
options (storeurl.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sessionmemd.batch import Batch
from sessionmemd.state import SessionState
from sessionmemd.storage import Storage, StoreError
from sessionmemd.storeurl import StoreChoiceError, choose, mask, normalise_origin

pytest.importorskip("psycopg", reason="the extra sessionmem[postgres] is not installed")

from sessionmemd.pgschema import SCHEMA_VERSION, NewerSchema  # noqa: E402
from sessionmemd.pgstore import PgStore, ProjectBusy  # noqa: E402

from test_seam import contents, session  # noqa: E402  (one home for the store tests' helpers)


def test_pg_store_through_the_interface(pg_url: str) -> None:
    store: Storage = PgStore(pg_url, "k")
    assert store.take_opened() == ({}, None)
    assert store.reserve_revisions(100) == (0, False)
    s = session("a", 5)
    s.track_file("f2")
    s.track_file("f1")
    s.set_context("z", b'{"x":1}')
    s.set_context("a", b"2")
    store.write([Batch(sessions=[s.drain()], current="a", log_rows=[(1, "a", b"{}")])])  # type: ignore[list-item]
    store.close()

    store = PgStore(pg_url, "k", tail=2)
    known, current = store.take_opened()
    assert "a" in known and current is not None and current.session_id == "a"
    assert contents(current.messages) == ["m3", "m4"] and current.older == 3
    assert current.files == ["f2", "f1"]  # the order tracked
    assert list(current.context) == ["z", "a"] and current.context["z"] == b'{"x":1}'
    assert store.reserve_revisions(100)[0] == 100  # the reserved mark survives
    reader = store.reader()
    assert contents(reader.load_older("a", current.older_cursor)) == ["m0", "m1", "m2"]
    assert reader.session_rows()["a"][3:] == (5, 2, 2)
    assert reader.change_rows(0, 10**9) == [(1, "a", b"{}")]
    reader.close()
    store.close()


def test_one_daemon_per_key_and_keys_never_see_each_other(pg_url: str) -> None:
    a = PgStore(pg_url, "one")
    with pytest.raises(ProjectBusy, match="one daemon per project key"):
        PgStore(pg_url, "one")
    a.write([Batch(sessions=[session("s", 2).drain()], current="s")])  # type: ignore[list-item]
    b = PgStore(pg_url, "two")
    assert b.take_opened() == ({}, None)
    assert b.reader().session_rows() == {}
    a.close()
    a.close()  # idempotent
    PgStore(pg_url, "one").close()  # the lock went with the connection
    b.close()


def test_a_newer_schema_is_refused(pg_url: str, pg_cluster: object) -> None:
    PgStore(pg_url, "k").close()
    pg_cluster.psql(f"UPDATE sessionmem_schema SET version = {SCHEMA_VERSION + 1}",  # type: ignore[attr-defined]
                    database=pg_url.split("/")[3].split("?")[0])
    with pytest.raises(NewerSchema, match="newer than this sessionmemd knows"):
        PgStore(pg_url, "k")


def test_an_unreachable_server_is_a_store_error_naming_it(tmp_path: Path) -> None:
    url = f"postgresql://u:s3cret@/db?host={tmp_path}"
    with pytest.raises(StoreError) as e:
        PgStore(url, "k")
    assert "s3cret" not in str(e.value) and "PostgreSQL store" in str(e.value)


def test_a_write_after_the_server_went_away_fails_and_repairs(pg_url: str, pg_cluster: object) -> None:
    from sessionmemd.storage import StoreFault

    store = PgStore(pg_url, "k")
    store.write([Batch(sessions=[session("a", 1).drain()], current="a")])  # type: ignore[list-item]
    pg_cluster.stop()  # type: ignore[attr-defined]
    try:
        with pytest.raises(StoreError, match="unreachable"):
            store.write([Batch(sessions=[session("b", 1).drain()])])  # type: ignore[list-item]
        assert store.fault() == "disconnected"
        with pytest.raises(StoreFault, match="PostgreSQL store"):
            store.repair(lambda: None)
    finally:
        pg_cluster._pg_ctl_start()  # type: ignore[attr-defined]
    store.repair(lambda: None)
    assert store.fault() is None
    store.write([Batch(sessions=[session("b", 1).drain()])])  # type: ignore[list-item]
    assert set(store.reload()[0]) == {"a", "b"}
    store.close()


def test_mask_hides_every_password() -> None:
    url = "postgresql://me:s3cret@db.example/app?sslmode=require"
    assert mask(url) == "postgresql://me:***@db.example/app?sslmode=require"
    assert "pw" not in mask("postgresql://db/app?password=pw&user=me")
    assert mask("postgresql:///app?host=/run/pg") == "postgresql:///app?host=/run/pg"
    assert mask("FATAL: password s3cret rejected", url) == "FATAL: password *** rejected"


def test_origin_is_normalised() -> None:
    for origin in ("git@github.com:me/repo.git", "https://me:tok@github.com/me/repo.git", "ssh://git@github.com/me/repo"):
        assert normalise_origin(origin) == "github.com/me/repo"


def test_store_choice_order_and_the_missing_key(tmp_path: Path) -> None:
    (tmp_path / "sessionmem.toml").write_text('[store]\nurl = "postgresql:///t"\nproject_key = "toml"\n')
    c = choose(tmp_path, None, None, {})
    assert (c.url, c.project_key) == ("postgresql:///t", "toml")
    c = choose(tmp_path, None, None, {"SESSIONMEM_STORE": "postgresql:///e", "SESSIONMEM_PROJECT_KEY": "env"})
    assert (c.url, c.project_key) == ("postgresql:///e", "env")
    c = choose(tmp_path, "postgresql:///o", "opt", {"SESSIONMEM_STORE": "postgresql:///e"})
    assert (c.url, c.project_key) == ("postgresql:///o", "opt")
    bare = tmp_path / "bare"
    bare.mkdir()
    assert choose(bare, None, None, {}).url is None  # SQLite
    with pytest.raises(StoreChoiceError, match="--project-key"):
        choose(bare, "postgresql:///x", None, {})


def test_the_daemon_refuses_postgresql_without_a_key(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "sessionmemd", "--project", str(tmp_path), "--socket",
                        str(tmp_path / "s.sock"), "--store", "postgresql://me:s3cret@/x"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 78 and "--project-key" in r.stderr and "s3cret" not in r.stderr


def test_the_core_does_not_import_the_driver() -> None:
    r = subprocess.run([sys.executable, "-c", "import sys, sessionmemd.main, sessionmem.cli.entry; "
                        "print('psycopg' in sys.modules)"], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "False", r.stderr


def test_any_string_the_wire_allows_round_trips(pg_url: str) -> None:
    """PostgreSQL's text cannot hold NUL: free text is kept as UTF-8 bytea."""
    store = PgStore(pg_url, "k")
    s = SessionState("a", 1)
    s.add_message("u\x00", "c\x00ontent é", 1)
    s.track_file("f\x00.py")
    s.set_context("k\x00", b'"\\u0000"')
    s.current_task = "t\x00"
    store.write([Batch(sessions=[s.drain()], current="a")])  # type: ignore[list-item]
    store.close()
    store = PgStore(pg_url, "k")
    got = store.take_opened()[1]
    assert got is not None and got.current_task == "t\x00" and got.files == ["f\x00.py"]
    assert json.loads(got.messages.all()) == [{"role": "u\x00", "content": "c\x00ontent é", "timestamp": 1}]
    assert list(got.context) == ["k\x00"]
    store.close()
