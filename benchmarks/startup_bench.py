"""CLI start-up: one-shot commands vs `python -c pass`, in a regular (non-editable) install.

    python benchmarks/startup_bench.py              # makes a venv, pip installs this checkout
    python benchmarks/startup_bench.py --venv DIR   # an existing venv with sessionmem installed

Each command runs against a live daemon, paired with `python -c pass` in the same loop
(so drift hits both alike), bytecode cached as on a user's machine; the figure is the
ratio of medians (target <= 2x). Then the import breakdown of `sessionmem call
getSessionId`: what it imports beyond what `python -c pass` does, and what msgspec and
click alone would cost. Last, a large reply (--large-reply MB, default 40): `sessionmem
call getAllMessages` against the same call through Session, each a process writing the
JSON to /dev/null (target <= 2x: the one-shot reader is linear).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

COMMANDS = [
    ["call", "getSessionId"], ["id"], ["task", "get"], ["task", "set", "the task"], ["msg", "add", "user", "hi"],
    ["ctx", "get", "k"], ["ticket", "get"], ["msg", "recent", "5"],
]


def make_venv(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    subprocess.run([str(where / "bin" / "pip"), "install", "-q", str(ROOT)], check=True)
    return where


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def imports(cmd: list[str], env: dict[str, str]) -> dict[str, int]:
    """Module -> its own import time in µs, from -X importtime."""
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    out = {}
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            self_us, _cum, name = (x.strip() for x in line[len("import time:"):].split("|"))
            if self_us.isdigit():
                out[name] = int(self_us)
    return out


FILL = """
import sys
from sessionmem import Session
with Session(autostart=False) as s:
    for i in range(int(sys.argv[1])):
        s.add_message("user", f"{i} " + "x" * (1 << 20))
"""
THROUGH_SESSION = """
import sys, msgspec
from sessionmem import Session
with Session(autostart=False) as s:
    sys.stdout.buffer.write(msgspec.json.encode(s.call("getAllMessages")) + b"\\n")
"""


def large_reply(py: str, cli: list[str], env: dict[str, str], mb: int = 40, runs: int = 5) -> dict[str, float]:
    """Add ``mb`` 1 MB messages, then time getAllMessages (a reply of ``mb`` MB) through the
    one-shot CLI and through Session; medians in seconds and their ratio."""
    subprocess.run([py, "-c", FILL, str(mb)], env=env, check=True)
    cli_s = statistics.median(timed([*cli, "call", "getAllMessages"], env) for _ in range(runs))
    session_s = statistics.median(timed([py, "-c", THROUGH_SESSION], env) for _ in range(runs))
    return {"cliS": cli_s, "sessionS": session_s, "ratio": cli_s / session_s}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--venv", type=Path, help="a venv with sessionmem installed (default: make one)")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--large-reply", type=int, default=40, metavar="MB", help="the large reply's size (0: skip it)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sm-startup-") as t:
        tmp = Path(t)
        venv = a.venv or make_venv(tmp / "venv")
        py, cli = str(venv / "bin" / "python"), str(venv / "bin" / "sessionmem")
        sock = tmp / "s.sock"
        daemon = subprocess.Popen([str(venv / "bin" / "sessionmemd"), "--project", str(tmp), "--socket", str(sock),
                                   "--log-level", "warning"])
        try:
            env = dict(os.environ, SESSIONMEM_SOCKET=str(sock), SESSIONMEM_PROJECT=str(tmp))
            env.pop("PYTHONDONTWRITEBYTECODE", None)  # as on a user's machine: bytecode is cached
            deadline = time.monotonic() + 30
            while subprocess.run([cli, "id"], env=env, capture_output=True).returncode != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("the daemon did not answer")
                time.sleep(0.1)
            subprocess.run([cli, "ctx", "set", "k", "1"], env=env, check=True, capture_output=True)
            base: list[float] = []
            figures: dict[str, list[float]] = {" ".join(c): [] for c in COMMANDS}
            for _ in range(a.runs):
                for c in COMMANDS:
                    base.append(timed([py, "-c", "pass"], env))
                    figures[" ".join(c)].append(timed([cli, *c], env))
            b = statistics.median(base)
            print(f"python -c pass                           {b * 1000:6.1f} ms")
            for name, xs in figures.items():
                m = statistics.median(xs)
                print(f"sessionmem {name:30s}{m * 1000:6.1f} ms  ({m / b:.2f}x; target <= 2x)")
            for mod in ("msgspec", "click"):
                xs = [timed([py, "-c", f"import {mod}"], env) for _ in range(a.runs // 2)]
                print(f"python -c 'import {mod}'{'':17s}{statistics.median(xs) * 1000:6.1f} ms  "
                      f"({statistics.median(xs) / b:.2f}x)")
            python = imports([py, "-X", "importtime", "-c", "pass"], env)
            mine = imports([py, "-X", "importtime", cli, "call", "getSessionId"], env)
            extra = sorted(((us, name) for name, us in mine.items() if name not in python), reverse=True)
            print(f"imports of `sessionmem call getSessionId` beyond `python -c pass`: {len(extra)} modules, "
                  f"{sum(us for us, _ in extra) / 1000:.1f} ms:")
            for us, name in extra[:12]:
                print(f"  {us / 1000:5.2f} ms  {name}")
            if a.large_reply:
                f = large_reply(py, [cli], env, a.large_reply)
                print(f"a {a.large_reply} MB reply: sessionmem call {f['cliS']:.2f} s, Session {f['sessionS']:.2f} s "
                      f"({f['ratio']:.2f}x; target <= 2x)")
        finally:
            daemon.terminate()
            daemon.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
