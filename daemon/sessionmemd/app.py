"""The assembled daemon: its parts, wired together by config.Config.load, and the
calls that report on them or need more than one of them (methods.Shell: snapshot,
restore, shutdown, stats, hello; and reading back the change log a clean stop left).

The lifecycle (daemon.Daemon) only starts, runs and stops this: it binds the
socket, runs the timers and the signals, and calls :meth:`App.close` last.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from sessionmem import __version__, errors
from sessionmem import protocol as p

from .feed import Feed
from .host import SessionHost
from .loader import Loader
from .persist import Persister
from .replies import Replies
from .rpc import Dispatcher
from .server import Server
from .state import SessionState
from .turns import Turns

log = logging.getLogger("sessionmemd")


class App:
    """Everything one daemon serves with, built from its options (config.Config.load)."""

    def __init__(
        self,
        *,
        root: Path,
        location: str,
        durability: Literal["periodic", "always"],
        max_frame: int,
        host: SessionHost,
        feed: Feed,
        loader: Loader,
        persister: Persister,
        log_mark: int | None,
        store: str = "sqlite",
        project_key: str | None = None,
    ) -> None:
        self.root = root
        self.location = location  # the store's, as stats and hello show it (dbPath)
        # hello's store (sqlite, or the URL with its password masked) and project key: what
        # a client told a store ($SESSIONMEM_STORE) compares before it writes.
        self.store = store
        self.project_key = project_key
        # Several daemons on one store (PostgreSQL): write turns, and the listener that
        # wakes them when another daemon commits (turns.py, pgshared.py).
        self.turns: Turns | None = None
        self._listener: Any = None
        self._expiring = False
        self.durability = durability
        self.max_frame = max_frame
        self.host = host
        self.feed = feed
        self.loader = loader
        self.persister = persister
        # The wire side, attached once the method table (which calls this app) is made.
        self.dispatcher: Dispatcher
        self.replies: Replies
        self.server: Server
        # The revision up to which the last clean stop left its change log on disk
        # (None: none to read back); read behind the first answers (read_change_log).
        self.log_mark = log_mark
        self.socket_path: Path | None = None  # where it listens, once it does
        # What the lifecycle does when a client asks it to stop (shutdown_method).
        self.on_stop: Callable[[str], None] = lambda reason: None
        self._started_mono = time.monotonic()

    def attach(self, dispatcher: Dispatcher, replies: Replies, server: Server) -> None:
        self.dispatcher = dispatcher
        self.replies = replies
        self.server = server

    # -- snapshots --------------------------------------------------------------------
    async def quiet_snapshot(self) -> None:
        """A snapshot whose failure is only logged (by the persister) and retried by
        the timer: the timer's, a signal's, the next revision block's."""
        try:
            await self.persister.snapshot()
        except errors.PersistFailed:
            pass

    def snapshot_soon(self) -> None:
        """Start a quiet snapshot now, tracked like a request in flight: kept alive,
        and awaited by a stop."""
        self.replies.track(asyncio.ensure_future(self.quiet_snapshot()))

    # -- the change log a clean stop left ----------------------------------------------
    def read_change_log(self) -> None:
        """Read the change log the last clean stop left behind the first answers; a
        watch that resumes from before it waits for it (Feed.restoring)."""
        if self.log_mark is None:
            return
        self.host.log_loading = True
        self.feed.restoring = asyncio.ensure_future(self._load_change_log(self.log_mark))

    async def _load_change_log(self, mark: int) -> None:
        """The change log a clean stop left, up to ``mark``, in front of this run's."""
        try:
            rows = await self.loader.change_rows(0, mark)
            taken = self.host.log.prepend(rows)
            if taken < len(rows):
                log.warning("the change log left by the last stop has a gap: kept %d of %d", taken, len(rows))
        except Exception as e:  # the log is a convenience: watchers hear Compacted
            log.error("the change log left by the last stop cannot be read: %s", e)
        finally:
            self.host.log_loading = False
            self.feed.restoring = None

    # -- leases --------------------------------------------------------------------------
    def connection_closed(self, conn: object) -> None:
        """The socket shell's on_close: the connection's watch ends, and so do the
        ephemeral leases it took (the lease timer records their changes)."""
        self.feed.unwatch(conn)  # type: ignore[arg-type]
        self.host.connection_closed(conn)

    def expire_leases(self) -> None:
        """End the leases whose time passed (the lifecycle's lease timer). Under
        durability=always their changes are committed now, not at the next snapshot
        (their notifications wait for the commit). Several daemons on one store: in a
        write turn, decided on the store's leases (a renewal elsewhere is no change)."""
        if self.turns is not None:
            if not self._expiring and self.host.leases.due(self.host.now()):
                self._expiring = True
                self.replies.track(asyncio.ensure_future(self._expire_in_turn(self.turns)))
            return
        try:
            ended = self.host.expire_leases()
        except errors.SessionmemError as e:  # no revision is reserved yet: the timer retries
            log.warning("leases due to expire wait: %s", e.message)
            return
        if ended and self.durability == "always":
            self.snapshot_soon()

    async def _expire_in_turn(self, turns: Turns) -> None:
        try:
            await turns.defer(self.host.expire_leases)
        except errors.SessionmemError as e:  # the timer tries again
            log.warning("leases due to expire wait: %s", e.message)
        finally:
            self._expiring = False

    # -- methods.Shell: the calls that need more than the session host ----------------
    async def snapshot(self) -> p.SnapshotResult:
        return await self.persister.snapshot()

    async def restore(self) -> None:
        if self.turns is not None:
            # Run by a write turn, which has just read the store: memory is what it holds,
            # and nothing unsaved exists to drop (every change is committed by its turn).
            log.info("restore: memory is what the store holds (revision %d)", self.host.revision)
            return
        await self.loader.settled()  # calls already waiting for a session go first
        known, restored = await self.persister.load()
        cur = self.host.current
        # Never saved: back to empty, same identity.
        state = SessionState(cur.session_id, cur.start_time) if restored is None else SessionState.from_restored(restored)
        self.host.restored(state, known)
        if not state.complete:
            self.loader.complete(state)
        log.info("restore: reloaded %d session(s) from the last snapshot; current %s",
                 len(known), state.session_id)

    async def shutdown_method(self) -> None:
        await self.persister.snapshot()
        asyncio.get_running_loop().call_soon(self.on_stop, "shutdown requested by a client")

    @property
    def applied_revision(self) -> int:
        """Every change up to here is applied in this daemon. One daemon per store (SQLite):
        all of them are its own. Several on PostgreSQL: the last revision read from or
        committed to the store (a turn that failed to commit is undone: memory holds no
        change beyond it)."""
        if self.turns is not None:
            return self.turns.committed
        return self.host.revision

    def sync(self) -> p.SyncResult | Any:
        """SQLite (one daemon per file): no change is committed that this daemon has not
        applied, so sync answers at once. Several daemons on PostgreSQL: once the changes
        committed before the call are read and applied (a turn of its own)."""
        if self.turns is not None:
            return self._sync(self.turns)
        return p.SyncResult(revision=self.applied_revision)

    async def _sync(self, turns: Turns) -> p.SyncResult:
        return p.SyncResult(revision=await turns.sync())

    def stats(self, s: SessionState) -> p.Stats:
        ps = self.persister
        return p.Stats(
            sessionId=s.session_id,
            startTime=s.start_time,
            messagesCount=s.messages_count,
            filesOpenCount=s.files_count,
            contextKeysCount=s.context_count,
            dbPath=self.location,
            currentTask=s.current_task,
            activeTicket=s.active_ticket,
            pendingChanges=ps.pending,
            lastSnapshotAt=ps.last_snapshot_at,
            lastSnapshotDurationMs=ps.last_duration_ms,
            lastSnapshotError=ps.last_error,
            snapshotFailures=ps.failures,
            snapshotsWritten=ps.written,
            snapshotInProgress=ps.busy,
            durability=self.durability,
            connections=len(self.server.connections),
            uptimeMs=int((time.monotonic() - self._started_mono) * 1000),
            pid=os.getpid(),
            revision=self.host.revision,
            watchers=len(self.feed),
            sessions=len(self.host.known),
            sessionsLoaded=len(self.host.loaded),
            historyComplete=s.complete,
            # The SQLite file's path (hello says "sqlite"), or the masked URL.
            store=self.location if self.store == "sqlite" else self.store,
            projectKey=self.project_key,
            appliedRevision=self.applied_revision,
        )

    def hello(self, params: p.HelloParams) -> p.HelloResult:
        return p.HelloResult(
            daemonVersion=__version__,
            protocolVersion=p.PROTOCOL_VERSION,
            pid=os.getpid(),
            projectRoot=str(self.root),
            dbPath=self.location,
            socketPath=str(self.socket_path),
            capabilities=list(p.CAPABILITIES),
            maxFrame=self.max_frame,
            store=self.store,
            projectKey=self.project_key,
        )

    # -- the end ------------------------------------------------------------------------
    def refuse_calls(self) -> None:
        """A clean stop began: every call still read (a pipelining client's backlog, a
        batch) is answered -32003 and runs nothing, so the final snapshot holds every
        change that was acknowledged and no change follows it."""
        self.dispatcher.refusing = errors.ShuttingDown("daemon is shutting down; the call was not run")

    async def settled(self) -> None:
        """Every call queued for a session has run, every commit asked for is made (its
        writes got their replies), and the change log is read back."""
        await self.loader.settled()
        await self.persister.settled()
        if self.turns is not None:
            await self.turns.flush()
        if self.feed.restoring is not None:
            await self.feed.restoring  # its rows stay on disk either way; let the read end

    def listening(self, socket_path: Path) -> None:
        """The socket is bound: the store tells whoever looks for its writer."""
        self.socket_path = socket_path
        self.persister.store.announce(socket_path)
        if self.turns is not None:  # another daemon's commit wakes a catch-up turn
            self._listener = self.persister.store.listener(  # type: ignore[attr-defined]
                self.turns.poke_threadsafe(asyncio.get_running_loop()))
            self.turns.poke()  # a first turn: commits a current session made at the start

    def close(self) -> None:
        if self.turns is not None:
            self.turns.close()
        if self._listener is not None:
            self._listener.close()
        self.loader.close()
        self.persister.close()  # closes the store: another daemon may write it now
