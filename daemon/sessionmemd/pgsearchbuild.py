"""The search vectors and indexes of a PostgreSQL table that held messages before
schema 3 (pgsearch.MIGRATION), built after the daemon's start, in the background.

Migration 3 only adds a plain column and a row trigger (every row written from then on
gets its vector at once) and notes in ``sessionmem_search_build`` the highest ``seq``
whose rows may lack one. This builder then, on a thread and connection of its own:

1. fills the vectors of the rows up to that seq, CHUNK seqs per transaction (each a
   short UPDATE: a writer deleting one of those rows waits at most that long), noting
   how far it got in the same transaction, so a stop and the next start go on from there;
2. builds the two indexes with ``CREATE INDEX CONCURRENTLY`` (writes go on meanwhile;
   an index left invalid by a stop in the middle is dropped and built again);
3. deletes the row: from then on searches use the index and say ``complete: true``.

One builder per database: it holds an advisory lock while it works; a daemon that finds
it taken (another daemon builds) waits for it, so the build goes on as soon as that
daemon stops (and ends at once when it finds the build done). A build whose connection
fails (the server restarted) starts over after RETRY_S, where the database says it was. Meanwhile a search answers at once: the rows filled so far, by a scan
bounded as a substring scan is, with ``complete: false`` (pgsearch.search).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Final

import psycopg

from . import pgsearch

log = logging.getLogger("sessionmemd")

CHUNK: Final = 5_000  # seqs per fill transaction: ~0.1-0.3 s of row locks
RETRY_S: Final = 2.0  # after the build's connection failed, before it starts over
_BUILD_LOCK: Final = 0x5E55_1012  # (pgschema's migration lock is 0x5E55_1011)


def pending(c: psycopg.Connection[Any]) -> bool:
    """Whether an existing table's search vectors or indexes are still to be built."""
    return c.execute("SELECT EXISTS (SELECT 1 FROM sessionmem_search_build)").fetchone() == (True,)


def fill_step(c: psycopg.Connection[Any], chunk: int = CHUNK) -> bool:
    """Fill the vectors of the next ``chunk`` seqs, in one transaction; False when none
    is left to fill (or nothing is being built). ``c`` in autocommit mode."""
    with c.transaction():
        row = c.execute("SELECT upto, done FROM sessionmem_search_build FOR UPDATE").fetchone()
        if row is None or row[1] >= row[0]:
            return False
        upto, done = int(row[0]), int(row[1])
        to = min(done + chunk, upto)
        c.execute("UPDATE sessionmem_messages SET search = sessionmem_search_vector(content) "
                  "WHERE seq > %s AND seq <= %s AND search IS NULL", (done, to))
        c.execute("UPDATE sessionmem_search_build SET done = %s", (to,))
        return True


def _drop_invalid(c: psycopg.Connection[Any], name: str) -> bool:
    """Drop ``name`` when a build cut short left it invalid; whether it exists (valid)."""
    row = c.execute("SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%s)", (name,)).fetchone()
    if row is None:
        return False
    if not row[0]:
        c.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        return False
    return True


def finish(c: psycopg.Connection[Any]) -> None:
    """Build the indexes (concurrently: writes go on) and mark the build done."""
    if not _drop_invalid(c, "sessionmem_messages_search"):
        c.execute(pgsearch.SEARCH_INDEX.format(how="CONCURRENTLY"))
    if not _drop_invalid(c, "sessionmem_messages_trgm"):
        try:
            c.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            c.execute(pgsearch.TRGM_INDEX.format(how="CONCURRENTLY"))
        except psycopg.Error as e:
            if isinstance(e, psycopg.errors.QueryCanceled):
                raise
            log.warning(pgsearch.NO_TRGM, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
            _drop_invalid(c, "sessionmem_messages_trgm")
    c.execute("DELETE FROM sessionmem_search_build")


class Builder:
    """The build of :mod:`pgsearchbuild` on a thread of its own; ``stop()`` ends it
    (between two fill steps, or by cancelling an index build, which the next start
    makes again)."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], chunk: int = CHUNK) -> None:
        self._connect = connect
        self._chunk = chunk
        self._stop = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()  # the connection, between the thread and stop()
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-search-build", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # Lost connection, the server restarted, the builder's backend ended: start over
        # after RETRY_S (what was filled is noted in the database; nothing is done twice).
        while not self._stop.is_set():
            try:
                if self._build():
                    return
            except psycopg.Error as e:
                if not self._stop.is_set():
                    log.warning("search index: build interrupted (%s); trying again in %.0f s",
                                str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__, RETRY_S)
            finally:
                with self._lock:
                    if self._conn is not None:
                        self._conn.close()
                        self._conn = None
            if self._stop.wait(RETRY_S):
                return

    def _build(self) -> bool:
        """One attempt; True when the build is done (by this daemon or another)."""
        with self._lock:
            if self._stop.is_set():
                return False
            self._conn = c = self._connect()
        c.execute("SELECT pg_advisory_lock(%s)", (_BUILD_LOCK,))  # stop() cancels the wait
        if not pending(c):  # another daemon finished it meanwhile
            self.done.set()
            return True
        log.info("search index: filling the vectors of the existing messages")
        while not self._stop.is_set() and fill_step(c, self._chunk):
            pass
        if self._stop.is_set():
            return False
        log.info("search index: building the indexes")
        finish(c)
        log.info("search index: built")
        self.done.set()
        return True

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self._conn is not None and not self._conn.closed:
                try:
                    self._conn.cancel_safe()  # an index build in progress ends now
                except psycopg.Error:
                    pass
        self._thread.join(30)
