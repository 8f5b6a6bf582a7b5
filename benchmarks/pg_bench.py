"""Writes through the PostgreSQL store ÷ the SQLite file, both durability ``always``
(issue 17's first figure), in one run on this machine: one writer sending
``addMessage`` one at a time, and 8 writers at once on one daemon (their commits
grouped per loop turn); then several daemons on one project (issue 17, §12): 8 writers
on 2 daemons of one project key ÷ 8 writers on one SQLite daemon, and the feed's
latency from a write to a watcher's notification when writer and watcher are on two
daemons ÷ on the same daemon. The PostgreSQL server is a throwaway cluster on a Unix socket
(tests/pgcluster.py, fsync off as in the tests; the SQLite file is not fsynced either:
the ratio compares the stores' round trips, not the disks).

    .venv/bin/python benchmarks/pg_bench.py [--n 3000] [--json out.json]

With ``--before REV`` the PostgreSQL figures are also measured for the daemon of git
revision REV (its ``daemon`` and ``client`` folders unpacked from ``git archive``, run
with PYTHONPATH), in the same run on the same cluster: ``--rounds`` rounds, each
timing REV's daemons and this tree's one after the other (the order swapped every
round, a fresh database each), so the machine's load, which moves by the second
here, falls on both alike; each figure is the median of its rounds, with this tree's
÷ REV's; and once a round SQLite ``always`` (this tree's), for the issue's ratios of
both.

    .venv/bin/python benchmarks/pg_bench.py --before main --rounds 3 [--n 3000]

``--durable``: the production comparison, labelled so: SQLite ``always`` with
``--fsync`` (``synchronous=FULL``: every commit fsynced) ÷ a throwaway cluster with
``fsync=on``, ``synchronous_commit=on`` (PostgreSQL's defaults: every commit flushed to
its WAL), both under /tmp on the same disk. Without it, as above (no fsync either side).

    .venv/bin/python benchmarks/pg_bench.py --durable [--n 3000] [--before main --rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench import code_of, sessionmemd  # noqa: E402
from pgcluster import Cluster  # noqa: E402


def writes(sock: Path, n: int, tag: str) -> float:
    """Sequential addMessage calls on one connection; writes per second."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(sock))
    frame = (json.dumps({"jsonrpc": "2.0", "id": 1, "method": "addMessage",
                         "params": {"role": "user", "content": f"{tag} " + "x" * 200}}) + "\n").encode()
    buf = b""
    t = time.perf_counter()
    for _ in range(n):
        s.sendall(frame)
        while b"\n" not in buf:
            buf += s.recv(65536)
        line, buf = buf.split(b"\n", 1)
        assert b'"error"' not in line, line
    dt = time.perf_counter() - t
    s.close()
    return n / dt


