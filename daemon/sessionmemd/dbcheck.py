"""Is this file a sessionmem database, intact, and may we use it? Answered before
anything can change it.

A corrupt, truncated, zero-length or foreign file is refused with a BadDatabase
naming the file and the way out, and is left byte for byte as it was, its -wal
and -shm included: the header is read by hand, and the schema through an
immutable (lock-free, WAL-ignoring) connection or a private copy.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import tempfile
import time
from pathlib import Path
from urllib.request import pathname2url

SCHEMA_VERSION = 4  # PRAGMA user_version of our additions (schema.py); newer is refused
SQLITE_MAGIC = b"SQLite format 3\x00"


_REQUIRED_COLUMNS = {
    "sessions": {"id", "start_time", "current_task", "active_ticket", "created_at"},
    "session_files": {"session_id", "file_path", "opened_at"},
    "session_messages": {"session_id", "role", "content", "timestamp"},
    "session_context": {"session_id", "key", "value"},
}


class BadDatabase(Exception):
    """The file is not a database we may use; it has not been modified."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"refusing to use {path}: {reason}. The file was left untouched. "
            f"To keep it, point sessionmemd elsewhere with --db; to start afresh, "
            f"run sessionmemd with --recover, which moves it (and its -wal/-shm) aside."
        )
        self.path = path
        self.reason = reason


class DatabaseUnusable(Exception):
    """The file may be fine, but this process cannot use it: permissions, a read-only
    file system, an I/O error. Nothing was changed; --recover is not the answer."""

    def __init__(self, path: Path, reason: str, *, permission: bool = True) -> None:
        super().__init__(f"cannot use {path}: {reason}. The file was left untouched.")
        self.path = path
        self.reason = reason
        self.permission = permission  # else an I/O or locking failure


# SQLite result codes that say "this file is damaged or not a database"; any other
# failure to open or read it (permissions, read-only media, I/O, locks) is about the
# environment, and must not be reported as corruption with advice to move it aside.
_CORRUPT = ("SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_FORMAT")


def open_error(path: Path, e: sqlite3.Error) -> Exception:
    name = getattr(e, "sqlite_errorname", "") or ""
    if name.startswith(_CORRUPT) or (not name and "malformed" in str(e)):
        return BadDatabase(path, f"SQLite reports it corrupt ({e})")
    if name.startswith(("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_CANTOPEN", "SQLITE_AUTH")):
        return DatabaseUnusable(path, f"it cannot be opened for writing ({e}): check the "
                                      f"permissions of the file and its folder, and that the "
                                      f"file system is not read-only")
    return DatabaseUnusable(path, f"SQLite failed: {e} ({name or 'unknown error'})", permission=False)


def check_writable(path: Path) -> None:
    """The database and its folder (for -wal, -shm and the lock) must be writable (or,
    before they exist, the folder they will be made in); say so before the lock or
    SQLite reports it as something else."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    for target, what in ((folder, "its folder"), (path, "the file")):
        if target.exists() and not os.access(target, os.W_OK | os.R_OK):
            try:
                read_only_fs = bool(os.statvfs(target).f_flag & os.ST_RDONLY)
            except OSError:
                read_only_fs = False
            why = "is on a read-only file system" if read_only_fs else "is not writable by this user"
            raise DatabaseUnusable(
                path, f"{what} ({target}) {why}; the database itself is not damaged. Fix the "
                f"permissions (or mount), or point sessionmemd elsewhere with --db"
            )


def readonly_uri(path: Path) -> str:
    """A read-only connection that changes nothing: with no -wal to replay it reads the
    file as immutable (no -wal or -shm is created); with one, it reads through it
    without checkpointing (only a read-write close would)."""
    uri = "file:" + pathname2url(str(path)) + "?mode=ro"
    return uri if _nonempty(Path(str(path) + "-wal")) else uri + "&immutable=1"


def check_header(path: Path) -> None:
    """Reject what SQLite would misread or silently overwrite, before SQLite opens it."""
    size = path.stat().st_size
    if size == 0:
        raise BadDatabase(path, "it is an empty (zero-length) file, not a database")
    with path.open("rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise BadDatabase(path, "it is not a SQLite database (bad header)")
    (page_size,) = struct.unpack(">H", header[16:18])
    page_size = 65536 if page_size == 1 else page_size
    change_counter, db_pages = struct.unpack(">II", header[24:32])
    (valid_for,) = struct.unpack(">I", header[92:96])
    if page_size < 512 or page_size & (page_size - 1):
        raise BadDatabase(path, f"its header is corrupt (page size {page_size})")
    # A file shorter than its header says is truncated, unless a -wal is there to
    # complete it: a checkpoint writes page 1 (the new size) before the pages that grow
    # the file, so a kill -9 in the middle of one leaves exactly this, and the -wal,
    # which is only reset after a checkpoint completes, still holds every page.
    if (valid_for == change_counter and db_pages and size < db_pages * page_size
            and not _nonempty(Path(str(path) + "-wal"))):
        raise BadDatabase(
            path, f"it is truncated ({size} bytes, its header says {db_pages * page_size})"
        )


def move_aside(path: Path) -> list[Path]:
    """--recover: rename the database and its -wal/-shm out of the way."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    moved = []
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            dst = Path(f"{path}.corrupt-{stamp}{suffix}")
            src.rename(dst)
            moved.append(dst)
    return moved


def check_without_touching(path: Path) -> None:
    """Check the schema before a read-write open can change anything: such an open
    recovers a leftover -wal into the -shm, and its close checkpoints the -wal
    into the database, which must never happen to a file we then refuse.

    The main file is read as immutable (no locks, no -wal, no -shm). Only when that
    cannot be done while a -wal exists (a creator killed before its first checkpoint:
    no table yet; a kill in the middle of a checkpoint: the file shorter than its
    header says) is a private copy of both opened normally instead."""
    uri = "file:" + pathname2url(str(path)) + "?mode=ro&immutable=1"
    has_wal = _nonempty(Path(str(path) + "-wal"))
    try:
        try:
            conn = sqlite3.connect(uri, uri=True)
            try:
                has_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
                if has_tables or not has_wal:
                    check_schema(conn, path)
                    return
            finally:
                conn.close()
        except sqlite3.DatabaseError:
            if not has_wal:
                raise
        with tempfile.TemporaryDirectory(prefix=".sessionmem-check-", dir=path.parent) as tmp:
            copy = Path(tmp) / "copy.db"
            shutil.copyfile(path, copy)
            shutil.copyfile(str(path) + "-wal", str(copy) + "-wal")
            conn = sqlite3.connect(copy)
            try:
                check_schema(conn, path)
            finally:
                conn.close()
    except sqlite3.DatabaseError as e:
        raise BadDatabase(path, f"SQLite cannot read it ({e})") from None


def check_schema(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise BadDatabase(
            path, f"it has schema version {version}, newer than this sessionmemd's "
            f"{SCHEMA_VERSION} (upgrade sessionmem)"
        )
    tables = {
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    missing = sorted(set(_REQUIRED_COLUMNS) - tables)
    if missing:
        what = "it holds no tables" if not tables else f"it lacks table(s) {missing}"
        raise BadDatabase(path, f"it is not a sessionmem database ({what})")
    for table, needed in _REQUIRED_COLUMNS.items():
        cols = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if not needed <= cols:
            raise BadDatabase(
                path, f"table {table} lacks column(s) {sorted(needed - cols)}"
            )


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False
