"""A daemon's start (its first answer) on a project of 1,000,000 messages, PostgreSQL ÷
SQLite (issue 17's third figure), in one run on this machine.

The same history in both stores: a SQLite file made the fast way (bench.make_db), then
copied into a throwaway PostgreSQL cluster (tests/pgcluster.py) by the real
``sessionmem store copy --to``. Each store's daemon is started ``--runs`` times; the
figure is the median time from spawning it to its first ``getStats`` answer, and to
the whole ``getAllMessages`` reply read off the socket (the rest of the history loads
after the first answer, tail first).

Autovacuum is off in the throwaway cluster, so what a run measures does not depend on
whether autovacuum happened to reach the copied rows during it (it would within a
minute or two: a start right after a bulk load finds no statistics and no visibility
map, one later finds both; the daemon's reads must be fast in both).

With ``--before REV`` the rows are copied a second time, into a database of their own,
by the ``store copy`` of git revision REV (its code unpacked and run with PYTHONPATH),
and PostgreSQL daemons of both revisions start on both databases, in alternating
order: REV's daemon on REV's copy is where a user of REV stood; this checkout's
daemon on REV's copy shows the daemon's change alone (a table no VACUUM has seen);
REV's daemon on this checkout's copy the copy's change alone. Both revisions' modules
are compiled before the runs (bench.code_of; this checkout's here): with
PYTHONDONTWRITEBYTECODE set, code never compiled would be compiled at every start
(~60 ms of it).

    .venv/bin/python benchmarks/pg_start_bench.py [--n 1000000] [--runs 3] [--before REV] [--json out.json]
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
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import bench  # noqa: E402
from bench import code_of  # noqa: E402
from pgcluster import Cluster  # noqa: E402
from sessions_bench import _first_answer  # noqa: E402

KEY = "bench/start"


def with_env(env: dict[str, str] | None, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` with ``env`` added to the environment its children inherit."""
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        return fn(*args)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def copy_to(url: str, db: Path, project: Path, env: dict[str, str] | None = None) -> float:
    """Seconds `sessionmem store copy --to` (of ``env``'s code) takes to move ``db`` into PostgreSQL."""
    env = {**os.environ, **(env or {}), "SESSIONMEM_STORE": url, "SESSIONMEM_NO_AUTOSTART": "1"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sessionmem", "--project", str(project), "store", "copy", "--to", url,
                    "--project-key", KEY, "--db", str(db)], env=env, check=True, capture_output=True, timeout=3600)
    return time.perf_counter() - t


def start(tmp: Path, name: str, db: Path, args: tuple[str, ...], env: dict[str, str] | None) -> tuple[float, float]:
    first, everything, d = with_env(env, _first_answer, tmp, name, db, *args)
    d.stop()
    return first, everything


def run(n: int, runs: int, before: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"messages": n}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(HERE.parent / "daemon"), str(HERE.parent / "client")],
                   check=True, capture_output=True)  # see the docstring
    cluster = Cluster()
    cluster.start()
    try:
        cluster.psql("ALTER SYSTEM SET autovacuum = off")  # see the docstring
        cluster.psql("SELECT pg_reload_conf()")
        url = cluster.create_database("start")
        with tempfile.TemporaryDirectory() as tmp_:
            tmp = Path(tmp_)
            db = tmp / "big.db"
            bench.make_db(db, n)
            out["copyToS"] = round(copy_to(url, db, tmp), 2)
            pg = ("--store", url, "--project-key", KEY)
            # name -> (daemon args, env of the code that runs it)
            configs: dict[str, tuple[tuple[str, ...], dict[str, str] | None]] = {
                "sqlite": ((), None), "postgresql": (pg, None)}
            if before is not None:
                old = code_of(before, tmp / "before-code")
                old_url = cluster.create_database("before")
                out["before"] = before
                out["beforeCopyToS"] = round(copy_to(old_url, db, tmp, old), 2)
                old_pg = ("--store", old_url, "--project-key", KEY)
                configs |= {"beforeOnBeforeCopy": (old_pg, old), "afterOnBeforeCopy": (old_pg, None),
                            "beforeOnAfterCopy": (pg, old)}
            firsts: dict[str, list[float]] = {k: [] for k in configs}
            alls: dict[str, list[float]] = {k: [] for k in configs}
            for i in range(runs):
                order = list(configs) if i % 2 == 0 else list(reversed(configs))
                for name in order:
                    args, env = configs[name]
                    first, everything = start(tmp, f"{name}-{i}", db, args, env)
                    firsts[name].append(first)
                    alls[name].append(everything)
            for name in configs:
                out[f"{name}FirstAnswerS"] = round(statistics.median(firsts[name]), 4)
                out[f"{name}AllMessagesS"] = round(statistics.median(alls[name]), 4)
                out[f"{name}FirstAnswersS"] = [round(x, 4) for x in firsts[name]]
    finally:
        cluster.destroy()
    for name in [k[:-len("FirstAnswerS")] for k in list(out) if k.endswith("FirstAnswerS")]:
        if name != "sqlite":
            out[f"{name}FirstAnswerRatio"] = round(out[f"{name}FirstAnswerS"] / out["sqliteFirstAnswerS"], 3)
            out[f"{name}AllMessagesRatio"] = round(out[f"{name}AllMessagesS"] / out["sqliteAllMessagesS"], 3)
    out["firstAnswerRatio"] = out["postgresqlFirstAnswerRatio"]
    out["allMessagesRatio"] = out["postgresqlAllMessagesRatio"]
    return out


LABELS = {
    "postgresql": "PostgreSQL (this checkout, its copy)",
    "beforeOnBeforeCopy": "PostgreSQL (before: daemon and copy)",
    "afterOnBeforeCopy": "PostgreSQL (this daemon, before's copy)",
    "beforeOnAfterCopy": "PostgreSQL (before's daemon, this copy)",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--before", metavar="REV", default=None,
                    help="also copy and start with the code of git revision REV (e.g. main)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    r = run(a.n, a.runs, a.before)
    print(f"start with {a.n:,} messages (median of {a.runs}); copied into PostgreSQL in {r['copyToS']:.1f} s"
          + (f" (by {a.before}: {r['beforeCopyToS']:.1f} s)" if a.before else ""))
    print(f"  {'':40s} {'first answer':>12s} {'÷ SQLite':>9s} {'all messages':>13s} {'÷ SQLite':>9s}")
    print(f"  {'SQLite':40s} {r['sqliteFirstAnswerS'] * 1000:9.0f} ms {'':9s} {r['sqliteAllMessagesS'] * 1000:10.0f} ms")
    for name, label in LABELS.items():
        if f"{name}FirstAnswerS" in r:
            print(f"  {label:40s} {r[f'{name}FirstAnswerS'] * 1000:9.0f} ms {r[f'{name}FirstAnswerRatio']:9.2f} "
                  f"{r[f'{name}AllMessagesS'] * 1000:10.0f} ms {r[f'{name}AllMessagesRatio']:9.2f}")
    if a.json:
        a.json.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
