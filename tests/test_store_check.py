"""A client told a store ($SESSIONMEM_STORE) that reaches a daemon serving another store
refuses, one line and exit non-zero, instead of writing to the wrong one: a real daemon on
SQLite and on PostgreSQL, both clients and the CLI (its one-shot path, `call` and click)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from sessionmem import AsyncSession, Session, errors
from sessionmem.storename import identity, mask

from conftest import Daemon, run_cli

pytest.importorskip("psycopg", reason="the extra sessionmem[postgres] is not installed")

SECRET = "s3cret-pw"


def with_password(url: str) -> str:
    # The throwaway cluster trusts its socket: the password is carried, never checked.
    return url.replace("postgresql:///", f"postgresql://sessionmem:{SECRET}@/", 1)


def cli(d: Daemon, env: dict[str, str], *args: str) -> Any:
    return run_cli(["--project", str(d.root), "--socket", str(d.socket), *args], env)


def task_now(d: Daemon) -> str | None:
    with Session(project=d.root, socket=d.socket, autostart=False, check_version=False) as s:
        return s.get_current_task()


def test_a_client_told_postgresql_refuses_a_daemon_on_sqlite(make_daemon: Any, env: dict[str, str], pg_url: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    d = make_daemon()
    with d.session() as s:
        s.set_current_task("before")
        assert s.daemon.store == "sqlite" and s.daemon.projectKey is None
    told = dict(env, SESSIONMEM_STORE=with_password(pg_url))
    # the CLI: its one-shot path (task set), `call`, and click's (sessions list)
    for args in (["task", "set", "wrong store"], ["call", "setCurrentTask", '{"task": "wrong store"}'],
                 ["sessions", "list"], ["msg", "add", "user", "wrong store"]):
        r = cli(d, told, *args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and r.stdout == "", (args, r.stderr)
        assert "SESSIONMEM_STORE names postgresql://sessionmem:***@/" in lines[0], lines[0]
        assert f"serves the SQLite file {d.db}" in lines[0] and "(code -3)" in lines[0]
        assert SECRET not in r.stderr
    assert task_now(d) == "before"  # nothing was written
    # the blocking and the asyncio client
    monkeypatch.setenv("SESSIONMEM_STORE", pg_url)
    with pytest.raises(errors.StoreMismatch, match="serves the SQLite file"):
        Session(project=d.root, socket=d.socket, autostart=False)

    async def connect() -> None:
        async with AsyncSession(project=d.root, socket=d.socket, autostart=False) as a:
            await a.set_current_task("wrong store")

    with pytest.raises(errors.StoreMismatch, match="serves the SQLite file"):
        asyncio.run(connect())
    assert task_now(d) == "before"
    # told the store it serves: everything works (so the refusals above are about the store)
    monkeypatch.setenv("SESSIONMEM_STORE", "sqlite")
    with Session(project=d.root, socket=d.socket, autostart=False) as s:
        s.set_current_task("sqlite told")
    for args in (["task", "get"], ["call", "getCurrentTask"], ["sessions", "list"]):
        r = cli(d, dict(env, SESSIONMEM_STORE="sqlite"), *args)
        assert r.returncode == 0, (args, r.stderr)
        assert "sqlite told" in r.stdout or args == ["sessions", "list"], r.stdout


def test_a_client_told_another_store_refuses_a_daemon_on_postgresql(
        make_daemon: Any, env: dict[str, str], pg_url: str, pg_cluster: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    served = pg_url.replace("postgresql:///", "postgresql://sessionmem@/", 1)  # the password elsewhere
    d = make_daemon("--store", served, "--project-key", "example.com/me/proj")
    with d.session() as s:
        s.set_current_task("before")
        assert s.daemon.store == served and s.daemon.projectKey == "example.com/me/proj"
    other_db = pg_cluster.url("postgres")
    refused = {
        "sqlite": dict(env, SESSIONMEM_STORE="sqlite"),
        "another database": dict(env, SESSIONMEM_STORE=other_db),
        "another key": dict(env, SESSIONMEM_STORE=served, SESSIONMEM_PROJECT_KEY="example.com/me/other"),
    }
    for why, e in refused.items():
        for args in (["task", "set", "wrong store"], ["call", "getSessionId"], ["sessions", "list"]):
            r = cli(d, e, *args)
            assert r.returncode == 1, (why, args, r.stdout, r.stderr)
            assert len(r.stderr.strip().splitlines()) == 1 and "(code -3)" in r.stderr, (why, r.stderr)
            assert ("example.com/me/other" in r.stderr) if why == "another key" else (served in r.stderr), r.stderr
        for k, v in e.items():
            monkeypatch.setenv(k, v)
        with pytest.raises(errors.StoreMismatch):
            Session(project=d.root, socket=d.socket, autostart=False)

        async def connect() -> None:
            async with AsyncSession(project=d.root, socket=d.socket, autostart=False):
                pass

        with pytest.raises(errors.StoreMismatch):
            asyncio.run(connect())
        monkeypatch.delenv("SESSIONMEM_PROJECT_KEY", raising=False)
    assert task_now(d) == "before"
    # The same store, its password given in the URL (the daemon shows it masked) and the
    # right key: accepted by every path, the one-shot one included.
    same = dict(env, SESSIONMEM_STORE=with_password(pg_url), SESSIONMEM_PROJECT_KEY="example.com/me/proj")
    for args in (["task", "set", "right store"], ["call", "getCurrentTask"], ["task", "get"], ["sessions", "list"]):
        r = cli(d, same, *args)
        assert r.returncode == 0, (args, r.stderr)
    assert task_now(d) == "right store"
    monkeypatch.setenv("SESSIONMEM_STORE", served.replace("postgresql://", "postgres://", 1))
    with Session(project=d.root, socket=d.socket, autostart=False) as s:
        assert s.get_current_task() == "right store"
    # `daemon status` still inspects a daemon of another store, and names it
    r = cli(d, refused["sqlite"], "daemon", "status")
    assert r.returncode == 0 and served in r.stdout, r.stderr


def test_store_names_compare_without_passwords() -> None:
    url = "postgresql://agents:pw@db.internal:5432/sm?sslmode=require&password=pw2"
    assert mask(url) == "postgresql://agents:***@db.internal:5432/sm?sslmode=require&password=***"
    assert identity(url) == identity(mask(url)) == "postgresql://agents@db.internal:5432/sm?sslmode=require"
    assert identity("postgresql://agents:pw@db.internal:5432/sm?sslmode=require") == identity(url)
    assert identity("postgres://agents@db.internal:5432/sm?sslmode=require") == identity(url)
    assert identity("postgresql://agents@db.internal:5432/other") != identity(url)
    assert identity("postgresql://other@db.internal:5432/sm?sslmode=require") != identity(url)
    assert identity("sqlite") == "sqlite" != identity(url)
    # the parts libpq takes from the URL or from its parameters name the same server
    assert identity("postgresql://sessionmem:pw@/db?host=/tmp/pg&user=sessionmem") == \
        identity("postgresql:///db?host=/tmp/pg&user=sessionmem") == \
        identity("postgresql://%2Ftmp%2Fpg/db?user=sessionmem") == identity("postgresql:///?dbname=db&host=/tmp/pg&user=sessionmem")
    assert identity("postgresql://h:5433/db") != identity("postgresql://h/db") != identity("postgresql://h2/db")
    assert identity("postgresql://h/db?sslmode=require&application_name=x") == \
        identity("postgresql://h/db?application_name=x&sslmode=require")


def test_unknown_store_names_are_refused_by_the_daemon(tmp_path: Path, env: dict[str, str]) -> None:
    from sessionmemd.storeurl import StoreChoiceError, choose

    (tmp_path / "sessionmem.toml").write_text('[store]\nurl = "postgresql:///x"\nproject_key = "k"\n')
    assert choose(tmp_path, None, None, {"SESSIONMEM_STORE": "sqlite"}).url is None  # overrides the toml
    assert choose(tmp_path, None, None, {}).url == "postgresql:///x"
    with pytest.raises(StoreChoiceError, match="give a postgresql:// URL, or sqlite"):
        choose(tmp_path, "mysql://x", None, {})
