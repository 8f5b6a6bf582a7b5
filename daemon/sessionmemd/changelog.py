"""The change log: the last changes, in revision order, each kept as the exact bytes
of its ``changed`` notification. Sans-I/O: no sockets, no clock.

Encoded once when the change is applied, a change then costs one write per watcher
and nothing else. Revisions in the log are consecutive (a change is one revision),
so finding where a watcher resumes is an index computation, not a search.

Bounded twice: at least the newest ``keep`` changes are kept (the contract asks for
10,000; up to SLACK more between trims), fewer only when they take more than
``keep_bytes`` (messages can be megabytes each: 10,000 of them must not pin
gigabytes). A watcher further behind gets Compacted. The snapshots keep a copy on disk
(Batch.log_rows), so a clean restart loses none of it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from sessionmem import errors

KEEP = 10_000
KEEP_BYTES = 64 * 1024 * 1024
SLACK = 1024  # the log may hold this many more than ``keep`` before it is trimmed


class ChangeLog:
    __slots__ = ("_frames", "_sessions", "_ends", "_start", "_first", "_bytes", "keep", "keep_bytes")

    def __init__(self, last: int, keep: int = KEEP, keep_bytes: int = KEEP_BYTES) -> None:
        """``last``: the revision before the first change this log will hold."""
        self._frames: list[bytes] = []
        self._sessions: list[str] = []
        # Running byte count at the end of each frame: the size of any run of frames in
        # O(1), so sending a watcher its share needs no loop over the frames.
        self._ends: list[int] = []
        self._start = 0  # index of the oldest kept entry (dropped ones are trimmed lazily)
        self._first = last + 1  # revision of _frames[_start]
        self._bytes = 0
        self.keep = keep
        self.keep_bytes = keep_bytes

    @property
    def last(self) -> int:
        """The newest revision in the log (or before it, when it is empty)."""
        return self._first + len(self._frames) - self._start - 1

    @property
    def oldest(self) -> int:
        """The oldest revision a watcher can still be sent."""
        return self._first

    def __len__(self) -> int:
        return len(self._frames) - self._start

    def append(self, revision: int, session_id: str, frame: bytes) -> None:
        frames = self._frames
        if revision != self._first + len(frames) - self._start:
            raise ValueError(f"revision {revision} does not follow {self.last}")
        frames.append(frame)
        self._sessions.append(session_id)
        ends = self._ends
        ends.append((ends[-1] if ends else 0) + len(frame))
        self._bytes += len(frame)
        if len(frames) - self._start > self.keep + SLACK or self._bytes > self.keep_bytes:
            self._trim()

    def _trim(self) -> None:
        """Back down to ``keep`` changes (and ``keep_bytes``): in bulk, every SLACK appends,
        not one drop per append. The dropped slots are emptied at once and cut from the
        lists when they are half the lists."""
        frames = self._frames
        start = self._start
        count = len(frames) - start
        while count > self.keep or (self._bytes > self.keep_bytes and count > 1):
            self._bytes -= len(frames[start])
            frames[start] = b""
            start += 1
            count -= 1
        self._first += start - self._start
        self._start = start
        if start > 4096 and start * 2 > len(frames):
            del frames[:start]
            del self._sessions[:start]
            del self._ends[:start]
            self._start = 0

    def check(self, since: int) -> None:
        """Raise Compacted unless every change after ``since`` is still here."""
        if since < self._first - 1:
            raise errors.Compacted(
                f"revision {since} is older than the change log, which starts after "
                f"{self._first - 1}: re-read the session and watch again",
                {"oldest": self._first},
            )

    def frames_within(self, after: int, upto: int, session: str | None, room: int) -> tuple[list[bytes], int]:
        """The notifications of the changes ``after < revision <= upto`` (of one session
        when given), oldest first, stopping once they pass ``room`` bytes (one frame at
        least); and the revision they reach. The caller checks ``after`` first (check)."""
        upto = min(upto, self.last)
        if upto <= after:
            return [], after
        lo = self._start + max(after + 1 - self._first, 0)
        hi = self._start + upto - self._first + 1
        frames, sessions = self._frames, self._sessions
        if session is None:  # the common case: a slice, cut where the room runs out
            ends = self._ends
            before = ends[lo - 1] if lo else 0
            if ends[hi - 1] - before <= room:
                return frames[lo:hi], upto
            cut = max(bisect.bisect_left(ends, before + room, lo, hi), lo) + 1
            return frames[lo:cut], self._first + cut - 1 - self._start
        out: list[bytes] = []
        size = 0
        for i in range(lo, hi):
            if session is None or sessions[i] == session:
                out.append(frames[i])
                size += len(frames[i])
                if size >= room:
                    return out, self._first + i - self._start
        return out, upto

    def entries_after(self, after: int) -> list[tuple[int, str, bytes]]:
        """(revision, session id, frame) of the kept changes after ``after``: what a
        snapshot adds to the copy of the log on disk."""
        lo = self._start + max(after + 1 - self._first, 0)
        first = self._first - self._start
        return [(first + i, self._sessions[i], self._frames[i]) for i in range(lo, len(self._frames))]

    def entries(self) -> list[tuple[int, str, bytes]]:
        """(revision, session id, frame) of every kept change."""
        return self.entries_after(self._first - 1)

    def prepend(self, entries: Iterable[tuple[int, str, bytes]]) -> int:
        """Put older changes (a previous run's, read from disk after the first answers)
        in front: those that lead without a gap up to the oldest one here. Returns how
        many were taken."""
        older: list[tuple[int, str, bytes]] = []
        expected = self._first - 1
        for rev, sid, frame in sorted(entries, reverse=True):
            if rev != expected:
                break
            older.append((rev, sid, frame))
            expected -= 1
        if not older:
            return 0
        older.reverse()
        frames = [f for _, _, f in older] + self._frames[self._start:]
        sessions = [sid for _, sid, _ in older] + self._sessions[self._start:]
        self._frames, self._sessions, self._start = frames, sessions, 0
        self._first = older[0][0]
        total = 0
        self._ends = ends = []
        for f in frames:
            total += len(f)
            ends.append(total)
        self._bytes = total
        if len(frames) > self.keep or total > self.keep_bytes:
            self._trim()
        return len(older)

    def truncate(self, last: int) -> int:
        """Drop the changes after revision ``last`` (a write the store refused and lost:
        they were never committed, published or acknowledged, and their revisions are
        handed out again). Returns how many went."""
        drop = min(self.last - last, len(self))
        if drop <= 0:
            return 0
        frames = self._frames
        self._bytes -= sum(len(f) for f in frames[len(frames) - drop:])
        del frames[len(frames) - drop:]
        del self._sessions[len(self._sessions) - drop:]
        del self._ends[len(self._ends) - drop:]
        if last < self._first - 1:  # all of it went: the log starts after ``last``
            self._first = last + 1
        return drop

    def restart(self, last: int) -> None:
        """Empty, the next change being ``last + 1`` (another daemon's changes could not
        be read without a gap: watchers behind it hear they fell behind, and resume)."""
        self._frames, self._sessions, self._ends = [], [], []
        self._start, self._first, self._bytes = 0, last + 1, 0

    @classmethod
    def restored(cls, entries: Iterable[tuple[int, str, bytes]], last: int, **kw: int) -> ChangeLog:
        """A log holding ``entries`` (consecutive revisions ending at ``last``); any
        that do not lead without a gap up to ``last`` are left out."""
        log = cls(last, **kw)
        log.prepend(entries)
        return log
