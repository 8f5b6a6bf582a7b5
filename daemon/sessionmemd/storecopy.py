"""`sessionmem store copy`: every session of a project from one store into another, all or
nothing (design §12, "Moving").

What is copied: every session (its id, start time, task and ticket; its messages with
their ids, data and timestamps, in order; its files in tracking order; its context
keys in their order), which session is current, each session's last revision (the order
of ``listSessions``), the ttl leases, and the revision mark: the target's next revisions
(and so lease tokens, which are revisions) continue above every one the source handed
out. Not copied: the change log (a watch resuming from before the copy on the new store
hears Compacted) and ephemeral leases (they end with their daemon anyway).

The source is read at one moment, while daemons serve it: a SQLite file through SQLite's
backup API (one read transaction copies it into a private temporary file, read from
there), PostgreSQL in one REPEATABLE READ transaction. A daemon that holds changes of a
SQLite source only in memory (durability periodic) is asked for a snapshot first, by the
CLI (cli/store.py).

The target is opened through the seam exactly as a daemon opens it (sqlitestore /
pgstore), so its single-writer rule keeps daemons out while it is written: a daemon
serving it is reported, and nothing is done. Everything is written by one
``Storage.write`` of a stream of batches, one transaction: on any failure nothing of it
is left, and a SQLite file this copy created is removed again. A target that already
holds a session with anything in it, or a lease, is refused; its empty sessions (the
one every daemon start makes) are replaced. One session at a time is held in memory.
A PostgreSQL target is vacuumed and analyzed once the copy committed (PgTarget.settle),
so the first daemon on it reads as fast as on a table autovacuum has seen.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from . import storeread
from .dbcheck import BadDatabase, DatabaseUnusable, check_header
from .leases import LeaseRow
from .listener import AlreadyRunning
from .batch import Batch, Changes, Restored
from .storage import SessionRow, Storage, StoreError
from .storeurl import mask


class CopyError(Exception):
    """The copy was refused or failed; ``str()`` is one line, password masked, saying
    that nothing was copied and, where there is one, the way out."""


@dataclass
class Report:
    """What a copy did, for the CLI to print."""

    source: str
    target: str
    sessions: int = 0
    messages: int = 0
    files: int = 0
    context_keys: int = 0
    leases: int = 0
    current: str | None = None
    revision: int = 0  # the target's revision mark: its next revisions are above it
    replaced: list[str] = field(default_factory=list)  # the target's empty sessions, gone


class Source(Protocol):
    """A store read at one moment."""

    where: str  # as messages name it, password masked
    url: str | None  # a PostgreSQL URL (whose password messages mask), None for SQLite

    def catalogue(self) -> dict[str, int]:
        """Every session's id and the revision of its last change."""
        ...

    def current(self) -> str | None: ...

    def mark(self) -> int:
        """The last revision that may have been handed out."""
        ...

    def leases(self) -> list[LeaseRow]: ...

    def session(self, sid: str, revision: int) -> Restored: ...

    def close(self) -> None: ...


class Target(Protocol):
    """A store to copy into: opened as a daemon opens it (its single-writer rule held)."""

    where: str
    url: str | None
    advice: str  # how to copy all the same when it holds sessions

    def open(self) -> Storage: ...

    def undo(self) -> None:
        """After a failure, remove what opening it made (a new SQLite file)."""
        ...

    def settle(self) -> None:
        """After a copy that committed: leave the target ready for a daemon's reads.
        Never fails (the copy is done)."""
        ...


# -- sources ------------------------------------------------------------------------------
class SqliteSource:
    """The project's SQLite file, copied at one moment into a private temporary file (next
    to it, else in $TMPDIR) by SQLite's backup API, and read from that copy."""

    url: str | None = None

    def __init__(self, path: Path) -> None:
        self.where = str(path)
        if not path.exists():
            raise CopyError(f"no SQLite database at {path}: nothing to copy")
        try:
            check_header(path)
        except BadDatabase as e:
            raise CopyError(f"{e}; nothing was copied") from None
        self._tmp = _private_dir(path.parent)
        try:
            copy = self._tmp / "copy.db"
            # mode=ro, not immutable: a daemon may be writing the file; the backup is one
            # read transaction, so what it copies is one moment of it.
            src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                dst = sqlite3.connect(copy)
                try:
                    src.backup(dst)
                finally:
                    dst.close()
            finally:
                src.close()
            self._c = sqlite3.connect(copy, isolation_level=None)
        except sqlite3.Error as e:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise CopyError(f"cannot read {path}: {e}; nothing was copied") from None
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise

    def catalogue(self) -> dict[str, int]:
        return storeread.catalogue(self._c)

    def current(self) -> str | None:
        return storeread.current_id(self._c)

    def mark(self) -> int:
        return storeread.read_feed(self._c)[0]

    def leases(self) -> list[LeaseRow]:
        if not self._c.execute("SELECT 1 FROM sqlite_master WHERE name = 'sessionmem_leases'").fetchone():
            return []
        return [(str(n), str(o), int(t), int(e), int(ttl), str(sid)) for n, o, t, e, ttl, sid in self._c.execute(
            "SELECT name, owner, token, expires_at, ttl_ms, session_id FROM sessionmem_leases ORDER BY rowid")]

    def session(self, sid: str, revision: int) -> Restored:
        r = storeread.load_session(self._c, sid, revision, None)
        if r is None:  # the copy does not change under us
            raise CopyError(f"session {sid!r} vanished from the copy of {self.where}")
        return r

    def close(self) -> None:
        self._c.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


