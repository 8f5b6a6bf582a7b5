"""The change feed's cost, as ratios against baselines measured in the same run.

    python benchmarks/feed_bench.py            # ~1.5 minutes (fan-out runs 60 s)
    python benchmarks/feed_bench.py --quick    # ~25 s
    python benchmarks/feed_bench.py --json out.json

* latency: from a writer's acknowledged reply to a watcher's receipt of the change
  (both stamped with CLOCK_MONOTONIC, which every process shares), p50/p99, beside a
  plain sequential round trip (target: p50 <= 1.5x the round trip);
* fan-out: 4 writer processes' total write rate with 100 watchers connected against
  the same writers with none (target >= 0.8x), and the daemon's RSS over the run
  (target: flat; the writers change context values, so the session itself does not grow).
  The 100 watchers are read by this process, on the same machine: on 2 cores, reading
  ~1M notifications a second takes most of a core from the writers and the daemon.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from sessionmem import Session

WATCH = b'{"jsonrpc":"2.0","method":"watch","id":1}\n'


def start_daemon(tmp: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    sock = tmp / "d.sock"
    proc = subprocess.Popen([sys.executable, "-m", "sessionmemd", "--project", str(tmp), "--socket", str(sock),
                             "--db", str(tmp / "s.db"), "--log-level", "warning", *extra])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            Session(project=tmp, socket=sock, autostart=False).close()
            return proc, sock
        except Exception:
            time.sleep(0.02)
    raise RuntimeError("sessionmemd did not start")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# -- latency -------------------------------------------------------------------------------
WATCHER = """
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); n = int(sys.argv[2])
s.sendall(b'{"jsonrpc":"2.0","method":"watch","id":1}\\n')
buf, got = b"", {}
print("ready", flush=True)
while len(got) < n:
    buf += s.recv(1 << 16)
    now = time.monotonic()
    *lines, buf = buf.split(b"\\n")
    for line in lines:
        m = json.loads(line)
        if m.get("method") == "changed":
            got[m["params"]["message"]["content"]] = now
print(json.dumps(got))
"""


def latency(sock: Path, root: Path, n: int) -> dict[str, float]:
    watcher = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WATCHER), str(sock), str(n)],
                               stdout=subprocess.PIPE, text=True)
    assert watcher.stdout is not None and watcher.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    acked: dict[str, float] = {}
    rtt: list[float] = []
    with Session(project=root, socket=sock, autostart=False) as s:
        for _ in range(200):
            s.get_current_task()
        for i in range(n):
            t = time.monotonic()
            s.get_current_task()
            rtt.append(time.monotonic() - t)
            s.add_message("user", f"lat-{i}")
            acked[f"lat-{i}"] = time.monotonic()
            time.sleep(0.002)  # one change at a time: latency, not throughput
    got = json.loads(watcher.communicate(timeout=60)[0])
    lat = [got[k] - acked[k] for k in acked]
    p50_rtt = statistics.median(rtt)
    return {"rttP50Us": p50_rtt * 1e6, "rttP99Us": pct(rtt, 0.99) * 1e6,
            "feedP50Us": statistics.median(lat) * 1e6, "feedP99Us": pct(lat, 0.99) * 1e6,
            "ratioP50": statistics.median(lat) / p50_rtt}


# -- fan-out -------------------------------------------------------------------------------
WRITER = """
import sys, time
from sessionmem import Session
sock, root, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
n = 0
with Session(project=root, socket=sock, autostart=False) as s:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        s.set_context(f"writer-{sock[-12:]}-{id(s)}", n)  # a change that does not grow the session
        n += 1
print(n)
"""


def watchers(sock: Path, count: int) -> tuple[list[socket.socket], selectors.DefaultSelector]:
    sel = selectors.DefaultSelector()
    conns = []
    for _ in range(count):
        c = socket.socket(socket.AF_UNIX)
        c.connect(str(sock))
        c.sendall(WATCH)
        c.setblocking(False)
        sel.register(c, selectors.EVENT_READ)
        conns.append(c)
    return conns, sel


def fan_out(sock: Path, root: Path, pid: int, n_watchers: int, seconds: float) -> dict[str, Any]:
    conns, sel = watchers(sock, n_watchers) if n_watchers else ([], selectors.DefaultSelector())
    writers = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), str(sock), str(root), str(seconds)],
                                stdout=subprocess.PIPE, text=True) for _ in range(4)]
    received = 0
    rss: list[float] = []
    next_sample = time.monotonic()
    while any(w.poll() is None for w in writers):
        for key, _ in sel.select(timeout=0.05):
            data = key.fileobj.recv(1 << 20)  # type: ignore[union-attr]
            received += data.count(b"\n")
        if time.monotonic() >= next_sample:
            rss.append(rss_mib(pid))
            next_sample += 1.0
    writes = sum(int(w.communicate()[0]) for w in writers)
    for c in conns:
        c.close()
    return {"writesPerSec": writes / seconds, "notificationsReceived": received, "rssMiB": rss}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    seconds = 8.0 if args.quick else 60.0
    with tempfile.TemporaryDirectory(prefix="sm-feed-") as tmp:
        root = Path(tmp)
        proc, sock = start_daemon(root)
        try:
            lat = latency(sock, root, 300 if args.quick else 2000)
            base = fan_out(sock, root, proc.pid, 0, seconds / 4 if args.quick else 15.0)
            fan = fan_out(sock, root, proc.pid, 100, seconds)
        finally:
            proc.terminate()
            proc.wait(30)
    ratio = fan["writesPerSec"] / base["writesPerSec"]
    rss = fan["rssMiB"]
    half = max(1, len(rss) // 2)
    growth = (max(rss[half:]) - max(rss[:half])) if len(rss) > 1 else 0.0
    print(f"feed latency p50 / p99              {lat['feedP50Us']:8.0f} / {lat['feedP99Us']:.0f} us   "
          f"({lat['ratioP50']:.2f}x the round trip; target <= 1.5x)")
    print(f"plain round trip p50 / p99          {lat['rttP50Us']:8.0f} / {lat['rttP99Us']:.0f} us")
    print(f"4 writers, no watcher               {base['writesPerSec']:8.0f} writes/s")
    print(f"4 writers, 100 watchers             {fan['writesPerSec']:8.0f} writes/s   ({ratio:.2f}x; target >= 0.8x), "
          f"{fan['notificationsReceived']} notifications received")
    print(f"daemon RSS over {seconds:.0f} s with 100 watchers  {rss[0]:.0f} -> {rss[-1]:.0f} MiB "
          f"(max of 2nd half - max of 1st half: {growth:+.1f} MiB)")
    if args.json:
        args.json.write_text(json.dumps({"latency": lat, "noWatchers": base, "hundredWatchers": fan,
                                         "writerRatio": ratio, "rssGrowthMiB": growth}, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.pop("SESSIONMEM_SOCKET", None)
    sys.exit(main())
