"""sessionmem benchmarks: one command, a table on stdout, the figures as JSON.

    python benchmarks/bench.py                # full run (1k..1M messages), a few minutes
    python benchmarks/bench.py --quick        # smaller sizes and counts, ~1 minute
    python benchmarks/bench.py --json out.json

Throughput is reported as a ratio against a floor measured in the same run (a
minimal uvloop + msgspec JSON-RPC server, benchmarks/floor_server.py, sent the same
request bytes), because absolute figures drift on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PY = sys.executable

MIX = [
    ("addMessage", {"role": "user", "content": "x" * 200}),
    ("getRecentMessages", {"count": 20}),
    ("setContext", {"key": "k", "value": {"step": 3, "files": ["a.py", "b.py"]}}),
    ("getContext", {"key": "k"}),
]


# -- processes ------------------------------------------------------------------------------
def code_of(rev: str, into: Path) -> dict[str, str]:
    """The daemon's code at git revision ``rev``, unpacked under ``into``: the env
    (PYTHONPATH) that makes ``python -m sessionmemd`` run it."""
    into.mkdir()
    archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", rev, "daemon", "client"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    # Compiled now, as this checkout's modules are: with PYTHONDONTWRITEBYTECODE set (it
    # is, here) every start would compile them anew (~60 ms of a daemon's start).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(into)], check=True, capture_output=True)
    return {"PYTHONPATH": f"{into / 'daemon'}{os.pathsep}{into / 'client'}"}


def wait_socket(path: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(str(path))
            return
        except OSError:
            time.sleep(0.01)
        finally:
            s.close()
    raise RuntimeError(f"{path} never answered")


class Server:
    def __init__(self, cmd: list[str], sock: Path) -> None:
        self.sock = sock
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_socket(sock, self.proc)

    def rss(self) -> tuple[float, float]:
        """(current, peak) resident set size in MiB."""
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines())
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def sessionmemd(tmp: Path, name: str, *args: str, db: Path | None = None) -> Server:
    sock = tmp / f"{name}.sock"
    cmd = [PY, "-m", "sessionmemd", "--project", str(tmp), "--socket", str(sock),
           "--db", str(db or tmp / f"{name}.db"), "--log-level", "warning", *args]
    return Server(cmd, sock)


def floor(tmp: Path) -> Server:
    sock = tmp / "floor.sock"
    return Server([PY, str(HERE / "floor_server.py"), str(sock)], sock)


# -- clients ------------------------------------------------------------------------------------
def frames(n: int) -> list[bytes]:
    from sessionmem.api import encode_call

    return [encode_call(m, p, i) for i, (m, p) in zip(range(n), (MIX * (n // len(MIX) + 1)))]


def raw_sequential(sock: Path, n: int) -> float:
    """The floor's client: a blocking socket, one frame out, one line back."""
    reqs = frames(n)
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(sock))
    buf = b""
    t = time.perf_counter()
    for f in reqs:
        s.sendall(f)
        while b"\n" not in buf:
            buf += s.recv(65536)
        buf = buf[buf.index(b"\n") + 1 :]
    dt = time.perf_counter() - t
    s.close()
    return n / dt


def session_sequential(sock: Path, n: int) -> tuple[float, list[float]]:
    from sessionmem import Session

    lat = []
    with Session(project=sock.parent, socket=sock, autostart=False) as s:
        calls: list[Callable[[], Any]] = [
            lambda: s.add_message("user", "x" * 200),
            lambda: s.get_recent_messages(20),
            lambda: s.set_context("k", {"step": 3, "files": ["a.py", "b.py"]}),
            lambda: s.get_context("k"),
        ]
        pc = time.perf_counter
        t = pc()
        for i in range(n):
            t0 = pc()
            calls[i & 3]()
            lat.append(pc() - t0)
        dt = pc() - t
    return n / dt, lat


def session_writes(sock: Path, n: int) -> float:
    from sessionmem import Session

    with Session(project=sock.parent, socket=sock, autostart=False) as s:
        t = time.perf_counter()
        for _ in range(n):
            s.add_message("user", "x" * 200)
        return n / (time.perf_counter() - t)


