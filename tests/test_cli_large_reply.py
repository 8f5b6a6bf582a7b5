"""The one-shot path reads a 40 MB reply whole and prints it unchanged (issue 16 item 6;
its speed against Session is benchmarks/startup_bench.py's --large-reply figure)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import CLI, Daemon

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def fill(daemon: Daemon, mb: int) -> list[dict[str, object]]:
    """``mb`` messages of about 1 MB each, escapes and non-ASCII text in each."""
    with daemon.session() as s:
        for i in range(mb):
            s.add_message("user", f"{i} ✓ \"q\" \\ \n" + chr(ord("a") + i % 26) * (1 << 20), timestamp=i)
        return [{"role": m.role, "content": m.content, "timestamp": m.timestamp} for m in s.get_all_messages()]


def test_a_40_mb_reply_is_read_whole_and_correct(daemon: Daemon, env: dict[str, str]) -> None:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))
    expected = fill(daemon, 40)
    for args in (["call", "getAllMessages"], ["--json", "msg", "all"]):
        r = subprocess.run([*CLI, *args], env=e, capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert len(r.stdout) > 40 << 20 and r.stdout.endswith(b"]\n") and r.stdout.count(b"\n") == 1
        assert json.loads(r.stdout) == expected, args
    r = subprocess.run([*CLI, "msg", "all"], env=e, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    assert all(m["content"].split("\n")[1] in text for m in expected)  # type: ignore[union-attr]
    assert text.count("] user: ") == 40


def test_the_large_reply_benchmark_runs(daemon: Daemon, env: dict[str, str]) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import startup_bench
    finally:
        sys.path.remove(str(BENCH))
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))
    figures = startup_bench.large_reply(sys.executable, [*CLI], e, mb=2, runs=1)
    assert figures["cliS"] > 0 and figures["sessionS"] > 0 and figures["ratio"] > 0
