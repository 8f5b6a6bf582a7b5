"""The change feed: which connections watch, how far each has been sent, and how far
the log may be published. It knows the change log and "write these bytes to that
connection", nothing about sockets, framing or the disk.

Publishing is batched: every change asks for one flush, and a flush sends each watcher
all its new notifications in one write. A flush runs in the next loop turn, unless one
ran less than FLUSH_EVERY ago: then at that mark. Idle, a change goes out at once;
under a stream of changes, each watcher costs one write per millisecond, not one per
loop turn (100 watchers at thousands of changes a second were one write syscall each
per change). Under durability=always only what is committed is published
(``committed`` moves the mark, called by the persister after each commit), so a
watcher never sees a change that a crash takes back; under periodic, a change is
published once applied.

Writers never wait for watchers, and a watcher costs bounded memory: it is sent only
as much as its connection has room for (the output high-water mark; a catch-up
replay of thousands of changes goes out as the watcher reads it), and the rest stays
in the change log, which the watcher reads from. One that stops reading is cut off,
alone, once it falls behind what the log keeps; it resumes with ``since`` (or hears
Compacted, and re-reads).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from sessionmem import errors
from sessionmem import protocol as p

from .changelog import ChangeLog


FLUSH_EVERY = 0.001  # seconds: at most one feed write per watcher per millisecond


class Watcher(Protocol):
    """What the feed needs of a connection."""

    def write(self, data: bytes | list[bytes]) -> None: ...
    def close_feed(self, reason: str) -> None: ...
    def feed_room(self) -> int: ...  # bytes it can take now without passing its high-water mark

    @property
    def closed(self) -> bool: ...


class _Watch:
    __slots__ = ("pos", "session")

    def __init__(self, pos: int, session: str | None) -> None:
        self.pos = pos  # the last revision sent to it
        self.session = session


class Feed:
    def __init__(self, log: ChangeLog, publish_when_committed: bool) -> None:
        self.log = log
        self._wait_for_commit = publish_when_committed
        self.published = log.last  # changes up to here may be sent
        self._watchers: dict[Watcher, _Watch] = {}
        self._flush_scheduled = False
        self._last_flush = 0.0
        # The previous run's changes are being read into the log (after the first
        # answers): a watch that resumes from before this run waits for them.
        self.restoring: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._watchers)

    def watch(self, conn: Watcher, since: int | None, current: int, session: str | None = None) -> p.WatchResult:
        """Start (or replace) ``conn``'s feed after ``since`` (default: ``current``).
        Raises Compacted when the log no longer holds every change after ``since``."""
        start = current if since is None else since
        if start > current:
            # A revision this database never reached: the watcher's copy came from
            # another one (a --recover, a swapped file). What it holds is not what is
            # here: it must re-read, as after a compaction.
            raise errors.Compacted(
                f"revision {start} is newer than this database's latest ({current}): what you "
                f"read came from another database; re-read the session and watch again",
                {"oldest": self.log.oldest, "revision": current},
            )
        self.log.check(start)
        self._watchers[conn] = _Watch(start, session)
        self._schedule()
        return p.WatchResult(revision=current)

    def resumes_before_log(self, since: int | None) -> bool:
        """A watch from ``since`` must wait for the previous run's changes."""
        return self.restoring is not None and since is not None and since < self.log.oldest - 1

    def unwatch(self, conn: Watcher) -> bool:
        return self._watchers.pop(conn, None) is not None

    # -- publishing ---------------------------------------------------------------------
    def changed(self) -> None:
        """A change was logged (SessionHost.on_change)."""
        if not self._wait_for_commit:
            self.published = self.log.last
        if self._watchers:
            self._schedule()

    def committed(self, revision: int) -> None:
        """Every change up to ``revision`` is on disk (Persister.on_committed)."""
        if revision > self.published:
            self.published = min(revision, self.log.last)
            if self._watchers:
                self._schedule()

    def drained(self, conn: Watcher) -> None:
        """``conn`` has room again (its client read): send it what it has not had."""
        if conn in self._watchers:
            self._schedule()

    def _schedule(self) -> None:
        if self._flush_scheduled:
            return
        self._flush_scheduled = True
        loop = asyncio.get_running_loop()
        wait = self._last_flush + FLUSH_EVERY - loop.time()
        if wait > 0:
            loop.call_later(wait, self.flush)
        else:
            loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        self._last_flush = asyncio.get_running_loop().time()
        log, upto = self.log, self.published
        oldest = log.oldest
        for conn, w in list(self._watchers.items()):
            if w.pos >= upto:
                continue
            if w.pos < oldest - 1:  # it fell behind what the log keeps
                del self._watchers[conn]
                conn.close_feed(f"it fell behind the change log (which starts at {oldest})")
                continue
            room = conn.feed_room()
            if room <= 0:
                continue  # its client is not reading: drained() brings it back
            frames, w.pos = log.frames_within(w.pos, upto, w.session, room)
            if frames:
                conn.write(frames if len(frames) > 1 else frames[0])
            if w.pos < upto and conn.feed_room() > 0:
                self._schedule()  # more to send and room for it: next loop turn
