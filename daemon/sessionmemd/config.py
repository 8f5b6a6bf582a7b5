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
from .feed import Feed
from .host import SessionHost
from .hostcore import BLOCK
from .leases import Leases
from .loader import Loader
from .methods import build_handlers
from .persist import Persister
from .replies import Replies
from .rpc import Dispatcher
from .server import Limits, Server
from .sqlitestore import SqliteStore
from .state import SessionState
from .turns import Turns
from .storage import Storage
from .storeurl import SQLITE, mask

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
    # A PostgreSQL store (storeurl.choose): its URL and this project's key in it; None:
    # the SQLite file of paths.db.
    store_url: str | None = None
    project_key: str | None = None

    # -- building ------------------------------------------------------------------------
    def load(self, on_activity: Callable[[], None]) -> App:
        """Open the store (its single-writer rule, its checks), restore the current
        session and reserve the next block of revisions; build the parts around them.
        Nothing listens yet. Whatever was taken is given back when this raises."""
        store = self.open_store()
        try:
            mark, log_kept = store.reserve_revisions(BLOCK)
        except BaseException:
            store.close()
            raise
        return self._assemble(store, mark, log_kept, on_activity)

    def open_store(self) -> Storage:
        """The store these options name: PostgreSQL when given a URL (its driver
        imported only then), else the SQLite file of paths.db."""
        if self.store_url is not None:
            assert self.project_key is not None  # storeurl.choose refuses a URL without one
            from .pgshared import PgShared

            return PgShared(self.store_url, self.project_key)
        return SqliteStore(self.paths.db, fsync=self.fsync, recover=self.recover)

    def _assemble(self, store: Storage, mark: int, log_kept: bool, on_activity: Callable[[], None]) -> App:
        known, restored = store.take_opened()
        lease_rows = store.take_leases()
        if restored is None:
            state = SessionState(new_session_id(), now_ms())
            log.info("new session %s in %s", state.session_id, store.location)
        else:
            state = SessionState.from_restored(restored)
            log.info(
                "current session %s: %d messages (%d loading behind), %d files, %d context keys; "
                "%d session(s) in the store",
                restored.session_id, state.messages_count, state.older, len(restored.files),
                len(restored.context), len(known),
            )
        changes = ChangeLog(mark)  # the previous run's changes are put in front once read
        host = SessionHost(state, known, mark, changes, now_ms, new_session_id, self.max_messages)
        host.set_reserved(mark + BLOCK)
        host.leases = Leases(lease_rows)
        always = self.durability == "always"
        feed = Feed(changes, publish_when_committed=always)
        host.on_change = feed.changed
        host.adopt(state)  # --max-messages may trim it

        # The loader and the persister need each other (room for revisions; the reader
        # closed before the store is opened anew): the loader's side is bound late.
        loader = Loader(host, lambda: persister.store.reader(),
                        wait_room=lambda n: persister.room(n))
        persister = Persister(store, host, feed.committed, before_reopen=loader.reset)
        if not state.complete:
            loader.complete(state)  # the older history, behind the first answers
        app = App(root=self.paths.root, location=store.location, durability=self.durability,
                  store=SQLITE if self.store_url is None else mask(self.store_url),
                  project_key=None if self.store_url is None else self.project_key,
                  max_frame=self.limits.max_frame, host=host, feed=feed, loader=loader,
                  persister=persister, log_mark=mark if log_kept else None)
        dispatcher = Dispatcher(build_handlers(host, loader, feed, app, self.limits.max_depth), _internal_error)
        dispatcher.durable = always
        replies = Replies(dispatcher, persister)
        app.attach(dispatcher, replies, Server(dispatcher, self.limits, on_activity, replies.later,
                                               on_close=app.connection_closed, on_drained=feed.drained))
        if getattr(store, "shared", False):
            # Several daemons on one PostgreSQL project: write turns (turns.py).
            host.replays = True
            host.leases.shared = True  # ephemeral leases are stored too, with their holder (leases.py)
            host.set_reserved(1 << 62)  # revisions come from the project row, in each turn
            app.turns = Turns(store, host, feed, dispatcher, loader.reset,  # type: ignore[arg-type]
                              lambda: SessionState(new_session_id(), now_ms()), loader.complete)
        # Half the revision block is used: write the next reservation now.
        host.on_reserve = app.snapshot_soon
        return app
