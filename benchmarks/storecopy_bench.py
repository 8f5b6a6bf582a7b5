"""`sessionmem store copy` ÷ the floor of moving the same rows, in one run on this machine.

A project's SQLite file with ``--n`` messages (200-byte contents, each with an id) in
``--sessions`` sessions is copied into a throwaway PostgreSQL cluster (tests/pgcluster.py,
fsync off as in the tests) with ``sessionmem store copy --to``, then back into a fresh
project's SQLite file with ``--from``; each is timed as a user runs it (a process, its
start-up included). The floors, measured in the same run: the same message rows read
with one bare ``SELECT`` and written with one ``executemany`` in one transaction into a
plain table of the same columns (PostgreSQL for --to, a new SQLite file for --from),
in-process (no start-up). The ratios say what the copy costs over moving the rows at all.

    .venv/bin/python benchmarks/storecopy_bench.py [--n 200000] [--sessions 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from pgcluster import Cluster  # noqa: E402


def make_project(root: Path, n: int, sessions: int) -> Path:
    """A SQLite file as the daemon writes it (through its store), n messages."""
    from sessionmemd.messages import MessageLog
    from sessionmemd.sqlitestore import SqliteStore
    from sessionmemd.batch import Batch, Changes

    db = root / ".arela" / "memory" / "session.db"
    store = SqliteStore(db)
    try:
        per = n // sessions
        batches = []
        for s in range(sessions):
            log = MessageLog()
            for i in range(per):
                log.append("user", f"s{s} m{i} " + "x" * 190, 1_700_000_000_000 + i, f"s{s}-{i}")
            batches.append(Batch(sessions=[Changes(f"session-{s}", 1_700_000_000_000, f"task {s}", None,
                                                   session_row=True, messages=log.since(0))],
                                 current=f"session-{s}"))
        store.write(batches)
    finally:
        store.close()
    return db


def cli(root: Path, env: dict[str, str], *args: str) -> float:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "sessionmem", "--project", str(root), "store", "copy", *args],
                       env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"store copy {' '.join(args)} failed: {r.stderr}")
    return dt


_COLUMNS = "(project_key text, session_id text, role bytea, content bytea, ts bigint, message_id bytea, data text)"


def floor_to(db: Path, url: str) -> float:
    import psycopg

    t = time.perf_counter()
    src = sqlite3.connect(db)
    rows = src.execute("SELECT session_id, role, content, timestamp, message_id, data FROM session_messages "
                       "ORDER BY rowid").fetchall()
    src.close()
    with psycopg.connect(url) as c:
        c.execute(f"CREATE TABLE floor_messages {_COLUMNS}".encode())
        with c.cursor() as cur:
            cur.executemany("INSERT INTO floor_messages VALUES (%s, %s, %s, %s, %s, %s, %s)",
                            [("k", s, r.encode(), t_.encode(), ts, i and i.encode(), d) for s, r, t_, ts, i, d in rows])
    return time.perf_counter() - t


def floor_from(url: str, key: str, out: Path) -> float:
    import psycopg

    t = time.perf_counter()
    with psycopg.connect(url) as c:
        rows = c.execute("SELECT session_id, role, content, ts, message_id, data FROM sessionmem_messages "
                         "WHERE project_key = %s ORDER BY seq", (key,)).fetchall()
    dst = sqlite3.connect(out, isolation_level=None)
    dst.execute("PRAGMA journal_mode = WAL")
    dst.execute("CREATE TABLE m (session_id TEXT, role TEXT, content TEXT, timestamp INTEGER, message_id TEXT, "
                "data TEXT)")
    dst.execute("BEGIN IMMEDIATE")
    dst.executemany("INSERT INTO m VALUES (?, ?, ?, ?, ?, ?)",
                    [(s, bytes(r).decode(), bytes(t_).decode(), ts, i and bytes(i).decode(), d)
                     for s, r, t_, ts, i, d in rows])
    dst.execute("COMMIT")
    dst.close()
    return time.perf_counter() - t


def run(n: int, sessions: int) -> dict[str, float]:
    cluster = Cluster()
    cluster.start()
    try:
        url = cluster.create_database("storecopy")
        floor_db = cluster.create_database("floor")
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            run_dir = base / "run"
            run_dir.mkdir(mode=0o700)
            env = dict(os.environ, XDG_RUNTIME_DIR=str(run_dir), SESSIONMEM_NO_AUTOSTART="1")
            src, back = base / "src", base / "back"
            src.mkdir()
            back.mkdir()
            db = make_project(src, n, sessions)
            t_to = cli(src, env, "--to", url, "--project-key", "bench")
            f_to = floor_to(db, floor_db)
            t_from = cli(back, env, "--from", url, "--project-key", "bench")
            f_from = floor_from(url, "bench", base / "floor.db")
    finally:
        cluster.destroy()
    return {"messages": n, "to_s": t_to, "to_floor_s": f_to, "to_ratio": t_to / f_to,
            "from_s": t_from, "from_floor_s": f_from, "from_ratio": t_from / f_from}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--json")
    a = ap.parse_args()
    r = run(a.n, a.sessions)
    print(f"{r['messages']} messages: --to {r['to_s']:.2f} s (floor {r['to_floor_s']:.2f} s, ratio "
          f"{r['to_ratio']:.2f}); --from {r['from_s']:.2f} s (floor {r['from_floor_s']:.2f} s, ratio "
          f"{r['from_ratio']:.2f})")
    if a.json:
        Path(a.json).write_text(json.dumps(r))


if __name__ == "__main__":
    main()
