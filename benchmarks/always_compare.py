"""`--durability always` writes served by two revisions of the daemon, in one run.

    python benchmarks/always_compare.py --before fe5f1f1     # vs this checkout
    python benchmarks/always_compare.py --before fe5f1f1 --rounds 5

Each round starts one daemon per revision (same client code, a fresh database each)
and measures, alternating between them so that the machine's load falls on both alike:
sequential addMessage/s of one client, and addMessage/s of 8 writer processes
(bench.multi_process, as bench.py's "8 writer processes" row). Reported: the median
per revision and the ratio this checkout ÷ --before. Written for the question whether
the search index (merged after fe5f1f1) slowed `always` writers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import code_of, multi_process, session_writes, sessionmemd  # noqa: E402


def start(tmp: Path, name: str, env: dict[str, str] | None):  # type: ignore[no-untyped-def]
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        return sessionmemd(tmp, name, "--durability", "always")
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, metavar="REV")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seq", type=int, default=2000, help="sequential writes per measurement")
    ap.add_argument("--per-writer", type=int, default=500, help="writes per each of the 8 processes")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="smalways-") as td:
        tmp = Path(td)
        envs = {"before": code_of(a.before, tmp / "before-code"), "after": None}
        seq: dict[str, list[float]] = {"before": [], "after": []}
        par: dict[str, list[float]] = {"before": [], "after": []}
        for r in range(a.rounds):
            for name in (("before", "after") if r % 2 == 0 else ("after", "before")):
                d = start(tmp, f"{name}{r}", envs[name])
                try:
                    session_writes(d.sock, 200)  # warm up
                    seq[name].append(session_writes(d.sock, a.seq))
                    par[name].append(multi_process(d.sock, 8, a.per_writer, "writes"))
                finally:
                    d.stop()
        for label, fig in (("sequential, 1 writer", seq), ("8 writer processes", par)):
            b, n = statistics.median(fig["before"]), statistics.median(fig["after"])
            print(f"{label:22s} before ({a.before}) {b:8,.0f}/s   this checkout {n:8,.0f}/s   ratio {n / b:.2f}   "
                  f"(rounds: {', '.join(f'{x:,.0f}' for x in fig['before'])} | "
                  f"{', '.join(f'{x:,.0f}' for x in fig['after'])})")


if __name__ == "__main__":
    main()
