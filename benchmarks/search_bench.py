"""searchMessages benchmarks (issue 20): ratios measured in one run, on one machine.

    python benchmarks/search_bench.py            # 1,000,000 messages (a few minutes)
    python benchmarks/search_bench.py --quick    # 50,000 messages (~20 s)

1. Search latency: p50 of `words` queries through a real daemon (socket, JSON, the
   snapshot check, FTS5, snippets, indexes) ÷ p50 of a `LIKE '%term%'` scan of the same
   table for the same terms (every matching row: what a search without an index must read
   to rank). Aim ≤ 0.02.
2. Index build at first start (searchindex.build_step in chunks, as the daemon's
   background builder runs it) ÷ loading the whole history (storeread.load_session of
   every session, all messages).
3. The index's cost to sequential `--durability always` writes: addMessage/s with the
   index's triggers ÷ without them (dropped by another connection while the daemon runs),
   the two daemons written to in alternating rounds. Aim ≥ 0.8.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import code_of, sessionmemd  # noqa: E402

SESSIONS = 10
WORDS_PER_MESSAGE = 20


def vocabulary(n: int = 20_000) -> list[str]:
    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return sorted({"".join(rng.choice(letters) for _ in range(rng.randint(4, 9))) for _ in range(n)})


def zipf_weights(n: int) -> list[float]:
    """Cumulative Zipf weights of ``n`` words, for ``random.choices(cum_weights=...)``
    (cumulative: choices() would otherwise sum 20,000 weights per message)."""
    cum, total = [], 0.0
    for i in range(n):
        total += 1 / (i + 1)
        cum.append(total)
    return cum


def make_db(path: Path, messages: int) -> list[str]:
    """A database an older sessionmemd could have written: ``messages`` rows over
    SESSIONS sessions, words Zipf-distributed, and no search index yet."""
    from sessionmemd.store import Store

    Store(path).close()  # schema (with an empty, complete index)
    words = vocabulary()
    rng = random.Random(11)
    cum = zipf_weights(len(words))
    c = sqlite3.connect(path, isolation_level=None)
    for t in ("ai", "ad", "au"):
        c.execute(f"DROP TRIGGER sessionmem_fts_{t}")
    c.execute("DROP TABLE sessionmem_fts")
    c.execute("DELETE FROM sessionmem_meta WHERE key = 'search_index'")
    c.execute("BEGIN")
    for s in range(SESSIONS):
        c.execute("INSERT INTO sessions (id, start_time) VALUES (?, 0)", (f"s{s}",))
    c.execute("INSERT OR REPLACE INTO sessionmem_meta (key, value) VALUES ('current_session', 's0')")
    batch = []
    for i in range(messages):
        text = " ".join(rng.choices(words, cum_weights=cum, k=WORDS_PER_MESSAGE))
        batch.append((f"s{i % SESSIONS}", "user" if i % 2 else "assistant", text, 1_700_000_000_000 + i))
        if len(batch) == 50_000:
            c.executemany("INSERT INTO session_messages (session_id, role, content, timestamp) VALUES (?,?,?,?)", batch)
            batch.clear()
    c.executemany("INSERT INTO session_messages (session_id, role, content, timestamp) VALUES (?,?,?,?)", batch)
    c.execute("COMMIT")
    c.close()
    return words


def build_vs_load(path: Path) -> dict[str, float]:
    from sessionmemd import searchindex, storeread

    c = sqlite3.connect(path, isolation_level=None)
    t = time.perf_counter()
    for s in range(SESSIONS):
        storeread.load_session(c, f"s{s}", 0, None)
    load = time.perf_counter() - t
    t = time.perf_counter()
    assert searchindex.ensure(c)
    after: int | None = 0
    while after is not None:
        after = searchindex.build_step(c, after)
    build = time.perf_counter() - t
    assert searchindex.consistent(c)
    c.close()
    return {"loadHistoryS": load, "buildIndexS": build, "buildOverLoad": build / load}


def words_p50(tmp: Path, path: Path, terms: list[str], name: str,
              env: dict[str, str] | None = None) -> tuple[float, float, list[float]]:
    """p50 of one-word and of two-word queries through a daemon (``env``: another
    revision's code, see code_of)."""
    from sessionmem import Session

    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        d = sessionmemd(tmp, name, db=path)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        with Session(socket=d.sock, project=tmp, autostart=False) as s:
            assert s.search_messages("warmup", all_sessions=True).complete
            fts_ms = []
            for term in terms:
                t = time.perf_counter()
                s.search_messages(term, all_sessions=True)
                fts_ms.append((time.perf_counter() - t) * 1000)
            two = []
            for a, b in zip(terms[::2], terms[1::2]):
                t = time.perf_counter()
                s.search_messages(f"{a} {b}", all_sessions=True)
                two.append((time.perf_counter() - t) * 1000)
    finally:
        d.stop()
    return statistics.median(fts_ms), statistics.median(two), fts_ms


def search_vs_like(tmp: Path, path: Path, words: list[str], queries: int,
                   before: str | None = None) -> dict[str, float]:
    rng = random.Random(5)
    # Terms of every frequency: common, middling, rare (Zipf ranks).
    ranks = [5, 50, 500, 5000]
    picked = [rng.choice(ranks) for _ in range(queries)]
    terms = [words[r + rng.randint(0, 3)] for r in picked]
    like_ms = []
    c = sqlite3.connect(path)
    for term in terms[: max(5, queries // 4)]:  # each is a full scan: fewer are enough for a stable p50
        t = time.perf_counter()
        c.execute("SELECT rowid, session_id, role, timestamp, content FROM session_messages "
                  "WHERE content LIKE ?", (f"%{term}%",)).fetchall()
        like_ms.append((time.perf_counter() - t) * 1000)
    c.close()
    out: dict[str, float] = {}
    if before is not None:  # the same queries, same table, served by the code at ``before``
        p50, two, each = words_p50(tmp, path, terms, "before", code_of(before, tmp / "before-code"))
        out.update({"beforeWordsP50Ms": p50, "beforeTwoWordsP50Ms": two})
        out.update({f"beforeRank{r}P50Ms": statistics.median(t for t, k in zip(each, picked) if k == r)
                    for r in ranks if r in picked})
    p50, two, each = words_p50(tmp, path, terms, "search")
    out.update({f"rank{r}P50Ms": statistics.median(t for t, k in zip(each, picked) if k == r)
                for r in ranks if r in picked})
    like = statistics.median(like_ms)
    if before is not None:
        out["beforeWordsOverLike"] = out["beforeWordsP50Ms"] / like
    return {**out, "wordsP50Ms": p50, "twoWordsP50Ms": two, "likeScanP50Ms": like, "wordsOverLike": p50 / like}


def write_cost(tmp: Path, n: int, rounds: int = 10) -> dict[str, float]:
    """Both daemons run at once; the writes alternate between them in ``rounds`` rounds
    (n / rounds each), so the machine's load, which moves by the second here, falls on
    both alike; each figure is its writes over its summed time."""
    from sessionmem import Session

    daemons, sessions = {}, {}
    try:
        for name, drop in (("with", False), ("without", True)):
            db = tmp / f"writes-{name}.db"
            daemons[name] = d = sessionmemd(tmp, f"w{name}", "--durability", "always", db=db)
            if drop:
                c = sqlite3.connect(db, isolation_level=None)
                for trigger in ("ai", "ad", "au"):
                    c.execute(f"DROP TRIGGER sessionmem_fts_{trigger}")
                c.close()
            sessions[name] = s = Session(socket=d.sock, project=tmp, autostart=False)
            for i in range(50):
                s.add_message("user", f"warm up {i}")
        spent = {"with": 0.0, "without": 0.0}
        per = max(1, n // rounds)
        for r in range(rounds):
            for name in (("with", "without") if r % 2 == 0 else ("without", "with")):
                s = sessions[name]
                t = time.perf_counter()
                for i in range(per):
                    s.add_message("user", f"a sequential durable write number {r}-{i} with a few words")
                spent[name] += time.perf_counter() - t
    finally:
        for s in sessions.values():
            s.close()
        for d in daemons.values():
            d.stop()
    out = {k: per * rounds / v for k, v in spent.items()}
    return {"alwaysWithIndexPerS": out["with"], "alwaysWithoutIndexPerS": out["without"],
            "withOverWithout": out["with"] / out["without"]}


def run(messages: int, queries: int, writes: int, before: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="smsearch-") as td:
        tmp = Path(td)
        db = tmp / "history.db"
        t = time.perf_counter()
        words = make_db(db, messages)
        made = time.perf_counter() - t
        figures: dict[str, Any] = {"messages": messages, "makeDbS": made}
        figures.update(build_vs_load(db))
        figures.update(search_vs_like(tmp, db, words, queries, before))
        figures.update(write_cost(tmp, writes))
        return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="50,000 messages, fewer queries and writes")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--before", metavar="REV", default=None,
                    help="also time the queries served by the daemon of git revision REV (same data, same run)")
    a = ap.parse_args()
    f = run(50_000, 40, 300, a.before) if a.quick else run(1_000_000, 100, 1000, a.before)
    print(f"messages: {f['messages']:,}")
    print(f"words query p50 (daemon, end to end): {f['wordsP50Ms']:.2f} ms; two words: {f['twoWordsP50Ms']:.2f} ms")
    print(f"LIKE '%term%' scan p50:                {f['likeScanP50Ms']:.2f} ms")
    print(f"  ratio words/LIKE: {f['wordsOverLike']:.4f} (aim <= 0.02)")
    print("  p50 by the word's rank: " + ", ".join(
        f"{r}: {f[f'rank{r}P50Ms']:.2f} ms" + (f" (before {f[f'beforeRank{r}P50Ms']:.2f})" if f"beforeRank{r}P50Ms" in f else "")
        for r in (5, 50, 500, 5000) if f"rank{r}P50Ms" in f))
    if "beforeWordsP50Ms" in f:
        print(f"  before ({a.before}): words p50 {f['beforeWordsP50Ms']:.2f} ms, two words "
              f"{f['beforeTwoWordsP50Ms']:.2f} ms; ratio words/LIKE {f['beforeWordsOverLike']:.4f}")
    print(f"index build: {f['buildIndexS']:.2f} s; loading the history: {f['loadHistoryS']:.2f} s; "
          f"ratio {f['buildOverLoad']:.2f}")
    print(f"--durability always addMessage/s: with index {f['alwaysWithIndexPerS']:.0f}, without "
          f"{f['alwaysWithoutIndexPerS']:.0f}; ratio {f['withOverWithout']:.2f} (aim >= 0.8)")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(f, indent=2))


if __name__ == "__main__":
    main()
