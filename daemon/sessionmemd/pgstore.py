"""The PostgreSQL store behind the seam (storage.Storage): one project's sessions in a
server database, every row keyed by the project key (design §12).

Driver: psycopg 3, synchronous. The seam is blocking by design (a Storage's calls run
on the persister's writer thread, a Reader's on the loader's reader thread, each one
at a time), so a blocking driver fits it as it is: no event loop of its own to run
and hand results across, as asyncpg would need beside uvloop. psycopg also gives
``LISTEN``/``NOTIFY`` on a plain connection (``conn.notifies()``), which is what a
feed across daemons would wake on. It is imported here only, behind the extra
``sessionmem[postgres]``: the core install and the CLI's start-up do not load it.

What this store promises today: **one daemon per project key** in a database. The
daemon takes a session-level advisory lock on the key (the single-writer rule that
SQLite's flock is for a file) and holds it for its life; a second daemon on the same
key is refused at start, saying so. The daemon itself runs its subclass
pgshared.PgShared, several daemons sharing one project (one total order of
revisions across hosts, a feed across them, ``sync``; issue 17), which follows this
design (with the project row's ``revisions_reserved`` as the exact last revision):

* revisions are handed out inside the writing transaction by ``UPDATE
  sessionmem_projects SET revision = revision + n ... RETURNING`` (the row lock is
  the per-project order), after the change was decided against rows re-read in that
  transaction (``expect``, message ids, the current session);
* every change row goes into ``sessionmem_changes`` in the same transaction, and a
  ``NOTIFY sessionmem_<hash>`` with the revision wakes the other daemons, which read
  the rows after their applied revision in order (the same table resumes ``since``);
* PostgreSQL unreachable: writes fail at once, reads answer from memory, the
  connection is retried with backoff and the changes table read from the applied
  revision on.

Schema: pgschema.py (version, migrations).

Durability: every commit is a PostgreSQL commit before the reply (the daemon runs
``always`` on this store); the changes of one loop turn share a transaction.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from . import pgsearch
from .listener import AlreadyRunning
from .messages import MessageLog
from .pgschema import migrate
from .pgstatements import Sink
from .state import Batch, Changes, Restored
from .leases import LeaseRow
from .searchquery import Query
from .storage import TAIL, Catalogue, ChangeRow, HitRow, Reader, SessionRow, Storage, StoreError, StoreFault
from .storeurl import mask

log = logging.getLogger("sessionmemd")

class ProjectBusy(AlreadyRunning):
    """Another daemon serves this project key in this database (the exit code and
    message of a second daemon on one SQLite file)."""


def _lock_id(project_key: str) -> int:
    """The advisory lock of one project: 63 bits of a hash of its key."""
    return int.from_bytes(hashlib.sha256(project_key.encode()).digest()[:8], "big") >> 1


def _connect(url: str) -> psycopg.Connection[Any]:
    # A start, or a write after PostgreSQL went away, waits at most this long for it.
    return psycopg.connect(url, autocommit=True, connect_timeout=5, application_name="sessionmemd")


class PgReader:
    """storage.Reader on a connection of its own; each read one REPEATABLE READ
    transaction, so it is consistent in itself while the writer writes."""

    def __init__(self, url: str, key: str) -> None:
        self._conn = _connect(url)
        # A read of several statements (a session, the list) sees one snapshot.
        self._conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self._key = key

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
                return pgsearch.search(self._conn, self._key, query)
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


# Free text (roles, contents, tasks, paths, keys, message ids) is kept as bytea, UTF-8:
# PostgreSQL's text cannot hold a NUL character, which the wire allows in any string.
def _b(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def _s(raw: bytes) -> str:
    return bytes(raw).decode()


def _o(raw: bytes | None) -> str | None:
    return None if raw is None else bytes(raw).decode()


def _messages(rows: Iterable[tuple[Any, ...]]) -> Iterable[tuple[str, str, int, str | None, bytes | None]]:
    for role, content, ts, mid, data in rows:
        yield _s(role), _s(content), int(ts), _o(mid), None if data is None else data.encode()


def load_session(c: psycopg.Connection[Any], key: str, sid: str, revision: int,
                 tail: int | None) -> Restored | None:
    """One session of project ``key`` (inside the caller's transaction), its newest
    ``tail`` messages when it has more."""
    row = c.execute("SELECT start_time, current_task, active_ticket FROM sessionmem_sessions "
                    "WHERE project_key = %s AND id = %s", (key, sid)).fetchone()
    if row is None:
        return None
    start_time, task, ticket = row[0], _o(row[1]), _o(row[2])
    older, cursor = 0, 0
    messages = MessageLog()
    if tail is None:
        rows = c.execute("SELECT role, content, ts, message_id, data FROM sessionmem_messages "
                         "WHERE project_key = %s AND session_id = %s ORDER BY seq", (key, sid)).fetchall()
        messages.extend(_messages(rows))
    else:
        rows = c.execute("SELECT seq, role, content, ts, message_id, data FROM sessionmem_messages "
                         "WHERE project_key = %s AND session_id = %s ORDER BY seq DESC LIMIT %s",
                         (key, sid, tail)).fetchall()
        rows.reverse()
        if len(rows) == tail and rows:
            cursor = int(rows[0][0])
            counted = c.execute("SELECT count(*) FROM sessionmem_messages WHERE project_key = %s "
                                "AND session_id = %s AND seq < %s", (key, sid, cursor)).fetchone()
            older = int(counted[0]) if counted else 0
        messages.extend(_messages(r[1:] for r in rows))
    files = [_s(r[0]) for r in c.execute("SELECT file_path FROM sessionmem_files WHERE project_key = %s "
                                     "AND session_id = %s ORDER BY seq", (key, sid))]
    context = {_s(k): v.encode() for k, v in c.execute(
        "SELECT key, value FROM sessionmem_context WHERE project_key = %s AND session_id = %s ORDER BY seq",
        (key, sid))}
    return Restored(sid, int(start_time), task, ticket, messages, files, context,
                    revision=revision, older=older, older_cursor=cursor if older else 0)


# The leases of a project. An ephemeral one (no expiry) names its holder: the backend of
# the store connection of the daemon that granted it (pid, start: a pid is reused, the
# pair is not). A holder no longer in pg_stat_activity (its daemon killed: PostgreSQL
# ends the backend when the socket closes; or disconnected) is gone: the lease is read
# with the time it was found so as its end, and ends like one whose connection closed
# (leases.py). A holder seen without its start (another role's backend, without
# pg_read_all_stats) counts as alive by its pid: that can keep a lease longer, never
# end a live one. pg_stat_get_activity(pid) looks up that one backend.
LEASES = ("SELECT name, owner, token, CASE WHEN expires_at IS NULL AND (holder_pid IS NULL OR NOT EXISTS ("
          "SELECT 1 FROM pg_stat_get_activity(holder_pid) a WHERE a.backend_start IS NULL "
          "OR a.backend_start = holder_start)) THEN (extract(epoch FROM clock_timestamp()) * 1000)::bigint "
          "ELSE expires_at END, ttl_ms, session_id FROM sessionmem_leases WHERE project_key = %s")
# The holder an ephemeral lease's row is written with: the writing connection's backend.
HOLDER = "pg_backend_pid(), (SELECT backend_start FROM pg_stat_get_activity(pg_backend_pid()))"


def lease_rows(rows: Iterable[tuple[Any, ...]]) -> list[LeaseRow]:
    return [(_s(n), _s(o), int(t), None if e is None else int(e), None if ttl is None else int(ttl), str(sid))
            for n, o, t, e, ttl, sid in rows]


def session_rows(c: psycopg.Connection[Any], key: str) -> dict[str, SessionRow]:
    msgs = dict(c.execute("SELECT session_id, count(*) FROM sessionmem_messages WHERE project_key = %s "
                          "GROUP BY session_id", (key,)).fetchall())
    files = dict(c.execute("SELECT session_id, count(*) FROM sessionmem_files WHERE project_key = %s "
                           "GROUP BY session_id", (key,)).fetchall())
    ctx = dict(c.execute("SELECT session_id, count(*) FROM sessionmem_context WHERE project_key = %s "
                         "GROUP BY session_id", (key,)).fetchall())
    return {sid: (int(start), _o(task), _o(ticket), int(msgs.get(sid, 0)), int(files.get(sid, 0)), int(ctx.get(sid, 0)))
            for sid, start, task, ticket in c.execute(
                "SELECT id, start_time, current_task, active_ticket FROM sessionmem_sessions "
                "WHERE project_key = %s", (key,))}


class PgStore:
    """storage.Storage on project ``key`` in the database at ``url``: connected,
    migrated and locked here (one daemon per key), or an exception with nothing held."""

    def __init__(self, url: str, key: str, *, tail: int = TAIL) -> None:
        self._url = url
        self._key = key
        self._tail = tail
        self._where = f"the PostgreSQL store {mask(url)} (project key {key!r})"
        self._conn: psycopg.Connection[Any] | None = None
        try:
            conn = _connect(url)
        except psycopg.Error as e:
            raise StoreError(f"cannot connect to {self._where}: {_reason(e, url)}") from None
        try:
            migrate(conn, self._where)
            self._lock(conn)
            with conn.transaction():
                conn.execute("INSERT INTO sessionmem_projects (project_key) VALUES (%s) "
                             "ON CONFLICT DO NOTHING", (key,))
                self._opened = self._load(conn)
                mark, last = conn.execute(
                    "SELECT p.revisions_reserved, (SELECT max(revision) FROM sessionmem_changes c "
                    "WHERE c.project_key = p.project_key) FROM sessionmem_projects p "
                    "WHERE p.project_key = %s", (key,)).fetchone() or (0, None)
                self._feed = (int(mark), None if last is None else int(last))
                self._leases: list[LeaseRow] = self._read_leases(conn)
        except psycopg.Error as e:
            conn.close()
            raise StoreError(f"cannot use {self._where}: {_reason(e, url)}") from None
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _read_leases(self, c: psycopg.Connection[Any]) -> list[LeaseRow]:
        return lease_rows(c.execute(LEASES, (self._key,)))

    def _lock(self, conn: psycopg.Connection[Any]) -> None:
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (_lock_id(self._key),)).fetchone()
        if not (got and got[0]):
            raise ProjectBusy(
                f"another sessionmemd already serves project key {self._key!r} in {mask(self._url)}; "
                f"this version runs one daemon per project key in a database (several hosts on one "
                f"project are not supported yet)")

    def _load(self, c: psycopg.Connection[Any]) -> tuple[Catalogue, Restored | None]:
        known = {str(s): int(r) for s, r in c.execute(
            "SELECT id, revision FROM sessionmem_sessions WHERE project_key = %s", (self._key,))}
        row = c.execute("SELECT current_session FROM sessionmem_projects WHERE project_key = %s",
                        (self._key,)).fetchone()
        sid = None if row is None else row[0]
        if sid is None or sid not in known:
            return known, None
        return known, load_session(c, self._key, sid, known[sid], self._tail)

    @property
    def location(self) -> str:
        return f"{mask(self._url)}#{self._key}"

    def take_opened(self) -> tuple[Catalogue, Restored | None]:
        opened, self._opened = self._opened, ({}, None)
        return opened

    def take_leases(self) -> list[LeaseRow]:
        rows, self._leases = self._leases, []
        return rows

    def _live(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            raise StoreError(f"{self._where} is not connected")
        return self._conn

    def reserve_revisions(self, block: int) -> tuple[int, bool]:
        mark, logged = self._feed
        self._live().execute("UPDATE sessionmem_projects SET revisions_reserved = %s WHERE project_key = %s",
                             (mark + block, self._key))
        return mark, logged is not None and logged == mark

    def write(self, batches: Iterable[Batch]) -> int:
        c = self._live()
        rows = 0
        try:
            with c.transaction():
                for b in batches:
                    rows += self._apply(c, b)
        except psycopg.Error as e:
            how = "is unreachable" if isinstance(e, psycopg.OperationalError) else "refused the write"
            raise StoreError(f"{self._where} {how}: {_reason(e, self._url)}") from None
        return rows

    def _apply(self, c: psycopg.Connection[Any], b: Batch) -> int:
        with c.cursor() as cur:
            self._apply_to(cur, b)
        return len(b)

    def _apply_to(self, cur: Sink, b: Batch) -> None:
        """The batch's statements, executed by ``cur`` (a cursor), or collected by it
        (pgstatements.Statements) to go out later in one round trip."""
        key = self._key
        for sid in b.deleted:
            for table in ("sessionmem_messages", "sessionmem_files", "sessionmem_context"):
                cur.execute(f"DELETE FROM {table} WHERE project_key = %s AND session_id = %s", (key, sid))
            cur.execute("DELETE FROM sessionmem_sessions WHERE project_key = %s AND id = %s", (key, sid))
        for ch in b.sessions:
            self._apply_session(cur, ch)
        if b.marks:
            cur.executemany("UPDATE sessionmem_sessions SET revision = %s WHERE project_key = %s AND id = %s",
                            [(rev, key, sid) for sid, rev in b.marks])
        if b.current is not None:
            cur.execute("UPDATE sessionmem_projects SET current_session = %s WHERE project_key = %s",
                        (b.current, key))
        if b.reserve is not None:
            cur.execute("UPDATE sessionmem_projects SET revisions_reserved = %s WHERE project_key = %s",
                        (b.reserve, key))
        if b.log_rows:
            cur.executemany(
                "INSERT INTO sessionmem_changes (project_key, revision, session_id, frame) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (project_key, revision) DO UPDATE SET "
                "session_id = excluded.session_id, frame = excluded.frame",
                [(key, r, s, f) for r, s, f in b.log_rows])
        if b.log_floor is not None:
            cur.execute("DELETE FROM sessionmem_changes WHERE project_key = %s AND revision < %s",
                        (key, b.log_floor))
        for name, row in b.leases:
            if row is None:
                cur.execute("DELETE FROM sessionmem_leases WHERE project_key = %s AND name = %s",
                            (key, _b(name)))
            else:
                n, owner, token, expires_at, ttl_ms, sid = row
                # An ephemeral lease (several daemons) is held by this connection's backend.
                holder = HOLDER if expires_at is None else "NULL, NULL"
                cur.execute(
                    "INSERT INTO sessionmem_leases (project_key, name, owner, token, expires_at, ttl_ms, "
                    f"session_id, holder_pid, holder_start) VALUES (%s, %s, %s, %s, %s, %s, %s, {holder}) "
                    "ON CONFLICT (project_key, name) DO UPDATE "
                    "SET owner = excluded.owner, token = excluded.token, expires_at = excluded.expires_at, "
                    "ttl_ms = excluded.ttl_ms, session_id = excluded.session_id, "
                    "holder_pid = excluded.holder_pid, holder_start = excluded.holder_start",
                    (key, _b(n), _b(owner), token, expires_at, ttl_ms, sid))

    def _apply_session(self, cur: Sink, ch: Changes) -> None:
        key, sid = self._key, ch.session_id
        if ch.wiped:
            for table in ("sessionmem_messages", "sessionmem_files", "sessionmem_context"):
                cur.execute(f"DELETE FROM {table} WHERE project_key = %s AND session_id = %s", (key, sid))
        if ch.session_row:
            cur.execute(
                "INSERT INTO sessionmem_sessions (project_key, id, start_time, current_task, active_ticket) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (project_key, id) DO UPDATE SET "
                "start_time = excluded.start_time, current_task = excluded.current_task, "
                "active_ticket = excluded.active_ticket",
                (key, sid, ch.start_time, _b(ch.current_task), _b(ch.active_ticket)))
        if ch.trim_front:
            cur.execute("DELETE FROM sessionmem_messages WHERE seq IN (SELECT seq FROM sessionmem_messages "
                        "WHERE project_key = %s AND session_id = %s ORDER BY seq LIMIT %s)",
                        (key, sid, ch.trim_front))
        if ch.pop_back:
            cur.execute("DELETE FROM sessionmem_messages WHERE seq IN (SELECT seq FROM sessionmem_messages "
                        "WHERE project_key = %s AND session_id = %s ORDER BY seq DESC LIMIT %s)",
                        (key, sid, ch.pop_back))
        for chunk, ids, data in ch.messages.chunks():
            # executemany pipelines the rows: one round trip per chunk, not per message,
            # and the identity column numbers them in the order given.
            cur.executemany(
                "INSERT INTO sessionmem_messages (project_key, session_id, role, content, ts, message_id, data) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [(key, sid, m.role.encode(), m.content.encode(), m.timestamp, _b(i),
                  None if d is None else d.decode())
                 for m, i, d in zip(chunk, ids, data, strict=True)])
        for path, tracked in ch.files:
            cur.execute("DELETE FROM sessionmem_files WHERE project_key = %s AND session_id = %s "
                        "AND file_path = %s", (key, sid, path.encode()))
            if tracked:
                cur.execute("INSERT INTO sessionmem_files (project_key, session_id, file_path) "
                            "VALUES (%s, %s, %s)", (key, sid, path.encode()))
        for k, value in ch.context:
            if value is None:
                cur.execute("DELETE FROM sessionmem_context WHERE project_key = %s AND session_id = %s "
                            "AND key = %s", (key, sid, k.encode()))
            else:
                # An update keeps the key's place (its seq), as SQLite keeps its rowid.
                cur.execute("INSERT INTO sessionmem_context (project_key, session_id, key, value) "
                            "VALUES (%s, %s, %s, %s) ON CONFLICT (project_key, session_id, key) "
                            "DO UPDATE SET value = excluded.value", (key, sid, k.encode(), value))

    def reload(self) -> tuple[Catalogue, Restored | None]:
        c = self._live()
        try:
            with c.transaction():
                return self._load(c)
        except psycopg.Error as e:
            raise StoreError(f"cannot read {self._where}: {_reason(e, self._url)}") from None

    def reader(self) -> PgReader:
        return PgReader(self._url, self._key)

    def fault(self) -> str | None:
        """A connection PostgreSQL closed (a restart, a network cut): writes must wait
        for :meth:`repair` to connect again."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            return "disconnected"
        return None

    def repair(self, before_reopen: Callable[[], None]) -> None:
        """Connect again and take the project's lock again (it went with the old
        session); or raise StoreFault naming the store (the changes stay in memory)."""
        if self.fault() is None:
            return
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        try:
            conn = _connect(self._url)
        except psycopg.Error as e:
            cause = RuntimeError(f"{self._where} is unreachable: {_reason(e, self._url)}")
            raise StoreFault(f"{cause}; the changes are kept in memory and retried", cause) from None
        try:
            self._lock(conn)
        except (ProjectBusy, psycopg.Error) as e:
            conn.close()
            cause = RuntimeError(str(e) if isinstance(e, ProjectBusy) else _reason(e, self._url))
            raise StoreFault(f"{self._where}: {cause}; the changes are kept in memory", cause) from None
        log.warning("reconnected to %s", self._where)
        self._conn = conn

    def announce(self, socket_path: Path) -> None:
        pass  # clients find a daemon by its socket; the store names no writer

    def close(self) -> None:
        """Idempotent; closing the session releases the project's advisory lock."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()


def _reason(e: Exception, url: str) -> str:
    """The driver's message, with the URL's password (should libpq ever echo it) masked."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return mask(text, url)


if TYPE_CHECKING:
    def _conforms(store: PgStore, reader: PgReader) -> tuple[Storage, Reader]:
        return store, reader  # mypy checks both against the seam's protocols here
