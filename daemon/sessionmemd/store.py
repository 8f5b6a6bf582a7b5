"""SQLite persistence in the original's schema, extended only additively.

The original tool's four tables are kept column for column, so a database either
side wrote restores in the other; our additions are listed in schema.py.

The current session is the one ``sessionmem_meta.current_session`` names; the original
tool picks the latest ``created_at`` instead, so the current session's row is kept the
latest created (``_keep_current_latest``) and both tools open the same one.

The queries that read are storeread.py's: the loader runs them on its own connection
on the reader thread (sqlitestore.SqliteReader), the store at open and for
``restore``. This module opens, creates and writes one file; sqlitestore.py puts it
behind the seam (storage.Storage) with its lock and what happens when it is deleted. A Store's connection is used by one thread at a time: the writer
thread, or the event loop's for a small commit while the writer is idle (persist.py).
Whether a file may be opened at all is decided first, in dbcheck.py.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path


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

from . import schema, searchindex, storeread
from .leases import LeaseRow
from .batch import Batch, Changes, Restored
from .storage import TAIL




class Store:
    """One database file, opened only after every check has passed.

    ``opened_with`` is the current session as found at open (None in an empty
    database; its newest TAIL messages when it has more) and ``opened_known`` every
    session's id: read through a read-only connection *before* anything is written, so
    a file whose rows turn out unreadable is refused without a byte changed."""

    def __init__(self, path: Path, *, synchronous: str = "NORMAL", tail: int | None = TAIL) -> None:
        self.path = path
        if not path.exists():
            self._create(path)
        check_writable(path)
        check_header(path)
        check_without_touching(path)
        self._tail = tail
        self.opened_with: Restored | None
        self.opened_known: dict[str, int]
        self._opened_feed: tuple[int, int | None]
        self.opened_with, self.opened_known, self._opened_feed = self._load_readonly(path, tail)
        self._conn = self._open(path, synchronous)
        # The ttl leases (leases.py), read with the writer's connection: the table may
        # have been made just now.
        self.opened_leases: list[LeaseRow] = self._conn.execute(
            "SELECT name, owner, token, expires_at, ttl_ms, session_id FROM sessionmem_leases").fetchall()
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
    def _load_readonly(path: Path, tail: int | None) -> tuple[
            Restored | None, dict[str, int], tuple[int, int | None]]:
        """Everything a start reads, read before anything is written."""
        try:
            conn = sqlite3.connect(readonly_uri(path), uri=True, isolation_level=None)
        except sqlite3.DatabaseError as e:
            raise open_error(path, e) from None
        try:
            known, restored = _load(conn, tail)
            return restored, known, storeread.read_feed(conn)
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
                    schema.upgrade(conn)
                    conn.execute("COMMIT")
            schema.ensure_leases(conn)
            # The full-text index: made when missing, checked (searchindex.py).
            self.search_to_build = searchindex.ensure(conn)
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
                schema.create(conn)
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
    def reload(self) -> tuple[dict[str, int], Restored | None]:
        """Every session's id and the current session (``restore``). Raises BadDatabase
        when SQLite finds the rows unreadable."""
        try:
            return _load(self._conn, self._tail)
        except sqlite3.DatabaseError as e:
            raise open_error(self.path, e) from None

    def load(self) -> Restored | None:
        """The current session (None in an empty database)."""
        return self.reload()[1]

    def open_reader(self) -> sqlite3.Connection:
        """A connection of its own for the loader's thread (WAL: it reads while the
        writer writes, each read a consistent snapshot)."""
        conn = self._connect(self.path)
        conn.execute("PRAGMA query_only = 1")
        return conn

    def open_builder(self) -> sqlite3.Connection:
        """A connection of its own for the search index's builder (searchindex.Builder):
        it writes, in short transactions of its own, beside the writer."""
        conn = self._connect(self.path)
        conn.execute("PRAGMA synchronous = NORMAL")  # a lost chunk is built again
        return conn

    # -- writing ------------------------------------------------------------------
    def write(self, batches: Iterable[Batch]) -> int:
        """Apply changes, oldest first, in one transaction. Returns rows touched.
        On any error the transaction is rolled back and the error raised: the
        caller keeps the batches and retries them later."""
        c = self._conn
        rows = 0
        with self._transaction(c):
            c.execute("BEGIN IMMEDIATE")
            for b in batches:
                rows += self._apply(c, b)
            c.execute("COMMIT")
        return rows

    @classmethod
    def _apply(cls, c: sqlite3.Connection, b: Batch) -> int:
        for sid in b.deleted:
            _delete_rows(c, sid)
            c.execute("DELETE FROM sessions WHERE id = ?", (sid,))
            c.execute("DELETE FROM sessionmem_sessions WHERE session_id = ?", (sid,))
        for ch in b.sessions:
            cls._apply_session(c, ch)
        if b.marks:
            c.executemany("INSERT INTO sessionmem_sessions (session_id, revision) VALUES (?, ?) "
                          "ON CONFLICT(session_id) DO UPDATE SET revision = excluded.revision", b.marks)
        if b.current is not None:
            c.execute(
                "INSERT INTO sessionmem_meta (key, value) VALUES ('current_session', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (b.current,),
            )
        if b.current is not None or any(ch.session_row for ch in b.sessions):
            _keep_current_latest(c)
        if b.reserve is not None:
            c.execute(
                "INSERT INTO sessionmem_meta (key, value) VALUES ('revisions_reserved', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(b.reserve),),
            )
        if b.log_rows:
            c.executemany("INSERT OR REPLACE INTO sessionmem_changes (revision, session_id, frame) "
                          "VALUES (?, ?, ?)", b.log_rows)
        for name, row in b.leases:
            if row is None:
                c.execute("DELETE FROM sessionmem_leases WHERE name = ?", (name,))
            else:
                c.execute("INSERT OR REPLACE INTO sessionmem_leases "
                          "(name, owner, token, expires_at, ttl_ms, session_id) VALUES (?, ?, ?, ?, ?, ?)", row)
        if b.log_floor is not None:
            c.execute("DELETE FROM sessionmem_changes WHERE revision < ?", (b.log_floor,))
        return len(b)

    @staticmethod
    def _apply_session(c: sqlite3.Connection, ch: Changes) -> None:
        sid = ch.session_id
        if ch.wiped:
            _delete_rows(c, sid)
        if ch.session_row:
            c.execute(
                "INSERT INTO sessions (id, start_time, current_task, active_ticket) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "start_time = excluded.start_time, current_task = excluded.current_task, "
                "active_ticket = excluded.active_ticket",
                (sid, ch.start_time, ch.current_task, ch.active_ticket),
            )
        if ch.trim_front:
            c.execute("DELETE FROM session_messages WHERE rowid IN (SELECT rowid FROM session_messages "
                      "WHERE session_id = ? ORDER BY rowid LIMIT ?)", (sid, ch.trim_front))
        if ch.pop_back:
            c.execute("DELETE FROM session_messages WHERE rowid IN (SELECT rowid FROM session_messages "
                      "WHERE session_id = ? ORDER BY rowid DESC LIMIT ?)", (sid, ch.pop_back))
        for chunk, ids, data in ch.messages.chunks():
            c.executemany(
                "INSERT INTO session_messages (session_id, role, content, timestamp, message_id, data) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(sid, m.role, m.content, m.timestamp, i, None if d is None else d.decode())
                 for m, i, d in zip(chunk, ids, data, strict=True)],
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

    def copy_to(self, path: Path) -> None:
        """Copy the database as this connection sees it into a new file at ``path``
        (SQLite's backup API): when the file was deleted under us, the connection still
        reads the unlinked one, so every session, loaded or not, survives into the new
        file."""
        make_private_dirs(path.parent)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{path}{suffix}")
        tmp = path.with_name(f".{path.name}.copying-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        try:
            dst = sqlite3.connect(tmp, isolation_level=None)
            try:
                self._conn.backup(dst)
                dst.execute("PRAGMA journal_mode = WAL")
            finally:
                dst.close()
            os.link(tmp, path)
        finally:
            tmp.unlink()

    def reserve_revisions(self, block: int) -> tuple[int, bool]:
        """At start: the last revision that may have been handed out (the reserved mark),
        and whether the change log on disk is whole up to it (the last stop was clean:
        the loader reads it after the first answers, storage.Reader.change_rows); then
        durably reserve ``block`` more. Called before serving."""
        c = self._conn
        mark, logged = self._opened_feed  # read (and so checked) before the first write
        with self._transaction(c):
            c.execute("BEGIN IMMEDIATE")
            c.execute(
                "INSERT INTO sessionmem_meta (key, value) VALUES ('revisions_reserved', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(mark + block),),
            )
            c.execute("COMMIT")
        # After a crash the rows on disk end before the mark: never replayed, and gone
        # with the first snapshot's trim (Batch.log_floor).
        return mark, logged is not None and logged == mark

    @property
    def total_changes(self) -> int:
        """Rows SQLite has inserted, updated or deleted through this connection."""
        return self._conn.total_changes

    def close(self) -> None:
        """Idempotent."""
        self._conn.close()


def _load(c: sqlite3.Connection, tail: int | None) -> tuple[dict[str, int], Restored | None]:
    known = storeread.catalogue(c)
    sid = storeread.current_id(c)
    if sid is None:
        return known, None
    return known, storeread.load_session(c, sid, known.get(sid, 0), tail)


def _delete_rows(c: sqlite3.Connection, sid: str) -> None:
    for table in ("session_context", "session_messages", "session_files"):
        c.execute(f"DELETE FROM {table} WHERE session_id = ?", (sid,))


def _keep_current_latest(c: sqlite3.Connection) -> None:
    """Keep the current session's row the latest created: the original tool opens the
    session with the greatest ``created_at`` (seconds), ours the one the pointer names;
    with several sessions they must be the same one."""
    c.execute(
        "UPDATE sessions SET created_at = ("
        "  SELECT max(CAST(strftime('%s', 'now') AS INTEGER), COALESCE(max(s.created_at), 0) + 1) FROM sessions s"
        "  WHERE s.id != sessions.id) "
        "WHERE id = (SELECT value FROM sessionmem_meta WHERE key = 'current_session') "
        "AND created_at <= (SELECT COALESCE(max(s.created_at), -1) FROM sessions s WHERE s.id != sessions.id)"
    )
