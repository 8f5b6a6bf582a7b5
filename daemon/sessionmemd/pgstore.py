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

Schema: pgschema.py (version, migrations). Reads (a session tail-first, the list of
sessions, the loader's reader): pgread.py.

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

from . import pgsearchbuild
from .leases import LeaseRow
from .listener import AlreadyRunning
from .pgread import PgReader, connect, decode, load_session
from .pgschema import migrate
from .pgstatements import Sink
from .batch import Batch, Changes, Restored
from .storage import TAIL, Catalogue, Reader, Storage, StoreError, StoreFault
from .storeurl import mask

log = logging.getLogger("sessionmemd")


class ProjectBusy(AlreadyRunning):
    """Another daemon serves this project key in this database (the exit code and
    message of a second daemon on one SQLite file)."""


def _lock_id(project_key: str) -> int:
    """The advisory lock of one project: 63 bits of a hash of its key."""
    return int.from_bytes(hashlib.sha256(project_key.encode()).digest()[:8], "big") >> 1


# Free text is kept as bytea, UTF-8 (pgread.decode reads it back).
def _b(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


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
    return [(decode(n), decode(o), int(t), None if e is None else int(e), None if ttl is None else int(ttl), str(sid))
            for n, o, t, e, ttl, sid in rows]


class PgStore:
    """storage.Storage on project ``key`` in the database at ``url``: connected,
    migrated and locked here (one daemon per key), or an exception with nothing held."""

    def __init__(self, url: str, key: str, *, tail: int = TAIL) -> None:
        self._url = url
        self._key = key
        self._tail = tail
        self._where = f"the PostgreSQL store {mask(url)} (project key {key!r})"
        self._conn: psycopg.Connection[Any] | None = None
        self._builder: pgsearchbuild.Builder | None = None
        try:
            conn = connect(url)
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
        if pgsearchbuild.pending(conn):  # a table that held messages before schema 3
            self._builder = pgsearchbuild.Builder(lambda: connect(url))

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
            conn = connect(self._url)
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
        if self._builder is not None:
            self._builder.stop()
            self._builder = None
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
