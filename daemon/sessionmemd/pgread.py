"""The PostgreSQL store's reads (design §12): a session tail-first, the catalogue of
sessions for listSessions, the changes for a watcher's ``since``, and
:class:`PgReader`, the loader's reader (storage.Reader) on a connection of its own.

Split from pgstore.py, which opens, locks and writes; the functions here take the
caller's connection and run inside the caller's transaction, so the writer's open
(pgstore.PgStore), a shared daemon's turn (pgshared) and ``store copy``
(storecopy.py) read a session the same way the loader does. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from . import pgsearch
from .messages import MessageLog
from .searchpos import Positions
from .searchquery import Query
from .batch import Restored
from .storage import ChangeRow, HitRow, SessionRow, StoreError


def connect(url: str) -> psycopg.Connection[Any]:
    # A start, or a write after PostgreSQL went away, waits at most this long for it.
    return psycopg.connect(url, autocommit=True, connect_timeout=5, application_name="sessionmemd")


# Free text (roles, contents, tasks, paths, keys, message ids) is kept as bytea, UTF-8:
# PostgreSQL's text cannot hold a NUL character, which the wire allows in any string.
def decode(raw: bytes) -> str:
    return bytes(raw).decode()


def decode_opt(raw: bytes | None) -> str | None:
    return None if raw is None else bytes(raw).decode()


def _messages(rows: Iterable[tuple[Any, ...]]) -> Iterable[tuple[str, str, int, str | None, bytes | None]]:
    for role, content, ts, mid, data in rows:
        yield decode(role), decode(content), int(ts), decode_opt(mid), None if data is None else data.encode()


def load_session(c: psycopg.Connection[Any], key: str, sid: str, revision: int,
                 tail: int | None) -> Restored | None:
    """One session of project ``key`` (inside the caller's transaction), its newest
    ``tail`` messages when it has more."""
    row = c.execute("SELECT start_time, current_task, active_ticket FROM sessionmem_sessions "
                    "WHERE project_key = %s AND id = %s", (key, sid)).fetchone()
    if row is None:
        return None
    start_time, task, ticket = row[0], decode_opt(row[1]), decode_opt(row[2])
    older, cursor = 0, 0
    messages = MessageLog()
    if tail is None:
        rows = c.execute("SELECT role, content, ts, message_id, data FROM sessionmem_messages "
                         "WHERE project_key = %s AND session_id = %s ORDER BY seq", (key, sid)).fetchall()
        messages.extend(_messages(rows))
    else:
        rows = _tail(c, key, sid, tail)
        if len(rows) == tail and rows:
            cursor = int(rows[0][0])
            # Those before the tail's first seq (not all the session's less the tail: in a
            # READ COMMITTED open, a message another daemon adds meanwhile is counted by
            # neither, and the seqs it gets are above the tail's).
            counted = c.execute("SELECT count(*) FROM sessionmem_messages WHERE project_key = %s "
                                "AND session_id = %s AND seq < %s", (key, sid, cursor)).fetchone()
            older = int(counted[0]) if counted else 0
        messages.extend(_messages(r[1:] for r in rows))
    files = [decode(r[0]) for r in c.execute("SELECT file_path FROM sessionmem_files WHERE project_key = %s "
                                             "AND session_id = %s ORDER BY seq", (key, sid))]
    context = {decode(k): v.encode() for k, v in c.execute(
        "SELECT key, value FROM sessionmem_context WHERE project_key = %s AND session_id = %s ORDER BY seq",
        (key, sid))}
    return Restored(sid, int(start_time), task, ticket, messages, files, context,
                    revision=revision, older=older, older_cursor=cursor if older else 0)


# The newest messages through a cursor, not ``ORDER BY seq DESC LIMIT n``: a cursor is
# planned for its first rows (cursor_tuple_fraction), so it walks the session's index
# backwards whatever the table's statistics say. With LIMIT, a table that was never
# analyzed (a bulk load that autovacuum has not reached yet, e.g. right after `store
# copy`) looks like it holds ~50 rows of the session, and PostgreSQL chose a bitmap
# scan of all of them plus a sort: 840 ms instead of 2 ms at 1,000,000 messages.
_TAIL = ("DECLARE sessionmem_tail NO SCROLL CURSOR FOR SELECT seq, role, content, ts, message_id, data "
         "FROM sessionmem_messages WHERE project_key = %s AND session_id = %s ORDER BY seq DESC; "
         "FETCH %s FROM sessionmem_tail; CLOSE sessionmem_tail")


def _tail(c: psycopg.Connection[Any], key: str, sid: str, tail: int) -> list[tuple[Any, ...]]:
    """The session's newest ``tail`` rows, oldest first: one round trip (bound on the
    client, sent as one simple query), inside the caller's transaction (a cursor
    needs one)."""
    cur = psycopg.ClientCursor(c)
    cur.execute(_TAIL, (key, sid, int(tail)))
    cur.nextset()  # past DECLARE, to FETCH's rows
    rows = cur.fetchall()
    rows.reverse()
    return rows


def session_rows(c: psycopg.Connection[Any], key: str) -> dict[str, SessionRow]:
    """Every session of project ``key`` with the counts listSessions shows."""
    msgs = dict(c.execute("SELECT session_id, count(*) FROM sessionmem_messages WHERE project_key = %s "
                          "GROUP BY session_id", (key,)).fetchall())
    files = dict(c.execute("SELECT session_id, count(*) FROM sessionmem_files WHERE project_key = %s "
                           "GROUP BY session_id", (key,)).fetchall())
    ctx = dict(c.execute("SELECT session_id, count(*) FROM sessionmem_context WHERE project_key = %s "
                         "GROUP BY session_id", (key,)).fetchall())
    return {sid: (int(start), decode_opt(task), decode_opt(ticket), int(msgs.get(sid, 0)), int(files.get(sid, 0)),
                  int(ctx.get(sid, 0)))
            for sid, start, task, ticket in c.execute(
                "SELECT id, start_time, current_task, active_ticket FROM sessionmem_sessions "
                "WHERE project_key = %s", (key,))}


class PgReader:
    """storage.Reader on a connection of its own; each read one REPEATABLE READ
    transaction, so it is consistent in itself while the writer writes."""

    def __init__(self, url: str, key: str) -> None:
        self._conn = connect(url)
        # A read of several statements (a session, the list) sees one snapshot.
        self._conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self._key = key
        self._positions = Positions()  # search hits' indexes without walking sessions

    def load_session(self, sid: str, revision: int, tail: int | None) -> Restored | None:
        try:
            with self._conn.transaction():
                return load_session(self._conn, self._key, sid, revision, tail)
        except psycopg.Error as e:
            raise StoreError(str(e)) from e

    def load_older(self, sid: str, cursor: object) -> MessageLog:
        assert isinstance(cursor, int)  # the tail's first seq (load_session)
        try:
            rows = self._conn.execute(
                "SELECT role, content, ts, message_id, data FROM sessionmem_messages "
                "WHERE project_key = %s AND session_id = %s AND seq < %s ORDER BY seq",
                (self._key, sid, cursor)).fetchall()
        except psycopg.Error as e:
            raise StoreError(str(e)) from e
        messages = MessageLog()
        messages.extend(_messages(rows))
        return messages

    def session_rows(self) -> dict[str, SessionRow]:
        try:
            with self._conn.transaction():
                return session_rows(self._conn, self._key)
        except psycopg.Error as e:
            raise StoreError(str(e)) from e

    def search(self, query: Query) -> tuple[list[HitRow], bool]:
        try:
            with self._conn.transaction():  # the hits and their indexes: one snapshot
                return pgsearch.search(self._conn, self._key, query, self._positions)
        except psycopg.Error as e:
            raise StoreError(str(e)) from e

    def change_rows(self, since: int, upto: int) -> list[ChangeRow]:
        try:
            return [(int(r), str(s), bytes(f)) for r, s, f in self._conn.execute(
                "SELECT revision, session_id, frame FROM sessionmem_changes WHERE project_key = %s "
                "AND revision > %s AND revision <= %s ORDER BY revision", (self._key, since, upto))]
        except psycopg.Error as e:
            raise StoreError(str(e)) from e

    def shrink(self) -> None:
        pass  # the server holds the caches

    def close(self) -> None:
        self._conn.close()
