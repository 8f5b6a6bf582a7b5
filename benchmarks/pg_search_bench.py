"""searchMessages on the PostgreSQL store (pgsearch.py): p50 of `words` queries through
the store's reader (tsvector, GIN, ts_rank, snippets, indexes) ÷ p50 of an `ILIKE
'%term%'` scan of the same rows, in one run, on a throwaway cluster (tests/pgcluster.py).
The same corpus and query mix as search_bench.py (Zipf words, ranks 5, 50, 500, 5000),
at a smaller size by default: loading goes through the generated column.

    .venv/bin/python benchmarks/pg_search_bench.py [--messages 200000] [--queries 40] [--vacuum] [--before REV]

With ``--before REV`` the same queries are also answered by the reader of git revision
REV (its code unpacked by bench.code_of) on the same database, the two taking turns
(before, now, before, now), each in a process of its own; each figure is the p50 of
its rounds' queries together.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench import code_of  # noqa: E402
from pgcluster import Cluster  # noqa: E402
from search_bench import SESSIONS, WORDS_PER_MESSAGE, vocabulary, zipf_weights  # noqa: E402

# Run in a process of its own (argv: url, JSON list of terms), with the code on its
# PYTHONPATH: this tree's or another revision's. Prints each query's ms, as JSON.
TIMER = """
import json, sys, time
from sessionmemd import searchquery
from sessionmemd.pgstore import PgReader
url, terms = sys.argv[1], json.loads(sys.argv[2])
reader = PgReader(url, "k")
try:
    reader.search(searchquery.build("warmup", sessions=None))
    ms = []
    for term in terms:
        t = time.perf_counter()
        reader.search(searchquery.build(term, sessions=None))
        ms.append((time.perf_counter() - t) * 1000)
finally:
    reader.close()
print(json.dumps(ms))
"""


def timed(url: str, terms: list[str], env: dict[str, str]) -> list[float]:
    out = subprocess.run([sys.executable, "-c", TIMER, url, json.dumps(terms)], env={**os.environ, **env},
                         check=True, capture_output=True, text=True).stdout
    return [float(x) for x in json.loads(out)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--vacuum", action="store_true", help="VACUUM the table after loading it (else ANALYZE only)")
    ap.add_argument("--before", metavar="REV", default=None,
                    help="also time the queries answered by git revision REV's reader (same data, same run)")
    a = ap.parse_args()
    import psycopg

    from sessionmemd.pgstore import PgStore

    cluster = Cluster()
    cluster.start()
    try:
        url = cluster.create_database("searchbench")
        PgStore(url, "k").close()  # the schema, with the search column and indexes
        words = vocabulary()
        rng = random.Random(11)
        cum = zipf_weights(len(words))
        t = time.perf_counter()
        with psycopg.connect(url) as c:
            for s in range(SESSIONS):
                c.execute("INSERT INTO sessionmem_sessions (project_key, id, start_time) VALUES ('k', %s, 0)",
                          (f"s{s}",))
            with c.cursor().copy("COPY sessionmem_messages (project_key, session_id, role, content, ts) "
                                 "FROM STDIN") as cp:
                for i in range(a.messages):
                    text = " ".join(rng.choices(words, cum_weights=cum, k=WORDS_PER_MESSAGE))
                    cp.write_row(("k", f"s{i % SESSIONS}", b"user", text.encode(), 1_700_000_000_000 + i))
        with psycopg.connect(url, autocommit=True) as c:
            # --vacuum: as autovacuum leaves the table a while after the load (the
            # visibility map set: counts read the index alone, no heap fetches).
            c.execute("VACUUM ANALYZE sessionmem_messages" if a.vacuum else "ANALYZE sessionmem_messages")
        load = time.perf_counter() - t
        rng = random.Random(5)
        ranks = [5, 50, 500, 5000]
        picked = [rng.choice(ranks) for _ in range(a.queries)]
        terms = [words[r + rng.randint(0, 3)] for r in picked]
        here = {"PYTHONPATH": f"{HERE.parent / 'daemon'}{os.pathsep}{HERE.parent / 'client'}"}
        ms: list[float] = []
        before_ms: list[float] = []
        with tempfile.TemporaryDirectory(prefix="smpgsearch-") as td:
            old = code_of(a.before, Path(td) / "before") if a.before else None
            for _ in range(2 if old else 1):
                if old:
                    before_ms += timed(url, terms, old)
                ms += timed(url, terms, here)
        like = []
        with psycopg.connect(url) as c:
            c.execute("SET enable_bitmapscan = off")  # the scan itself, not the trigram index
            for term in terms[: max(5, a.queries // 4)]:
                t = time.perf_counter()
                c.execute("SELECT seq, session_id, role, ts, content FROM sessionmem_messages "
                          "WHERE project_key = 'k' AND sessionmem_search_text(content) ILIKE %s",
                          (f"%{term}%",)).fetchall()
                like.append((time.perf_counter() - t) * 1000)
        p50, scan = statistics.median(ms), statistics.median(like)
        print(f"messages: {a.messages:,} (loaded through the search column's trigger in {load:.1f} s{', vacuumed' if a.vacuum else ''})")
        print(f"words query p50 (store reader): {p50:.2f} ms; ILIKE scan p50: {scan:.2f} ms; ratio {p50 / scan:.4f}")
        rounds = picked * (len(ms) // len(picked))
        print("  p50 by the word's rank: " + ", ".join(
            f"{r}: {statistics.median(x for x, k in zip(ms, rounds) if k == r):.2f} ms" for r in ranks if r in picked))
        if before_ms:
            b50 = statistics.median(before_ms)
            print(f"before ({a.before}): words query p50 {b50:.2f} ms; ratio to ILIKE {b50 / scan:.4f}; "
                  f"now / before {p50 / b50:.3f}")
            print("  before, p50 by the word's rank: " + ", ".join(
                f"{r}: {statistics.median(x for x, k in zip(before_ms, rounds) if k == r):.2f} ms"
                for r in ranks if r in picked))
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