def _private_dir(near: Path) -> Path:
    """A 0700 folder for the source's copy: beside the database (same file system, same
    privacy), else in $TMPDIR."""
    try:
        return Path(tempfile.mkdtemp(prefix=".storecopy-", dir=near))
    except OSError:
        return Path(tempfile.mkdtemp(prefix="sessionmem-storecopy-"))


class PgSource:
    """Project ``key`` in the PostgreSQL database at ``url``, read in one REPEATABLE READ,
    read-only transaction: one moment of it, while its daemons write."""

    def __init__(self, url: str, key: str) -> None:
        self.where = f"the PostgreSQL store {mask(url)} (project key {key!r})"
        self.url: str | None = url
        self._key = key
        psycopg = _driver()
        from .pgschema import SCHEMA_VERSION

        try:
            conn = psycopg.connect(url, connect_timeout=5, application_name="sessionmem store copy")
        except psycopg.Error as e:
            raise CopyError(f"cannot connect to {self.where}: {_reason(e, url)}; nothing was copied") from None
        try:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            row = conn.execute("SELECT to_regclass('sessionmem_schema') IS NOT NULL").fetchone()
            version = 0
            if row and row[0]:
                got = conn.execute("SELECT version FROM sessionmem_schema").fetchone()
                version = int(got[0]) if got else 0
            if version > SCHEMA_VERSION:
                raise CopyError(f"{self.where} has a sessionmem schema of version {version}, newer than this "
                                f"sessionmem knows ({SCHEMA_VERSION}): upgrade sessionmem; nothing was copied")
        except psycopg.Error as e:
            conn.close()
            raise CopyError(f"cannot read {self.where}: {_reason(e, url)}; nothing was copied") from None
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._version = version

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql.encode(), (self._key,)).fetchall()
        except _driver().Error as e:
            raise CopyError(f"cannot read {self.where}: {_reason(e, self.url)}; nothing was copied") from None

    def catalogue(self) -> dict[str, int]:
        if self._version == 0:
            return {}
        return {str(s): int(r) for s, r in self._rows(
            "SELECT id, revision FROM sessionmem_sessions WHERE project_key = %s")}

    def _project(self) -> tuple[str | None, int]:
        rows = self._rows("SELECT current_session, revisions_reserved FROM sessionmem_projects WHERE project_key = %s")
        return (None, 0) if not rows else (rows[0][0], int(rows[0][1]))

    def current(self) -> str | None:
        return self._project()[0]

    def mark(self) -> int:
        return self._project()[1]

    def leases(self) -> list[LeaseRow]:
        if self._version < 2:  # schema 2 added the leases
            return []
        return [(bytes(n).decode(), bytes(o).decode(), int(t), int(e), int(ttl), str(sid))
                for n, o, t, e, ttl, sid in self._rows(
                    "SELECT name, owner, token, expires_at, ttl_ms, session_id FROM sessionmem_leases "
                    "WHERE project_key = %s AND ttl_ms IS NOT NULL ORDER BY token")]  # ephemeral ones end with their daemon

    def session(self, sid: str, revision: int) -> Restored:
        from .pgread import load_session

        try:
            r = load_session(self._conn, self._key, sid, revision, None)
        except _driver().Error as e:
            raise CopyError(f"cannot read {self.where}: {_reason(e, self.url)}; nothing was copied") from None
        if r is None:  # one snapshot: cannot happen
            raise CopyError(f"session {sid!r} vanished from {self.where}")
        return r

    def close(self) -> None:
        self._conn.close()  # rolls the read-only transaction back


# -- targets ------------------------------------------------------------------------------
class SqliteTarget:
    url: str | None = None

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self.advice = "move that file aside to copy into a new one"
        # What opening it may make: removed again if the copy fails and they were not there.
        self._made = [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.lock"))
                      if not p.exists()]

    def open(self) -> Storage:
        from .sqlitestore import SqliteStore

        return SqliteStore(self.path)

    def undo(self) -> None:
        if self.path in self._made:
            for p in self._made:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)

    def settle(self) -> None:
        pass  # SQLite plans without statistics, and its count needs no visibility map


