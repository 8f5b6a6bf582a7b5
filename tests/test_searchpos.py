"""searchpos.Positions: a hit's index from checkpoints equals a plain count, on a real
SQLite file with the store's schema and triggers, through appends (a session growing
past its checkpoints), deletions anywhere (the trigger's counter drops the checkpoints),
a session deleted and made again, and rows another connection writes."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from sessionmemd import searchpos
from sessionmemd.store import Store


def truth(c: sqlite3.Connection, sid: str, rowid: int) -> int:
    return int(c.execute("SELECT count(*) FROM session_messages WHERE session_id = ? AND rowid < ?",
                         (sid, rowid)).fetchone()[0])


def test_positions_match_a_count_through_appends_and_deletes(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    Store(db).close()  # the schema, the index and its triggers (the deletion counter too)
    w = sqlite3.connect(db, isolation_level=None)  # a writer, as the daemon's or the original tool's
    r = sqlite3.connect(db, isolation_level=None)  # the reader the positions belong to
    for s in ("a", "b", "c"):
        w.execute("INSERT INTO sessions (id, start_time) VALUES (?, 0)", (s,))
    pos = searchpos.Positions(step=7)  # small, so every path (marks, extension) runs often
    rng = random.Random(3)
    checked = 0
    for step in range(300):
        action = rng.random()
        sid = rng.choice("abc")
        if action < 0.6:
            w.executemany("INSERT INTO session_messages (session_id, role, content) VALUES (?, 'user', ?)",
                          [(sid, f"m {step} {i}") for i in range(rng.randint(1, 12))])
        elif action < 0.8:
            rows = [x[0] for x in w.execute("SELECT rowid FROM session_messages WHERE session_id = ?", (sid,))]
            if rows:
                w.execute("DELETE FROM session_messages WHERE rowid = ?", (rng.choice(rows),))
        elif action < 0.85:  # the session deleted and made again under its id
            w.execute("DELETE FROM session_messages WHERE session_id = ?", (sid,))
        all_rows = [(str(s), int(i)) for s, i in r.execute("SELECT session_id, rowid FROM session_messages")]
        if not all_rows:
            continue
        hits = rng.sample(all_rows, min(len(all_rows), 21))
        r.execute("BEGIN")
        got = pos.index(r, hits)
        want = {h: truth(r, *h) for h in hits}
        r.execute("COMMIT")
        assert got == want, step
        checked += len(hits)
    assert checked > 3000
    assert searchpos.deletions(r) > 0  # the trigger counted the deletions
    w.close()
    r.close()