def raw_pipelined(sock: Path, n: int, batch: int = 0) -> float:
    reqs = frames(n)
    if batch:
        payload = b"".join(b"[" + b",".join(f.rstrip(b"\n") for f in reqs[i : i + batch]) + b"]\n"
                           for i in range(0, n, batch))
        expect = (n + batch - 1) // batch
    else:
        payload = b"".join(reqs)
        expect = n
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(sock))
    t = time.perf_counter()
    sender = threading.Thread(target=s.sendall, args=(payload,))
    sender.start()
    got = 0
    while got < expect:
        chunk = s.recv(1 << 20)
        if not chunk:
            raise RuntimeError("connection closed")
        got += chunk.count(b"\n")
    dt = time.perf_counter() - t
    sender.join()
    s.close()
    return n / dt


def multi_process(sock: Path, procs: int, n: int, kind: str) -> float:
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[1]); import bench; from pathlib import Path;"
        "sock = Path(sys.argv[2]); n = int(sys.argv[3]);"
        "f = {'raw': bench.raw_sequential, 'writes': bench.session_writes,"
        " 'session': lambda s, k: bench.session_sequential(s, k)[0]}[sys.argv[4]];"
        "sys.stdin.readline(); t = time.time(); f(sock, n); print(t, time.time())"
    )
    ps = [subprocess.Popen([PY, "-c", code, str(HERE), str(sock), str(n), kind], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    time.sleep(1.0)  # let them all import before the start line
    for p in ps:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    spans = [tuple(map(float, p.communicate()[0].split())) for p in ps]
    start = min(s for s, _ in spans)
    end = max(e for _, e in spans)
    return procs * n / (end - start)


def dispatch_cost(n: int = 50_000) -> dict[str, float]:
    """In-process, no sockets: microseconds per request of the mix through the daemon's
    dispatcher and state, against the floor server's decode + encode of the same bytes."""
    import msgspec

    from sessionmem import protocol as p
    from sessionmemd.changelog import ChangeLog
    from sessionmemd.feed import Feed
    from sessionmemd.host import SessionHost
    from sessionmemd.loader import Loader
    from sessionmemd.methods import build_handlers
    from sessionmemd.rpc import Dispatcher
    from sessionmemd.state import SessionState

    class Shell:
        def hello(self, params: Any) -> None:
            return None

    host = SessionHost(SessionState("bench", 1), {}, 0, ChangeLog(0), lambda: 1, lambda: "x")
    host.reserved = 1 << 62
    feed = Feed(host.log, publish_when_committed=False)
    loader = Loader(host, lambda: None)  # type: ignore[arg-type,return-value]  # every session in memory
    d = Dispatcher(build_handlers(host, loader, feed, Shell(), 64))  # type: ignore[arg-type]
    fs = [f.rstrip(b"\n") for f in frames(1000)]
    d.handle_frames(fs)
    t = time.perf_counter()
    for _ in range(n // 1000):
        d.handle_frames(fs)
    ours = (time.perf_counter() - t) / n
    dec, enc = msgspec.json.Decoder(p.Request).decode, msgspec.json.Encoder().encode
    t = time.perf_counter()
    for _ in range(n // 1000):
        for f in fs:
            enc(p.Response(id=dec(f).id, result=None))
    floor_s = (time.perf_counter() - t) / n
    return {"dispatchUs": ours * 1e6, "floorUs": floor_s * 1e6}


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


# -- persistence ------------------------------------------------------------------------------
def make_db(path: Path, n: int) -> None:
    """A database holding one session of n messages of ~200 B, written the fast way."""
    from sessionmemd.batch import Batch
    from sessionmemd.state import SessionState
    from sessionmemd.store import Store

    store = Store(path)
    st = SessionState("bench-session", 1)
    store.write([Batch.of(st.drain())])  # type: ignore[arg-type]
    c = sqlite3.connect(path)
    rows = (("bench-session", "user" if i % 2 else "assistant", f"{i:08d} " + "x" * 191, 1_700_000_000_000 + i)
            for i in range(n))
    with c:
        c.executemany("INSERT INTO session_messages (session_id, role, content, timestamp) VALUES (?, ?, ?, ?)", rows)
    c.close()
    store.close()


def snapshot_costs(tmp: Path, n: int) -> dict[str, float]:
    from sessionmemd.batch import Batch
    from sessionmemd.state import SessionState
    from sessionmemd.store import Store

    db = tmp / f"snap-{n}.db"
    store = Store(db)
    st = SessionState("sid", 1)
    for i in range(n):
        st.add_message("user", f"{i:08d} " + "x" * 191, i)
    t = time.perf_counter()
    ch = st.drain()
    drain_s = time.perf_counter() - t
    store.write([Batch.of(ch)])  # type: ignore[arg-type]
    first = time.perf_counter() - t
    one = []
    for i in range(20):
        st.add_message("user", "one more", i)
        t = time.perf_counter()
        store.write([Batch.of(st.drain())])  # type: ignore[arg-type]
        one.append(time.perf_counter() - t)
    store.close()
    return {"firstMs": first * 1000, "firstDrainMs": drain_s * 1000, "afterOneChangeMs": statistics.median(one) * 1000}


def original_rewrite_cost(tmp: Path, n: int) -> float:
    """The original's snapshot: delete the session's rows and insert them all again."""
    db = tmp / f"orig-{n}.db"
    make_db(db, n)
    c = sqlite3.connect(db)
    rows = c.execute("SELECT session_id, role, content, timestamp FROM session_messages").fetchall()
    t = time.perf_counter()
    with c:
        c.execute("DELETE FROM session_messages WHERE session_id = 'bench-session'")
        c.executemany("INSERT INTO session_messages (session_id, role, content, timestamp) VALUES (?, ?, ?, ?)", rows)
    dt = time.perf_counter() - t
    c.close()
    return dt * 1000


def restore_costs(tmp: Path, n: int) -> dict[str, float]:
    from sessionmemd.store import Store

    db = tmp / f"restore-{n}.db"
    make_db(db, n)
    c = sqlite3.connect(db)
    t = time.perf_counter()
    rows = c.execute("SELECT role, content, timestamp FROM session_messages WHERE session_id = ? ORDER BY rowid",
                     ("bench-session",)).fetchall()
    bare = time.perf_counter() - t
    assert len(rows) == n
    del rows
    c.close()
    store = Store(db, tail=None)  # the whole history: what a restore reads
    t = time.perf_counter()
    r = store.load()
    ours = time.perf_counter() - t
    assert r is not None and len(r.messages) == n
    store.close()
    return {"restoreMs": ours * 1000, "bareFetchMs": bare * 1000, "ratio": ours / bare}


def stall_during_snapshot(tmp: Path, n: int) -> dict[str, float]:
    """Longest wait of a small request while a first snapshot of n messages is written."""
    d = sessionmemd(tmp, f"stall{n}", "--snapshot-interval", "3600")
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(d.sock))
        note = b'{"jsonrpc":"2.0","method":"addMessage","params":{"role":"user","content":"' + b"x" * 200 + b'"}}\n'
        for _ in range(n // 10_000):
            s.sendall(note * 10_000)
        s.sendall(b'{"jsonrpc":"2.0","method":"getSessionId","id":1}\n')
        buf = b""
        while b"\n" not in buf:
            buf += s.recv(65536)
        from sessionmem import Session

        with Session(project=tmp, socket=d.sock, autostart=False) as probe:
            done = threading.Event()
            took: list[float] = []

            def snap() -> None:
                t = time.perf_counter()
                with Session(project=tmp, socket=d.sock, autostart=False) as w:
                    w.snapshot()
                took.append(time.perf_counter() - t)
                done.set()

            th = threading.Thread(target=snap)
            waits = []
            th.start()
            while not done.is_set():
                t0 = time.perf_counter()
                probe.get_session_id()
                waits.append(time.perf_counter() - t0)
            th.join()
        s.close()
        return {"snapshotMs": took[0] * 1000, "maxWaitMs": max(waits) * 1000,
                "p99WaitMs": percentile(waits, 0.99) * 1000, "probes": len(waits)}
    finally:
        d.stop()


def memory(tmp: Path, n: int) -> dict[str, float]:
    db = tmp / f"mem-{n}.db"
    make_db(db, n)
    d = sessionmemd(tmp, f"mem{n}", db=db)
    try:
        from sessionmem import Session

        with Session(project=tmp, socket=d.sock, autostart=False) as s:
            assert s.get_stats().messagesCount == n
        rss, peak = d.rss()
        return {"rssMiB": rss, "peakMiB": peak}
    finally:
        d.stop()


def cli_wall(tmp: Path, runs: int) -> dict[str, float]:
    d = sessionmemd(tmp, "cli")
    try:
        env = dict(os.environ, SESSIONMEM_SOCKET=str(d.sock), SESSIONMEM_PROJECT=str(tmp))
        # As on a user's machine, where bytecode is cached: without that every run would
        # compile sessionmem's modules anew (this workplace sets PYTHONDONTWRITEBYTECODE).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        exe = Path(PY).parent / "sessionmem"
        subprocess.run([str(exe), "call", "getSessionId"], env=env, stdout=subprocess.DEVNULL, check=True)

        def once(cmd: list[str]) -> float:
            t = time.perf_counter()
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
            return time.perf_counter() - t

        bases, calls = [], []
        for _ in range(runs):  # interleaved, so drift hits both alike
            bases.append(once([PY, "-c", "pass"]))
            calls.append(once([str(exe), "call", "getSessionId"]))
        base, call = statistics.median(bases), statistics.median(calls)
        return {"pythonPassMs": base * 1000, "cliCallMs": call * 1000, "ratio": call / base}
    finally:
        d.stop()


# -- the run --------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes and counts")
    ap.add_argument("--json", type=Path, default=HERE / "out" / "results.json")
    args = ap.parse_args()
    q = args.quick
    seq_n = 5_000 if q else 20_000
    pipe_n = 50_000 if q else 200_000
    mp_n = 2_000 if q else 5_000
    sizes = [1_000, 10_000, 100_000] if q else [1_000, 10_000, 100_000, 1_000_000]
    res: dict[str, Any] = {"quick": q, "python": sys.version.split()[0], "cpus": os.cpu_count()}
    rows: list[tuple[str, str, str, str]] = []

    def row(name: str, value: str, baseline: str, verdict: str = "") -> None:
        rows.append((name, value, baseline, verdict))
        print(f"{name:48} {value:>22} {baseline:>26} {verdict}", flush=True)

    def target(ok: bool) -> str:
        return "meets target" if ok else "MISSES target"

    with tempfile.TemporaryDirectory(prefix="sm-bench-") as t:
        tmp = Path(t)
        fl = floor(tmp)
        d = sessionmemd(tmp, "main")
        try:
            # Warm both up, then alternate so drift hits both alike.
            raw_sequential(fl.sock, 2000), session_sequential(d.sock, 2000)
            f_seq, s_seq, r_seq = [], [], []
            for _ in range(3):
                f_seq.append(raw_sequential(fl.sock, seq_n))
                r, lat = session_sequential(d.sock, seq_n)
                s_seq.append(r)
                r_seq.append(raw_sequential(d.sock, seq_n))
            fs, ss, rs = max(f_seq), max(s_seq), max(r_seq)
            res["sequential"] = {"floorOps": fs, "sessionOps": ss, "ratio": ss / fs, "rawClientOps": rs,
                                 "rawClientRatio": rs / fs,
                                 "p50Us": percentile(lat, 0.5) * 1e6, "p99Us": percentile(lat, 0.99) * 1e6}
            row("sequential round trips via Session", f"{ss:,.0f}/s ({ss / fs:.2f}x)", f"floor {fs:,.0f}/s", target(ss / fs >= 0.9))
            row("  same bytes, floor's raw client -> sessionmemd", f"{rs:,.0f}/s ({rs / fs:.2f}x)", "(daemon cost alone)", "")
            row("  latency p50 / p99", f"{res['sequential']['p50Us']:.0f} / {res['sequential']['p99Us']:.0f} us", "", "")
            fp = max(raw_pipelined(fl.sock, pipe_n) for _ in range(2))
            sp = max(raw_pipelined(d.sock, pipe_n) for _ in range(2))
            res["pipelined"] = {"floorOps": fp, "daemonOps": sp, "ratio": sp / fp}
            row("pipelined, one connection", f"{sp:,.0f}/s ({sp / fp:.2f}x)", f"floor {fp:,.0f}/s", target(sp / fp >= 0.6))
            dc = dispatch_cost()
            res["dispatch"] = dc
            row("  per request in-process, no I/O", f"{dc['dispatchUs']:.2f} us", f"floor {dc['floorUs']:.2f} us", "")
            fb = raw_pipelined(fl.sock, pipe_n, batch=100)
            sb = raw_pipelined(d.sock, pipe_n, batch=100)
            res["batched"] = {"floorOps": fb, "daemonOps": sb, "ratio": sb / fb}
            row("batches of 100, one connection", f"{sb:,.0f}/s ({sb / fb:.2f}x)", f"floor {fb:,.0f}/s", "")
            fm = multi_process(fl.sock, 8, mp_n, "raw")
            sm = multi_process(d.sock, 8, mp_n, "session")
            res["processes8"] = {"floorOps": fm, "sessionOps": sm, "ratio": sm / fm}
            row("8 client processes via Session", f"{sm:,.0f}/s ({sm / fm:.2f}x)", f"floor {fm:,.0f}/s", target(sm / fm >= 0.85))
        finally:
            d.stop()
            fl.stop()

        # durability=always against periodic, sequential writes
        per = sessionmemd(tmp, "periodic")
        alw = sessionmemd(tmp, "always", "--durability", "always")
        try:
            session_writes(per.sock, 2000), session_writes(alw.sock, 2000)
            wp = max(session_writes(per.sock, seq_n // 2) for _ in range(3))
            wa = max(session_writes(alw.sock, seq_n // 2) for _ in range(3))
            mp_ = multi_process(per.sock, 8, mp_n // 2, "writes")
            ma_ = multi_process(alw.sock, 8, mp_n // 2, "writes")
        finally:
            per.stop()
            alw.stop()
        res["always"] = {"periodicOps": wp, "alwaysOps": wa, "ratio": wa / wp,
                         "periodicOps8": mp_, "alwaysOps8": ma_, "ratio8": ma_ / mp_}
        row("sequential writes, durability=always", f"{wa:,.0f}/s ({wa / wp:.2f}x)", f"periodic {wp:,.0f}/s", target(wa / wp >= 0.7))
        row("  8 writer processes, durability=always", f"{ma_:,.0f}/s ({ma_ / mp_:.2f}x)", f"periodic {mp_:,.0f}/s", "")

        res["snapshot"] = {}
        for n in sizes:
            c = snapshot_costs(tmp, n)
            res["snapshot"][n] = c
            verdict = target(c["afterOneChangeMs"] <= 2) if n == 1_000_000 else ""
            row(f"snapshot after one change, {n:,} msgs", f"{c['afterOneChangeMs']:.2f} ms", f"first {c['firstMs']:,.0f} ms", verdict)
        big = sizes[-1]
        orig = original_rewrite_cost(tmp, big)
        res["originalRewriteMs"] = {big: orig}
        row(f"original's full rewrite, {big:,} msgs", f"{orig:,.0f} ms", "(what it did every 30 s)", "")

        res["restore"] = {}
        for n in sizes:
            c = restore_costs(tmp, n)
            res["restore"][n] = c
            verdict = target(c["ratio"] <= 1.5) if n == 1_000_000 else ""
            row(f"restore {n:,} msgs", f"{c['restoreMs']:,.0f} ms ({c['ratio']:.2f}x)", f"bare fetch {c['bareFetchMs']:,.0f} ms", verdict)

        st = stall_during_snapshot(tmp, big)
        res["stall"] = {big: st}
        row(f"longest request wait during {big:,}-msg snapshot", f"{st['maxWaitMs']:.1f} ms", f"snapshot {st['snapshotMs']:,.0f} ms", target(st["maxWaitMs"] <= 20))

        res["memory"] = {}
        for n in sizes:
            m = memory(tmp, n)
            res["memory"][n] = m
            verdict = target(m["rssMiB"] <= 350) if n == 1_000_000 else ""
            row(f"daemon RSS after restoring {n:,} msgs", f"{m['rssMiB']:,.0f} MiB", f"peak {m['peakMiB']:,.0f} MiB", verdict)

        cl = cli_wall(tmp, 10 if q else 20)
        res["cli"] = cl
        row("`sessionmem call getSessionId` wall time", f"{cl['cliCallMs']:.0f} ms ({cl['ratio']:.2f}x)", f"python -c pass {cl['pythonPassMs']:.0f} ms", target(cl["ratio"] <= 2))

    res["table"] = rows
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=2, default=str))
    print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
