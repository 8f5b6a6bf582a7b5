"""SQLite persistence in the original's schema, extended only additively.

The original tool's four tables are kept column for column, so a database either
side wrote restores in the other. Our additions (schema version 1 on):

* ``sessionmem_meta(key, value)``: ``current_session`` names the live session, so
  "the latest session" no longer depends on a seconds-resolution column.
* (version 2) an index on ``session_files(file_path)``: saving a file's change deletes
  its old row by path, which without it scanned the table once per path (20,000 new
  files took 24 s to save). Not on ``(session_id, ...)``: the original tool reads a
  session's files with no ORDER BY, and such an index would hand them to it sorted by
  path instead of in the order they were tracked.
* (version 3) ``session_messages.message_id`` and ``.data`` (nullable TEXT: a message's
  client-given id, its JSON data), ``sessionmem_changes`` (the change log a clean stop
  leaves for the next start), and meta ``revisions_reserved`` (see host.py).

No index on ``session_messages(session_id)``: a database holds one live session
(clear deletes the old one), so restore scans the table in rowid order either way,
and without it every committed message costs one page write instead of two
(measured: 31.7 -> 21.4 us per single-message commit).

Order is rowid order: messages and files restore in the order they were written,
which incremental appends keep equal to the order they were added.

A Store is used by one thread at a time (the daemon's writer thread after start).
Whether a file may be opened at all is decided first, in dbcheck.py.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import msgspec

from .dbcheck import (
    SCHEMA_VERSION,
    BadDatabase,
    check_header,
    check_schema,
    check_without_touching,
    check_writable,
    open_error,
    readonly_uri,
)
from sessionmem.paths import make_private_dirs

from .messages import MessageLog
from .state import Changes, Restored

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

# Idempotent, so one script upgrades a database of any older version (the original's is
# 0); the columns, which SQLite cannot add "if not exists", are added by _add_columns.
_ADDITIONS = """
CREATE TABLE IF NOT EXISTS sessionmem_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sessionmem_files_by_path ON session_files (file_path);
CREATE TABLE IF NOT EXISTS sessionmem_changes (
  revision INTEGER PRIMARY KEY, session_id TEXT NOT NULL, frame BLOB NOT NULL
);
"""
_MESSAGE_COLUMNS = ("message_id", "data")  # nullable TEXT, ignored by the original tool

_encode = msgspec.json.Encoder().encode
_validate_json = msgspec.json.Decoder(msgspec.Raw).decode


class Store:
    """One database file, opened only after every check has passed.

    ``opened_with`` is the live session as found at open (None in an empty database):
    it is read through a read-only connection *before* anything is written, so a file
    whose rows turn out unreadable is refused without a byte changed."""

    def __init__(self, path: Path, *, synchronous: str = "NORMAL") -> None:
        self.path = path
        if not path.exists():
            self._create(path)
        check_writable(path)
        check_header(path)
        check_without_touching(path)
        self.opened_with: Restored | None
        self._opened_feed: tuple[int, list[tuple[int, str, bytes]]]
        self.opened_with, self._opened_feed = self._load_readonly(path)
        self._conn = self._open(path, synchronous)
        st = os.stat(path)
        self._identity = (st.st_dev, st.st_ino)

    def take_opened_with(self) -> Restored | None:
        """The session found at open, handed over once (the store keeps no reference)."""
        r, self.opened_with = self.opened_with, None
        return r

    def identity_problem(self) -> str | None:
        """None while ``path`` is still the file this store writes; else what happened
        to it. SQLite would go on writing into an unlinked file, losing everything."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return "deleted"
        if (st.st_dev, st.st_ino) != self._identity:
            return "replaced"
        return None

    # -- opening ------------------------------------------------------------------
    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn

    @staticmethod
    def _load_readonly(path: Path) -> tuple[Restored | None, tuple[int, list[tuple[int, str, bytes]]]]:
        """Everything a start reads, read before anything is written."""
        try:
            conn = sqlite3.connect(readonly_uri(path), uri=True, isolation_level=None)
        except sqlite3.DatabaseError as e:
            raise open_error(path, e) from None
        try:
            restored = _load(conn, path)
            try:
                return restored, _read_feed(conn)
            except sqlite3.DatabaseError as e:
                raise open_error(path, e) from None
        finally:
            conn.close()

    def _open(self, path: Path, synchronous: str) -> sqlite3.Connection:
        try:
            conn = self._connect(path)
        except sqlite3.DatabaseError as e:
            raise open_error(path, e) from None
        try:
            check_schema(conn, path)
            if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
                raise BadDatabase(path, "it cannot be switched to WAL mode")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                # Written by the original or an older sessionmemd: add what is missing.
                with self._transaction(conn):
                    conn.execute("BEGIN IMMEDIATE")
                    _add_schema(conn)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    conn.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            conn.close()
            raise open_error(path, e) from None
        except BadDatabase:
            conn.close()
            raise
        return conn

    @staticmethod
    def _create(path: Path) -> None:
        """Build the schema in a temporary file and rename it into place, so a crash
        while creating never leaves an empty or half-made database behind."""
        make_private_dirs(path.parent)
        for suffix in ("-wal", "-shm"):
            # With no database they belong to nothing (an earlier file deleted under a
            # live connection); SQLite would replay such a -wal into the new file.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{path}{suffix}")
        tmp = path.with_name(f".{path.name}.creating-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.executescript(_ORIGINAL_SCHEMA)
                _add_schema(conn)
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
        return _load(self._conn, self.path)

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
        for chunk, ids in ch.messages.chunks():
            c.executemany(
                "INSERT INTO session_messages (session_id, role, content, timestamp, message_id) "
                "VALUES (?, ?, ?, ?, ?)",
                [(sid, m.role, m.content, m.timestamp, i) for m, i in zip(chunk, ids, strict=True)],
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
        if ch.reserve is not None:
            c.execute(
                "INSERT INTO sessionmem_meta (key, value) VALUES ('revisions_reserved', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(ch.reserve),),
            )
        if ch.change_log is not None:
            c.execute("DELETE FROM sessionmem_changes")
            c.executemany("INSERT INTO sessionmem_changes (revision, session_id, frame) VALUES (?, ?, ?)",
                          ch.change_log)
        return len(ch)

    def reserve_revisions(self, block: int) -> tuple[int, list[tuple[int, str, bytes]]]:
        """At start: the last revision that may have been handed out (the reserved mark)
        and the change log a clean stop left; then durably reserve ``block`` more and
        drop that log (after a crash it would have a gap). Called before serving."""
        c = self._conn
        mark, log = self._opened_feed  # read (and so checked) before the first write
        self._opened_feed = (mark, [])
        with self._transaction(c):
            c.execute("BEGIN IMMEDIATE")
            c.execute("DELETE FROM sessionmem_changes")
            c.execute(
                "INSERT INTO sessionmem_meta (key, value) VALUES ('revisions_reserved', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(mark + block),),
            )
            c.execute("COMMIT")
        return mark, log

    @property
    def total_changes(self) -> int:
        """Rows SQLite has inserted, updated or deleted through this connection."""
        return self._conn.total_changes

    def close(self) -> None:
        """Idempotent."""
        self._conn.close()


def _read_feed(c: sqlite3.Connection) -> tuple[int, list[tuple[int, str, bytes]]]:
    """The reserved revision mark and the change log a clean stop left (none in a
    database written by the original or an older sessionmemd)."""
    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "sessionmem_meta" not in tables:
        return 0, []
    row = c.execute("SELECT value FROM sessionmem_meta WHERE key = 'revisions_reserved'").fetchone()
    mark = int(row[0]) if row else 0
    if "sessionmem_changes" not in tables:
        return mark, []
    return mark, [(int(r), str(sid), bytes(f)) for r, sid, f in
                  c.execute("SELECT revision, session_id, frame FROM sessionmem_changes ORDER BY revision")]


def _add_schema(c: sqlite3.Connection) -> None:
    for statement in _ADDITIONS.split(";"):
        if statement.strip():
            c.execute(statement)
    have = {r[1] for r in c.execute("PRAGMA table_info(session_messages)")}
    for col in _MESSAGE_COLUMNS:
        if col not in have:
            c.execute(f"ALTER TABLE session_messages ADD COLUMN {col} TEXT")


def _load(c: sqlite3.Connection, path: Path) -> Restored | None:
    try:
        return _read_session(c)
    except sqlite3.DatabaseError as e:
        raise open_error(path, e) from None


def _read_session(c: sqlite3.Connection) -> Restored | None:
    row = None
    if c.execute("SELECT 1 FROM sqlite_master WHERE name = 'sessionmem_meta'").fetchone():
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
        cols = {r[1] for r in c.execute("PRAGMA table_info(session_messages)")}
        id_col = "CAST(message_id AS TEXT)" if "message_id" in cols else "NULL"  # the original's
        for r, t, ts, mid in c.execute(
            "SELECT CAST(role AS TEXT), CAST(content AS TEXT), "
            f"CAST(COALESCE(timestamp, 0) AS INTEGER), {id_col} "
            "FROM session_messages WHERE session_id = ? ORDER BY rowid",
            (sid,),
        ):
            append(r, t, ts, mid)
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
    return Restored(sid, int(start_time), task, ticket, messages, files, context)


def _json_value(text: str) -> bytes:
    """Context values are JSON text; the original fell back to the raw string when a
    value did not parse, and so do we."""
    data = text.encode()
    try:
        _validate_json(data)
        return data
    except (msgspec.DecodeError, RecursionError):
        return _encode(text)
