"""SQLite persistence in the original's schema, extended only additively.

The original tool's four tables are kept column for column, so a database either
side wrote restores in the other. Our additions (schema version 1):

* ``sessionmem_meta(key, value)``: ``current_session`` names the live session, so
  "the latest session" no longer depends on a seconds-resolution column.

No index on ``session_messages(session_id)``: a database holds one live session
(clear deletes the old one), so restore scans the table in rowid order either way,
and without it every committed message costs one page write instead of two
(measured: 31.7 -> 21.4 us per single-message commit).

Order is rowid order: messages and files restore in the order they were written,
which incremental appends keep equal to the order they were added.

A Store is used by one thread at a time (the daemon's writer thread after start).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import struct
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.request import pathname2url

import msgspec


from .messages import MessageLog
from .state import Changes, Restored

SCHEMA_VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"

_ORIGINAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY,
  start_time INTEGER NOT NULL,
  current_task TEXT,
  active_ticket TEXT,
  created_at INTEGER DEFAULT (strftime('%s', 'now'))
);
CREATE TABLE IF NOT EXISTS session_files (
  session_id TEXT NOT NULL,
  file_path TEXT NOT NULL,
  opened_at INTEGER DEFAULT (strftime('%s', 'now')),
  FOREIGN KEY (session_id) REFERENCES sessions(id)
);
CREATE TABLE IF NOT EXISTS session_messages (
  session_id TEXT NOT NULL,
  role TEXT NOT NULL,
  content TEXT NOT NULL,
  timestamp INTEGER DEFAULT (strftime('%s', 'now')),
  FOREIGN KEY (session_id) REFERENCES sessions(id)
);
CREATE TABLE IF NOT EXISTS session_context (
  session_id TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  FOREIGN KEY (session_id) REFERENCES sessions(id),
  PRIMARY KEY (session_id, key)
);
"""

