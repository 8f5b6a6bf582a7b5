"""One daemon per database, autostart races, idle exit, versions: real processes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sessionmem import Session, errors
from sessionmem import protocol as p

from conftest import DAEMON, Daemon, answers, wait_for


def test_second_daemon_on_the_same_database_is_refused(make_daemon) -> None:
    first = make_daemon()
    second = make_daemon(name="second", start=False)  # same db, another socket
    r = subprocess.run(second.cmd(), env=second.env, capture_output=True, text=True, timeout=30)
    assert r.returncode == errors.EXIT_ALREADY_RUNNING
    assert f"pid {first.pid}" in r.stderr and "already owns" in r.stderr
    with first.session() as s:  # the first is undisturbed
        assert s.get_session_id()
    assert not second.socket.exists()


def test_second_daemon_on_the_same_socket_never_unlinks_it(make_daemon, tmp_path: Path) -> None:
    first = make_daemon()
    other_db = tmp_path / "other" / "session.db"
    cmd = [*DAEMON, "--project", str(first.root), "--socket", str(first.socket), "--db", str(other_db)]
    r = subprocess.run(cmd, env=first.env, capture_output=True, text=True, timeout=30)
    assert r.returncode == errors.EXIT_ALREADY_RUNNING and "answers on" in r.stderr
    assert answers(first.socket)


def test_stale_socket_is_replaced_but_a_regular_file_is_not(make_daemon) -> None:
    d = make_daemon(start=False)
    import socket as _s

    stale = _s.socket(_s.AF_UNIX)
    stale.bind(str(d.socket))  # bound, never listening: what a killed daemon leaves
    stale.close()
    d.start()
    assert answers(d.socket)
    d.stop()
    d.socket.write_text("precious")
    d.start(wait=False)
    assert d.proc is not None and d.proc.wait(30) == errors.EXIT_CONFIG
    assert d.socket.read_text() == "precious"
    assert "not a socket" in d.read_log()


def test_files_and_socket_are_private(make_daemon) -> None:
    d = make_daemon()
    with d.session() as s:
        s.add_message("user", "x")
        s.snapshot()
    mode = lambda path: stat.S_IMODE(os.stat(path).st_mode)  # noqa: E731
    assert mode(d.socket) == 0o600
    assert mode(d.db) == 0o600
    assert mode(d.db.parent) == 0o700
    assert mode(str(d.db) + ".lock") == 0o600
    for extra in ("-wal", "-shm"):
        if os.path.exists(str(d.db) + extra):
            assert mode(str(d.db) + extra) == 0o600


def test_idle_exit_snapshots_first(make_daemon) -> None:
    d = make_daemon("--idle-timeout", "0.5", "--snapshot-interval", "3600")
    with d.session() as s:
        s.set_current_task("remember me")
    assert d.proc is not None and d.proc.wait(30) == 0
    assert "idle" in d.read_log()
    d.args = []
    d.start()
    with d.session() as s:
        assert s.get_current_task() == "remember me"


def test_idle_timer_waits_while_a_client_is_connected(make_daemon) -> None:
    d = make_daemon("--idle-timeout", "0.3")
    c = d.conn()
    time.sleep(1.5)
    assert d.proc is not None and d.proc.poll() is None
    assert c.result("getSessionId")
    c.close()
    assert d.proc.wait(30) == 0


def test_graceful_shutdown_answers_what_is_in_flight(make_daemon) -> None:
    d = make_daemon("--durability", "always")
    c = d.conn()
    n = 300
    c.send(b"".join(
        b'{"jsonrpc":"2.0","method":"addMessage","params":{"role":"user","content":"%d"},"id":%d}\n' % (i, i)
        for i in range(n)
    ))
    first = c.recv()  # at least the first is acknowledged before we stop it
    d.send_signal(signal.SIGTERM)
    acked = {first["id"]} if "result" in first else set()
    while True:
        try:
            r = c.recv()
        except (ConnectionResetError, OSError):
            break
        if "result" in r:
            acked.add(r["id"])
    assert d.proc is not None and d.proc.wait(30) == 0
    d.start()
    with d.session() as s:
        saved = {int(m.content) for m in s.get_all_messages()}
    assert acked <= saved  # every acknowledged write survived the stop


def test_second_sigint_forces_exit(make_daemon, tmp_path: Path) -> None:
    # A final snapshot that cannot finish (the database is locked by another writer)
    # keeps the first SIGINT's shutdown busy; the second one ends it at once.
    import sqlite3

    d = make_daemon("--snapshot-interval", "3600")
    with d.session() as s:
        s.add_message("user", "x")
    blocker = sqlite3.connect(d.db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        d.send_signal(signal.SIGINT)
        wait_for(lambda: "shutting down" in d.read_log(), what="shutdown to begin")
        time.sleep(0.3)
        assert d.proc is not None and d.proc.poll() is None
        d.send_signal(signal.SIGINT)
        assert d.proc.wait(10) == 130
        assert "second SIGINT" in d.read_log()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


RACER = textwrap.dedent(
    """
    import sys
    from sessionmem import Session
    with Session(project=sys.argv[1]) as s:
        s.add_message("user", sys.argv[2])
        print(s.daemon.pid)
    """
)


def autostart_env(env: dict[str, str]) -> dict[str, str]:
    e = dict(env)
    e.pop("SESSIONMEM_NO_AUTOSTART", None)
    return e


def daemons_for(root: Path) -> list[int]:
    """Live sessionmemd processes serving ``root`` (read from /proc, zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(a.endswith(b"sessionmemd") for a in args) and os.fsencode(root) in args:
            found.append(int(entry.name))
    return found


def test_ten_clients_autostart_exactly_one_daemon(tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", env["XDG_RUNTIME_DIR"])  # find the same socket
    root = tmp_path / "race"
    root.mkdir()
    e = autostart_env(env)
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(root), f"c{i}"], env=e,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(10)]
    try:
        pids = set()
        for pr in procs:
            out, err = pr.communicate(timeout=60)
            assert pr.returncode == 0, err
            pids.add(int(out))
        assert len(pids) == 1  # all ten talked to one daemon
        assert daemons_for(root) == list(pids)  # and only one runs
        with Session(project=root, autostart=False) as s:
            assert sorted(m.content for m in s.get_all_messages()) == sorted(f"c{i}" for i in range(10))
            s.shutdown()
    finally:
        for pid in daemons_for(root):
            os.kill(pid, signal.SIGKILL)


