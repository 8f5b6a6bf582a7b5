"""LangGraph checkpoints: SessionmemSaver vs LangGraph's own SqliteSaver, same work.

    python benchmarks/langgraph_bench.py             # 10,000 checkpoints
    python benchmarks/langgraph_bench.py --n 500     # smaller (the smoke test's size)

The work, on each saver in turn (one thread, root namespace): put N checkpoints as a
graph does (each the child of the last, its channel values a counter and a 200-byte
text, then ``put_writes`` of its task's two writes); then read them back: ``list`` the
whole thread (newest first, each with its pending writes), ``get_tuple`` of every
checkpoint by id, and the latest. Ours runs against a real sessionmemd three times:
``--durability periodic`` (the default: a change is on disk within a second),
``always`` (acknowledged once committed; SQLite ``synchronous=NORMAL``: survives a
crash of any process, not a power loss) and ``always --fsync`` (every commit fsynced:
what SqliteSaver's commits are, WAL with SQLite's default ``synchronous=FULL``).
SqliteSaver on a file, with its ``setup()``'s settings. Figures are seconds per phase
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


def work(saver: Any, cps: list[dict[str, Any]], thread: str) -> dict[str, float]:
    """The same calls on any BaseCheckpointSaver; seconds per phase."""
    t0 = time.perf_counter()
    parent: str | None = None
    for i, cp in enumerate(cps):
        conf: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        if parent:
            conf["configurable"]["checkpoint_id"] = parent
        stored = saver.put(conf, cp, {"source": "loop", "step": i, "parents": {}}, {"n": i + 1, "text": i + 1})
        saver.put_writes(stored, [("n", i + 1), ("text", "y" * 50)], f"task-{i}")
        parent = cp["id"]
    t1 = time.perf_counter()
    listed = list(saver.list({"configurable": {"thread_id": thread, "checkpoint_ns": ""}}))
    t2 = time.perf_counter()
    for cp in cps:
        tup = saver.get_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": "", "checkpoint_id": cp["id"]}})
        assert tup is not None and len(tup.pending_writes) == 2
    latest = saver.get_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}})
    t3 = time.perf_counter()
    assert len(listed) == len(cps) and listed[0].checkpoint["id"] == cps[-1]["id"]
    assert len(listed[-1].pending_writes) == 2 and latest is not None and latest.checkpoint["id"] == cps[-1]["id"]
    return {"putS": t1 - t0, "listS": t2 - t1, "getS": t3 - t2, "totalS": t3 - t0}


def sqlite_saver(tmp: Path, cps: list[dict[str, Any]]) -> dict[str, float]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(tmp / "lg-sqlite.db", check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        saver.setup()
        return work(saver, cps, "bench")
    finally:
        conn.close()


MODES = {  # label: sessionmemd's options
    "periodic": ["--durability", "periodic"],
    "always": ["--durability", "always"],
    "fsync": ["--durability", "always", "--fsync"],
}


def sessionmem_saver(tmp: Path, cps: list[dict[str, Any]], mode: str) -> dict[str, float]:
    from sessionmem.integrations.langgraph import SessionmemSaver

    d = bench.sessionmemd(tmp, f"lg-{mode}", *MODES[mode])
    try:
        with SessionmemSaver(project=tmp, socket=d.sock, autostart=False) as saver:
            return work(saver, cps, "bench")
    finally:
        d.stop()


def run(tmp: Path, n: int) -> dict[str, Any]:
    cps = checkpoints(n)
    base = sqlite_saver(tmp, cps)
    out: dict[str, Any] = {"checkpoints": n, "sqliteSaver": base}
    for mode in MODES:
        ours = sessionmem_saver(tmp, cps, mode)
        out[f"sessionmem_{mode}"] = ours
        out[f"ratio_{mode}"] = {k: ours[k] / base[k] for k in base}
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
