"""A clean stop while a client pipelines writes, and revisions past the first reserved
block: nothing acknowledged is lost, no revision is handed out twice, no write is
refused for want of a reservation (issue 16, items 1 and 3)."""

from __future__ import annotations

import json
import signal
import socket
import threading
from typing import Any

from conftest import Daemon, Raw, wait_for


def _frames(n: int, prefix: str) -> bytes:
    """Writes, with a read of the last 100 messages after every fifth: replies bigger than
    the requests, so that one read's requests fill the daemon's output and the rest of
    them wait in its backlog (what a clean stop must not run)."""
    out = []
    for i in range(n):
        if i % 5 == 4:
            out.append({"jsonrpc": "2.0", "id": f"r{i}", "method": "getRecentMessages", "params": {"count": 100}})
        out.append({"jsonrpc": "2.0", "id": i, "method": "addMessage",
                    "params": {"role": "user", "content": f"{prefix} {i} " + "x" * 200, "id": f"{prefix}-{i}"}})
    return b"".join(json.dumps(f).encode() + b"\n" for f in out)


def _read_all(sock: socket.socket) -> list[dict[str, Any]]:
    buf = bytearray()
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        buf += chunk
    return [json.loads(line) for line in bytes(buf).split(b"\n") if line.strip()]


def test_sigterm_with_a_pipelining_client_keeps_every_acknowledged_write(make_daemon: Any) -> None:
    d: Daemon = make_daemon("--snapshot-interval", "3600")  # only the final snapshot writes
    watcher = Raw(d.socket)
    start = watcher.result("watch")["revision"]
    seen: list[int] = []  # revisions published to a watcher (periodic: once applied)
    reader = threading.Thread(target=lambda: seen.extend(
        n["params"]["revision"] for n in _notifications(watcher)), daemon=True)
    reader.start()
    writer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    writer.settimeout(30)
    writer.connect(str(d.socket))
    n = 60_000
    data = _frames(n, "m")

    def send() -> None:
        try:
            writer.sendall(data)
        except OSError:
            pass  # the daemon stopped reading and closed: what was not sent was not run

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    # The writer reads nothing: replies pile up to the daemon's high-water mark, then it
    # stops reading and keeps a backlog of requests read but not handled.
    probe = Raw(d.socket)
    wait_for(lambda: probe.result("getStats")["revision"] > start + 100, timeout=60, what="writes applied")
    probe.close()
    d.send_signal(signal.SIGTERM)
    # Reading now lets the daemon write again, which (before the fix) ran the backlog
    # while the final snapshot was being written: acknowledged, and lost.
    wait_for(lambda: "shutting down" in d.read_log(), what="the stop under way")
    replies = _read_all(writer)
    sender.join(timeout=30)
    writer.close()
    assert d.proc is not None and d.proc.wait(timeout=60) == 0

    acked = {r["id"] for r in replies if "result" in r and type(r["id"]) is int}
    refused = [r for r in replies if "error" in r]
    assert len(acked) > 100
    assert all(r["error"]["code"] == -32003 for r in refused), refused[:3]
    reader.join(timeout=30)
    watcher.close()

    d.start()
    with d.session() as s:
        kept = {m.id for m in s.get_all_messages(full=True)}
        missing = {f"m-{i}" for i in acked} - kept
        assert not missing, f"{len(missing)} acknowledged writes lost"
        assert kept <= {f"m-{i}" for i in range(n)}
        # No revision is handed out twice: the restart continues after the last one
        # handed out (and published), and every acknowledged change has its own.
        last = s.get_stats().revision
        assert last >= max(seen) and last - start >= len(acked)
        s.set_context("after", 1)
        assert s.get_stats().revision == last + 1
    # A watcher resumes across the restart, missing nothing: the change log was kept.
    w2 = Raw(d.socket)
    k = min(1_000, last - start)
    assert "error" not in w2.call("watch", {"since": last - k})
    got = [w2.recv()["params"]["revision"] for _ in range(k + 1)]
    assert got == list(range(last - k + 1, last + 2))
    w2.close()


def _notifications(conn: Raw) -> list[dict[str, Any]]:
    """Every notification the watcher is sent until its daemon closes it."""
    out = []
    while True:
        try:
            msg = conn.recv()
        except (ConnectionResetError, TimeoutError, OSError):
            return out
        if msg.get("method") == "changed":
            out.append(msg)


def test_a_million_pipelined_changes_are_all_accepted(make_daemon: Any) -> None:
    """More changes than one reserved block (1,000,000) without a snapshot from the
    timer: the next block is reserved ahead of need, no write is refused."""
    d: Daemon = make_daemon("--snapshot-interval", "3600")
    c = Raw(d.socket, timeout=120)
    start = c.result("getStats")["revision"]
    total = 1_000_100
    chunk = 50_000
    # Notifications: no replies to read, so the daemon never stops reading; a refused
    # write would leave the revision short.
    for base in range(0, total, chunk):
        c.send(b"".join(
            b'{"jsonrpc":"2.0","method":"setContext","params":{"key":"k","value":%d}}\n' % i
            for i in range(base, min(base + chunk, total))
        ))
    # Replies come in order: this one comes after every change sent before it.
    stats = c.result("getStats")
    assert stats["revision"] == start + total
    assert c.result("getContext", {"key": "k"}) == total - 1
    c.close()
    # The next block was reserved on disk without the timer: after a kill -9 the
    # daemon continues past it, handing out no revision twice.
    d.kill9()
    d.start()
    c = Raw(d.socket)
    assert c.result("getStats")["revision"] > start + total
    c.close()
