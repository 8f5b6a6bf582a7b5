"""sessionmemd on a PostgreSQL store, as users run it: chosen by the project's committed
sessionmem.toml (an autostarted daemon too), the password never shown, nothing
acknowledged lost to a kill -9. Real processes, a real server (pg_url)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon, wait_for

pytest.importorskip("psycopg", reason="the extra sessionmem[postgres] is not installed")

SECRET = "s3cret-pw"


def with_password(url: str) -> str:
    # The throwaway cluster trusts its socket: the password is carried, never checked,
    # which is enough to see where it shows.
    return url.replace("postgresql:///", f"postgresql://sessionmem:{SECRET}@/", 1)


def count_messages(pg_cluster: Any, url: str, content: str) -> int:
    db = url.split("/")[3].split("?")[0]
    return int(pg_cluster.psql(f"SELECT count(*) FROM sessionmem_messages WHERE convert_from(content, 'UTF8') "
                               f"= '{content}'", database=db))


def test_an_autostarted_daemon_takes_its_store_from_sessionmem_toml(
        tmp_path: Path, env: dict[str, str], pg_url: str, pg_cluster: Any) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    url = with_password(pg_url)
    (root / "sessionmem.toml").write_text(f'[store]\nurl = "{url}"\nproject_key = "example.com/me/proj"\n')
    e = dict(env)
    e.pop("SESSIONMEM_NO_AUTOSTART", None)
    code = textwrap.dedent("""
        import sys
        import msgspec
        from sessionmem import Session
        with Session(project=sys.argv[1]) as s:
            s.add_message("user", "into postgres")
            print(s.daemon.pid)
            print(msgspec.json.encode(s.call("hello", {"clientVersion": "t", "protocolVersion": 3})).decode())
            print(msgspec.json.encode(s.call("getStats")).decode())
    """)
    r = subprocess.run([sys.executable, "-c", code, str(root)], env=e, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    pid_line, hello, stats = r.stdout.splitlines()
    pid = int(pid_line)
    try:
        assert count_messages(pg_cluster, pg_url, "into postgres") == 1  # its writes are in PostgreSQL
        assert SECRET not in hello and SECRET not in stats and "***" in stats
        assert '"durability":"always"' in stats.replace(" ", "")
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert SECRET.encode() not in argv and b"postgresql" not in argv  # nothing of it in ps
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or
                 Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z", 30, "daemon exit")
    log = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*.log"))
    assert SECRET not in log


def test_a_kill9_loses_nothing_acknowledged(make_daemon: Any, pg_url: str, tmp_path: Path) -> None:
    root = tmp_path / "proj"
    d: Daemon = make_daemon("--store", pg_url, "--project-key", "k9", root=root)
    with d.session() as s:
        for i in range(300):
            s.add_message("user", f"m{i}")
        s.set_context("plan", {"step": 3})
    d.kill9()
    d.start()
    with d.session() as s:
        assert [m.content for m in s.get_all_messages()] == [f"m{i}" for i in range(300)]
        assert s.get_context("plan") == {"step": 3}
    assert SECRET not in d.read_log()


def test_a_second_daemon_on_the_same_key_joins_and_another_key_is_apart(
        make_daemon: Any, pg_url: str, tmp_path: Path) -> None:
    first = make_daemon("--store", pg_url, "--project-key", "one", root=tmp_path / "a", name="a")
    with first.session() as s:
        s.add_message("user", "on a")
    # Several hosts serve one project (test_pg_shared.py has the rest).
    second = make_daemon("--store", pg_url, "--project-key", "one", root=tmp_path / "b", name="b")
    with second.session() as s:
        assert [m.content for m in s.get_all_messages()] == ["on a"]
    # Another key in the same database is another project, served alongside.
    other = make_daemon("--store", pg_url, "--project-key", "two", root=tmp_path / "c", name="c")
    with other.session() as s:
        assert s.get_all_messages() == []


def test_ttl_leases_survive_a_kill9_under_postgresql(make_daemon: Any, pg_url: str, tmp_path: Path) -> None:
    """Leases are persisted by the PostgreSQL store too (ttl ones, with their expiry)."""
    d: Daemon = make_daemon("--store", pg_url, "--project-key", "leases", root=tmp_path / "proj")
    c = d.conn()
    held = c.result("acquireLease", {"name": "deploy\u00e9", "owner": "agent-1", "ttlMs": 600_000})
    c.result("acquireLease", {"name": "gone", "owner": "agent-1", "ttlMs": 600_000})
    gone = c.result("listLeases")
    c.result("releaseLease", {"name": "gone", "token": next(x["token"] for x in gone if x["name"] == "gone")})
    c.close()
    d.kill9()
    d.start()
    c = d.conn()
    leases = c.result("listLeases")
    assert [(x["name"], x["owner"], x["token"], x["expiresAt"]) for x in leases] == [
        ("deploy\u00e9", "agent-1", held["token"], held["expiresAt"])]
    r = c.call("acquireLease", {"name": "deploy\u00e9", "owner": "agent-2", "ttlMs": 1000})
    assert r["error"]["code"] == -32014 and r["error"]["data"]["owner"] == "agent-1"
    c.close()
