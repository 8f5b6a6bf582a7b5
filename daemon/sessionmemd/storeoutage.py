"""A store that does not retry (PostgreSQL) lost a write: refuse writes at once, keep
answering reads, reconnect with backoff and set memory back to what the store holds.

The rules are persist.py's (what a lost write is, :meth:`Persister.resync`) and
host.py's (:meth:`SessionHost.resynced`); this is the asyncio shell that runs them:
when the persister says a write was lost (``on_lost``), every mutating call is
answered -32004 by the dispatcher before anything is applied (``writes_refused``),
and a task tries to reconnect after 0.05 s, 0.1 s, ... doubling up to 2 s. Once the
store answers, the sessions, the ttl leases and the revision are read back (the
changes after the last commit were never acknowledged nor published, so no watcher
saw them, and none misses anything), and writes go through again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

from sessionmem import errors

from .host import SessionHost
from .persist import Persister
from .rpc import Dispatcher
from .state import Restored, SessionState
from .storage import StoreFault

log = logging.getLogger("sessionmemd")

FIRST_DELAY = 0.05  # seconds before the first reconnect
MOST_DELAY = 2.0  # the longest wait between two attempts


def backoff(first: float = FIRST_DELAY, most: float = MOST_DELAY) -> Iterator[float]:
    """The waits between reconnect attempts: doubling from ``first`` up to ``most``."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, most)


class Outage:
    def __init__(self, persister: Persister, host: SessionHost, dispatcher: Dispatcher,
                 reset_readers: Callable[[], None], new_state: Callable[[], SessionState],
                 complete: Callable[[SessionState], object]) -> None:
        self._persister = persister
        self._host = host
        self._dispatcher = dispatcher
        self._reset_readers = reset_readers
        self._new_state = new_state  # a fresh current session, if the store holds none
        self._complete = complete  # loads the older history of a session behind the answers
        self._task: asyncio.Task[None] | None = None
        self.outages = 0  # how many times a write was lost (stats, tests)
        persister.on_lost = self.lost

    @property
    def active(self) -> bool:
        return self._task is not None

    def lost(self, err: errors.PersistFailed) -> None:
        """The persister lost a write: refuse writes from now on and start reconnecting."""
        self.outages += 1
        data = err.data if isinstance(err.data, dict) else {}
        self._dispatcher.writes_refused = errors.PersistFailed(
            f"writes are refused until the daemon has reconnected to the store (it retries by "
            f"itself): {data.get('reason', err.message)}; nothing was changed", err.data)
        log.error("the store refused a write; writes are refused until it is back: %s", err.message)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        attempts = 0
        for delay in backoff():
            await asyncio.sleep(delay)
            attempts += 1
            try:
                await self._persister.resync(self._reset_readers, self._apply)
                break
            except StoreFault as e:
                log.debug("reconnect attempt %d failed: %s", attempts, e)
            except Exception as e:  # a read that failed half-way: try again, like a refused connect
                log.warning("reconnect attempt %d failed: %s", attempts, e)
        self._dispatcher.writes_refused = None
        self._task = None
        log.warning("the store is back after %d attempt(s): writes go through again at revision %d",
                    attempts, self._host.revision)

    def _apply(self, known: dict[str, int], restored: Restored | None, leases: list[Any], committed: int) -> None:
        state = self._new_state() if restored is None else SessionState.from_restored(restored)
        dropped = self._host.resynced(state, known, committed, leases)
        self._host.adopt(state)
        if not state.complete:
            self._complete(state)
        if dropped:
            log.warning("%d change(s) made in memory but not committed were dropped", dropped)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
