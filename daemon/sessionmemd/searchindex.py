"""The SQLite store's full-text index of message content (searchMessages).

An FTS5 *external-content* table over ``session_messages`` (the text is not stored
twice), kept by triggers on that table, so every writer, the original tool included,
keeps it right: appends, imports, pops, trims, deleted sessions, ``clear``. The insert
trigger only queues the new rowid (``_pending``: one small row; FTS5 writes a segment
per transaction, which made every durable commit cost ~3x); the :class:`Indexer`
thread indexes the queue every second in batches, and at once before a search; the
delete trigger drops a row from the queue or from the index, wherever it is. It is an
addition like those of schema.py, made at every open when missing (idempotent, so it
needs no schema version of its own; the original tool never reads it, and its
better-sqlite3 has FTS5 built in, so its writes fire the triggers as ours do).

A database that already holds messages (written by the original or an older
sessionmemd) gets its index built after the start, in the background, in chunks of
short transactions on a thread and connection of its own (:class:`Indexer`): the first
answers do not wait, and the writer waits at most one chunk. Meanwhile the triggers
already queue every new row, the delete trigger removes a row only when it is indexed
(an FTS5 'delete' of a row that is not corrupts the index), and the builder adds only
rows not indexed yet, so the order in which rows are written and built does not
matter. Until it is done meta ``search_index`` is ``building`` and searches answer
with ``complete: false``.

Checked at every open: the index and the queue must hold as many rows as the table and
the same highest rowid (cheap: counts over b-trees); found otherwise, it is emptied and
built again (in the background, as above).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from .storage import HitRow
from .searchpos import COUNTER, Positions
from .searchquery import MARK_CLOSE, MARK_OPEN, SNIPPET_TOKENS, Query, ascii_lower, substring_snippet

log = logging.getLogger("sessionmemd")

TABLE = "sessionmem_fts"
CHUNK = 5000  # rows per build transaction: ~20 ms of the writer's lock
# Rows per transaction when indexing the queue: a few ms of the write lock at a time, so
# a durable write that finds it taken waits little (SQLite's busy handler sleeps in steps).
FLUSH_CHUNK = 1000
# substring mode scans the table (LIKE) newest first, for at most this long; cut short,
# the page holds what was found and says complete: false. Why a scan and not a second
# (trigram) index: it would cost every write again, for the rarest mode.
SUBSTRING_BUDGET_S = 2.0

_DDL = [f"""
CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} USING fts5(
  content, content='session_messages', content_rowid='rowid',
  tokenize='unicode61 remove_diacritics 2'
)""", f"""
CREATE TABLE IF NOT EXISTS {TABLE}_pending (id INTEGER PRIMARY KEY)
""", f"CREATE TABLE IF NOT EXISTS {COUNTER} (n INTEGER NOT NULL)",
    f"INSERT INTO {COUNTER} (n) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM {COUNTER})", f"DROP TRIGGER IF EXISTS {TABLE}_ai", f"DROP TRIGGER IF EXISTS {TABLE}_ad",
    f"DROP TRIGGER IF EXISTS {TABLE}_au", f"""
CREATE TRIGGER {TABLE}_ai AFTER INSERT ON session_messages BEGIN
  INSERT OR IGNORE INTO {TABLE}_pending (id) VALUES (new.rowid);
END""", f"""
CREATE TRIGGER {TABLE}_ad AFTER DELETE ON session_messages BEGIN
  UPDATE {COUNTER} SET n = n + 1;
  DELETE FROM {TABLE}_pending WHERE id = old.rowid;
  INSERT INTO {TABLE}({TABLE}, rowid, content) SELECT 'delete', old.rowid, old.content
    WHERE EXISTS (SELECT 1 FROM {TABLE}_docsize WHERE id = old.rowid);
