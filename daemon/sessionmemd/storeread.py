"""Reading sessions out of the database: which exist, which is current, one session
(all of it, or its newest messages first), the rest of its history, the list.

Plain functions of a connection, so the same code serves the read-only connection of
a start (before anything is written) and the loader's reader connection. Every value
is read through CAST: another tool may have stored a NULL or non-integer timestamp,
or a number as a role, and the wire promises strings and an int (SQLite coerces
them in C, at no measurable cost). Order is rowid order: messages and files restore in
the order they were written, which appends keep equal to the order they were added.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator

import msgspec

from .messages import MessageLog
from .batch import Restored

_encode = msgspec.json.Encoder().encode
_validate_json = msgspec.json.Decoder(msgspec.Raw).decode

_SESSION_COLUMNS = "id, start_time, CAST(current_task AS TEXT), CAST(active_ticket AS TEXT)"


def _tables(c: sqlite3.Connection) -> set[str]:
    return {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def current_id(c: sqlite3.Connection) -> str | None:
    """The current session: our pointer, or (a database the original wrote, or one
    whose pointed-to session the original cleared) the latest created, as the original
    picks it. None in an empty database."""
    if "sessionmem_meta" in _tables(c):
        row = c.execute(
            "SELECT s.id FROM sessions s "
            "JOIN sessionmem_meta m ON m.key = 'current_session' AND m.value = s.id"
        ).fetchone()
        if row is not None:
            return str(row[0])
    row = c.execute("SELECT id FROM sessions ORDER BY created_at DESC, rowid DESC LIMIT 1").fetchone()
    return None if row is None else str(row[0])


def catalogue(c: sqlite3.Connection) -> dict[str, int]:
    """Every session's id and the revision of its last change (0: none of ours)."""
    if "sessionmem_sessions" in _tables(c):
        rows = c.execute("SELECT s.id, COALESCE(r.revision, 0) FROM sessions s "
                         "LEFT JOIN sessionmem_sessions r ON r.session_id = s.id")
        return {str(sid): int(rev) for sid, rev in rows}
    return {str(r[0]): 0 for r in c.execute("SELECT id FROM sessions")}


def _message_columns(c: sqlite3.Connection) -> str:
    """role, content, timestamp, id, data: what MessageLog.extend takes."""
    have = {r[1] for r in c.execute("PRAGMA table_info(session_messages)")}
    id_col = "CAST(message_id AS TEXT)" if "message_id" in have else "NULL"  # the original's
    data_col = "CAST(data AS TEXT)" if "data" in have else "NULL"
    return ("CAST(role AS TEXT), CAST(content AS TEXT), "
            f"CAST(COALESCE(timestamp, 0) AS INTEGER), {id_col}, {data_col}")


def _rows(rows: Iterable[tuple[str, str, int, str | None, str | None]]) -> Iterator[
        tuple[str, str, int, str | None, bytes | None]]:
    for r, t, ts, mid, data in rows:
        yield r, t, ts, mid, None if data is None else _json_value(data)