def test_failed_autostart_reports_the_daemons_own_error(tmp_path: Path, env: dict[str, str]) -> None:
    root = tmp_path / "broken"
    db = root / ".arela" / "memory" / "session.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database" * 100)
    started = time.monotonic()
    code = textwrap.dedent(
        """
        import sys
        from sessionmem import Session, DaemonStartError
        try:
            Session(project=sys.argv[1])
        except DaemonStartError as e:
            print(e.message)
            sys.exit(7)
        """
    )
    r = subprocess.run([sys.executable, "-c", code, str(root)], env=autostart_env(env),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 7, r.stderr
    assert "refusing to use" in r.stdout and str(db) in r.stdout and "--recover" in r.stdout
    assert time.monotonic() - started < 20  # reported, not timed out
    assert db.read_bytes() == b"this is not a database" * 100
    assert daemons_for(root) == []


def test_no_autostart_env_is_honoured(tmp_path: Path, env: dict[str, str]) -> None:
    code = "import sys\nfrom sessionmem import Session\nSession(project=sys.argv[1])"
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "ConnectionFailed" in r.stderr and "no sessionmemd answers" in r.stderr
    assert daemons_for(tmp_path) == []


def test_version_mismatch_is_a_clear_error(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    # This process plays a client built for protocol 2 against the real daemon (protocol 1).
    monkeypatch.setattr(p, "PROTOCOL_VERSION", p.PROTOCOL_VERSION + 1)
    with pytest.raises(errors.VersionMismatch, match="sessionmem daemon restart"):
        daemon.session()


def test_asyncio_client_autostarts_too(tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from sessionmem import AsyncSession

    for k, v in autostart_env(env).items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("SESSIONMEM_NO_AUTOSTART", raising=False)
    root = tmp_path / "async-proj"
    root.mkdir()

    async def main() -> int:
        async with AsyncSession(project=root) as s:
            await s.set_current_task("started by asyncio")
            assert s.daemon is not None
            pid = s.daemon.pid
            await s.shutdown()
            return pid

    try:
        pid = asyncio.run(main())
        wait_for(lambda: not daemons_for(root), what="the autostarted daemon to exit")
        assert pid > 0
    finally:
        for pid in daemons_for(root):
            os.kill(pid, signal.SIGKILL)
    with Session(project=root, autostart=True) as s:  # started again, state restored
        assert s.get_current_task() == "started by asyncio"
        s.shutdown()


def test_failed_autostart_reports_an_unusable_folder(tmp_path: Path, env: dict[str, str]) -> None:
    root = tmp_path / "blocked"
    root.mkdir()
    (root / ".arela").write_text("a file where the data folder should be")
    r = subprocess.run([sys.executable, "-m", "sessionmem", "--project", str(root), "task", "get"],
                       env=autostart_env(env), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "could not start sessionmemd" in r.stderr and "Not a directory" in r.stderr and ".arela" in r.stderr
    assert daemons_for(root) == []


def test_clients_with_another_runtime_folder_find_the_same_daemon(tmp_path: Path, env: dict[str, str]) -> None:
    """An agent started from cron or ssh (another $XDG_RUNTIME_DIR, so another socket
    path) must reach the daemon that owns the project's database, not start a second."""
    root = tmp_path / "shared-proj"
    root.mkdir()
    other_run = tmp_path / "other-run"
    other_run.mkdir(mode=0o700)
    desktop = autostart_env(env)
    cron = dict(desktop, XDG_RUNTIME_DIR=str(other_run))
    code = "import sys\nfrom sessionmem import Session\nwith Session(project=sys.argv[1]) as s:\n" \
           "    s.add_message('user', sys.argv[2]); print(s.daemon.pid, s.daemon.socketPath)"
    try:
        a = subprocess.run([sys.executable, "-c", code, str(root), "from desktop"], env=desktop,
                           capture_output=True, text=True, timeout=60)
        b = subprocess.run([sys.executable, "-c", code, str(root), "from cron"], env=cron,
                           capture_output=True, text=True, timeout=60)
        assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
        assert a.stdout == b.stdout  # same pid, same socket
        assert str(env["XDG_RUNTIME_DIR"]) in a.stdout
        assert len(daemons_for(root)) == 1
        c = subprocess.run([sys.executable, "-m", "sessionmem", "--project", str(root), "--json", "msg", "all"],
                           env=cron, capture_output=True, text=True, timeout=60)
        assert [m["content"] for m in json.loads(c.stdout)] == ["from desktop", "from cron"]
    finally:
        for pid in daemons_for(root):
            os.kill(pid, signal.SIGKILL)