def parallel_on(socks: list[Path], n: int, writers: int) -> float:
    """``writers`` connections spread over the daemons at ``socks``; total writes/s."""
    threads = [threading.Thread(target=writes, args=(socks[i % len(socks)], n // writers, f"w{i}"))
               for i in range(writers)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return (n // writers * writers) / (time.perf_counter() - t)


def feed_latency(writer: Path, watcher: Path, n: int) -> list[float]:
    """Seconds from sending an addMessage on ``writer`` to its ``changed`` notification
    arriving on a watch on ``watcher``, one at a time."""
    w = socket.socket(socket.AF_UNIX)
    w.connect(str(watcher))
    w.sendall(b'{"jsonrpc":"2.0","id":1,"method":"watch"}\n')
    wbuf = b""
    while b"\n" not in wbuf:
        wbuf += w.recv(65536)
    wbuf = wbuf.split(b"\n", 1)[1]
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(writer))
    out: list[float] = []
    buf = b""
    for i in range(n):
        frame = (json.dumps({"jsonrpc": "2.0", "id": i, "method": "addMessage",
                             "params": {"role": "user", "content": f"lat{i}"}}) + "\n").encode()
        t = time.perf_counter()
        s.sendall(frame)
        want = f'"content":"lat{i}"'.encode()
        while True:  # changes the watcher's daemon had not applied when it began come first
            while b"\n" not in wbuf:
                wbuf += w.recv(65536)
            line, wbuf = wbuf.split(b"\n", 1)
            if want in line:
                break
        out.append(time.perf_counter() - t)
        while b"\n" not in buf:  # the writer's own reply
            buf += s.recv(65536)
        buf = buf.split(b"\n", 1)[1]
    s.close()
    w.close()
    return out


def p50(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def daemon(tmp: Path, name: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """bench.sessionmemd, run with ``env`` added to the environment (another revision)."""
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        return sessionmemd(tmp, name, *args)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def shared(url: str, tmp: Path, n: int, env: dict[str, str] | None = None) -> dict[str, float]:
    """Two daemons (own folders, sockets) of one project key in PostgreSQL."""
    out: dict[str, float] = {}
    ds = []
    for name in ("hostA", "hostB"):
        (tmp / name).mkdir()
        ds.append(daemon(tmp / name, name, "--store", url, "--project-key", "shared-bench", env=env))
    try:
        a, b = (d.sock for d in ds)
        writes(a, 200, "warm")
        writes(b, 200, "warm")
        out["postgresql8WritersOn2DaemonsPerSec"] = round(parallel_on([a, b], n, 8), 1)
        same = feed_latency(a, a, min(300, n))
        cross = feed_latency(b, a, min(300, n))
        out["feedSameDaemonP50Ms"] = round(p50(same) * 1000, 3)
        out["feedCrossDaemonP50Ms"] = round(p50(cross) * 1000, 3)
    finally:
        for d in ds:
            d.stop()
    return out


def sqlite_args(durable: bool) -> tuple[str, ...]:
    return ("--durability", "always", "--fsync") if durable else ("--durability", "always")


def run(n: int, durable: bool = False) -> dict[str, Any]:
    cluster = Cluster(durable=durable)
    cluster.start()
    out: dict[str, Any] = {"variant": "durable" if durable else "no fsync"}
    try:
        # The settings the server runs with, read back from it: the label is checked.
        out["postgresqlFsync"] = cluster.psql("SHOW fsync")
        out["postgresqlSynchronousCommit"] = cluster.psql("SHOW synchronous_commit")
        url = cluster.create_database("bench")
        with tempfile.TemporaryDirectory() as tmp:
            for name, args in (("sqlite", sqlite_args(durable)),
                               ("postgresql", ("--store", url, "--project-key", "bench"))):
                d = sessionmemd(Path(tmp), name, *args)
                try:
                    writes(d.sock, 200, "warm")
                    out[f"{name}SequentialPerSec"] = round(writes(d.sock, n, "seq"), 1)
                    out[f"{name}8WritersPerSec"] = round(parallel_on([d.sock], n, 8), 1)
                finally:
                    d.stop()
            out.update(shared(cluster.create_database("bench_shared"), Path(tmp), n))
    finally:
        cluster.destroy()
    out["sequentialRatio"] = round(out["postgresqlSequentialPerSec"] / out["sqliteSequentialPerSec"], 3)
    out["writers8Ratio"] = round(out["postgresql8WritersPerSec"] / out["sqlite8WritersPerSec"], 3)
    out["writers8On2DaemonsRatio"] = round(out["postgresql8WritersOn2DaemonsPerSec"] / out["sqlite8WritersPerSec"], 3)
    out["feedCrossOverSameRatio"] = round(out["feedCrossDaemonP50Ms"] / out["feedSameDaemonP50Ms"], 3)
    return out


def postgresql(cluster: Cluster, tmp: Path, n: int, env: dict[str, str] | None) -> dict[str, float]:
    """The PostgreSQL figures of one daemon's code (``env``: another revision's), each
    part on a fresh database: one daemon, then two of one project key."""
    tmp.mkdir()
    out: dict[str, float] = {}
    d = daemon(tmp, "pg", "--store", cluster.create_database(tmp.name), "--project-key", "bench", env=env)
    try:
        writes(d.sock, 200, "warm")
        out["postgresqlSequentialPerSec"] = round(writes(d.sock, n, "seq"), 1)
        out["postgresql8WritersPerSec"] = round(parallel_on([d.sock], n, 8), 1)
    finally:
        d.stop()
    out.update(shared(cluster.create_database(tmp.name + "_shared"), tmp, n, env))
    return out


def before_after(rev: str, n: int, rounds: int, durable: bool = False) -> dict[str, Any]:
    """The PostgreSQL figures of REV's daemon and of this tree's, alternately, in one run."""
    cluster = Cluster(durable=durable)
    cluster.start()
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": [], "sqlite": []}
    try:
        settings = {"postgresqlFsync": cluster.psql("SHOW fsync"),
                    "postgresqlSynchronousCommit": cluster.psql("SHOW synchronous_commit")}
        with tempfile.TemporaryDirectory() as td:
            tmp = Path(td)
            env = code_of(rev, tmp / "before-code")
            for r in range(rounds):
                # The SQLite baseline (this tree's, durability always) once a round: the
                # issue's ratios for both revisions.
                d = sessionmemd(tmp, f"sqlite{r}", *sqlite_args(durable))
                try:
                    writes(d.sock, 200, "warm")
                    runs["sqlite"].append({"sqliteSequentialPerSec": round(writes(d.sock, n, "seq"), 1),
                                           "sqlite8WritersPerSec": round(parallel_on([d.sock], n, 8), 1)})
                finally:
                    d.stop()
                print("sqlite", r, json.dumps(runs["sqlite"][-1]), flush=True)
                for which in (("before", "after") if r % 2 == 0 else ("after", "before")):
                    got = postgresql(cluster, tmp / f"{which}{r}", n, env if which == "before" else None)
                    print(which, r, json.dumps(got), flush=True)
                    runs[which].append(got)
    finally:
        cluster.destroy()
    out: dict[str, Any] = {"before": rev, "variant": "durable" if durable else "no fsync", **settings, "rounds": runs}
    for k in runs["after"][0]:
        b = statistics.median(x[k] for x in runs["before"])
        a = statistics.median(x[k] for x in runs["after"])
        out[k] = {"before": b, "after": a, "afterOverBefore": round(a / b, 3)}
    for k in runs["sqlite"][0]:
        out[k] = statistics.median(x[k] for x in runs["sqlite"])
    # The ratios, each round's PostgreSQL figure over the same round's SQLite one.
    for name, pg, lite in (("sequentialRatio", "postgresqlSequentialPerSec", "sqliteSequentialPerSec"),
                           ("writers8On2DaemonsRatio", "postgresql8WritersOn2DaemonsPerSec", "sqlite8WritersPerSec")):
        out[name] = {which: round(statistics.median(x[pg] / y[lite] for x, y in zip(runs[which], runs["sqlite"])), 3)
                     for which in ("before", "after")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--json")
    ap.add_argument("--before", metavar="REV", default=None,
                    help="the PostgreSQL figures of git revision REV's daemon and this tree's, alternately")
    ap.add_argument("--rounds", type=int, default=3, help="with --before: rounds of both")
    ap.add_argument("--durable", action="store_true",
                    help="SQLite always + --fsync ÷ PostgreSQL with fsync=on, synchronous_commit=on")
    a = ap.parse_args()
    if a.before is not None:
        compared = before_after(a.before, a.n, a.rounds, a.durable)
        print(json.dumps({k: v for k, v in compared.items() if k != "rounds"}, indent=2))
        if a.json:
            Path(a.json).write_text(json.dumps(compared))
        return
    figures = run(a.n, a.durable)
    print(json.dumps(figures, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(figures))


if __name__ == "__main__":
    main()