_ADDITIONS_V1 = """
CREATE TABLE IF NOT EXISTS sessionmem_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_REQUIRED_COLUMNS = {
    "sessions": {"id", "start_time", "current_task", "active_ticket", "created_at"},
    "session_files": {"session_id", "file_path", "opened_at"},
    "session_messages": {"session_id", "role", "content", "timestamp"},
    "session_context": {"session_id", "key", "value"},
}

_encode = msgspec.json.Encoder().encode
_validate_json = msgspec.json.Decoder(msgspec.Raw).decode


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
    if valid_for == change_counter and db_pages and size < db_pages * page_size:
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


class Store:
    def __init__(self, path: Path, *, synchronous: str = "NORMAL") -> None:
        self.path = path
        self._conn = self._open(path, synchronous)

    # -- opening ------------------------------------------------------------------
    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn

    def _open(self, path: Path, synchronous: str) -> sqlite3.Connection:
        if not path.exists():
            self._create(path)
        check_header(path)
        self._check_without_touching(path)
        try:
            conn = self._connect(path)
        except sqlite3.DatabaseError as e:
            raise BadDatabase(path, f"SQLite cannot open it ({e})") from None
        try:
            self._check_schema(conn, path)
            if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
                raise BadDatabase(path, "it cannot be switched to WAL mode")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                # A database written by the original: add our table.
                conn.executescript(
                    f"BEGIN IMMEDIATE; {_ADDITIONS_V1} "
                    f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                )
        except sqlite3.DatabaseError as e:
            conn.close()
            raise BadDatabase(path, f"SQLite reports it corrupt ({e})") from None
        except BadDatabase:
            conn.close()
            raise
        return conn

    @classmethod
    def _check_without_touching(cls, path: Path) -> None:
        """Check the schema before a read-write open can change anything: such an open
        recovers a leftover -wal into the -shm, and its close checkpoints the -wal
        into the database, which must never happen to a file we then refuse.

        The main file is read as immutable (no locks, no -wal, no -shm). Only when it
        holds no table at all while a -wal does (a creator killed before its first
        checkpoint) is a private copy of both opened normally instead."""
        uri = "file:" + pathname2url(str(path)) + "?mode=ro&immutable=1"
        try:
            conn = sqlite3.connect(uri, uri=True)
            try:
                has_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
                if has_tables or not _nonempty(Path(str(path) + "-wal")):
                    cls._check_schema(conn, path)
                    return
            finally:
                conn.close()
            with tempfile.TemporaryDirectory(prefix=".sessionmem-check-", dir=path.parent) as tmp:
                copy = Path(tmp) / "copy.db"
                shutil.copyfile(path, copy)
                shutil.copyfile(str(path) + "-wal", str(copy) + "-wal")
                conn = sqlite3.connect(copy)
                try:
                    cls._check_schema(conn, path)
                finally:
                    conn.close()
        except sqlite3.DatabaseError as e:
            raise BadDatabase(path, f"SQLite cannot read it ({e})") from None

    @staticmethod
    def _create(path: Path) -> None:
        """Build the schema in a temporary file and rename it into place, so a crash
        while creating never leaves an empty or half-made database behind."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.creating-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.executescript(_ORIGINAL_SCHEMA + _ADDITIONS_V1)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("PRAGMA journal_mode = WAL")
            finally:
                conn.close()
            os.link(tmp, path)  # fails if another process created the file meanwhile
        except FileExistsError:
            pass
        finally:
            tmp.unlink()

    @staticmethod
    def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
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

    @staticmethod
    @contextlib.contextmanager
    def _transaction(conn: sqlite3.Connection):  # type: ignore[no-untyped-def]
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise

    # -- reading ------------------------------------------------------------------
    def load(self) -> Restored | None:
        """The live session, or None in an empty database. Raises BadDatabase when
        SQLite finds the rows unreadable."""
        try:
            return self._load()
        except sqlite3.DatabaseError as e:
            raise BadDatabase(self.path, f"SQLite reports it corrupt ({e})") from None

    def _load(self) -> Restored | None:
        c = self._conn
        row = c.execute(
            "SELECT s.id, s.start_time, CAST(s.current_task AS TEXT), CAST(s.active_ticket AS TEXT) "
            "FROM sessions s "
            "JOIN sessionmem_meta m ON m.key = 'current_session' AND m.value = s.id"
        ).fetchone()
        if row is None:
            # Written by the original (or our pointer's session was cleared by it).
            row = c.execute(
                "SELECT id, start_time, CAST(current_task AS TEXT), CAST(active_ticket AS TEXT) "
                "FROM sessions "
                "ORDER BY created_at DESC, rowid DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        sid, start_time, task, ticket = row
        c.execute("BEGIN")
        try:
            messages = MessageLog()
            append = messages.append
            # Another tool may have stored a NULL or non-integer timestamp, or a number
            # as a role; the wire promises strings and an int, so SQLite coerces them
            # (in C, at no measurable cost).
            for r, t, ts in c.execute(
                "SELECT CAST(role AS TEXT), CAST(content AS TEXT), "
                "CAST(COALESCE(timestamp, 0) AS INTEGER) "
                "FROM session_messages WHERE session_id = ? ORDER BY rowid",
                (sid,),
            ):
                append(r, t, ts)
            files = [
                r[0]
                for r in c.execute(
                    "SELECT CAST(file_path AS TEXT) FROM session_files "
                    "WHERE session_id = ? ORDER BY rowid",
                    (sid,),
                )
            ]
            context = {
                k: _json_value(v)
                for k, v in c.execute(
                    "SELECT CAST(key AS TEXT), CAST(value AS TEXT) FROM session_context "
                    "WHERE session_id = ? ORDER BY rowid",
                    (sid,),
                )
            }
        finally:
            c.execute("COMMIT")
        # "" is a task like any other string and survives a restart (the original turned
        # it into NULL on its way to disk; NULL still reads back as None).
        return Restored(sid, int(start_time), task, ticket, messages,
                        list(dict.fromkeys(files)), context)

    # -- writing ------------------------------------------------------------------
    def write(self, batches: Iterable[Changes]) -> int:
        """Apply changes, oldest first, in one transaction. Returns rows touched.
        On any error the transaction is rolled back and the error raised: the
        caller keeps the batches and retries them later."""
        c = self._conn
        rows = 0
        with self._transaction(c):
            c.execute("BEGIN IMMEDIATE")
            for ch in batches:
                rows += self._apply(c, ch)
            c.execute("COMMIT")
        return rows

    @staticmethod
    def _apply(c: sqlite3.Connection, ch: Changes) -> int:
        sid = ch.session_id
        if ch.replaced_session is not None:
            old = (ch.replaced_session,)
            for table in ("session_context", "session_messages", "session_files"):
                c.execute(f"DELETE FROM {table} WHERE session_id = ?", old)
            c.execute("DELETE FROM sessions WHERE id = ?", old)
        if ch.session_row or ch.replaced_session is not None:
            c.execute(
                "INSERT INTO sessions (id, start_time, current_task, active_ticket) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "start_time = excluded.start_time, current_task = excluded.current_task, "
                "active_ticket = excluded.active_ticket",
                (sid, ch.start_time, ch.current_task, ch.active_ticket),
            )
            c.execute(
                "INSERT INTO sessionmem_meta (key, value) VALUES ('current_session', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (sid,),
            )
        for chunk in ch.messages.chunks():
            c.executemany(
                "INSERT INTO session_messages (session_id, role, content, timestamp) "
                "VALUES (?, ?, ?, ?)",
                [(sid, m.role, m.content, m.timestamp) for m in chunk],
            )
        for path, tracked in ch.files:
            c.execute(
                "DELETE FROM session_files WHERE session_id = ? AND file_path = ?", (sid, path)
            )
            if tracked:
                c.execute(
                    "INSERT INTO session_files (session_id, file_path) VALUES (?, ?)", (sid, path)
                )
        for key, value in ch.context:
            if value is None:
                c.execute(
                    "DELETE FROM session_context WHERE session_id = ? AND key = ?", (sid, key)
                )
            else:
                c.execute(
                    "INSERT INTO session_context (session_id, key, value) VALUES (?, ?, ?) "
                    "ON CONFLICT(session_id, key) DO UPDATE SET value = excluded.value",
                    (sid, key, value),
                )
        return len(ch)

    @property
    def total_changes(self) -> int:
        """Rows SQLite has inserted, updated or deleted through this connection."""
        return self._conn.total_changes

    def close(self) -> None:
        self._conn.close()


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _json_value(text: str) -> bytes:
    """Context values are JSON text; the original fell back to the raw string when a
    value did not parse, and so do we."""
    data = text.encode()
    try:
        _validate_json(data)
        return data
    except (msgspec.DecodeError, RecursionError):
        return _encode(text)
