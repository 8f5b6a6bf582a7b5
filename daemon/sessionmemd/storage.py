"""The store seam: everything the daemon asks of where its sessions are kept.

Nothing above this interface (persist.py, loader.py, app.py, config.py's wiring
aside, daemon.py, host.py, methods.py, server.py) knows which store runs or imports
its driver. Today's implementation is SQLite (sqlitestore.SqliteStore: one file, one
daemon); a server database (design §12) goes behind the same methods.

The calls are blocking and made one at a time per object: a :class:`Storage`'s on the
persister's writer thread (or, for a small commit while the writer is idle, on the
event loop's own thread), a :class:`Reader`'s on the loader's reader thread. So the
loop never waits on a store's I/O, and the SQLite paths pay no await per commit.

Loading is tail-first: a session's newest messages, with the older ones behind an
opaque ``older_cursor`` (batch.Restored) that only the store reads back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from .leases import LeaseRow
from .messages import MessageLog
from .searchquery import Query
from .batch import Batch, Restored

TAIL = 1000  # a start loads the current session's newest messages first, the rest behind

# What listSessions shows of a session not in memory: start time, task, ticket and the
# counts of its messages, files and context keys.
SessionRow = tuple[int, str | None, str | None, int, int, int]
# One change of the log on disk: its revision, its session, its `changed` frame.
ChangeRow = tuple[int, str, bytes]
# One search hit: session, index in it, role, timestamp, snippet (matches between
# searchquery.MARK_OPEN and MARK_CLOSE), score (higher is better), message id.
HitRow = tuple[str, int, str, int, str, float, str | None]
# Every session's id and its last revision.
Catalogue = dict[str, int]


class StoreError(Exception):
    """A store could not read what it holds; the message is the store's own reason."""


class TurnStale(StoreError):
    """A write turn sent without taking the project's row first found that another
    daemon committed since: nothing of it was written; decide it again (turns.py)."""


class StoreRefused(StoreError):
    """The store answered and refused a write (a constraint, a trigger): nothing of it
    was committed, and the connection is fine (unlike a StoreError, after which whether
    a commit happened is unknown)."""


class StoreFault(Exception):
    """Writes cannot go ahead now (Storage.repair): ``str()`` is the reply's message,
    ``cause`` the store's own error (recorded as the snapshot's failure)."""

    def __init__(self, message: str, cause: Exception) -> None:
        super().__init__(message)
        self.cause = cause


class Reader(Protocol):
    """Reads behind the first answers, on the loader's reader thread, one at a time;
    each read is consistent in itself while the writer writes."""

    def load_session(self, sid: str, revision: int, tail: int | None) -> Restored | None:
        """A session by id, its newest ``tail`` messages first (None: all of them);
        None when the store does not hold it."""
        ...

    def load_older(self, sid: str, cursor: object) -> MessageLog:
        """The session's messages before ``cursor`` (a Restored's ``older_cursor``),
        oldest first. Raises StoreError when the store cannot read them."""
        ...

    def session_rows(self) -> dict[str, SessionRow]:
        """Every session as the store holds it (listSessions)."""
        ...

    def search(self, query: Query) -> tuple[list[HitRow], bool]:
        """searchMessages' page of hits: up to ``query.limit + 1`` (one more than asked
        says a next page exists) after ``query.offset``, best first; and whether the
        store's index covered every message (False while it is still being built).
        ``query`` is checked and escaped already (searchquery.py): ``match`` is an FTS5
        expression, which a store without FTS5 may read back from ``text`` and ``mode``.
        Raises StoreError when the store cannot read them."""
        ...

    def change_rows(self, since: int, upto: int) -> list[ChangeRow]:
        """The changes the store's log holds after revision ``since`` up to ``upto``,
        oldest first (today: a previous run's, read back after a clean restart)."""
        ...

    def shrink(self) -> None:
        """Let caches go (sessions were dropped from memory)."""
        ...

    def close(self) -> None: ...


class Storage(Protocol):
    """One project's sessions, held by this daemon as their single writer."""

    @property
    def location(self) -> str:
        """Where the sessions are, as shown by stats and hello (never a secret)."""
        ...

    def take_opened(self) -> tuple[Catalogue, Restored | None]:
        """What the open found, handed over once (the store keeps no reference): every
        session, and the current one tail-first (None in an empty store)."""
        ...

    def take_leases(self) -> list[LeaseRow]:
        """The ttl leases the open found (leases.py; expired ones too: the daemon ends
        those with a change once it serves). Batch.leases writes them."""
        ...

    def reserve_revisions(self, block: int) -> tuple[int, bool]:
        """The last revision that may have been handed out, and whether the change log
        the store holds is whole up to it (the last stop was clean); then durably
        reserve ``block`` more. Called once, before serving."""
        ...

    def write(self, batches: Iterable[Batch]) -> int:
        """Apply the batches, oldest first, all or nothing; returns the rows touched.
        On an error nothing is applied and the error is raised: the caller keeps the
        batches and retries them."""
        ...

    def reload(self) -> tuple[Catalogue, Restored | None]:
        """Every session and the current one, as the store holds them now (restore)."""
        ...

    def reader(self) -> Reader:
        """A reader of its own, for the loader's thread."""
        ...

    def fault(self) -> str | None:
        """Why writes must not go ahead now, or None (the common case: cheap, asked
        before every write)."""
        ...

    def repair(self, before_reopen: Callable[[], None]) -> None:
        """Make writes possible again after a :meth:`fault`, or raise StoreFault saying
        why not (the changes stay in memory). ``before_reopen`` closes the readers
        first, when the store has to be opened anew."""
        ...

    def announce(self, socket_path: Path) -> None:
        """Tell whoever looks for this store's writer where it answers."""
        ...

    def close(self) -> None:
        """Close, and give up being the writer. Idempotent."""
        ...
