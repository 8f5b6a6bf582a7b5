"""A daemon of this version starting on a PostgreSQL database of schema 2 (before the
search indexes) that already holds many messages: how long its first answer waits while
it migrates, ÷ the same daemon's start on the same database once migrated, in one run on
a throwaway cluster (tests/pgcluster.py).

The schema-2 database is made by pgschema's own first two migrations; its messages (10
sessions, 20 Zipf words each, as search_bench.py's) are loaded by COPY. Then a real
``sessionmemd --store URL`` is spawned and timed to its first ``getStats`` answer
(``--runs`` later starts on the migrated database give the baseline's median), and a
search on it is checked to find what a LIKE count finds.

    .venv/bin/python benchmarks/pg_migrate_bench.py [--messages 1000000] [--runs 3] [--before REV] [--json out.json]

``--before REV``: also the first answer of git revision REV's daemon (bench.code_of)
on a second schema-2 database of the same messages, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench import code_of  # noqa: E402
from pgcluster import Cluster  # noqa: E402
from search_bench import SESSIONS, WORDS_PER_MESSAGE, vocabulary, zipf_weights  # noqa: E402

KEY = "bench/migrate"


def schema_2(url: str, messages: int) -> float:
    """A database as a schema-2 sessionmemd left it, holding ``messages`` messages;
    the seconds the load took."""
    import psycopg

    from sessionmemd import pgschema

    words = vocabulary()
    rng = random.Random(11)
    cum = zipf_weights(len(words))
    t = time.perf_counter()
    with psycopg.connect(url) as c:
        for script in pgschema._MIGRATIONS[:2]:
            c.execute(script.encode())
        c.execute("CREATE TABLE sessionmem_schema (version integer NOT NULL)")
        c.execute("INSERT INTO sessionmem_schema (version) VALUES (2)")
        c.execute("INSERT INTO sessionmem_projects (project_key, current_session) VALUES (%s, 's0')", (KEY,))
        for s in range(SESSIONS):
            c.execute("INSERT INTO sessionmem_sessions (project_key, id, start_time) VALUES (%s, %s, 0)",
                      (KEY, f"s{s}"))
        with c.cursor().copy("COPY sessionmem_messages (project_key, session_id, role, content, ts) FROM STDIN") as cp:
            for i in range(messages):
                text = " ".join(rng.choices(words, cum_weights=cum, k=WORDS_PER_MESSAGE))
                cp.write_row((KEY, f"s{i % SESSIONS}", b"user", text.encode(), 1_700_000_000_000 + i))
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("VACUUM ANALYZE sessionmem_messages")  # as autovacuum leaves a table of that age
    return time.perf_counter() - t


def call(sock: Path, method: str, params: dict[str, Any] | None = None) -> Any:
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(sock))
    try:
        s.sendall(json.dumps({"jsonrpc": "2.0", "method": method, "params": params or {}, "id": 1}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                raise RuntimeError("the daemon closed the connection")
            buf += chunk
        return json.loads(buf)
    finally:
        s.close()


def start(tmp: Path, name: str, url: str, env: dict[str, str] | None = None) -> tuple[
        float, subprocess.Popen[bytes], Path]:
    """Seconds from spawning a daemon on ``url`` (``env``: another revision's code) to
    its first getStats answer."""
    sock = tmp / f"{name}.sock"
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sessionmemd", "--project", str(tmp), "--socket", str(sock),
                             "--db", str(tmp / "unused.db"), "--store", url, "--project-key", KEY,
                             "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"sessionmemd exited with {proc.returncode}")
        try:
            if "result" in call(sock, "getStats"):
                return time.perf_counter() - t, proc, sock
        except OSError:
            time.sleep(0.01)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(120)


def run(messages: int, runs: int, before: str | None = None) -> dict[str, Any]:
    import psycopg

    cluster = Cluster()
    cluster.start()
    try:
        url = cluster.create_database("migrate")
        out: dict[str, Any] = {"messages": messages, "loadS": round(schema_2(url, messages), 2)}
        with tempfile.TemporaryDirectory(prefix="smpgmigrate-") as td:
            tmp = Path(td)
            if before:
                old_url = cluster.create_database("migrate_before")
                schema_2(old_url, messages)
                first, proc, _ = start(tmp, "before", old_url, code_of(before, tmp / "before-code"))
                stop(proc)
                out["beforeFirstAnswerS"] = round(first, 3)
            first, proc, sock = start(tmp, "migrating", url)
            out["migratingFirstAnswerS"] = round(first, 3)
            # What a search answers right away, and once the store says it is complete.
            term = vocabulary()[500]  # a middling word (0.4 % of the messages): every hit is paged
            with psycopg.connect(url) as c:
                row = c.execute("SELECT count(*) FROM sessionmem_messages WHERE project_key = %s AND "
                                "convert_from(content, 'UTF8') ~ %s", (KEY, rf"\m{term}\M")).fetchone()
                want = int(row[0]) if row else 0
            params = {"query": term, "sessions": "*", "limit": 1}
            t = time.perf_counter()
            r = call(sock, "searchMessages", params)["result"]
            out["firstSearchComplete"] = r["complete"]
            while not r["complete"]:
                time.sleep(0.2)
                r = call(sock, "searchMessages", params)["result"]
            out["searchCompleteAfterS"] = round(time.perf_counter() - t, 2)
            hits, cursor = 0, None
            while True:  # every hit, paged (up to the 10,000 deep paging allows), against the count
                page = call(sock, "searchMessages", {**params, "limit": 100, **({"cursor": cursor} if cursor else {})})
                hits += len(page["result"]["hits"])
                cursor = page["result"]["nextCursor"]
                if cursor is None or hits >= 10_000:
                    break
            out["hitsChecked"] = hits
            out["hitsAgree"] = hits == min(want, 10_000)
            stop(proc)
            with psycopg.connect(url) as c:
                row = c.execute("SELECT version FROM sessionmem_schema").fetchone()
                out["schemaVersion"] = int(row[0]) if row else None
            firsts = []
            for i in range(runs):
                first, proc, _ = start(tmp, f"migrated-{i}", url)
                stop(proc)
                firsts.append(first)
            out["migratedFirstAnswerS"] = round(statistics.median(firsts), 3)
    finally:
        cluster.destroy()
    out["ratio"] = round(out["migratingFirstAnswerS"] / out["migratedFirstAnswerS"], 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--before", metavar="REV", default=None)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    r = run(a.messages, a.runs, a.before)
    print(f"schema-2 database with {r['messages']:,} messages (loaded in {r['loadS']:.1f} s)")
    print(f"  first answer, migrating to schema {r['schemaVersion']}: {r['migratingFirstAnswerS'] * 1000:,.0f} ms")
    print(f"  first answer, already migrated (median of {a.runs}):  {r['migratedFirstAnswerS'] * 1000:,.0f} ms")
    print(f"  ratio {r['ratio']:.2f}")
    if "beforeFirstAnswerS" in r:
        print(f"  before ({a.before}), first answer while migrating: {r['beforeFirstAnswerS'] * 1000:,.0f} ms "
              f"(ratio to migrated {r['beforeFirstAnswerS'] / r['migratedFirstAnswerS']:.2f})")
    print(f"  first search complete: {r['firstSearchComplete']}; complete after {r['searchCompleteAfterS']:.1f} s; "
          f"{r['hitsChecked']} hits paged, agree with a regex count: {r['hitsAgree']}")
    if a.json:
        a.json.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
