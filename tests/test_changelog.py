"""The change log, pure: what it keeps, what it replays, where a watcher's share is cut."""

from __future__ import annotations

import random

import pytest

from sessionmem import errors
from sessionmemd.changelog import SLACK, ChangeLog


def filled(last: int, n: int, keep: int = 10_000, keep_bytes: int = 1 << 30, session: str = "s") -> ChangeLog:
    log = ChangeLog(last, keep=keep, keep_bytes=keep_bytes)
    for r in range(last + 1, last + n + 1):
        log.append(r, session, f"{r}\n".encode())
    return log


def test_it_keeps_at_least_the_newest_changes_and_compacts_the_rest() -> None:
    log = filled(100, 5000, keep=20)
    assert log.last == 5100 and 20 <= len(log) <= 20 + SLACK
    assert log.oldest == log.last - len(log) + 1
    log.check(log.oldest - 1)  # everything after it is still here
    with pytest.raises(errors.Compacted) as ei:
        log.check(log.oldest - 2)
    assert ei.value.oldest == log.oldest


def test_the_byte_bound_keeps_at_least_one_change() -> None:
    log = ChangeLog(0, keep=10, keep_bytes=10)  # the byte bound trims at once
    log.append(1, "s", b"x" * 8)
    log.append(2, "s", b"y" * 8)  # together over 10 bytes: the oldest goes
    assert (log.oldest, log.last) == (2, 2)
    log.append(3, "s", b"z" * 50)  # alone over the bound: still kept
    assert (log.oldest, log.last) == (3, 3)


def test_revisions_must_follow_each_other() -> None:
    log = ChangeLog(5)
    with pytest.raises(ValueError):
        log.append(7, "s", b"")


def test_a_watchers_share_stops_where_its_room_runs_out() -> None:
    rng = random.Random(3)
    for _ in range(500):
        log = ChangeLog(10, keep=50)
        for r in range(11, 11 + rng.randint(1, 120)):
            log.append(r, rng.choice("ab"), b"x" * rng.randint(1, 20))
        after = rng.randint(log.oldest - 1, log.last)
        room = rng.randint(1, 300)
        session = rng.choice([None, "a"])
        got, upto = log.frames_within(after, log.last, session, room)
        expected, size, reached = [], 0, after
        for rev, sid, frame in log.entries():
            if rev <= after:
                continue
            reached = rev
            if session is None or sid == session:
                expected.append(frame)
                size += len(frame)
                if size >= room:
                    break
        else:
            reached = log.last
        assert got == expected and upto == (reached if got or session else after)


def test_a_log_kept_across_a_clean_restart_keeps_only_what_leads_up_to_the_mark() -> None:
    entries = [(r, "s", b"%d" % r) for r in (3, 4, 6, 7, 8)]  # 5 is missing
    log = ChangeLog.restored(entries, last=8)
    assert (log.oldest, log.last) == (6, 8)
    assert ChangeLog.restored(entries, last=9).last == 9 and len(ChangeLog.restored(entries, last=9)) == 0
