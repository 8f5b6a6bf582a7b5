"""Soak: many clients, mixed operations, for a while; no error allowed, memory must stay flat.

    python benchmarks/soak.py --clients 50 --seconds 60

Clients are threads (a Session each, so one connection each) spread over several
processes. The mix: reads, context overwrites on a bounded key set, file
track/untrack, appended messages; the history is cleared every --clear-every
seconds so the session itself stays bounded and any growth left is a leak. RSS is
sampled after each clear. Prints the figures; exit status 1 on any error or when
the peak RSS of the run's second half exceeds the first half's by more than
--max-growth MiB.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from sessionmem import Session


def client_process(sock: str, threads: int, seconds: float, seed: int) -> None:
    ops = [0] * threads
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    def run(k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        try:
            with Session(project=Path(sock).parent, socket=sock, autostart=False) as s:
                while time.monotonic() < deadline:
                    r = rng.random()
                    if r < 0.2:
                        s.add_message(rng.choice(["user", "assistant", "tool"]), "m" * rng.randint(10, 400))
                    elif r < 0.35:
                        s.get_recent_messages(20)
                    elif r < 0.55:
                        s.set_context(f"k{rng.randint(0, 50)}", {"v": rng.random(), "l": list(range(rng.randint(0, 20)))})
                    elif r < 0.65:
                        s.get_context(f"k{rng.randint(0, 50)}")
                    elif r < 0.7:
                        s.delete_context(f"k{rng.randint(0, 50)}")
                    elif r < 0.8:
                        s.track_open_file(f"src/f{rng.randint(0, 30)}.py")
                    elif r < 0.85:
                        s.untrack_file(f"src/f{rng.randint(0, 30)}.py")
                    elif r < 0.9:
                        s.get_open_files()
                    elif r < 0.95:
                        s.set_current_task(f"task {rng.randint(0, 9)}")
                    else:
                        s.get_stats()
                    ops[k] += 1
        except Exception as e:
            errors.append(repr(e))

    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(json.dumps({"ops": sum(ops), "errors": errors}))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--processes", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--clear-every", type=float, default=10)
    ap.add_argument("--max-growth", type=float, default=10.0, help="MiB of RSS growth tolerated")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sm-soak-") as tmp:
        sock = Path(tmp) / "soak.sock"
        daemon = subprocess.Popen([sys.executable, "-m", "sessionmemd", "--project", tmp, "--socket", str(sock),
                                   "--log-level", "warning"], stderr=open(Path(tmp) / "log", "wb"))
        while not sock.exists():
            time.sleep(0.01)
        per = args.clients // args.processes
        code = ("import sys; sys.path.insert(0, sys.argv[1]); import soak;"
                "soak.client_process(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))")
        procs = [subprocess.Popen([sys.executable, "-c", code, str(Path(__file__).parent), str(sock), str(per),
                                   str(args.seconds), str(i)], stdout=subprocess.PIPE, text=True)
                 for i in range(args.processes)]
        samples = []
        started = time.monotonic()
        with Session(project=tmp, socket=sock, autostart=False) as admin:
            while time.monotonic() - started < args.seconds:
                time.sleep(min(args.clear_every, max(0.0, args.seconds - (time.monotonic() - started))))
                admin.clear()
                admin.snapshot()
                samples.append(round(rss_mib(daemon.pid), 1))
        results = [json.loads(p.communicate()[0]) for p in procs]
        ops = sum(r["ops"] for r in results)
        errs = [e for r in results for e in r["errors"]]
        daemon.send_signal(signal.SIGTERM)
        code_ = daemon.wait(60)
        log = (Path(tmp) / "log").read_text()
    # The session is cleared between samples, so RSS saw-tooths with what each period
    # added; a leak shows as the second half's peak rising above the first half's.
    half = len(samples) // 2
    growth = max(samples[half:]) - max(samples[:half]) if half else 0.0
    figures = {"clients": args.clients, "seconds": args.seconds, "ops": ops, "opsPerSec": round(ops / args.seconds),
               "errors": len(errs), "rssAfterClearsMiB": samples, "rssGrowthMiB": round(growth, 1),
               "daemonExit": code_, "daemonWarnings": [x for x in log.splitlines() if "WARNING" in x or "ERROR" in x]}
    print(json.dumps(figures, indent=2))
    for e in errs[:10]:
        print("ERROR", e)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 1 if errs or growth > args.max_growth or code_ != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
