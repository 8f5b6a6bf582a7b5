"""LangGraph checkpoints: SessionmemSaver vs LangGraph's own SqliteSaver, same work.

    python benchmarks/langgraph_bench.py             # 10,000 checkpoints
    python benchmarks/langgraph_bench.py --n 500     # smaller (the smoke test's size)

The work, on each saver (one thread, root namespace): put N checkpoints as a graph
does (each the child of the last, its channel values a counter and a 200-byte text,
then ``put_writes`` of its task's two writes); then read them back: ``list`` the whole
thread (newest first, each with its pending writes), ``get_tuple`` of every checkpoint
by id, and the latest after each 500. Ours runs against three real sessionmemds:
``--durability periodic`` (the default: a change is on disk within a second),
``always`` (acknowledged once committed; SQLite ``synchronous=NORMAL``: survives a
crash of any process, not a power loss) and ``always --fsync`` (every commit fsynced:
what SqliteSaver's commits are, WAL with SQLite's default ``synchronous=FULL``).
SqliteSaver on a file, with its ``setup()``'s settings. The four take turns, 500
checkpoints at a time (all put, then each lists, then all get), so that a load that
comes and goes on the machine falls on them alike. Figures are seconds per phase
and the ratio ours ÷ SqliteSaver, all in this run.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench  # noqa: E402  (servers)


def checkpoints(n: int) -> list[dict[str, Any]]:
    """N checkpoints as LangGraph makes them (ids time-ordered), made once for both."""
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.checkpoint.base.id import uuid6

    out = []
    for i in range(n):
        cp = empty_checkpoint()
        cp["id"] = str(uuid6(clock_seq=i))
        cp["channel_values"] = {"n": i, "text": f"{i:08d}" + "x" * 192}
        cp["channel_versions"] = {"n": i + 1, "text": i + 1}
        cp["versions_seen"] = {"node": {"n": i}}
        out.append(cp)
    return out


BLOCK = 500  # checkpoints per turn: the savers take turns, so a load that comes and goes hits them alike


class Work:
    """The same calls on any BaseCheckpointSaver, a block at a time; seconds per phase."""

    def __init__(self, saver: Any, thread: str = "bench") -> None:
        self.saver, self.thread = saver, thread
        self.parent: str | None = None
        self.times = {"putS": 0.0, "listS": 0.0, "getS": 0.0}

    def put(self, block: list[dict[str, Any]], first_step: int) -> None:
        t = time.perf_counter()
        for i, cp in enumerate(block, first_step):
            conf: dict[str, Any] = {"configurable": {"thread_id": self.thread, "checkpoint_ns": ""}}
            if self.parent:
                conf["configurable"]["checkpoint_id"] = self.parent
            stored = self.saver.put(conf, cp, {"source": "loop", "step": i, "parents": {}}, {"n": i + 1, "text": i + 1})
            self.saver.put_writes(stored, [("n", i + 1), ("text", "y" * 50)], f"task-{i}")
            self.parent = cp["id"]
        self.times["putS"] += time.perf_counter() - t

    def list(self, cps: list[dict[str, Any]]) -> None:
        t = time.perf_counter()
        listed = list(self.saver.list({"configurable": {"thread_id": self.thread, "checkpoint_ns": ""}}))
        self.times["listS"] += time.perf_counter() - t
        assert len(listed) == len(cps) and listed[0].checkpoint["id"] == cps[-1]["id"]
        assert len(listed[-1].pending_writes) == 2

    def get(self, block: list[dict[str, Any]]) -> None:
        t = time.perf_counter()
        for cp in block:
            tup = self.saver.get_tuple({"configurable": {"thread_id": self.thread, "checkpoint_ns": "",
                                                         "checkpoint_id": cp["id"]}})
            assert tup is not None and len(tup.pending_writes) == 2
        latest = self.saver.get_tuple({"configurable": {"thread_id": self.thread, "checkpoint_ns": ""}})
        self.times["getS"] += time.perf_counter() - t
        assert latest is not None and latest.checkpoint["id"] == self.parent


MODES = {  # label: sessionmemd's options
    "periodic": ["--durability", "periodic"],
    "always": ["--durability", "always"],
    "fsync": ["--durability", "always", "--fsync"],
}


def run(tmp: Path, n: int) -> dict[str, Any]:
    """Every saver does the whole work; they take turns block by block (put, then
    list, then get), so each phase's ratio compares the same minutes of the machine."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    from sessionmem.integrations.langgraph import SessionmemSaver

    cps = checkpoints(n)
    conn = sqlite3.connect(tmp / "lg-sqlite.db", check_same_thread=False)
    base = SqliteSaver(conn)
    base.setup()
    daemons = {m: bench.sessionmemd(tmp, f"lg-{m}", *opts) for m, opts in MODES.items()}
    ours = {m: SessionmemSaver(project=tmp, socket=d.sock, autostart=False) for m, d in daemons.items()}
    works = {"sqliteSaver": Work(base), **{f"sessionmem_{m}": Work(s) for m, s in ours.items()}}
    try:
        blocks = [(i, cps[i:i + BLOCK]) for i in range(0, n, BLOCK)]
        for i, block in blocks:
            for w in works.values():
                w.put(block, i)
        for w in works.values():
            w.list(cps)
        for _, block in blocks:
            for w in works.values():
                w.get(block)
    finally:
        for s in ours.values():
            s.close()
        for d in daemons.values():
            d.stop()
        conn.close()
    out: dict[str, Any] = {"checkpoints": n, "block": BLOCK}
    for name, w in works.items():
        out[name] = {**w.times, "totalS": sum(w.times.values())}
    for m in MODES:
        out[f"ratio_{m}"] = {k: out[f"sessionmem_{m}"][k] / out["sqliteSaver"][k] for k in out["sqliteSaver"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lgbench-") as tmp:
        figures = run(Path(tmp), a.n)
    print(f"{a.n} checkpoints (+ 2 pending writes each), one thread; seconds, and ours / SqliteSaver")
    print(f"{'phase':<8}{'SqliteSaver':>12}" + "".join(f"{'ours ' + m:>15}{'ratio':>7}" for m in MODES))
    for phase in ("putS", "listS", "getS", "totalS"):
        print(f"{phase[:-1]:<8}{figures['sqliteSaver'][phase]:>12.3f}" + "".join(
            f"{figures['sessionmem_' + m][phase]:>15.3f}{figures['ratio_' + m][phase]:>7.2f}" for m in MODES))
    if a.json:
        a.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
