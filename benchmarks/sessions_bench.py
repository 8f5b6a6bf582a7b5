"""Many sessions: what a start costs, what idle sessions cost, listing, export/import.

    python benchmarks/sessions_bench.py            # 1M-message start, 10,000 sessions
    python benchmarks/sessions_bench.py --quick    # smaller sizes (and CI's smoke test)

Every figure is measured in this run, each beside its baseline:
* time to the first answer (getStats) after a start with a 1M-message session, vs the
  same daemon with an empty database, vs the original tool's init() on the same file
  (run under node when it and better-sqlite3 are here, as .ci/run installs them), and
  the time until getAllMessages answers;
* start with 10,000 sessions vs with 1 (target ratio <= 1.2);
* start after a clean stop that left a full change log (64 MiB) vs the same database
  with the log emptied (target ratio <= 1.05), and how long that stop took;
* RSS of a daemon after touching 1,000 sessions once and letting them idle, vs before
  (target <= 1.1x);
* listSessions with 10,000 sessions;
* export and import of a 100,000-message session (messages/s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench  # noqa: E402  (the shared helpers: servers, databases)

SEED = HERE.parent.parent / "shared" / "seed" / "session.js"
NODE_MODULES = Path(os.environ.get("SESSIONMEM_NODE_MODULES",
                                   Path.home() / ".cache" / "sessionmem-node-interop" / "node_modules"))


def _first_answer(tmp: Path, name: str, db: Path, *args: str) -> tuple[float, float, bench.Server]:
    """(seconds from spawn to the first getStats answer, to getAllMessages', server)."""
    from sessionmem import Session

    t = time.perf_counter()
    d = bench.sessionmemd(tmp, name, *args, db=db)
    with Session(project=tmp, socket=d.sock, autostart=False) as s:
        s.get_stats()
        first = time.perf_counter() - t
    # The whole reply read off the socket (not decoded into objects: that is the
    # client's cost, not the daemon's).
    c = socket.socket(socket.AF_UNIX)
    c.connect(str(d.sock))
    c.sendall(b'{"jsonrpc":"2.0","method":"getAllMessages","id":1}\n')
    buf = bytearray()
    while not buf.endswith(b"\n"):
        buf += c.recv(1 << 20)
    everything = time.perf_counter() - t
    c.close()
    return first, everything, d


def original_init(db: Path, tmp: Path) -> float | None:
    """Seconds the original tool's init() takes on ``db`` (its project layout), or None
    without node and its dependencies."""
    if not (shutil.which("node") and SEED.exists() and (NODE_MODULES / "better-sqlite3").is_dir()):
        return None
    work = tmp / "original"
    work.mkdir(exist_ok=True)
    shutil.copy(SEED, work / "session.js")
    if not (work / "node_modules").exists():
        (work / "node_modules").symlink_to(NODE_MODULES)
    (work / "package.json").write_text('{"type": "module"}')
    (work / "init.mjs").write_text(
        'import { SessionMemory } from "./session.js";\n'
        "const m = new SessionMemory(process.argv[2]);\n"
        "const t = performance.now(); await m.init(); const s = await m.getStats();\n"
        "console.log(JSON.stringify({ms: performance.now() - t, n: s.messagesCount})); m.close();\n")
    project = tmp / "original-project"
    (project / ".arela" / "memory").mkdir(parents=True, exist_ok=True)
    shutil.copy(db, project / ".arela" / "memory" / "session.db")
    r = subprocess.run(["node", "init.mjs", str(project)], cwd=work, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        print(f"  (the original's init failed: {r.stderr.strip()[:200]})")
        return None
    return float(json.loads(r.stdout)["ms"]) / 1000


def big_start(tmp: Path, n: int) -> dict[str, Any]:
    db = tmp / "big.db"
    bench.make_db(db, n)
    empty = tmp / "empty.db"
    bench.make_db(empty, 0)
    out: dict[str, Any] = {"messages": n}
    orig = original_init(db, tmp)
    out["originalInitS"] = orig
    for label, path in (("empty", empty), ("big", db)):
        first, everything, d = _first_answer(tmp, f"start-{label}", path)
        d.stop()
        out[f"{label}FirstAnswerS"] = first
        out[f"{label}AllMessagesS"] = everything
    return out


def many_sessions_db(path: Path, sessions: int, messages_each: int) -> None:
    bench.make_db(path, 0)
    c = sqlite3.connect(path)
    with c:
        c.executemany("INSERT INTO sessions (id, start_time) VALUES (?, 1)", ((f"s{i:06d}",) for i in range(sessions)))
        c.executemany("INSERT INTO session_messages (session_id, role, content, timestamp) VALUES (?, 'user', ?, 1)",
                      ((f"s{i:06d}", "x" * 200) for i in range(sessions) for _ in range(messages_each)))
    c.close()


def many_start(tmp: Path, sessions: int, runs: int) -> dict[str, Any]:
    from sessionmem import Session

    one, many = tmp / "one.db", tmp / "many.db"
    many_sessions_db(one, 0, 0)
    many_sessions_db(many, sessions, 3)
    times: dict[str, list[float]] = {"one": [], "many": []}
    for _ in range(runs):  # alternated, so both see the same machine
        for label, db in (("one", one), ("many", many)):
            first, _, d = _first_answer(tmp, f"m-{label}", db)
            times[label].append(first)
            if label == "many":
                with Session(project=tmp, socket=d.sock, autostart=False) as s:
                    t = time.perf_counter()
                    listed = s.list_sessions()
                    times.setdefault("list", []).append(time.perf_counter() - t)
                    assert len(listed) == sessions + 1
            d.stop()
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return {"sessions": sessions, "oneSessionStartS": med["one"], "manySessionsStartS": med["many"],
            "ratio": med["many"] / med["one"], "listSessionsMs": med["list"] * 1000}


def change_log_start(tmp: Path, changes: int, size: int, runs: int) -> dict[str, Any]:
    """First answer after a clean stop that left a full change log (``changes`` messages
    of ``size`` bytes: 64 MiB at the defaults, the most the log keeps) vs the same
    database with its change log emptied, alternated; and the stop that wrote it."""
    full, empty = tmp / "log-full.db", tmp / "log-empty.db"
    d = bench.sessionmemd(tmp, "log-fill", "--snapshot-interval", "0.5", db=full)
    c = socket.socket(socket.AF_UNIX)
    c.connect(str(d.sock))
    note = b'{"jsonrpc":"2.0","method":"addMessage","params":{"role":"user","content":"%s"}}\n'
    c.sendall(b"".join(note % (b"%d:" % i + b"x" * size) for i in range(changes)))
    c.sendall(b'{"jsonrpc":"2.0","method":"getStats","id":1}\n')
    buf = b""
    while not buf.endswith(b"\n"):
        buf += c.recv(1 << 16)
    c.close()
    time.sleep(1.5)  # the periodic snapshots carry the log to disk as it grows
    t = time.perf_counter()
    d.stop()
    stop = time.perf_counter() - t
    shutil.copy(full, empty)
    e = sqlite3.connect(empty)
    e.execute("DELETE FROM sessionmem_changes")
    e.commit()
    e.execute("VACUUM")
    e.close()
    rows = sqlite3.connect(full).execute("SELECT count(*) FROM sessionmem_changes").fetchone()[0]
    times: dict[str, list[float]] = {"full": [], "empty": []}
    for _ in range(runs):
        for label, db in (("full", full), ("empty", empty)):
            first, _, srv = _first_answer(tmp, f"log-{label}", db)
            times[label].append(first)
            srv.stop()
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return {"logRows": rows, "stopS": stop, "fullLogStartS": med["full"], "emptyLogStartS": med["empty"],
            "ratio": med["full"] / med["empty"]}


def idle_memory(tmp: Path, touched: int, idle: float) -> dict[str, Any]:
    from sessionmem import Session

    db = tmp / "idle.db"
    many_sessions_db(db, touched, 20)
    d = bench.sessionmemd(tmp, "idle", "--session-idle", str(idle), db=db)
    try:
        with Session(project=tmp, socket=d.sock, autostart=False) as s:
            s.get_stats()
            time.sleep(0.5)
            before = d.rss()[0]
            for i in range(touched):
                s.call("getAllMessages", {"session": f"s{i:06d}"})
            during = d.rss()[0]
            deadline = time.monotonic() + idle * 4 + 30
            while s.get_stats().sessionsLoaded > 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)
            after = d.rss()[0]
            loaded = s.get_stats().sessionsLoaded
        return {"touched": touched, "rssBeforeMiB": before, "rssTouchedMiB": during, "rssAfterIdleMiB": after,
                "ratio": after / before, "sessionsLoadedAfter": loaded}
    finally:
        d.stop()


def export_import(tmp: Path, n: int) -> dict[str, Any]:
    from sessionmem import Session

    db = tmp / "exp.db"
    bench.make_db(db, n)
    d = bench.sessionmemd(tmp, "exp", "--max-frame", str(1 << 30), db=db)
    try:
        with Session(project=tmp, socket=d.sock, autostart=False) as s:
            s.get_all_messages()  # the whole history in memory first: export is what is timed
            t = time.perf_counter()
            records = s.export_session()
            exp = time.perf_counter() - t
            t = time.perf_counter()
            s.import_session(records, "copy")
            imp = time.perf_counter() - t
            assert s.get_stats().sessions == 2 and len(records) == n + 1
        return {"messages": n, "exportPerS": n / exp, "importPerS": n / imp, "exportS": exp, "importS": imp}
    finally:
        d.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    ap.add_argument("--json", type=Path, default=HERE / "out" / "sessions.json")
    a = ap.parse_args()
    big, sessions, touched, ex, logged = ((100_000, 2_000, 200, 20_000, 2_000) if a.quick
                                          else (1_000_000, 10_000, 1_000, 100_000, 11_000))
    with tempfile.TemporaryDirectory(prefix="sm-sessions-") as t:
        tmp = Path(t)
        r: dict[str, Any] = {"bigStart": big_start(tmp, big)}
        b = r["bigStart"]
        orig = b["originalInitS"]
        print(f"first answer after a start, {big:,} msgs       {b['bigFirstAnswerS'] * 1000:8.0f} ms"
              f"   empty db {b['emptyFirstAnswerS'] * 1000:.0f} ms ({b['bigFirstAnswerS'] / b['emptyFirstAnswerS']:.2f}x)"
              + (f", original's init {orig * 1000:.0f} ms ({b['bigFirstAnswerS'] / orig:.2f}x, target <= 0.2x)"
                 if orig else ", original's init: node not here"))
        print(f"  getAllMessages answers after                {b['bigAllMessagesS'] * 1000:8.0f} ms")
        r["manySessions"] = m = many_start(tmp, sessions, 5)
        print(f"start with {sessions:,} sessions vs 1             {m['manySessionsStartS'] * 1000:8.0f} ms"
              f"   1 session {m['oneSessionStartS'] * 1000:.0f} ms ({m['ratio']:.2f}x, target <= 1.2x)")
        print(f"listSessions with {sessions:,} sessions            {m['listSessionsMs']:8.1f} ms")
        r["changeLogStart"] = g = change_log_start(tmp, logged, 6_000, 5)
        print(f"first answer, full change log ({g['logRows']:,} rows)  {g['fullLogStartS'] * 1000:8.0f} ms"
              f"   log emptied {g['emptyLogStartS'] * 1000:.0f} ms ({g['ratio']:.2f}x, target <= 1.05x);"
              f" the stop that left it {g['stopS'] * 1000:.0f} ms")
        r["idle"] = i = idle_memory(tmp, touched, 1.0)
        print(f"RSS after touching {touched:,} sessions, idle      {i['rssAfterIdleMiB']:8.1f} MiB"
              f"   before {i['rssBeforeMiB']:.1f} MiB ({i['ratio']:.2f}x, target <= 1.1x); "
              f"while touched {i['rssTouchedMiB']:.1f} MiB")
        r["exportImport"] = e = export_import(tmp, ex)
        print(f"export of {ex:,} messages                    {e['exportPerS']:10,.0f} msg/s")
        print(f"import of {ex:,} messages                    {e['importPerS']:10,.0f} msg/s")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
