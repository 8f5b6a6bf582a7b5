"""`sessionmem store copy --to URL` / `--from URL` (design §12, "Moving"): real daemons on
real SQLite files and a real PostgreSQL server, the CLI as users run it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from sessionmem import Session

from conftest import Daemon, run_cli, wait_for

pytest.importorskip("psycopg", reason="the extra sessionmem[postgres] is not installed")

SECRET = "s3cret-pw"
KEY = "example.com/me/proj"


def with_password(url: str) -> str:
    # The throwaway cluster trusts its socket: the password is carried, never checked.
    return url.replace("postgresql:///", f"postgresql://sessionmem:{SECRET}@/", 1)


def copy(root: Path, env: dict[str, str], *args: str) -> Any:
    return run_cli(["--project", str(root), "store", "copy", *args], env)


def populate(s: Session) -> None:
    """Four sessions (the daemon's first, empty one too) with everything a session holds."""
    s.create_session("planner")
    s.create_session("coder")
    p = s.bound("planner")
    p.set_current_task("plan the parser")
    p.set_active_ticket("T-7")
    for i in range(5):
        p.add_message("user" if i % 2 else "assistant", f"plan {i}", timestamp=1_700_000_000_000 + i,
                      message_id=f"plan-{i}", data={"i": i, "nested": [i, {"x": None}]})
    p.add_message("tool", "no id, no data")
    for f in ("src/a.py", "src/b.py", "src/c.py"):
        p.track_open_file(f)
    p.untrack_file("src/b.py")
    p.track_open_file("src/b.py")  # now last: files keep their tracking order
    for k in ("zeta", "alpha", "mid"):
        p.set_context(k, {"key": k})
    p.set_context("zeta", [1, 2, 3])  # an update keeps its place
    c = s.bound("coder")
    c.add_message("assistant", "ünïcödé \u0000 and a NUL", message_id="nul-1")
    c.set_context("plain", "text")
    long = s.bound(s.create_session("long"))
    with long.transaction() as t:  # more than a start loads at once (1,000) and than a write chunk
        for i in range(2500):
            t.add_message("user", f"long {i}", message_id=f"long-{i}")
    s.set_current_session("coder")
    s.acquire_lease("file:src/a.py", ttl=3600, owner="agent-a")  # not renewed: `with` would


def snapshot_of(s: Session) -> dict[str, Any]:
    """Everything a client sees of a project, session by session, for comparison."""
    out: dict[str, Any] = {}
    for info in s.list_sessions():
        b = s.bound(info.sessionId)
        out[info.sessionId] = {
            "task": b.get_current_task(),
            "ticket": b.get_active_ticket(),
            "messages": [(m.role, m.content, m.timestamp, m.id, m.data) for m in b.get_all_messages(full=True)],
            "files": b.get_open_files(),
            "context": list(b.get_all_context().items()),
            "startTime": info.startTime,
            "revision": info.revision,  # listSessions' order
        }
    return out


def leases_of(s: Session) -> list[Any]:
    return [(x.name, x.owner, x.token, x.expiresAt, x.ttlMs, x.sessionId) for x in s.list_leases()]


def test_sqlite_to_postgresql_to_a_fresh_sqlite_keeps_every_field(
        make_daemon: Any, env: dict[str, str], pg_url: str, tmp_path: Path) -> None:
    # The source daemon runs throughout, its changes only in memory (a long snapshot
    # interval): the copy must ask it for a snapshot.
    src: Daemon = make_daemon("--snapshot-interval", "3600", root=tmp_path / "src", name="src")
    with src.session() as s:
        populate(s)
        want = snapshot_of(s)
        want_current = s.get_session_id()
        leases = leases_of(s)
        revision = s.get_stats().revision
    assert len(want) == 4 and want_current == "coder" and leases and len(want["long"]["messages"]) == 2500
    url = with_password(pg_url)
    r = copy(src.root, env, "--to", url, "--project-key", KEY)
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stdout + r.stderr and "sessionmem:***@" in r.stdout
    assert "copied 4 session(s) (2507 messages, 3 files, 4 context keys, 1 lease(s))" in r.stdout, r.stdout
    assert f"sessionmemd (pid {src.pid}) still serves" in r.stderr  # it said what stays behind
    # A daemon on PostgreSQL under the key serves exactly what the SQLite daemon served.
    pg: Daemon = make_daemon("--store", pg_url, "--project-key", KEY, root=tmp_path / "pg", name="pg")
    with pg.session() as s:
        assert snapshot_of(s) == want
        assert s.get_session_id() == want_current
        assert leases_of(s) == leases
        assert s.get_stats().revision >= revision  # revisions (and lease tokens) never go back
        s.bound("planner").add_message("user", "written on postgresql", message_id="pg-1")
        s.bound("planner").add_message("user", "written on postgresql", message_id="pg-1")  # a retry: no second one
        s.bound("planner").add_message("user", "again", message_id="plan-0")  # a copied id: known
        got = snapshot_of(s)
        assert got["planner"]["messages"][:-1] == want["planner"]["messages"]
        assert got["planner"]["messages"][-1][3] == "pg-1"
        assert got["planner"]["revision"] > revision
        want = got
    pg.stop()
    # ... and back, into a fresh project's SQLite file, with no daemon on it yet
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    r = copy(fresh, env, "--from", url, "--project-key", KEY)
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stdout + r.stderr
    back: Daemon = make_daemon(root=fresh, name="back")
    with back.session() as s:
        assert snapshot_of(s) == want
        assert s.get_session_id() == want_current
        assert leases_of(s) == leases
        assert s.get_stats().revision >= want["planner"]["revision"]
        s.bound("planner").add_message("user", "again", message_id="pg-1")  # known id: not added twice
        assert snapshot_of(s)["planner"]["messages"] == want["planner"]["messages"]
    # field by field in the files themselves: the source's rows, and the fresh copy's rows
    # but the one message written on PostgreSQL
    src.stop()
    back.stop()
    got, had = rows(back.db), rows(src.db)
    assert [m for m in got["messages"] if m[4] != "pg-1"] == had["messages"]
    assert {k: v for k, v in got.items() if k != "messages"} == {k: v for k, v in had.items() if k != "messages"}


def rows(db: Path) -> dict[str, Any]:
    c = sqlite3.connect(db)
    try:
        return {
            "sessions": c.execute("SELECT id, start_time, current_task, active_ticket FROM sessions "
                                  "ORDER BY id").fetchall(),
            "messages": c.execute("SELECT session_id, role, content, timestamp, message_id, data FROM "
                                  "session_messages ORDER BY session_id, rowid").fetchall(),
            "files": c.execute("SELECT session_id, file_path FROM session_files ORDER BY session_id, rowid").fetchall(),
            "context": c.execute("SELECT session_id, key, value FROM session_context "
                                 "ORDER BY session_id, rowid").fetchall(),
            "current": c.execute("SELECT value FROM sessionmem_meta WHERE key = 'current_session'").fetchall(),
            "leases": c.execute("SELECT name, owner, token, expires_at, ttl_ms, session_id FROM "
                                "sessionmem_leases").fetchall(),
        }
    finally:
        c.close()


def pg_count(pg_cluster: Any, url: str, table: str, key: str = KEY) -> int:
    db = url.split("/")[3].split("?")[0]
    return int(pg_cluster.psql(f"SELECT count(*) FROM {table} WHERE project_key = '{key}'", database=db))


def test_a_key_that_holds_sessions_is_refused_and_left_as_it_was(
        make_daemon: Any, env: dict[str, str], pg_url: str, pg_cluster: Any, tmp_path: Path) -> None:
    src: Daemon = make_daemon(root=tmp_path / "src", name="src")
    with src.session() as s:
        s.add_message("user", "first copy")
    assert copy(src.root, env, "--to", pg_url, "--project-key", KEY).returncode == 0
    before = pg_count(pg_cluster, pg_url, "sessionmem_messages")
    with src.session() as s:
        s.add_message("user", "second copy")
    r = copy(src.root, env, "--to", pg_url, "--project-key", KEY)
    assert r.returncode == 1 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"project key '{KEY}'" in r.stderr and "already holds 1 session(s) with content" in r.stderr
    assert "nothing was copied" in r.stderr
    assert pg_count(pg_cluster, pg_url, "sessionmem_messages") == before == 1
    # another key in the same database is another project: it takes the copy
    r = copy(src.root, env, "--to", pg_url, "--project-key", "example.com/me/other")
    assert r.returncode == 0, r.stderr
    assert pg_count(pg_cluster, pg_url, "sessionmem_messages", "example.com/me/other") == 2


def test_from_refuses_a_sqlite_file_that_holds_sessions_or_is_served(
        make_daemon: Any, env: dict[str, str], pg_url: str, tmp_path: Path) -> None:
    src: Daemon = make_daemon(root=tmp_path / "src", name="src")
    with src.session() as s:
        s.add_message("user", "in postgresql")
    assert copy(src.root, env, "--to", pg_url, "--project-key", KEY).returncode == 0
    # a daemon serves the target file: refused, saying to stop it; the daemon serves on
    other: Daemon = make_daemon(root=tmp_path / "other", name="other")
    r = copy(other.root, env, "--from", pg_url, "--project-key", KEY)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"a sessionmemd serves {other.db}: stop it first" in r.stderr and "nothing was copied" in r.stderr
    with other.session() as s:
        assert s.get_all_messages() == []
        s.add_message("user", "the other's own")
    other.stop()
    # stopped, it holds a session with content: refused, and left as it was
    before = rows(other.db)
    r = copy(other.root, env, "--from", pg_url, "--project-key", KEY)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"{other.db} already holds 1 session(s) with content" in r.stderr
    assert "move that file aside" in r.stderr
    assert rows(other.db) == before
    # a file holding only the empty session a daemon's start made takes the copy, which replaces it
    empty: Daemon = make_daemon(root=tmp_path / "empty", name="empty")
    with empty.session() as s:
        first = s.get_session_id()
    empty.stop()
    r = copy(empty.root, env, "--json", "--from", pg_url, "--project-key", KEY)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["replaced"] == [first]
    empty.start()
    with empty.session() as s:
        assert [m.content for m in s.get_all_messages()] == ["in postgresql"]
        assert first not in [i.sessionId for i in s.list_sessions()]


def test_to_refuses_a_key_a_daemon_serves(make_daemon: Any, env: dict[str, str], pg_url: str, pg_cluster: Any,
                                          tmp_path: Path) -> None:
    src: Daemon = make_daemon(root=tmp_path / "src", name="src")
    with src.session() as s:
        s.add_message("user", "to copy")
    pg: Daemon = make_daemon("--store", pg_url, "--project-key", KEY, root=tmp_path / "pg", name="pg")
    r = copy(src.root, env, "--to", pg_url, "--project-key", KEY)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"a sessionmemd serves the PostgreSQL store {pg_url} (project key '{KEY}'): stop it first" in r.stderr
    assert pg_count(pg_cluster, pg_url, "sessionmem_messages") == 0
    with pg.session() as s:
        first = s.get_session_id()  # the empty session its start made
    holder = pg.conn()  # an ephemeral lease, its client still connected at the stop
    holder.result("acquireLease", {"name": "eph", "owner": "a"})
    pg.stop()
    assert pg_count(pg_cluster, pg_url, "sessionmem_leases") == 1  # its holder gone: no claim on the key
    r = copy(src.root, env, "--to", pg_url, "--project-key", KEY)
    assert r.returncode == 0, r.stderr
    assert f"replaced the target's empty session(s) {first}" in r.stdout
    pg.start()
    with pg.session() as s:
        assert [m.content for m in s.get_all_messages()] == ["to copy"]
        wait_for(lambda: s.list_leases() == [], 10, "the dead daemon's lease to end")


def test_a_failure_half_way_leaves_nothing_behind(make_daemon: Any, env: dict[str, str], pg_url: str,
                                                  pg_cluster: Any, tmp_path: Path) -> None:
    src: Daemon = make_daemon(root=tmp_path / "src", name="src")
    with src.session() as s:
        s.create_session("second")
        s.add_message("user", "fine")
        s.bound("second").add_message("user", "poison")  # changed last: copied last
        s.bound("second").set_context("k", 1)
    db = pg_url.split("/")[3].split("?")[0]
    # PostgreSQL refuses the last session's message half way through the copy
    pg_cluster.psql("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "IF convert_from(NEW.content, 'UTF8') = 'poison' THEN RAISE EXCEPTION 'poisoned row'; END IF; "
                    "RETURN NEW; END $$; CREATE TABLE IF NOT EXISTS sessionmem_schema (version integer NOT NULL)",
                    database=db)
    r = copy(src.root, env, "--to", pg_url, "--project-key", KEY)  # no trigger yet: all of it, into KEY
    assert r.returncode == 0, r.stderr
    pg_cluster.psql("CREATE TRIGGER poison BEFORE INSERT ON sessionmem_messages FOR EACH ROW "
                    "EXECUTE FUNCTION refuse()", database=db)
    r = copy(src.root, env, "--to", with_password(pg_url), "--project-key", "k2")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "poisoned row" in r.stderr and "nothing was copied" in r.stderr and SECRET not in r.stderr
    for table in ("sessionmem_sessions", "sessionmem_messages", "sessionmem_files", "sessionmem_context",
                  "sessionmem_leases"):
        assert pg_count(pg_cluster, pg_url, table, "k2") == 0, table
    assert pg_cluster.psql("SELECT count(*) FROM sessionmem_projects WHERE project_key = 'k2' "
                           "AND (current_session IS NOT NULL OR revisions_reserved > 0)", database=db) == "0"
    # and back: the source's second session made unreadable half way (a message that is
    # not UTF-8): the SQLite file the copy created is removed again
    pg_cluster.psql("DROP TRIGGER poison ON sessionmem_messages", database=db)
    pg_cluster.psql(f"UPDATE sessionmem_messages SET content = '\\xff'::bytea WHERE project_key = '{KEY}' "
                    f"AND convert_from(content, 'UTF8') = 'poison'", database=db)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    r = copy(fresh, env, "--from", pg_url, "--project-key", KEY)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "nothing was copied" in r.stderr
    made = fresh / ".arela" / "memory"
    assert not [p.name for p in made.iterdir() if p.name.startswith("session.db")], list(made.iterdir())
    # a SQLite target that was there stays exactly as it was
    empty: Daemon = make_daemon(root=tmp_path / "empty", name="empty")
    empty.stop()
    before = rows(empty.db)
    r = copy(empty.root, env, "--from", pg_url, "--project-key", KEY)
    assert r.returncode == 1 and "nothing was copied" in r.stderr
    assert rows(empty.db) == before and empty.db.exists()


def test_the_store_and_key_come_as_the_daemon_finds_them(make_daemon: Any, env: dict[str, str], pg_url: str,
                                                         pg_cluster: Any, tmp_path: Path) -> None:
    src: Daemon = make_daemon(root=tmp_path / "src", name="src")
    with src.session() as s:
        s.add_message("user", "keyed by the toml")
    # no key anywhere (no option, variable, toml entry or git origin): refused, saying how
    r = copy(src.root, env, "--to", pg_url)
    assert r.returncode == 1 and "needs a project key" in r.stderr and "--project-key" in r.stderr
    # `--to` alone: the URL and the key of the project's sessionmem.toml
    (src.root / "sessionmem.toml").write_text(f'[store]\nurl = "{with_password(pg_url)}"\n'
                                              f'project_key = "from/the/toml"\n')
    r = copy(src.root, env, "--to")
    assert r.returncode == 0, r.stderr
    assert "project key 'from/the/toml'" in r.stdout and SECRET not in r.stdout + r.stderr
    assert pg_count(pg_cluster, pg_url, "sessionmem_messages", "from/the/toml") == 1
    # $SESSIONMEM_PROJECT_KEY comes before the toml, --project-key before both
    r = copy(src.root, dict(env, SESSIONMEM_PROJECT_KEY="from/the/env"), "--to")
    assert r.returncode == 0 and pg_count(pg_cluster, pg_url, "sessionmem_messages", "from/the/env") == 1
    r = copy(src.root, dict(env, SESSIONMEM_PROJECT_KEY="from/the/env"), "--to", "--project-key", "from/argv")
    assert r.returncode == 0 and pg_count(pg_cluster, pg_url, "sessionmem_messages", "from/argv") == 1
    # neither or both directions: a usage error
    assert copy(src.root, env).returncode == 2
    assert copy(src.root, env, "--to", "--from").returncode == 2


def test_the_copy_benchmark_runs_tiny() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import storecopy_bench

    r = storecopy_bench.run(2000, 2)
    assert r["messages"] == 2000 and r["to_s"] > 0 and r["from_s"] > 0 and r["to_floor_s"] > 0


def test_a_file_the_original_tool_wrote_is_copied_too(make_daemon: Any, env: dict[str, str], pg_url: str,
                                                      tmp_path: Path) -> None:
    from sessionmemd.schema import ORIGINAL_SCHEMA

    root = tmp_path / "old"
    (root / ".arela" / "memory").mkdir(parents=True)
    c = sqlite3.connect(root / ".arela" / "memory" / "session.db")
    c.executescript(ORIGINAL_SCHEMA)  # the original's four tables, nothing of ours
    c.execute("INSERT INTO sessions (id, start_time, current_task, created_at) VALUES ('older', 1, 'old task', 10)")
    c.execute("INSERT INTO sessions (id, start_time, current_task, created_at) VALUES ('latest', 2, 'task', 20)")
    c.executemany("INSERT INTO session_messages (session_id, role, content, timestamp) VALUES ('latest', ?, ?, ?)",
                  [("user", "one", 100), ("assistant", "two", 101), ("user", "three", 102)])
    c.executemany("INSERT INTO session_files (session_id, file_path) VALUES ('latest', ?)", [("b.py",), ("a.py",)])
    c.executemany("INSERT INTO session_context (session_id, key, value) VALUES ('latest', ?, ?)",
                  [("plan", '{"step": 1}'), ("note", "plain text, not JSON")])
    c.commit()
    c.close()
    r = copy(root, env, "--to", pg_url, "--project-key", KEY)
    assert r.returncode == 0, r.stderr
    assert "copied 2 session(s) (3 messages, 2 files, 2 context keys, 0 lease(s))" in r.stdout
    pg: Daemon = make_daemon("--store", pg_url, "--project-key", KEY, root=tmp_path / "pg", name="pg")
    with pg.session() as s:
        assert s.get_session_id() == "latest"  # the original's current: the latest created
        assert [(m.role, m.content, m.timestamp) for m in s.get_all_messages()] == [
            ("user", "one", 100), ("assistant", "two", 101), ("user", "three", 102)]
        assert s.get_open_files() == ["b.py", "a.py"]
        assert list(s.get_all_context().items()) == [("plan", {"step": 1}), ("note", "plain text, not JSON")]
        assert s.bound("older").get_current_task() == "old task"


def test_a_copy_while_an_agent_writes_is_one_moment_of_the_source(make_daemon: Any, env: dict[str, str],
                                                                   pg_url: str, tmp_path: Path) -> None:
    import threading

    src: Daemon = make_daemon("--snapshot-interval", "0.05", root=tmp_path / "src", name="src")
    acked: list[str] = []
    stop = threading.Event()

    def agent() -> None:
        with src.session() as s:
            i = 0
            while not stop.is_set():
                s.add_message("user", f"m{i}", message_id=f"m{i}")
                acked.append(f"m{i}")
                i += 1

    t = threading.Thread(target=agent)
    t.start()
    try:
        while len(acked) < 200:
            stop.wait(0.01)
        before = len(acked)
        r = copy(src.root, env, "--to", pg_url, "--project-key", KEY)
        after = len(acked)
    finally:
        stop.set()
        t.join(30)
    assert r.returncode == 0, r.stderr
    pg: Daemon = make_daemon("--store", pg_url, "--project-key", KEY, root=tmp_path / "pg", name="pg")
    with pg.session() as s:
        got = [m.id for m in s.get_all_messages(full=True)]
    # every message acknowledged before the copy began, in order, and then a gapless
    # prefix of what came during it: one moment of the source, nothing torn (the agent
    # has at most one call in flight, applied perhaps before its reply was counted)
    assert before <= len(got) <= after + 1, (before, len(got), after)
    assert got == [f"m{i}" for i in range(len(got))]


def test_the_copy_leaves_postgresql_vacuumed_and_analyzed(
        make_daemon: Any, env: dict[str, str], pg_url: str, pg_cluster: Any, tmp_path: Path) -> None:
    # A daemon's first reads on a bulk load need the planner's statistics and the
    # visibility map (storecopy.PgTarget.settle): the copy makes them, not autovacuum later.
    src: Daemon = make_daemon(root=tmp_path / "src", name="src")
    with src.session() as s:
        for i in range(50):
            s.add_message("user", f"m{i}")
    db = pg_url.split("/")[3].split("?")[0]
    r = copy(src.root, env, "--to", pg_url, "--project-key", KEY)
    assert r.returncode == 0, r.stderr
    seen = pg_cluster.psql("SELECT relname, last_vacuum IS NOT NULL, last_analyze IS NOT NULL FROM pg_stat_user_tables "
                           "WHERE relname IN ('sessionmem_messages', 'sessionmem_sessions') ORDER BY relname",
                           database=db)
    assert seen.splitlines() == ["sessionmem_messages|t|t", "sessionmem_sessions|t|t"], seen
    assert pg_cluster.psql("SELECT reltuples FROM pg_class WHERE relname = 'sessionmem_messages'", database=db) == "50"
