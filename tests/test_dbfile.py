"""The database file as the outside world treats it: other names for it, deletion,
replacement, corruption, permissions, planted lock files, the umask. Real daemons."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionmem import errors

from conftest import Daemon, tmpfs, wait_for

ROOT = os.getuid() == 0


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def count_rows(db: Path) -> int:
    c = sqlite3.connect(db)
    try:
        return c.execute("SELECT count(*) FROM session_messages").fetchone()[0]
    finally:
        c.close()


# -- one database, one daemon, however it is named ----------------------------------------
def test_a_symlinked_db_path_is_the_same_database(make_daemon, tmp_path: Path) -> None:
    first = make_daemon()
    link = tmp_path / "elsewhere.db"
    link.symlink_to(first.db)
    second = make_daemon("--db", str(link), name="second", start=False)
    second.start(wait=False)
    assert second.proc is not None and second.proc.wait(30) == errors.EXIT_ALREADY_RUNNING
    assert "already owns" in second.read_log()


def test_a_symlinked_folder_is_the_same_database(make_daemon, tmp_path: Path) -> None:
    first = make_daemon()
    alias = tmp_path / "alias"
    alias.symlink_to(first.db.parent)
    second = make_daemon("--db", str(alias / first.db.name), name="second", start=False)
    second.start(wait=False)
    assert second.proc is not None and second.proc.wait(30) == errors.EXIT_ALREADY_RUNNING


def test_a_hard_link_to_the_db_is_the_same_database(make_daemon, tmp_path: Path) -> None:
    first = make_daemon()
    other = tmp_path / "hard.db"
    os.link(first.db, other)
    second = make_daemon("--db", str(other), name="second", start=False)
    second.start(wait=False)
    assert second.proc is not None and second.proc.wait(30) == errors.EXIT_ALREADY_RUNNING
    assert "hard link" in second.read_log()
    with first.session() as s:
        assert s.get_stats().pid == first.pid  # the first never noticed


# -- the file deleted or replaced while the daemon runs ---------------------------------------
@pytest.mark.parametrize("durability", ["periodic", "always"])
def test_deleted_database_is_written_anew_with_the_whole_session(make_daemon, durability: str) -> None:
    d = make_daemon("--durability", durability, "--snapshot-interval", "3600")
    with d.session() as s:
        for i in range(100):
            s.add_message("user", f"m{i}")
        s.set_current_task("survives")
        s.set_context("k", [1, 2])
        s.track_open_file("a.py")
        s.snapshot()
        shutil.rmtree(d.root / ".arela")  # `rm -rf .arela`, `git clean -fdx`
        s.add_message("user", "after")
        s.snapshot()
        assert s.get_stats().lastSnapshotError is None
    assert "DELETED" in d.read_log()
    assert d.db.exists() and count_rows(d.db) == 101
    # the lock was taken again: a second daemon cannot start on the new file
    second = Daemon(d.root, d.socket.with_name("second.sock"), d.db, [], d.env)
    second.start(wait=False)
    assert second.proc is not None and second.proc.wait(30) == errors.EXIT_ALREADY_RUNNING
    assert d.stop() == 0
    d.start()
    with d.session() as s:
        assert [m.content for m in s.get_all_messages()] == [f"m{i}" for i in range(100)] + ["after"]
        assert s.get_current_task() == "survives"
        assert s.get_context("k") == [1, 2] and s.get_open_files() == ["a.py"]


def test_deleted_database_keeps_the_sessions_not_in_memory(make_daemon) -> None:
    d = make_daemon("--snapshot-interval", "3600", "--session-idle", "0.3")
    with d.session() as s:
        s.create_session("cold")
        with d.session(session_id="cold") as c:
            c.add_message("user", "in the cold one", data={"k": 1})
        s.snapshot()
        wait_for(lambda: s.get_stats().sessionsLoaded == 1, what="the session dropped from memory")
        shutil.rmtree(d.root / ".arela")
        s.add_message("user", "after")
        s.snapshot()  # copies the whole database the daemon still reads, then writes on
        assert s.get_stats().lastSnapshotError is None
    assert d.stop() == 0
    d.start()
    with d.session() as s:
        assert [m.content for m in s.get_all_messages()] == ["after"]
        full = s.call("getAllMessages", {"session": "cold", "full": True})
        assert [(m.content, m.data) for m in full] == [("in the cold one", {"k": 1})]


def test_deleted_database_of_an_idle_daemon_is_rewritten_at_exit(make_daemon) -> None:
    d = make_daemon("--snapshot-interval", "3600")
    with d.session() as s:
        s.add_message("user", "only")
        s.snapshot()
    shutil.rmtree(d.root / ".arela")
    assert d.stop() == 0  # nothing was pending, yet the file must come back
    assert count_rows(d.db) == 1


def test_replaced_database_is_never_written_into(make_daemon, tmp_path: Path) -> None:
    d = make_daemon("--snapshot-interval", "3600")
    other = make_daemon(name="other", db=tmp_path / "other" / "other.db")
    with other.session() as s:
        s.add_message("user", "not yours")
    other.stop()
    with d.session() as s:
        s.add_message("user", "mine")
        s.snapshot()
        os.replace(other.db, d.db)
        before = digest(d.db)
        s.add_message("user", "mine too")
        with pytest.raises(errors.PersistFailed) as ei:
            s.snapshot()
        assert "replaced" in ei.value.message
        assert digest(d.db) == before
        assert s.get_stats().messagesCount == 2  # still served from memory
        os.unlink(d.db)  # the path is free again: the session is written anew
        wait_for(lambda: s.snapshot().written, what="the new file")
    assert d.stop() == 0
    d.start()
    with d.session() as s:
        assert [m.content for m in s.get_all_messages()] == ["mine", "mine too"]


# -- refused without a byte written ---------------------------------------------------------
def _original_db_with_a_corrupt_page(db: Path) -> bytes:
    """A database as the original tool leaves it (rollback journal, user_version 0),
    its message table spread over many pages, one of them overwritten."""
    db.parent.mkdir(parents=True)
    c = sqlite3.connect(db)
    c.executescript(
        "CREATE TABLE sessions (id TEXT PRIMARY KEY, start_time INTEGER NOT NULL, current_task TEXT,"
        " active_ticket TEXT, created_at INTEGER DEFAULT (strftime('%s', 'now')));"
        "CREATE TABLE session_files (session_id TEXT NOT NULL, file_path TEXT NOT NULL, opened_at INTEGER);"
        "CREATE TABLE session_messages (session_id TEXT NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL,"
        " timestamp INTEGER);"
        "CREATE TABLE session_context (session_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
        " PRIMARY KEY (session_id, key));"
        "INSERT INTO sessions (id, start_time) VALUES ('s1', 1);"
    )
    c.executemany("INSERT INTO session_messages VALUES ('s1', 'user', ?, 1)", [(f"{i}:" + "x" * 300,) for i in range(3000)])
    c.commit()
    c.close()
    data = bytearray(db.read_bytes())
    middle = (len(data) // 2) // 4096 * 4096
    data[middle : middle + 4096] = b"\xff" * 4096
    db.write_bytes(bytes(data))
    return bytes(data)


def test_corrupt_rows_are_refused_without_a_byte_written(make_daemon) -> None:
    d = make_daemon(start=False)
    data = _original_db_with_a_corrupt_page(d.db)
    d.start(wait=False)
    assert d.proc is not None and d.proc.wait(30) == errors.EXIT_BAD_DATABASE
    assert d.db.read_bytes() == data  # no meta table, no user_version, no WAL switch
    assert sorted(p.name for p in d.db.parent.iterdir()) == ["session.db", "session.db.lock"]
    assert "corrupt" in d.read_log()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "ro", "8m") as mnt:
        yield mnt


def test_a_healthy_database_on_a_read_only_file_system_is_not_called_corrupt(make_daemon, small_fs: Path) -> None:
    d = make_daemon(db=small_fs / "memory" / "session.db")
    with d.session() as s:
        s.add_message("user", "kept")
    assert d.stop() == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    before = digest(d.db)
    d.start(wait=False)
    assert d.proc is not None and d.proc.wait(30) == errors.EXIT_NO_PERMISSION
    log = d.read_log()
    assert "read-only file system" in log and "not damaged" in log
    assert "corrupt" not in log and "--recover" not in log
    assert digest(d.db) == before


@pytest.mark.skipif(ROOT, reason="root may write into any folder; the read-only mount test covers root")
def test_a_healthy_database_in_a_read_only_folder_is_not_called_corrupt(make_daemon) -> None:
    d = make_daemon()
    with d.session() as s:
        s.add_message("user", "kept")
    assert d.stop() == 0
    os.chmod(d.db.parent, 0o500)
    try:
        d.start(wait=False)
        assert d.proc is not None and d.proc.wait(30) == errors.EXIT_NO_PERMISSION
        log = d.read_log()
        assert "not writable" in log and "corrupt" not in log and "--recover" not in log
    finally:
        os.chmod(d.db.parent, 0o700)


# -- the lock file --------------------------------------------------------------------------
def test_a_planted_lock_symlink_is_not_followed(make_daemon, tmp_path: Path) -> None:
    d = make_daemon(start=False)
    d.db.parent.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    Path(str(d.db) + ".lock").symlink_to(victim)
    d.start(wait=False)
    assert d.proc is not None and d.proc.wait(30) == errors.EXIT_CONFIG
    assert victim.read_text() == "precious"
    assert "symlink" in d.read_log()


@pytest.mark.skipif(not ROOT, reason="needs root to make a file owned by another user")
def test_a_lock_file_of_another_user_is_refused(make_daemon) -> None:
    d = make_daemon(start=False)
    d.db.parent.mkdir(parents=True)
    lock = Path(str(d.db) + ".lock")
    lock.write_text("theirs\n")
    os.chown(lock, 65534, 65534)
    d.start(wait=False)
    assert d.proc is not None and d.proc.wait(30) == errors.EXIT_CONFIG
    assert lock.read_text() == "theirs\n"
    assert "owned by" in d.read_log()


# -- private whatever the umask ---------------------------------------------------------------
def test_folders_and_files_are_private_under_umask_0(make_daemon, tmp_path: Path) -> None:
    d = make_daemon(start=False)
    with open(d.log, "ab") as log:
        d.proc = subprocess.Popen(d.cmd(), stdout=log, stderr=log, env=d.env, preexec_fn=lambda: os.umask(0))
    wait_for(d._ready, what="daemon")
    with d.session() as s:
        s.add_message("user", "x")
        s.snapshot()
    mode = lambda path: stat.S_IMODE(os.stat(path).st_mode)  # noqa: E731
    assert mode(d.root / ".arela") == 0o700
    assert mode(d.db.parent) == 0o700
    assert mode(d.db) == 0o600 and mode(str(d.db) + ".lock") == 0o600
    for extra in ("-wal", "-shm"):
        if os.path.exists(str(d.db) + extra):
            assert mode(str(d.db) + extra) == 0o600
    assert mode(d.socket) == 0o600


def test_a_kill_in_the_middle_of_a_checkpoint_is_not_called_truncated(make_daemon) -> None:
    """A checkpoint writes page 1 (with the grown size) before the pages that grow the
    file; killed between the two, the file is shorter than its header says while the
    -wal still holds every page. Found by the kill -9 audit: refused as truncated."""
    d = make_daemon("--snapshot-interval", "3600")
    with d.session() as s:
        s.add_message("user", "first")
        s.snapshot()
    assert d.stop() == 0  # a checkpointed, small database
    c = sqlite3.connect(d.db)
    c.execute("PRAGMA wal_autocheckpoint = 0")
    c.executemany("INSERT INTO session_messages (session_id, role, content, timestamp) "
                  "SELECT id, 'user', ?, 1 FROM sessions", [(f"{i}:" + "x" * 3000,) for i in range(300)])
    c.commit()
    pages = c.execute("PRAGMA page_count").fetchone()[0]  # as the -wal has it
    wal = Path(str(d.db) + "-wal").read_bytes()
    shm = Path(str(d.db) + "-shm").read_bytes()
    data = bytearray(d.db.read_bytes())
    c.close()  # (its close checkpoints: put back the state of the kill)
    data[28:32] = pages.to_bytes(4, "big")  # page 1 written with the new size...
    data[92:96] = data[24:28]
    d.db.write_bytes(bytes(data))  # ...the rest of the file not yet grown
    Path(str(d.db) + "-wal").write_bytes(wal)
    Path(str(d.db) + "-shm").write_bytes(shm)
    assert d.db.stat().st_size < pages * 4096
    d.start()
    with d.session() as s:
        assert s.get_stats().messagesCount == 301

