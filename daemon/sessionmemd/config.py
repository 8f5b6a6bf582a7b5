"""The daemon's options, and :meth:`Config.load`, which builds everything it serves
with from them (the way uvicorn's ``Config.load`` is split from its ``Server``): the
store, the session host, the feed, the loader, the persister, the dispatcher and the
socket shell, wired into one app.App. The lifecycle (daemon.py) starts and stops it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from sessionmem.paths import Paths

from .app import App
from .changelog import ChangeLog
from .dbcheck import BadDatabase, check_writable, move_aside
from .feed import Feed
from .host import BLOCK, SessionHost
from .listener import DaemonLock
from .loader import Loader
from .methods import build_handlers
from .persist import Persister
from .replies import Replies
from .rpc import Dispatcher
from .server import Limits, Server
from .state import SessionState
from .store import Store

log = logging.getLogger("sessionmemd")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_session_id() -> str:
    return str(uuid.uuid4())


def _internal_error(method: str, e: BaseException) -> None:
    log.error("internal error in %s", method, exc_info=e)


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

    # -- building ------------------------------------------------------------------------
    def load(self, on_activity: Callable[[], None]) -> App:
        """Take the lock, open and check the database, restore the current session and
        reserve the next block of revisions; build the parts around them. Nothing
        listens yet. Whatever was taken is given back when this raises."""
        db = self.paths.db
        check_writable(db)  # before the lock file is made there
        lock = DaemonLock(db)
        try:
            store = self._open_store(lock)
        except BaseException:
            lock.release()
            raise
        try:
            mark, log_kept = store.reserve_revisions(BLOCK)
        except BaseException:
            store.close()
            lock.release()
            raise
        return self._assemble(store, lock, mark, log_kept, on_activity)

    def _open_store(self, lock: DaemonLock) -> Store:
        db = self.paths.db
        # NORMAL in WAL mode: a commit is in the OS once it returns, which survives any
        # crash of this process; FULL also fsyncs it, which survives power loss.
        sync = "FULL" if self.fsync else "NORMAL"
        try:
            store = Store(db, synchronous=sync)
        except BadDatabase as e:
            if not self.recover:
                raise
            moved = move_aside(db)
            log.warning("recover: %s; moved aside: %s", e.reason, ", ".join(map(str, moved)))
            store = Store(db, synchronous=sync)
        lock.hold_database()  # now that the file surely exists
        return store

    def _assemble(self, store: Store, lock: DaemonLock, mark: int, log_kept: bool,
                  on_activity: Callable[[], None]) -> App:
        restored = store.take_opened_with()
        known = store.opened_known
        if restored is None:
            state = SessionState(new_session_id(), now_ms())
            log.info("new session %s in %s", state.session_id, self.paths.db)
        else:
            state = SessionState.from_restored(restored)
            log.info(
                "current session %s: %d messages (%d loading behind), %d files, %d context keys; "
                "%d session(s) in the database",
                restored.session_id, state.messages_count, state.older, len(restored.files),
                len(restored.context), len(known),
            )
        changes = ChangeLog(mark)  # the previous run's changes are put in front once read
        host = SessionHost(state, known, mark, changes, now_ms, new_session_id, self.max_messages)
        host.set_reserved(mark + BLOCK)
        always = self.durability == "always"
        feed = Feed(changes, publish_when_committed=always)
        host.on_change = feed.changed
        host.adopt(state)  # --max-messages may trim it

        def reopen() -> Store:
            """The database was deleted under us: lock its path again, make a new file."""
            lock.renew()
            return self._open_store(lock)

        # The loader and the persister need each other (room for revisions; the reader
        # closed before a new file is made): the loader's side is bound late.
        loader = Loader(host, lambda: persister.store.open_reader(),
                        wait_room=lambda: persister.room())
        persister = Persister(store, host, reopen, feed.committed, before_reopen=loader.reset)
        if not state.complete:
            loader.complete(state)  # the older history, behind the first answers
        app = App(root=self.paths.root, db=self.paths.db, durability=self.durability,
                  max_frame=self.limits.max_frame, host=host, feed=feed, loader=loader,
                  persister=persister, log_mark=mark if log_kept else None, lock=lock)
        dispatcher = Dispatcher(build_handlers(host, loader, feed, app, self.limits.max_depth), _internal_error)
        dispatcher.durable = always
        replies = Replies(dispatcher, persister)
        app.attach(dispatcher, replies, Server(dispatcher, self.limits, on_activity, replies.later,
                                               on_close=feed.unwatch, on_drained=feed.drained))
        # Half the revision block is used: write the next reservation now.
        host.on_reserve = app.snapshot_soon
        return app