class PgTarget:
    def __init__(self, url: str, key: str) -> None:
        self.url: str | None = url
        self._url = url
        self.key = key
        self.where = f"the PostgreSQL store {mask(url)} (project key {key!r})"
        self.advice = "copy under another project key, or delete that key's sessions first"

    def open(self) -> Storage:
        _driver()
        from .pgstore import PgStore

        return PgStore(self._url, self.key)

    def undo(self) -> None:
        pass  # the write was one transaction; the schema stays, as a daemon's start leaves it

    def settle(self) -> None:
        """VACUUM (ANALYZE) the tables the copy filled, now rather than when autovacuum
        gets to them (a minute or more later): a daemon started on a bulk load that no
        VACUUM has seen counts the session's older messages (its first answer) through
        a visit to every row's heap page, not the index alone (1,000,000 messages:
        390 ms, then 70). 1 s per million messages. A role that does not own the
        tables only gets PostgreSQL's warning, skipped; a failure leaves it to
        autovacuum."""
        from .pgread import connect

        try:
            with connect(self._url) as conn:  # autocommit: VACUUM runs outside a transaction
                conn.execute("VACUUM (ANALYZE) sessionmem_sessions, sessionmem_messages, sessionmem_files, "
                             "sessionmem_context")
        except _driver().Error:
            pass


def _driver() -> Any:
    try:
        import psycopg
    except ImportError:
        raise CopyError("a PostgreSQL store needs the PostgreSQL driver: pip install 'sessionmem[postgres]'; "
                        "nothing was copied") from None
    return psycopg


def _failures() -> tuple[type[BaseException], ...]:
    """What a store, its driver or a row it cannot decode raise: reported in one line."""
    kinds: tuple[type[BaseException], ...] = (StoreError, OSError, sqlite3.Error, UnicodeError, BadDatabase,
                                              DatabaseUnusable)
    try:
        import psycopg
    except ImportError:
        return kinds
    return (*kinds, psycopg.Error)


def _reason(e: BaseException, url: str | None) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return mask(text, url or None)


# -- the copy -----------------------------------------------------------------------------
def has_content(row: SessionRow) -> bool:
    """A session someone put something in: a task, a ticket, a message, a file, a key."""
    _, task, ticket, messages, files, context = row
    return task is not None or ticket is not None or bool(messages or files or context)


def copy(source: Source, target: Target) -> Report:
    """Copy every session of ``source`` into ``target`` (see the module's docstring);
    CopyError when refused or failed, with nothing copied."""
    url = target.url or source.url  # the one whose password a message must not show
    known = source.catalogue()
    if not known:
        raise CopyError(f"nothing to copy: {source.where} holds no session")
    report = Report(source.where, target.where)
    try:
        store = target.open()
    except AlreadyRunning:
        raise CopyError(f"a sessionmemd serves {target.where}: stop it first (`sessionmem daemon stop` in its "
                        f"project), then copy; nothing was copied") from None
    except (StoreError, BadDatabase, DatabaseUnusable) as e:
        raise CopyError(f"{mask(str(e), url)}; nothing was copied") from None
    try:
        try:
            found, _ = store.take_opened()
            held = [r for r in store.take_leases() if r[4] is not None]  # ephemeral ones end with their daemon
            mark, _ = store.reserve_revisions(0)  # reads the mark; reserves nothing
            reader = store.reader()
            try:
                rows = reader.session_rows()
            finally:
                reader.close()
            full = sorted(sid for sid, row in rows.items() if has_content(row))
            if full or held:
                what = (f"{len(full)} session(s) with content ({', '.join(map(repr, full[:3]))}"
                        f"{', ...' if len(full) > 3 else ''})") if full else f"{len(held)} lease(s)"
                raise CopyError(f"refusing to copy: {target.where} already holds {what}: {target.advice}; "
                                f"nothing was copied")
            report.replaced = sorted(found)
            report.revision = max(mark, source.mark())
            store.write(_batches(source, known, report))
        except _failures() as e:  # a store's refusal or fault, an unreadable row; a bug keeps its traceback
            raise CopyError(f"copying into {target.where} failed: {_reason(e, url)}; "
                            f"nothing was copied") from None
        finally:
            store.close()
    except BaseException:
        target.undo()
        raise
    target.settle()
    return report


def _batches(source: Source, known: dict[str, int], report: Report) -> Iterator[Batch]:
    """The whole copy as a stream of batches, one session each (one in memory at a time),
    the target's empty sessions deleted first; written in one transaction."""
    deleted = list(report.replaced)
    for sid in sorted(known, key=lambda s: (known[s], s)):  # the least recently changed first
        r = source.session(sid, known[sid])
        ch = Changes(r.session_id, r.start_time, r.current_task, r.active_ticket, session_row=True,
                     messages=r.messages.since(0), files=[(f, True) for f in r.files],
                     context=[(k, v.decode()) for k, v in r.context.items()])
        report.sessions += 1
        report.messages += len(r.messages)
        report.files += len(r.files)
        report.context_keys += len(r.context)
        yield Batch(sessions=[ch], deleted=deleted)
        deleted = []
    current = source.current()
    report.current = current if current in known else None
    leases = source.leases()
    report.leases = len(leases)
    yield Batch(current=report.current, marks=sorted(known.items()), reserve=report.revision,
                leases=[(row[0], row) for row in leases])


if TYPE_CHECKING:
    def _conforms(a: SqliteSource, b: PgSource, c: SqliteTarget, d: PgTarget) -> tuple[Source, Source, Target, Target]:
        return a, b, c, d
