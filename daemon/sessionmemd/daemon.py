"""The daemon's life: startup -> serve -> graceful shutdown, in one place.

Startup builds everything from the options (config.Config.load: the lock, the
database checked and opened, the session restored), binds (or inherits) the socket
and only then says it is ready. Serving runs the timers (snapshots, the socket's
watch, idle sessions, idle exit, the watchdog) and the signals. Shutdown stops
accepting, lets in-flight requests finish, writes the final snapshot and says
exactly what could not be saved if the disk refuses. What is served, and the calls
that report on it (stats, hello, restore, ...), are app.App's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from sessionmem import errors

from . import heap
from .app import App
from .config import Config, now_ms
from .listener import AlreadyRunning, Listener
from .systemd import Notifier
from .unsaved import dump_unsaved

log = logging.getLogger("sessionmemd")


class Daemon:
    def __init__(self, cfg: Config, on_ready: Callable[[], None] = lambda: None) -> None:
        self.cfg = cfg
        self._on_ready = on_ready
        self.notifier = Notifier()
        self._stop = asyncio.Event()
        self._stop_reason = ""
        self._last_activity = time.monotonic()
        self._tasks: list[asyncio.Task[Any]] = []
        self._signals = 0
        self.exit_code = 0
        self.app: App  # built by start()
        self.listener: Listener

    # -- startup -------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.cfg
        app = self.app = cfg.load(on_activity=self._touch)
        app.on_stop = self.request_stop
        # Before the socket exists: a client that sees it may stop us at once (a SIGTERM
        # then must be a clean stop, not the default action's death).
        self._install_signals()
        try:
            self.listener = Listener.open(cfg.paths.socket)
        except BaseException:
            app.close()
            raise
        await app.server.serve(self.listener.sock)
        app.listening(self.listener.path)
        app.read_change_log()  # behind the first answers
        self._tasks.append(asyncio.create_task(self._snapshot_timer()))
        self._tasks.append(asyncio.create_task(self._socket_watch()))
        self._tasks.append(asyncio.create_task(self._session_sweeper(cfg.session_idle)))
        self._tasks.append(asyncio.create_task(self._lease_timer()))
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
            log.error("second SIGINT: exiting now; %d unsaved change(s) lost", self.app.persister.pending)
            os._exit(130)
        self.request_stop(sig.name)

    def _on_snapshot_signal(self, sig: signal.Signals) -> None:
        log.info("%s: snapshot requested", sig.name)
        self.app.snapshot_soon()

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
            if self.app.persister.pending or self.app.host.marks_pending:
                await self.app.quiet_snapshot()

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
            await self.app.server.serve(new.sock)
            self.listener.sock.close()
            self.listener = new
            log.warning("our socket %s was deleted by someone else; bound it again", new.path)

    async def _session_sweeper(self, idle: float) -> None:
        """Drop sessions unused for ``idle`` seconds (never the current one), their
        changes written first. Sweeps every idle/2 s; a session is dropped at the first
        sweep after two whole sweep periods without a use of it."""
        app = self.app
        host = app.host
        while True:
            await asyncio.sleep(idle / 2)
            host.tick += 1
            if len(host.loaded) <= 1:
                continue
            if app.persister.pending or host.marks_pending:
                await app.quiet_snapshot()
            if app.persister.unsaved_batches():
                continue  # not on disk: they stay in memory
            gone = host.unload_idle(host.tick - 2, app.loader.busy())
            if gone:
                log.debug("dropped %d idle session(s) from memory", len(gone))
                app.loader.shrink()
                heap.release()

    async def _lease_timer(self, most: float = 30.0, retry: float = 0.05) -> None:
        """End leases when their time passes, whether or not anyone calls: sleeps until
        the next expiry (at most ``most`` seconds: the wall clock may jump), woken early
        whenever a lease is acquired, renewed, released or its connection closes."""
        app = self.app
        host = app.host
        wake = asyncio.Event()
        host.on_leases = wake.set
        while True:
            app.expire_leases()
            nxt = host.leases.next_expiry()
            if nxt is None:
                delay = most
            else:
                # A lease still due after expire_leases waits for revisions: retry soon.
                delay = min(most, max(retry, (nxt - now_ms()) / 1000 + 0.001))
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), delay)
            except asyncio.TimeoutError:
                pass

    async def _idle_timer(self, idle: float) -> None:
        while True:
            await asyncio.sleep(min(idle / 4, 5.0))
            if not self.app.server.connections and time.monotonic() - self._last_activity >= idle:
                self.request_stop(f"idle for {idle:g}s")
                return

    async def _watchdog(self, interval: float) -> None:
        while True:
            self.notifier.send("WATCHDOG=1")
            await asyncio.sleep(interval)

    def _touch(self) -> None:
        self._last_activity = time.monotonic()

    # -- shutdown ------------------------------------------------------------------------
    async def shutdown(self) -> None:
        app = self.app
        log.info("shutting down (%s)", self._stop_reason)
        self.notifier.send("STOPPING=1", f"STATUS=stopping: {self._stop_reason}")
        app.refuse_calls()
        app.server.stop_accepting()
        await app.replies.drain(timeout=10.0)
        await app.settled()  # queued calls run, writes waiting for a commit get their replies
        for t in self._tasks:
            t.cancel()
        # A snapshot under way finishes its write first (see persist._outlive_cancel):
        # wait for that, so the final snapshot starts from an exact account of what is saved.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        saved = False
        for attempt in range(3):
            try:
                await app.persister.snapshot(final=True)
                saved = True
                break
            except errors.PersistFailed:
                await asyncio.sleep(0.2 * (attempt + 1))
        if not saved:
            self.exit_code = 1
            dump_unsaved(app.persister.unsaved_batches(), app.persister.last_error,
                         self.cfg.paths.db, self.cfg.paths.socket)
        await app.server.close_all()
        self.listener.close()
        app.close()
        self.notifier.close()
        log.info("stopped%s", "" if saved else " WITH UNSAVED CHANGES (see above)")
