"""The SQLite store behind the seam (storage.Storage): one database file, one daemon.

Puts together what makes a file this daemon's store: the lock that makes it the only
writer (listener.DaemonLock), the checks and the ``--recover`` policy at open
(dbcheck.py), the file itself (store.Store: open, create, write) and its readers
(storeread.py), and what happens when the file is deleted or replaced under a
running daemon (:meth:`SqliteStore.repair`). sqlite3's errors stay in here: what the
layers above see is the seam's StoreError and StoreFault.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from . import searchindex, searchpos, storeread
from .dbcheck import BadDatabase, check_writable, move_aside
from .leases import LeaseRow
from .listener import DaemonLock
from .messages import MessageLog
from .batch import Batch, Restored
from .searchquery import Query
from .storage import TAIL, Catalogue, ChangeRow, HitRow, Reader, SessionRow, Storage, StoreError, StoreFault
from .store import Store

log = logging.getLogger("sessionmemd")


class SqliteReader:
    """storage.Reader on a connection of its own (WAL: it reads while the writer
    writes, each read a consistent snapshot)."""

    def __init__(self, conn: sqlite3.Connection, flush_index: Callable[[], bool]) -> None:
        self._conn = conn
        self._flush_index = flush_index  # the search index's queue, indexed before a search
        self._positions = searchpos.Positions()  # hits' indexes without walking sessions

    def load_session(self, sid: str, revision: int, tail: int | None) -> Restored | None:
        return storeread.load_session(self._conn, sid, revision, tail)

    def load_older(self, sid: str, cursor: object) -> MessageLog:
        assert isinstance(cursor, int)  # the tail's first rowid (storeread.load_session)
        try:
            return storeread.load_older(self._conn, sid, cursor)
        except sqlite3.DatabaseError as e:
            raise StoreError(str(e)) from e

    def session_rows(self) -> dict[str, SessionRow]:
        return storeread.session_rows(self._conn)

    def search(self, query: Query) -> tuple[list[HitRow], bool]:
        try:
            return searchindex.search(self._conn, query, self._flush_index(), self._positions)
        except sqlite3.DatabaseError as e:
            raise StoreError(str(e)) from e

    def change_rows(self, since: int, upto: int) -> list[ChangeRow]:
        return storeread.change_rows(self._conn, since, upto)

    def shrink(self) -> None:
        self._conn.execute("PRAGMA shrink_memory")

    def close(self) -> None:
        self._conn.close()


class SqliteStore:
    """storage.Storage on the database file at ``path``: locked, checked and opened
    here, or an exception (AlreadyRunning, BadDatabase, DatabaseUnusable) with nothing
    held."""

    def __init__(self, path: Path, *, fsync: bool = False, recover: bool = False, tail: int = TAIL) -> None:
        self.path = path
        # NORMAL in WAL mode: a commit is in the OS once it returns, which survives any
        # crash of this process; FULL also fsyncs it, which survives power loss.
        self._synchronous = "FULL" if fsync else "NORMAL"
        self._recover = recover
        self._tail = tail
        check_writable(path)  # before the lock file is made there
        self._lock: DaemonLock | None = DaemonLock(path)
        self._indexer: searchindex.Indexer | None = None
        try:
            self._file = self._open()
        except BaseException:
            self._lock.release()
            raise
        self._build_search_index()

    def _build_search_index(self) -> None:
        self._indexer = searchindex.Indexer(self._file.open_builder, self._file.search_to_build)

    def _stop_builder(self) -> None:
        if self._indexer is not None:
            indexer, self._indexer = self._indexer, None
            indexer.stop()

    def _flush_index(self) -> bool:
        indexer = self._indexer
        return indexer is not None and indexer.flush_now()

    def _open(self) -> Store:
        assert self._lock is not None
        try:
            file = Store(self.path, synchronous=self._synchronous, tail=self._tail)
        except BadDatabase as e:
            if not self._recover:
                raise
            moved = move_aside(self.path)
            log.warning("recover: %s; moved aside: %s", e.reason, ", ".join(map(str, moved)))
            file = Store(self.path, synchronous=self._synchronous, tail=self._tail)
        self._lock.hold_database()  # now that the file surely exists
        return file

    @property
    def location(self) -> str:
        return str(self.path)

    def take_opened(self) -> tuple[Catalogue, Restored | None]:
        return self._file.opened_known, self._file.take_opened_with()

    def take_leases(self) -> list[LeaseRow]:
        rows, self._file.opened_leases = self._file.opened_leases, []
        return rows

    def reserve_revisions(self, block: int) -> tuple[int, bool]:
        return self._file.reserve_revisions(block)

    def write(self, batches: Iterable[Batch]) -> int:
        return self._file.write(batches)

    def reload(self) -> tuple[Catalogue, Restored | None]:
        return self._file.reload()

    def reader(self) -> SqliteReader:
        return SqliteReader(self._file.open_reader(), self._flush_index)

    def fault(self) -> str | None:
        """SQLite would go on writing into an unlinked file, losing everything: writes
        go only into the file that is at the path."""
        return self._file.identity_problem()

    def repair(self, before_reopen: Callable[[], None]) -> None:
        """Deleted (`rm -rf .arela`, `git clean -fdx`): copy what this connection still
        reads of the unlinked file into a new one at the path, and go on writing into
        that. Replaced by another file: write nothing into that one; the sessions stay
        in memory, and every snapshot says so until the path is free again."""
        problem = self.fault()
        if problem is None:
            return
        path = self.path
        if problem != "deleted":
            lost = RuntimeError(f"the database {path} was {problem} while the daemon ran")
            raise StoreFault(
                f"{lost}: nothing is written into the file now at that path; the sessions are kept in "
                f"memory and written once the path is free (move that file away) or, at exit, "
                f"dumped as JSON", lost)
        log.error("the database %s was DELETED while the daemon ran: copying every session "
                  "into a new file at that path", path)
        try:
            self._file.copy_to(path)
            # Closed before the new file is opened, the old connections last: the last
            # close of a file removes "<path>-wal" by name, which must not be the new
            # file's.
            before_reopen()
            self._stop_builder()
            self._file.close()
            assert self._lock is not None
            self._lock.renew()  # the folder may have gone too: lock its path again
            self._file = self._open()
            self._build_search_index()
        except Exception as e:
            raise StoreFault(f"the database {path} was deleted and a new one cannot be made: {e}; "
                             f"the changes are kept in memory and retried", e) from e

    def announce(self, socket_path: Path) -> None:
        if self._lock is not None:
            self._lock.announce(socket_path)

    def close(self) -> None:
        self._stop_builder()
        self._file.close()
        if self._lock is not None:
            # Once only: a second close of its descriptors could close another file's.
            lock, self._lock = self._lock, None
            lock.release()


if TYPE_CHECKING:
    def _conforms(store: SqliteStore, reader: SqliteReader) -> tuple[Storage, Reader]:
        return store, reader  # mypy checks both against the seam's protocols here
