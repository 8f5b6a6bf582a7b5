"""The daemon's life: startup -> serve -> graceful shutdown, in one place.

Startup takes the lock, opens and checks the database, restores the session,
binds (or inherits) the socket and only then says it is ready. Shutdown stops
accepting, lets in-flight requests finish, writes the final snapshot and says
exactly what could not be saved if the disk refuses.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sessionmem import __version__, errors
from sessionmem import protocol as p
from sessionmem.paths import Paths

from .listener import AlreadyRunning, DaemonLock, Listener
from .changelog import ChangeLog
from .feed import Feed
from . import heap, storeread
from .host import BLOCK, SessionHost
from .loader import Loader
from .methods import build_handlers
from .persist import Persister
from .rpc import Dispatcher
from .server import Limits, Server
from .state import SessionState
from .dbcheck import BadDatabase, check_writable, move_aside
from .store import Store
from .systemd import Notifier
from .unsaved import dump_unsaved

log = logging.getLogger("sessionmemd")

def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_session_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Config:
    paths: Paths
    snapshot_interval: float = 1.0
    durability: Literal["periodic", "always"] = "periodic"
    idle_timeout: float | None = None
    limits: Limits = field(default_factory=Limits)
    recover: bool = False
    fsync: bool = False
    max_messages: int | None = None  # every session keeps at most its newest N messages
    session_idle: float = 300.0  # seconds before an unused session is dropped from memory


class Daemon:
    def __init__(self, cfg: Config, on_ready: Callable[[], None] = lambda: None) -> None:
        self.cfg = cfg
        self._on_ready = on_ready
        self.notifier = Notifier()
        self._stop = asyncio.Event()
        self._stop_reason = ""
        self._started_mono = time.monotonic()
        self._last_activity = time.monotonic()
        self._tasks: list[asyncio.Task[Any]] = []
        self._signals = 0
        self.exit_code = 0

    # -- startup -------------------------------------------------------------------------
    def _open_store(self) -> Store:
        db = self.cfg.paths.db
        # NORMAL in WAL mode: a commit is in the OS once it returns, which survives any
        # crash of this process; FULL also fsyncs it, which survives power loss.
        sync = "FULL" if self.cfg.fsync else "NORMAL"
        try:
            store = Store(db, synchronous=sync)
        except BadDatabase as e:
            if not self.cfg.recover:
                raise
            moved = move_aside(db)
            log.warning("recover: %s; moved aside: %s", e.reason, ", ".join(map(str, moved)))
            store = Store(db, synchronous=sync)
        self.lock.hold_database()  # now that the file surely exists
        return store

    def _reopen_store(self) -> Store:
        """The database was deleted under us: lock its path again, make a new file."""
        self.lock.renew()
        return self._open_store()

    async def start(self) -> None:
        cfg = self.cfg
        check_writable(cfg.paths.db)  # before the lock file is made there
        self.lock = DaemonLock(cfg.paths.db)
        try:
            store = self._open_store()
        except BaseException:
            self.lock.release()
            raise
        restored = store.take_opened_with()
        known = store.opened_known
        if restored is None:
            state = SessionState(new_session_id(), now_ms())
            log.info("new session %s in %s", state.session_id, cfg.paths.db)
        else:
            state = SessionState.from_restored(restored)
            log.info(
                "current session %s: %d messages (%d loading behind), %d files, %d context keys; "
                "%d session(s) in the database",
                restored.session_id, state.messages_count, state.older, len(restored.files),
                len(restored.context), len(known),
            )
        try:
            mark, log_kept = store.reserve_revisions(BLOCK)
        except Exception:
            store.close()
            self.lock.release()
            raise
        log_ = ChangeLog(mark)  # the previous run's changes are put in front once read
        self.host = SessionHost(state, known, mark, log_, now_ms, new_session_id, cfg.max_messages)
        self.host.set_reserved(mark + BLOCK)
        always = cfg.durability == "always"
        self.feed = Feed(log_, publish_when_committed=always)
        self.host.on_change = self.feed.changed
        self.host.adopt(state)  # --max-messages may trim it
        self.loader = Loader(self.host, lambda: self.persister.store.open_reader(),
                             wait_room=lambda n: self.persister.room(n))
        # Half the revision block is used: write the next reservation now.
        self.host.on_reserve = lambda: self.server.track(asyncio.ensure_future(self._quiet_snapshot()))
        self.persister = Persister(store, self.host, self._reopen_store, self.feed.committed,
                                   before_reopen=self.loader.reset)
        if not state.complete:
            self.loader.complete(state)  # the older history, behind the first answers
        handlers = build_handlers(self.host, self.loader, self.feed, self, cfg.limits.max_depth)
        self.dispatcher = Dispatcher(handlers, self._internal_error)
        self.dispatcher.durable = always
        self.server = Server(self.dispatcher, cfg.limits, self._touch, self.persister,
                             on_close=self.feed.unwatch, on_drained=self.feed.drained)
        try:
            self.listener = Listener.open(cfg.paths.socket)
        except BaseException:
            self.persister.close()
            self.lock.release()
            raise
        await self.server.serve(self.listener.sock)
        self.lock.announce(self.listener.path)
        if log_kept:
            # Read behind the first answers; a watch that resumes from before it waits.
            self.host.log_loading = True
            self.feed.restoring = asyncio.ensure_future(self._load_change_log(mark))
        self._install_signals()
        self._tasks.append(asyncio.create_task(self._snapshot_timer()))
        self._tasks.append(asyncio.create_task(self._socket_watch()))
        self._tasks.append(asyncio.create_task(self._session_sweeper(cfg.session_idle)))
        if cfg.idle_timeout:
            self._tasks.append(asyncio.create_task(self._idle_timer(cfg.idle_timeout)))
        wd = self.notifier.watchdog_interval()
        if wd:
            self._tasks.append(asyncio.create_task(self._watchdog(wd)))
        log.info(
            "serving %s on %s (pid %d, durability %s, snapshot every %gs, up to %d connections%s)",
            cfg.paths.root, self.listener.path, os.getpid(), cfg.durability, cfg.snapshot_interval,
            cfg.limits.max_connections,
            f", idle exit after {cfg.idle_timeout:g}s" if cfg.idle_timeout else "",
        )
        self.notifier.send("READY=1", f"STATUS=serving {cfg.paths.root}", f"MAINPID={os.getpid()}")
        self._on_ready()

    async def _load_change_log(self, mark: int) -> None:
        """The change log a clean stop left, up to ``mark``, in front of this run's."""
        try:
            rows = await self.loader.read(storeread.change_rows, mark)
            taken = self.host.log.prepend(rows)
            if taken < len(rows):
                log.warning("the change log left by the last stop has a gap: kept %d of %d", taken, len(rows))
        except Exception as e:  # the log is a convenience: watchers hear Compacted
            log.error("the change log left by the last stop cannot be read: %s", e)
        finally:
            self.host.log_loading = False
            self.feed.restoring = None

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        for sig in (signal.SIGUSR1, signal.SIGHUP):
            loop.add_signal_handler(sig, self._on_snapshot_signal, sig)

    # -- serving -------------------------------------------------------------------------
    async def run(self) -> int:
        await self.start()
        await self._stop.wait()
        await self.shutdown()
        return self.exit_code

    def request_stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals > 1 and sig == signal.SIGINT:
            log.error("second SIGINT: exiting now; %d unsaved change(s) lost", self.persister.pending)
            os._exit(130)
        self.request_stop(sig.name)

    def _on_snapshot_signal(self, sig: signal.Signals) -> None:
        log.info("%s: snapshot requested", sig.name)
        # Tracked like a request in flight: kept alive, and awaited by a shutdown.
        self.server.track(asyncio.ensure_future(self._quiet_snapshot()))

    async def _quiet_snapshot(self) -> None:
        try:
            await self.persister.snapshot()
        except errors.PersistFailed:
            pass  # logged by the persister, retried by the timer

    async def _snapshot_timer(self) -> None:
        """A snapshot starts every interval, counted from the start of the previous one
        (not its end), so a change waits at most one interval for its snapshot to begin;
        one that is still writing when the next is due delays it, and only it."""
        loop = asyncio.get_running_loop()
        interval = self.cfg.snapshot_interval
        due = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due = max(due + interval, loop.time())
            if self.persister.pending or self.host.marks_pending:
                await self._quiet_snapshot()

    async def _socket_watch(self, every: float = 1.0) -> None:
        """Re-bind when our socket file is deleted (a tmp cleaner, a logout emptying
        $XDG_RUNTIME_DIR): else the daemon runs on, unreachable, while clients report
        no daemon and a new one cannot start (we hold the database)."""
        while True:
            await asyncio.sleep(every)
            if not self.listener.lost():
                continue
            try:
                new = self.listener.rebind()
            except (OSError, AlreadyRunning) as e:
                log.error("our socket %s is gone and cannot be bound again: %s", self.listener.path, e)
                continue
            await self.server.serve(new.sock)
            self.listener.sock.close()
            self.listener = new
            log.warning("our socket %s was deleted by someone else; bound it again", new.path)

    async def _session_sweeper(self, idle: float) -> None:
        """Drop sessions unused for ``idle`` seconds (never the current one), their
        changes written first. Sweeps every idle/2 s; a session is dropped at the first
        sweep after two whole sweep periods without a use of it."""
        host = self.host
        while True:
            await asyncio.sleep(idle / 2)
            host.tick += 1
            if len(host.loaded) <= 1:
                continue
            if self.persister.pending or host.marks_pending:
                await self._quiet_snapshot()
            if self.persister.unsaved_batches():
                continue  # not on disk: they stay in memory
            gone = host.unload_idle(host.tick - 2, self.loader.busy())
            if gone:
                log.debug("dropped %d idle session(s) from memory", len(gone))
                self.loader.shrink()
                heap.release()

    async def _idle_timer(self, idle: float) -> None:
        while True:
            await asyncio.sleep(min(idle / 4, 5.0))
            if not self.server.connections and time.monotonic() - self._last_activity >= idle:
                self.request_stop(f"idle for {idle:g}s")
                return

    async def _watchdog(self, interval: float) -> None:
        while True:
            self.notifier.send("WATCHDOG=1")
            await asyncio.sleep(interval)

    def _touch(self) -> None:
        self._last_activity = time.monotonic()

    def _internal_error(self, method: str, e: BaseException) -> None:
        log.error("internal error in %s", method, exc_info=e)

    # -- Host: the methods that need the shell -------------------------------------------
    async def snapshot(self) -> p.SnapshotResult:
        return await self.persister.snapshot()

    async def restore(self) -> None:
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
        asyncio.get_running_loop().call_soon(self.request_stop, "shutdown requested by a client")

    def stats(self, s: SessionState) -> p.Stats:
        ps = self.persister
        return p.Stats(
            sessionId=s.session_id,
            startTime=s.start_time,
            messagesCount=s.messages_count,
            filesOpenCount=s.files_count,
            contextKeysCount=s.context_count,
            dbPath=str(self.cfg.paths.db),
            currentTask=s.current_task,
            activeTicket=s.active_ticket,
            pendingChanges=ps.pending,
            lastSnapshotAt=ps.last_snapshot_at,
            lastSnapshotDurationMs=ps.last_duration_ms,
            lastSnapshotError=ps.last_error,
            snapshotFailures=ps.failures,
            snapshotsWritten=ps.written,
            snapshotInProgress=ps.busy,
            durability=self.cfg.durability,
            connections=len(self.server.connections),
            uptimeMs=int((time.monotonic() - self._started_mono) * 1000),
            pid=os.getpid(),
            revision=self.host.revision,
            watchers=len(self.feed),
            sessions=len(self.host.known),
            sessionsLoaded=len(self.host.loaded),
            historyComplete=s.complete,
        )

    def hello(self, params: p.HelloParams) -> p.HelloResult:
        return p.HelloResult(
            daemonVersion=__version__,
            protocolVersion=p.PROTOCOL_VERSION,
            pid=os.getpid(),
            projectRoot=str(self.cfg.paths.root),
            dbPath=str(self.cfg.paths.db),
            socketPath=str(self.listener.path),
            capabilities=list(p.CAPABILITIES),
            maxFrame=self.cfg.limits.max_frame,
        )

    # -- shutdown ------------------------------------------------------------------------
    async def shutdown(self) -> None:
        log.info("shutting down (%s)", self._stop_reason)
        self.notifier.send("STOPPING=1", f"STATUS=stopping: {self._stop_reason}")
        self.server.stop_accepting()
        await self.server.drain(timeout=10.0)
        await self.loader.settled()
        await self.persister.settled()  # writes waiting for a commit get their replies
        if self.feed.restoring is not None:
            await self.feed.restoring  # its rows stay on disk either way; let the read end
        for t in self._tasks:
            t.cancel()
        # A snapshot under way finishes its write first (see persist._outlive_cancel):
        # wait for that, so the final snapshot starts from an exact account of what is saved.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        saved = False
        for attempt in range(3):
            try:
                await self.persister.snapshot(final=True)
                saved = True
                break
            except errors.PersistFailed:
                await asyncio.sleep(0.2 * (attempt + 1))
        if not saved:
            self.exit_code = 1
            dump_unsaved(self.persister.unsaved_batches(), self.persister.last_error,
                         self.cfg.paths.db, self.cfg.paths.socket)
        await self.server.close_all()
        self.listener.close()
        self.loader.close()
        self.persister.close()
        self.lock.release()
        self.notifier.close()
        log.info("stopped%s", "" if saved else " WITH UNSAVED CHANGES (see above)")