END""", f"""
CREATE TRIGGER {TABLE}_au AFTER UPDATE OF content ON session_messages BEGIN
  INSERT INTO {TABLE}({TABLE}, rowid, content) SELECT 'delete', old.rowid, old.content
    WHERE EXISTS (SELECT 1 FROM {TABLE}_docsize WHERE id = old.rowid);
  INSERT OR IGNORE INTO {TABLE}_pending (id) VALUES (new.rowid);
END"""]


def _meta(c: sqlite3.Connection, value: str) -> None:
    c.execute("INSERT INTO sessionmem_meta (key, value) VALUES ('search_index', ?) "
              "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (value,))


def state(c: sqlite3.Connection) -> str | None:
    """``complete``, ``building``, or None (no index yet)."""
    row = c.execute("SELECT value FROM sessionmem_meta WHERE key = 'search_index'").fetchone()
    return None if row is None else str(row[0])


def consistent(c: sqlite3.Connection) -> bool:
    """Each row is indexed or pending, once (counts and highest rowid agree)."""
    n, top = c.execute("SELECT count(*), max(rowid) FROM session_messages").fetchone()
    i, itop = c.execute(f"SELECT count(*), max(id) FROM {TABLE}_docsize").fetchone()
    q, qtop = c.execute(f"SELECT count(*), max(id) FROM {TABLE}_pending").fetchone()
    return bool(n == i + q and top == max(itop or 0, qtop or 0) or n == 0 and i == q == 0)


def flush(c: sqlite3.Connection, chunk: int = FLUSH_CHUNK) -> int:
    """Index the rows the triggers queued (``_pending``), in transactions of ``chunk``
    rows; how many. Many rows per transaction: FTS5 writes a segment per transaction,
    which costs a small commit several times its own work (benchmarks/search_bench.py)."""
    done = 0
    while True:
        c.execute("BEGIN IMMEDIATE")
        try:
            last = c.execute(f"SELECT max(id) FROM (SELECT id FROM {TABLE}_pending ORDER BY id LIMIT ?)",
                             (chunk,)).fetchone()[0]
            if last is None:
                c.execute("COMMIT")
                return done
            cur = c.execute(f"INSERT INTO {TABLE}(rowid, content) SELECT m.rowid, m.content "
                            f"FROM {TABLE}_pending p JOIN session_messages m ON m.rowid = p.id WHERE p.id <= ? "
                            f"AND NOT EXISTS (SELECT 1 FROM {TABLE}_docsize d WHERE d.id = p.id)", (last,))
            done += max(cur.rowcount, 0)
            c.execute(f"DELETE FROM {TABLE}_pending WHERE id <= ?", (last,))
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise


def ensure(c: sqlite3.Connection) -> bool:
    """Make the index and its triggers when missing and check it; True when it must be
    built (in the background: :class:`Indexer`). On the writer's connection at open."""
    c.execute("BEGIN IMMEDIATE")
    try:
        for statement in _DDL:  # one by one: executescript would commit
            c.execute(statement)
        now = state(c)
        if now == "complete" and consistent(c):
            c.execute("COMMIT")
            return False
        if now is None and c.execute("SELECT 1 FROM session_messages LIMIT 1").fetchone() is None:
            _meta(c, "complete")  # a new database: nothing to build
            c.execute("COMMIT")
            return False
        if now != "building":
            if now == "complete":
                log.warning("search index: found inconsistent with the messages; building it again")
            # Start from empty: whatever it holds may be stale. New rows are indexed by
            # the triggers from this commit on; the builder adds the rest. (A build cut
            # short by a stop goes on where it was: what it indexed is right.)
            c.execute(f"INSERT INTO {TABLE}({TABLE}) VALUES ('delete-all')")
            c.execute(f"DELETE FROM {TABLE}_pending")
            _meta(c, "building")
        c.execute("COMMIT")
    except BaseException:
        if c.in_transaction:
            c.execute("ROLLBACK")
        raise
    return True