def load_session(c: sqlite3.Connection, sid: str, revision: int = 0, tail: int | None = None) -> Restored | None:
    """One session, or None when it is not in the database. With ``tail``, only its
    newest ``tail`` messages when it has more (``older`` says how many are left)."""
    c.execute("BEGIN")
    try:
        row = c.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (sid,)).fetchone()
        if row is None:
            return None
        _, start_time, task, ticket = row
        cols = _message_columns(c)
        older, tail_rowid = 0, 0
        messages = MessageLog()
        if tail is None:
            cur = c.execute(f"SELECT {cols} FROM session_messages WHERE session_id = ? ORDER BY rowid", (sid,))
            while chunk := cur.fetchmany(50_000):
                messages.extend(_rows(chunk) if any(row[4] is not None for row in chunk) else chunk)  # type: ignore[arg-type]
        else:
            rows = c.execute(f"SELECT rowid, {cols} FROM session_messages WHERE session_id = ? "
                             f"ORDER BY rowid DESC LIMIT ?", (sid, tail)).fetchall()
            rows.reverse()
            if len(rows) == tail:
                total = c.execute("SELECT count(*) FROM session_messages WHERE session_id = ?",
                                  (sid,)).fetchone()[0]
                older = total - len(rows)
                tail_rowid = rows[0][0] if rows else 0
            messages.extend(_rows(row[1:] for row in rows))
            del rows
        files = [r[0] for r in c.execute(
            "SELECT CAST(file_path AS TEXT) FROM session_files WHERE session_id = ? ORDER BY rowid", (sid,))]
        context = {k: _json_value(v) for k, v in c.execute(
            "SELECT CAST(key AS TEXT), CAST(value AS TEXT) FROM session_context "
            "WHERE session_id = ? ORDER BY rowid", (sid,))}
    finally:
        c.execute("COMMIT")
    # "" is a task like any other string and survives a restart (the original turned
    # it into NULL on its way to disk; NULL still reads back as None).
    return Restored(sid, int(start_time), task, ticket, messages, files, context,
                    revision=revision, older=older, older_cursor=tail_rowid)


def load_older(c: sqlite3.Connection, sid: str, before_rowid: int, chunk: int = 50_000) -> MessageLog:
    """The session's messages before row ``before_rowid``, oldest first."""
    log = MessageLog()
    cur = c.execute(f"SELECT {_message_columns(c)} FROM session_messages "
                    "WHERE session_id = ? AND rowid < ? ORDER BY rowid", (sid, before_rowid))
    while rows := cur.fetchmany(chunk):
        # Rows without data (most, and all of the original tool's) go in as they are.
        log.extend(_rows(rows) if any(row[4] is not None for row in rows) else rows)
    return log


def session_rows(c: sqlite3.Connection) -> dict[str, tuple[int, str | None, str | None, int, int, int]]:
    """For listSessions: each session's start time, task, ticket and counts."""
    c.execute("BEGIN")
    try:
        msgs = dict(c.execute("SELECT session_id, count(*) FROM session_messages GROUP BY session_id"))
        files = dict(c.execute("SELECT session_id, count(*) FROM session_files GROUP BY session_id"))
        ctx = dict(c.execute("SELECT session_id, count(*) FROM session_context GROUP BY session_id"))
        return {str(sid): (int(start), task, ticket, msgs.get(sid, 0), files.get(sid, 0), ctx.get(sid, 0))
                for sid, start, task, ticket in c.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions")}
    finally:
        c.execute("COMMIT")


def read_feed(c: sqlite3.Connection) -> tuple[int, int | None]:
    """The reserved revision mark and the newest revision in the change log on disk
    (None without one: a database written by the original or an older sessionmemd).
    The log is whole only when it reaches the mark: a clean stop leaves the mark at the
    last revision handed out; after a crash the mark is a block ahead of the log."""
    tables = _tables(c)
    if "sessionmem_meta" not in tables:
        return 0, None
    row = c.execute("SELECT value FROM sessionmem_meta WHERE key = 'revisions_reserved'").fetchone()
    mark = int(row[0]) if row else 0
    if "sessionmem_changes" not in tables:
        return mark, None
    last = c.execute("SELECT max(revision) FROM sessionmem_changes").fetchone()[0]
    return mark, None if last is None else int(last)


def change_rows(c: sqlite3.Connection, since: int, upto: int) -> list[tuple[int, str, bytes]]:
    """The change log on disk after revision ``since`` up to ``upto``, oldest first."""
    return [(int(r), str(sid), bytes(f)) for r, sid, f in c.execute(
        "SELECT revision, session_id, frame FROM sessionmem_changes WHERE revision > ? AND revision <= ? "
        "ORDER BY revision", (since, upto))]


def _json_value(text: str) -> bytes:
    """Context values (and message data) are JSON text; the original fell back to the
    raw string when a value did not parse, and so do we."""
    data = text.encode()
    try:
        _validate_json(data)
        return data
    except (msgspec.DecodeError, RecursionError):
        return _encode(text)
