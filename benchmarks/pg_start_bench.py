"""A daemon's start (its first answer) on a project of 1,000,000 messages, PostgreSQL ÷
SQLite (issue 17's third figure), in one run on this machine.

The same history in both stores: a SQLite file made the fast way (bench.make_db), then
copied into a throwaway PostgreSQL cluster (tests/pgcluster.py) by the real
``sessionmem store copy --to``. Each store's daemon is started ``--runs`` times; the
figure is the median time from spawning it to its first ``getStats`` answer, and to
the whole ``getAllMessages`` reply read off the socket (the rest of the history loads
after the first answer, tail first).

    .venv/bin/python benchmarks/pg_start_bench.py [--n 1000000] [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import bench  # noqa: E402
from pgcluster import Cluster  # noqa: E402
from sessions_bench import _first_answer  # noqa: E402

KEY = "bench/start"


def copy_to(url: str, db: Path, project: Path) -> float:
    """Seconds `sessionmem store copy --to` takes to move ``db`` into PostgreSQL."""
    env = {**os.environ, "SESSIONMEM_STORE": url, "SESSIONMEM_NO_AUTOSTART": "1"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sessionmem", "--project", str(project), "store", "copy", "--to", url,
                    "--project-key", KEY, "--db", str(db)], env=env, check=True, capture_output=True, timeout=3600)
    return time.perf_counter() - t


def run(n: int, runs: int) -> dict[str, float]:
    out: dict[str, float] = {"messages": n}
    cluster = Cluster()
    cluster.start()
    try:
        url = cluster.create_database("start")
        with tempfile.TemporaryDirectory() as tmp_:
            tmp = Path(tmp_)
            db = tmp / "big.db"
            bench.make_db(db, n)
            out["copyToS"] = round(copy_to(url, db, tmp), 2)
            for name, args in (("sqlite", ()), ("postgresql", ("--store", url, "--project-key", KEY))):
                firsts, alls = [], []
                for i in range(runs):
                    first, everything, d = _first_answer(tmp, f"{name}-{i}", db, *args)
                    d.stop()
                    firsts.append(first)
                    alls.append(everything)
                out[f"{name}FirstAnswerS"] = round(statistics.median(firsts), 4)
                out[f"{name}AllMessagesS"] = round(statistics.median(alls), 4)
    finally:
        cluster.destroy()
    out["firstAnswerRatio"] = round(out["postgresqlFirstAnswerS"] / out["sqliteFirstAnswerS"], 3)
    out["allMessagesRatio"] = round(out["postgresqlAllMessagesS"] / out["sqliteAllMessagesS"], 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    r = run(a.n, a.runs)
    print(f"start with {a.n:,} messages (median of {a.runs}); copied into PostgreSQL in {r['copyToS']:.1f} s")
    print(f"  first answer   SQLite {r['sqliteFirstAnswerS'] * 1000:8.0f} ms   PostgreSQL "
          f"{r['postgresqlFirstAnswerS'] * 1000:8.0f} ms   ratio {r['firstAnswerRatio']:.2f}")
    print(f"  all messages   SQLite {r['sqliteAllMessagesS'] * 1000:8.0f} ms   PostgreSQL "
          f"{r['postgresqlAllMessagesS'] * 1000:8.0f} ms   ratio {r['allMessagesRatio']:.2f}")
    if a.json:
        a.json.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
