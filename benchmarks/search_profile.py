"""Where a SQLite `words` search's time goes (issue 20), per query of search_bench.py's
mix: how many rows each word matches, and the time of counting the matches, of the BM25
top 21 (ORDER BY bm25(), and ORDER BY rank), and of searchindex.search whole; with
``--options``, the BM25 top 21 with other FTS5 options (detail=column, columnsize=0,
prefix='2 3'), each a second FTS5 table over the same rows. Best of 3, in-process.

    .venv/bin/python benchmarks/search_profile.py [--messages 1000000] [--options]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from search_bench import make_db  # noqa: E402

T = "sessionmem_fts"
RANKS = [5, 50, 500, 5000]


def best(c: sqlite3.Connection, sql: str, args: tuple[object, ...], n: int = 3) -> float:
    out = 1e9
    for _ in range(n):
        t = time.perf_counter()
        c.execute(sql, args).fetchall()
        out = min(out, time.perf_counter() - t)
    return out * 1000


def top(table: str) -> str:
    return f"SELECT rowid, bm25({table}) FROM {table} WHERE {table} MATCH ? ORDER BY bm25({table}), rowid DESC LIMIT 21"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--options", action="store_true", help="also the other FTS5 options")
    a = ap.parse_args()
    from sessionmemd import searchindex, searchpos, searchquery

    with tempfile.TemporaryDirectory(prefix="smsearchprof-") as td:
        db = Path(td) / "history.db"
        words = make_db(db, a.messages)
        c = sqlite3.connect(db, isolation_level=None)
        assert searchindex.ensure(c)
        after: int | None = 0
        while after is not None:
            after = searchindex.build_step(c, after)
        rng = random.Random(5)  # search_bench's mix, each word once
        picked = [rng.choice(RANKS) for _ in range(100)]
        terms = dict.fromkeys(zip(picked, (words[r + rng.randint(0, 3)] for r in picked)))
        pos = searchpos.Positions()
        print("rank  word        matches   count ms  bm25 top21 ms  rank top21 ms  search() ms")
        for r, w in sorted(terms):
            m = f'"{w}"'
            n = c.execute(f"SELECT count(*) FROM {T} WHERE {T} MATCH ?", (m,)).fetchone()[0]
            q = searchquery.build(w, sessions=None)
            searchindex.search(c, q, True, pos)  # a session's first hit makes its checkpoints
            t = time.perf_counter()
            searchindex.search(c, q, True, pos)
            whole = (time.perf_counter() - t) * 1000
            print(f"{r:<5} {w:<10} {n:>8,}   {best(c, f'SELECT count(*) FROM {T} WHERE {T} MATCH ?', (m,)):8.2f}"
                  f"  {best(c, top(T), (m,)):13.2f}"
                  f"  {best(c, f'SELECT rowid, rank FROM {T} WHERE {T} MATCH ? ORDER BY rank LIMIT 21', (m,)):13.2f}"
                  f"  {whole:11.2f}")
        if a.options:
            one = {r: w for r, w in sorted(terms, reverse=True)}  # a word per rank
            print("\noption            build s  " + "  ".join(f"rank {r} ms" for r in RANKS) + "  phrase      prefix ms")
            for name, opts in (("default", ""), ("detail=column", ", detail=column"),
                               ("columnsize=0", ", columnsize=0"), ("prefix='2 3'", ", prefix='2 3'")):
                x = "sessionmem_fts_option"
                t = time.perf_counter()
                c.execute(f"CREATE VIRTUAL TABLE {x} USING fts5(content, content='session_messages', "
                          f"content_rowid='rowid', tokenize='unicode61 remove_diacritics 2'{opts})")
                c.execute(f"INSERT INTO {x}({x}) VALUES ('rebuild')")
                build = time.perf_counter() - t
                times = [best(c, top(x), (f'"{one[r]}"',)) for r in RANKS]
                try:
                    c.execute(f"SELECT rowid FROM {x} WHERE {x} MATCH ? LIMIT 1", (f'"{one[50]} {one[5]}"',)).fetchall()
                    phrase = "yes"
                except sqlite3.OperationalError:
                    phrase = "refused"
                prefix = best(c, top(x), (f'"{one[5000][:3]}"*',))
                print(f"{name:<17} {build:7.1f}  " + "  ".join(f"{v:10.2f}" for v in times) + f"  {phrase:<10} {prefix:9.2f}")
                c.execute(f"DROP TABLE {x}")
        c.close()


if __name__ == "__main__":
    main()