def build_step(c: sqlite3.Connection, after: int, chunk: int = CHUNK) -> int | None:
    """Index the not yet indexed rows among the next ``chunk`` rowids after ``after``,
    in one transaction; the last rowid looked at, or None when none is left (then the
    index is marked complete)."""
    c.execute("BEGIN IMMEDIATE")
    try:
        row = c.execute("SELECT max(rowid) FROM (SELECT rowid FROM session_messages WHERE rowid > ? "
                        "ORDER BY rowid LIMIT ?)", (after, chunk)).fetchone()
        last = row[0]
        if last is None:
            _meta(c, "complete")
            c.execute("COMMIT")
            return None
        c.execute(f"INSERT INTO {TABLE}(rowid, content) SELECT rowid, content FROM session_messages m "
                  f"WHERE rowid > ? AND rowid <= ? "
                  f"AND NOT EXISTS (SELECT 1 FROM {TABLE}_docsize d WHERE d.id = m.rowid)", (after, last))
        c.execute(f"DELETE FROM {TABLE}_pending WHERE id > ? AND id <= ?", (after, last))  # indexed now
        c.execute("COMMIT")
        return int(last)
    except BaseException:
        if c.in_transaction:
            c.execute("ROLLBACK")
        raise


class Indexer:
    """The index's writer, on a thread and connection of its own: first the build of
    an existing database's index (when ``build``), then, every ``interval`` seconds, the
    rows the triggers queued. :meth:`flush_now` indexes the queue at once (a search
    calls it first, so what was written is found). ``stop()`` ends it between chunks
    (the next open goes on where it stopped: rows already indexed are skipped)."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], build: bool, interval: float = 1.0) -> None:
        self._connect = connect
        self._build = build
        self._interval = interval
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # the connection is used by this thread and by searches
        self._stop = threading.Event()
        self.built = threading.Event()
        if not build:
            self.built.set()
        self._thread = threading.Thread(target=self._run, name="search-index", daemon=True)
        self._thread.start()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _run(self) -> None:
        try:
            after: int | None = 0
            while self._build and after is not None and not self._stop.is_set():
                with self._lock:
                    after = build_step(self._connection(), after)
            if self._build and after is None:
                log.info("search index: built")
                self.built.set()
            while not self._stop.wait(self._interval):
                self.flush_now()
        except Exception as e:  # a lost file: the next start builds again
            log.error("search index: stopped: %s", e)

    def flush_now(self) -> bool:
        """Index what is queued; False when that failed (a search then says it may be
        incomplete)."""
        try:
            with self._lock:
                if self._stop.is_set():
                    return False
                flush(self._connection())
            return True
        except sqlite3.Error as e:
            log.warning("search index: queued rows not indexed yet: %s", e)
            return False

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def search(c: sqlite3.Connection, q: Query, flushed: bool = True,
           positions: Positions | None = None) -> tuple[list[HitRow], bool]:
    """The page of hits ``q`` asks for (``limit + 1`` rows, so the caller knows whether
    there is a next page), best first, each with its index in its session; and whether
    the index was complete. One read transaction: the hits and their indexes agree.

    Ranked in two steps, because a common word matches a quarter of the rows: first
    only rowid and bm25 of every match (the FTS5 table alone when nothing filters, so
    nothing else is read per match; SQLite keeps the best ``limit + 1`` in its top-N
    sorter), then the columns, the snippet and the index for the page's rows only."""
    where: list[str] = []
    args: list[object] = []
    if q.sessions is not None:
        where.append(f"m.session_id IN ({','.join('?' * len(q.sessions))})")
        args += q.sessions
    if q.roles is not None:
        where.append(f"CAST(m.role AS TEXT) IN ({','.join('?' * len(q.roles))})")
        args += q.roles
    if q.since is not None:
        where.append("COALESCE(m.timestamp, 0) >= ?")
        args.append(q.since)
    if q.until is not None:
        where.append("COALESCE(m.timestamp, 0) < ?")
        args.append(q.until)
    cols = ("m.rowid, CAST(m.session_id AS TEXT), CAST(m.role AS TEXT), "
            "CAST(COALESCE(m.timestamp, 0) AS INTEGER), ")
    c.execute("BEGIN")
    try:
        complete = flushed and state(c) == "complete"
        if q.match is not None:
            if where:
                ranked = (f"SELECT m.rowid, bm25({TABLE}) FROM {TABLE} JOIN session_messages m "
                          f"ON m.rowid = {TABLE}.rowid WHERE {TABLE} MATCH ? {''.join(' AND ' + w for w in where)} "
                          f"ORDER BY bm25({TABLE}), m.rowid DESC LIMIT ? OFFSET ?")
            else:
                ranked = (f"SELECT rowid, bm25({TABLE}) FROM {TABLE} WHERE {TABLE} MATCH ? "
                          f"ORDER BY bm25({TABLE}), rowid DESC LIMIT ? OFFSET ?")
            top = c.execute(ranked, (q.match, *args, q.limit + 1, q.offset)).fetchall()
            one = (f"SELECT {cols} snippet({TABLE}, 0, ?, ?, '…', {SNIPPET_TOKENS}), CAST(m.message_id AS TEXT) "
                   f"FROM {TABLE} JOIN session_messages m ON m.rowid = {TABLE}.rowid "
                   f"WHERE {TABLE} MATCH ? AND {TABLE}.rowid = ?")
            rows = []
            for rowid, score in top:
                r = c.execute(one, (MARK_OPEN, MARK_CLOSE, q.match, rowid)).fetchone()
                if r is not None:
                    rows.append((*r[:5], score, r[5]))
        else:
            # substring: a LIKE scan, newest first (searchquery.py: why not an index).
            # SQLite's LIKE stops at a NUL (the wire allows one in any string): a row that
            # holds one is matched in Python instead, as PostgreSQL matches it (pgsearch.py).
            c.create_function("sessionmem_nul_like", 2, _nul_like, deterministic=True)
            sql = (f"SELECT {cols} CAST(m.content AS TEXT), 0.0, CAST(m.message_id AS TEXT) "
                   f"FROM session_messages m WHERE (CAST(m.content AS TEXT) LIKE ? ESCAPE '\\' OR "
                   f"instr(CAST(m.content AS BLOB), x'00') > 0 AND sessionmem_nul_like(m.content, ?)) "
                   f"{''.join(' AND ' + w for w in where)} ORDER BY m.rowid DESC LIMIT ? OFFSET ?")
            rows, complete = _bounded(c, sql, (q.like, q.text, *args, q.limit + 1, q.offset))
            rows = [(*r[:4], substring_snippet(r[4], q.text), *r[5:]) for r in rows]
        index = (positions or Positions()).index(c, [(r[1], r[0]) for r in rows])
        hits = [(sid, index[sid, rowid], role, ts, snip, -float(score), mid)
                for rowid, sid, role, ts, snip, score, mid in rows]
    finally:
        c.execute("COMMIT")
    return hits, complete


def _nul_like(content: object, needle: str) -> bool:
    """LIKE '%needle%' (ASCII case folded, as SQLite's) on content that holds a NUL."""
    text = content.decode(errors="replace") if isinstance(content, bytes) else str(content)
    return ascii_lower(needle) in ascii_lower(text.replace("\x00", ""))


def _bounded(c: sqlite3.Connection, sql: str, args: tuple[object, ...],
             budget: float = SUBSTRING_BUDGET_S) -> tuple[list[Any], bool]:
    """The rows of a scan, read for at most ``budget`` seconds: what was found by then,
    and False when the scan was cut short (the reader thread serves session loads too,
    and a LIKE scan of a million messages takes about a second)."""
    deadline = time.monotonic() + budget
    c.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    rows: list[Any] = []
    try:
        for row in c.execute(sql, args):
            rows.append(row)
        return rows, True
    except sqlite3.OperationalError as e:
        if "interrupt" not in str(e):
            raise
        return rows, False
    finally:
        c.set_progress_handler(None, 0)
