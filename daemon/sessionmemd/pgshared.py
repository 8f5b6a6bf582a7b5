"""Several daemons on one project in PostgreSQL: the store's side (design §12).

Every daemon of a project key holds a *shared* advisory lock on it (a daemon of the
single-writer kind, which takes it exclusively, is refused, and refuses these). The
order of changes is the project row's: a write turn (turns.py) opens a transaction,
locks that row (``SELECT ... FOR UPDATE``), reads the changes committed after this
daemon's revision (replay.py applies them), lets the turn's calls decide against that
memory, then writes their rows, their ``changed`` frames into ``sessionmem_changes``
and the new revision into the project row, sends ``NOTIFY`` and commits. The row lock
is held from the read to the commit, so no two daemons give out one revision, and
each decides on the latest committed state.

A write turn is two round trips to the server: BEGIN + the row lock (+ the changes
another daemon announced, + the leases) as one query; then its rows, frames, revision,
NOTIFY and COMMIT as one more (client-bound: :class:`pgstatements.Statements`), in parts
of CHUNK statements for a turn of many calls; a turn of more than SMALL rows sends
them first. One more when the row shows changes nobody announced yet, or when
sessions must be read anew.

Ephemeral leases are in ``sessionmem_leases`` too, each with its holder: the backend
of the turn connection of the daemon that granted it (pgstore.LEASES, HOLDER). Every
turn that reads the leases reads whether each holder still lives; one gone (its
daemon killed, or disconnected: a reconnected daemon is another backend) comes back
with an end, and the lease timer of the first daemon to see it ends it in a write
turn (leases.py). The heartbeat read (below) makes that happen within about a second
when nobody writes.

``revisions_reserved`` of the project row is the exact last revision here (a
single-writer daemon reserves blocks ahead; a block's unused rest is a gap the
shared daemons step over). The changes table keeps the last KEEP revisions.

Blocking calls, made one at a time on the persister's writer thread, like the rest of
the seam; :class:`Listener` waits for notifications on a thread and connection of its
own and wakes the loop.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from . import replay
from .changelog import KEEP
from .leases import LeaseRow
from .pgstatements import Statements
from .pgread import PgReader, load_session
from .pgread import connect as _connect
from .pgstore import LEASES, PgStore, ProjectBusy, _lock_id, _reason, lease_rows
from .batch import Batch, Restored
from .storage import Catalogue, StoreError, StoreRefused, TurnStale
from .storeurl import mask

log = logging.getLogger("sessionmemd")

# A write turn waits at most this long for the project's row (another daemon's turn):
# then its calls fail with -32004 and the daemon reads the store anew, rather than hang
# behind a daemon whose host stopped answering in the middle of a turn.
LOCK_TIMEOUT = "10s"
# PostgreSQL ends a turn's transaction idle this long (its daemon gone without closing
# the connection: a host powered off), so the row it holds is free again.
IDLE_TIMEOUT = "60s"
# TCP keepalives of the turn connection (idle s, interval s, probes): PostgreSQL ends the
# backend of a host that stopped answering after at most idle + interval x probes.
KEEPALIVE = (10, 5, 3)
KEEPALIVE_BOUND = KEEPALIVE[0] + KEEPALIVE[1] * KEEPALIVE[2]
# A turn writing at most this many rows sends them with its frames, revision, NOTIFY
# and COMMIT as one query (one round trip); a bigger one sends its rows first, as the
# single-writer store does (pgstore._apply).
SMALL = 200
# The most statements sent in one query: a turn of many calls (thousands of frames and
# revision marks) goes in parts of this many, so no query text grows without bound.
CHUNK = 500


def channel(project_key: str) -> str:
    """The NOTIFY channel of a project (an identifier: a hash, not the key itself)."""
    return "sessionmem_" + hashlib.sha256(project_key.encode()).hexdigest()[:24]


@dataclass
class Fetched:
    """What a turn read: the revision now, the changes after the daemon's, the sessions
    to put in anew (replay.fresh), or everything (``full``), and the ttl leases."""

    revision: int
    rows: list[replay.Row] = field(default_factory=list)
    fresh: dict[str, Restored | None] = field(default_factory=dict)
    full: tuple[Catalogue, Restored | None] | None = None
    leases: list[LeaseRow] | None = None  # None: not read (replay keeps the table)


# The changes after a revision, up to the project row's (what a turn replays).
CHANGES = ("SELECT revision, session_id, frame FROM sessionmem_changes WHERE project_key = %s AND revision > %s "
           "AND revision <= (SELECT revisions_reserved FROM sessionmem_projects WHERE project_key = %s) "
           "ORDER BY revision")


class PgSharedReader(PgReader):
    def load_session(self, sid: str, revision: int, tail: int | None) -> Restored | None:
        # The session's own revision as stored with it (not the caller's idea of it): the
        # loader brings it forward from there with what was replayed meanwhile.
        try:
            with self._conn.transaction():
                row = self._conn.execute("SELECT revision FROM sessionmem_sessions WHERE project_key = %s "
                                         "AND id = %s", (self._key, sid)).fetchone()
                return None if row is None else load_session(self._conn, self._key, sid, int(row[0]), tail)
        except psycopg.Error as e:
            raise StoreError(str(e)) from e


class PgShared(PgStore):
    """storage.Storage for one of several daemons of a project key."""

    shared = True  # persist.Persister: every change is committed by its turn

    def _lock(self, conn: psycopg.Connection[Any]) -> None:
        # This connection is the holder of the ephemeral leases this daemon grants
        # (pgstore.LEASES): they end when PostgreSQL ends its backend. A killed daemon's
        # socket closes at once; a host that vanished without closing it (powered off,
        # cut off) is found out by TCP keepalives, asked for here so that it takes about
        # KEEPALIVE_BOUND s, not the system's default of hours. (Over a Unix socket: no-op.)
        conn.execute(f"SET tcp_keepalives_idle = {KEEPALIVE[0]}; SET tcp_keepalives_interval = {KEEPALIVE[1]}; "
                     f"SET tcp_keepalives_count = {KEEPALIVE[2]}")
        got = conn.execute("SELECT pg_try_advisory_lock_shared(%s)", (_lock_id(self._key),)).fetchone()
        if not (got and got[0]):
            raise ProjectBusy(
                f"a sessionmemd of an older kind (one daemon per project key) serves project key "
                f"{self._key!r} in {mask(self._url)}; stop it, or upgrade it, first")

    def reserve_revisions(self, block: int) -> tuple[int, bool]:
        # Nothing is reserved: each turn takes its revisions under the row lock. The log
        # in the store is read back from the last revision down (what is contiguous).
        mark, _logged = self._feed
        return mark, True

    def reader(self) -> PgSharedReader:
        return PgSharedReader(self._url, self._key)

    # -- turns ---------------------------------------------------------------------------
    def fetch(self, applied: int, loaded: frozenset[str], current: str, lock: bool, full: bool = False,
              own_pending: bool = False, leases: bool = True, expect: bool = True) -> Fetched:
        """Open a turn: with ``lock``, a transaction holding the project row until
        :meth:`finish` or :meth:`abort`; without, a consistent read (sync, a NOTIFY).
        The changes after ``applied``, and what replay needs besides; the ttl leases
        with ``leases`` (a renewal on another daemon is no change: only the table has
        it; a daemon that knows no lease has none to refresh, as every acquisition is
        a change it replays). ``expect``: changes after ``applied`` are likely (another
        daemon announced them), so they are asked for with the row; otherwise only when
        the row says so, one more round trip (a daemon alone pays nothing for them)."""
        c = self._live()
        try:
            # BEGIN, the row (and the changes after ours, the leases) in one round trip,
            # bound here and sent as one simple query. The changes are read by a
            # statement after the row's: under READ COMMITTED it sees every commit made
            # before the row lock was granted, and none can come after it (each needs
            # that lock); a join in the locking statement would not (PostgreSQL rechecks
            # a locked row, not the rows joined to it).
            cur = psycopg.ClientCursor(c)
            cur.execute(("BEGIN ISOLATION LEVEL READ COMMITTED; " if lock else "BEGIN ISOLATION LEVEL REPEATABLE READ; ")
                        + f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'; "
                        + f"SET LOCAL idle_in_transaction_session_timeout = '{IDLE_TIMEOUT}'; "
                        + "SELECT revisions_reserved, current_session FROM sessionmem_projects WHERE project_key = %s"
                        + (" FOR UPDATE" if lock else "")
                        + ("; " + CHANGES if expect else "")
                        + ("; " + LEASES if leases else ""),
                        (self._key,) + ((self._key, applied, self._key) if expect else ())
                        + ((self._key,) if leases else ()))
            for _ in range(3):  # past BEGIN and the two SETs, to the row
                cur.nextset()
            row = cur.fetchone()
            assert row is not None  # made at open
            now, db_current = int(row[0]), row[1]
            got = Fetched(now)
            if expect:
                cur.nextset()
                got.rows = [(int(r), str(s), bytes(f)) for r, s, f in cur.fetchall()]
            if leases:
                cur.nextset()
                got.leases = lease_rows(cur.fetchall())
            if not expect and now > applied:  # committed, not announced yet
                got.rows = [(int(r), str(s), bytes(f))
                            for r, s, f in c.execute(CHANGES, (self._key, applied, self._key))]
            whole = [r[0] for r in got.rows] == list(range(applied + 1, now + 1))
            if own_pending and db_current is not None and db_current != current:
                full = True  # another daemon made the project's first session: take it, not ours
            wanted = replay.fresh(got.rows, loaded) if whole and not full else {replay.FULL}
            if replay.FULL in wanted:
                got.full = self._load(c)
            else:
                for sid in wanted:
                    r = c.execute("SELECT revision FROM sessionmem_sessions WHERE project_key = %s AND id = %s",
                                  (self._key, sid)).fetchone()
                    got.fresh[sid] = None if r is None else load_session(c, self._key, sid, int(r[0]), self._tail)
            if got.full is not None and got.leases is None:
                got.leases = self._read_leases(c)
            if not lock:
                c.execute("COMMIT")
            return got
        except psycopg.Error as e:
            self._rollback(c)
            raise StoreError(f"{self._where} is unreachable: {_reason(e, self._url)}") from None
        except BaseException:
            self._rollback(c)
            raise

    def finish(self, batch: Batch | None, revision: int, applied: int | None = None) -> None:
        """Write the turn's changes (their rows and frames), the new revision, wake the
        other daemons, commit: one simple query for a small turn (a round trip); a
        turn of more rows or statements in parts, the last ending in COMMIT.

        ``applied``: the turn did not :meth:`fetch` (it was decided on memory believed
        current, at revision ``applied``): the transaction begins here, and takes the
        project's row first, checking that its revision is still ``applied`` — if not,
        nothing is written and TurnStale is raised. The row is held only while the
        server runs the query, not across a round trip."""
        c = self._live()
        try:
            out = Statements()
            if applied is not None:
                # 1 / false::int fails (division by zero, caught below), which aborts the
                # query before any write: a condition PostgreSQL checks under the lock.
                out.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
                out.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                out.execute("SELECT 1 / (revisions_reserved = %s)::int FROM sessionmem_projects "
                            "WHERE project_key = %s FOR UPDATE", (applied, self._key))
                if batch is not None and len(batch) > SMALL:  # its rows go first (below)
                    psycopg.ClientCursor(c).execute(*next(iter(out.chunks(CHUNK))))
                    out = Statements()
            if batch is not None:
                # The frames and the sessions' revisions go with the commit (below), in
                # one statement each; the rest is the store's own writing (pgstore).
                log_rows, marks = batch.log_rows, batch.marks
                batch.log_rows, batch.marks = [], []
                # Older changes go when the revision passes a thousand: not a DELETE per turn.
                crossed = log_rows and (revision - len(log_rows)) // 1000 != revision // 1000
                batch.log_floor = max(0, revision - KEEP) if crossed else None
                if len(batch) > SMALL:
                    # A big turn (an import): server-bound executemany, pipelined, is
                    # faster a row than literals parsed in a query (1.6x on 20,000).
                    self._apply(c, batch)
                elif len(batch) or batch.deleted or batch.log_floor is not None:
                    self._apply_to(out, batch)  # with the commit: one round trip
                for i in range(0, len(log_rows), 1000):
                    chunk = log_rows[i:i + 1000]
                    out.execute("INSERT INTO sessionmem_changes (project_key, revision, session_id, frame) VALUES "
                                + ", ".join(["(%s, %s, %s, %s)"] * len(chunk)),
                                [x for r, s, f in chunk for x in (self._key, r, s, f)])
                for sid, rev in marks:
                    out.execute("UPDATE sessionmem_sessions SET revision = %s WHERE project_key = %s AND id = %s",
                                (rev, self._key, sid))
            out.execute("UPDATE sessionmem_projects SET revisions_reserved = %s WHERE project_key = %s",
                        (revision, self._key))
            out.execute("SELECT pg_notify(%s, %s)", (channel(self._key), str(revision)))
            out.execute("COMMIT")
            # Bound on the client: the values are rendered as literals into the text
            # (bytea as hex), which is what lets several statements go as one query.
            cur = psycopg.ClientCursor(c)
            for sql, args in out.chunks(CHUNK):
                cur.execute(sql, args)
        except psycopg.errors.DivisionByZero:
            self._rollback(c)
            raise TurnStale("another daemon committed first") from None
        except psycopg.Error as e:
            self._rollback(c)
            # Refused only when the server said so on a connection still whole: after a
            # broken one, whether the COMMIT happened is unknown (turns.py reads anew).
            if c.broken or c.closed or isinstance(e, psycopg.OperationalError) \
                    or not isinstance(e, psycopg.DatabaseError):
                raise StoreError(f"{self._where} is unreachable: {_reason(e, self._url)}") from None
            raise StoreRefused(f"{self._where} refused the write: {_reason(e, self._url)}") from None

    def abort(self) -> None:
        if self._conn is not None:
            self._rollback(self._conn)

    @staticmethod
    def _rollback(c: psycopg.Connection[Any]) -> None:
        try:
            if not c.closed and not c.broken:
                c.execute("ROLLBACK")
        except psycopg.Error:
            pass

    def listener(self, wake: Callable[[int | None], None]) -> Listener:
        return Listener(self._url, channel(self._key), wake, self._where)


class Listener:
    """``LISTEN`` on a thread and connection of its own: ``wake`` (thread-safe) is called
    on every notification with the revision it announces, and once a second besides
    with None (a notification sent while the connection was being made again is not
    lost that way)."""

    def __init__(self, url: str, chan: str, wake: Callable[[int | None], None], where: str) -> None:
        self._url = url
        self._chan = chan
        self._wake = wake
        self._where = where
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            try:
                with _connect(self._url) as conn:
                    conn.execute(f"LISTEN {self._chan}")
                    delay = 0.05
                    self._wake(None)  # what was sent while not listening
                    while not self._stop.is_set():
                        # Every notification of the batch read, no break: psycopg drops
                        # the rest of a batch (several in one packet) when the loop is
                        # left early, and those revisions then waited for the heartbeat.
                        got = [n.payload for n in conn.notifies(timeout=1.0, stop_after=1)]
                        numbers = [int(x) for x in got if x.isdigit()]
                        self._wake(max(numbers) if numbers and len(numbers) == len(got) else None)
            except Exception as e:  # the server gone, a refused connection: again, later
                log.debug("listening on %s: %s", self._where, e)
                self._stop.wait(delay)
                delay = min(delay * 2, 2.0)

    def close(self) -> None:
        self._stop.set()
