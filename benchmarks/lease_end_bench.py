"""Ephemeral leases across daemons of one PostgreSQL project (issue 17): how long until
a lease ends everywhere when its daemon is killed, against a baseline measured in the
same run: the same lease ending because its client's connection closed. And what the
holders' liveness check costs the other daemons' writes.

    .venv/bin/python benchmarks/lease_end_bench.py [--rounds 10] [--n 1000] [--json out.json]

* end latency: a lease taken without a ttl through daemon K, known on daemon B (sync);
  then either its client's connection closes (baseline: K ends it at once) or K is
  killed with SIGKILL (B finds its holder gone: at its next turn, a heartbeat read at
  least once a second; the kill comes at a random point of that second); the time
  from the close or kill to the ``leaseExpired`` change reaching a watcher on B. Each round starts a fresh K. ``killOverCloseP50`` is the
  ratio of the two medians; the absolute kill figure is what the docs' bound is about.
* write cost: sequential ``addMessage`` on B while 20 ephemeral leases taken through
  K are held (each of B's turns reads the leases with their holders' liveness) ÷ the
  same with 20 ttl leases instead (the leases read, no liveness to check).

The PostgreSQL server is a throwaway cluster on a Unix socket (tests/pgcluster.py).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench import Server, sessionmemd  # noqa: E402
from pg_bench import writes  # noqa: E402
from pgcluster import Cluster  # noqa: E402

KEY = "lease-bench"


class Conn:
    """A raw JSON-RPC connection (requests one at a time; notifications kept apart)."""

    def __init__(self, sock: Path) -> None:
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(str(sock))
        self.buf = b""
        self.id = 0

    def line(self, timeout: float | None = None) -> dict[str, Any]:
        self.s.settimeout(timeout)
        while b"\n" not in self.buf:
            chunk = self.s.recv(1 << 16)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)  # type: ignore[no-any-return]

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self.id += 1
        self.s.sendall(json.dumps({"jsonrpc": "2.0", "id": self.id, "method": method,
                                   "params": params or {}}).encode() + b"\n")
        msg = self.line(30)
        assert msg.get("id") == self.id and "error" not in msg, msg
        return msg["result"]

    def ended(self, name: str, timeout: float = 60) -> float:
        """Wait (a watching connection) for the leaseExpired of ``name``: when it came."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.line(max(0.01, deadline - time.monotonic()))
            p = msg.get("params", {})
            if msg.get("method") == "changed" and p.get("op") == "leaseExpired" and p["lease"]["name"] == name:
                return time.monotonic()

    def close(self) -> None:
        self.s.close()


def daemon(tmp: Path, name: str, url: str) -> Server:
    (tmp / name).mkdir(exist_ok=True)
    return sessionmemd(tmp / name, name, "--store", url, "--project-key", KEY)


def end_latency(tmp: Path, url: str, b: Server, rounds: int) -> dict[str, float]:
    w = Conn(b.sock)
    w.call("watch")
    cb = Conn(b.sock)
    close: list[float] = []
    kill: list[float] = []
    rng = random.Random(17)
    for i in range(rounds):
        k = daemon(tmp, f"k{i}", url)
        try:
            holder = Conn(k.sock)
            holder.call("acquireLease", {"name": f"close-{i}", "owner": "bench"})
            cb.call("sync")
            t = time.monotonic()
            holder.close()
            close.append(w.ended(f"close-{i}") - t)
            holder = Conn(k.sock)
            holder.call("acquireLease", {"name": f"kill-{i}", "owner": "bench"})
            cb.call("sync")
            time.sleep(rng.uniform(0, 1.0))  # any point of B's one-second heartbeat
            t = time.monotonic()
            k.proc.kill()
            k.proc.wait(10)
            kill.append(w.ended(f"kill-{i}") - t)
            holder.close()
        finally:
            if k.proc.poll() is None:
                k.stop()
    w.close()
    cb.close()
    return {"closeEndP50Ms": round(statistics.median(close) * 1000, 1), "closeEndMaxMs": round(max(close) * 1000, 1),
            "killEndP50Ms": round(statistics.median(kill) * 1000, 1), "killEndMaxMs": round(max(kill) * 1000, 1),
            "killOverCloseP50": round(statistics.median(kill) / statistics.median(close), 2)}


def write_cost(tmp: Path, url: str, b: Server, n: int, rounds: int = 3) -> dict[str, float]:
    """B's sequential writes with 20 leases held through K: ephemeral ones ÷ ttl ones,
    ``rounds`` rounds, the order swapped every round (the machine's load falls on both
    alike); medians."""
    rates: dict[str, list[float]] = {"Ttl": [], "Ephemeral": []}
    k = daemon(tmp, "holder", url)
    try:
        writes(b.sock, 100, "warm")
        for r in range(rounds):
            kinds = [("Ttl", {"ttlMs": 3_600_000}), ("Ephemeral", {})]
            for kind, ttl in kinds if r % 2 == 0 else kinds[::-1]:
                holder = Conn(k.sock)
                tokens = [holder.call("acquireLease", {"name": f"{kind}-{j}", "owner": "bench", **ttl})["token"]
                          for j in range(20)]
                Conn(b.sock).call("sync")
                rates[kind].append(writes(b.sock, n, f"{kind}-{r}"))
                for j, token in enumerate(tokens):
                    holder.call("releaseLease", {"name": f"{kind}-{j}", "token": token})
                holder.close()
    finally:
        k.stop()
    out = {f"writesWith20{kind}LeasesPerSec": round(statistics.median(v), 1) for kind, v in rates.items()}
    out["ephemeralOverTtlWrites"] = round(out["writesWith20EphemeralLeasesPerSec"]
                                          / out["writesWith20TtlLeasesPerSec"], 3)
    return out


def run(rounds: int, n: int) -> dict[str, float]:
    cluster = Cluster()
    cluster.start()
    try:
        url = cluster.create_database("leases")
        with tempfile.TemporaryDirectory() as t:
            tmp = Path(t)
            b = daemon(tmp, "b", url)
            try:
                out = end_latency(tmp, url, b, rounds)
                out.update(write_cost(tmp, url, b, n))
            finally:
                b.stop()
    finally:
        cluster.destroy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out = run(args.rounds, args.n)
    for k, v in out.items():
        print(f"{k:36} {v}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
