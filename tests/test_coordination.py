"""Agents coordinating through one daemon: claims, read-modify-write with `expect`,
retry-safe appends across kill -9, revisions that are never handed out twice.
Real daemons, real processes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from sessionmem import Session, errors

from conftest import Daemon, run_cli

# Every daemon test here runs against both stores (conftest.pytest_generate_tests).
pytestmark = pytest.mark.both_stores


def run_procs(code: str, args: list[list[str]], timeout: float = 120) -> list[subprocess.CompletedProcess[str]]:
    """Start one Python process per args list, all at once; wait for every one."""
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *a], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for a in args]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return out


CLAIM = """
import sys, time
from sessionmem import Session, Conflict
sock, root, me, start = sys.argv[1:5]
with Session(project=root, socket=sock, autostart=False) as s:
    while time.time() < float(start):  # all 20 at the same moment
        pass
    try:
        s.set_active_ticket(f"T-7 by {me}", expect=None)
        print("won")
    except Conflict as e:
        print("lost to", e.current)
"""


def test_twenty_processes_race_to_claim_one_ticket_and_exactly_one_wins(daemon: Daemon) -> None:
    start = str(time.time() + 1.5)
    results = run_procs(CLAIM, [[str(daemon.socket), str(daemon.root), f"agent{k}", start] for k in range(20)])
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    lines = [r.stdout.strip() for r in results]
    winners = [k for k, line in enumerate(lines) if line == "won"]
    assert len(winners) == 1, lines
    assert all(line == f"lost to T-7 by agent{winners[0]}" for line in lines if line != "won")
    with daemon.session() as s:
        assert s.get_active_ticket() == f"T-7 by agent{winners[0]}"


def test_ticket_claim_from_the_cli(daemon: Daemon, env: dict[str, str]) -> None:
    args = ["--socket", str(daemon.socket), "--project", str(daemon.root)]
    r = run_cli([*args, "ticket", "claim", "T-7"], env)
    assert r.returncode == 0 and r.stdout.strip() == "claimed T-7"
    for other in ("T-7", "T-8"):  # the same ticket is not yours either: someone claimed it
        r = run_cli([*args, "ticket", "claim", other], env)
        assert r.returncode == 1 and "already T-7" in r.stderr, r.stderr
    r = run_cli([*args, "--json", "ticket", "claim", "T-9"], env)
    assert r.returncode == 1 and json.loads(r.stdout)["heldBy"] == "T-7"


COUNTER = """
import sys
from sessionmem import Session, Conflict

sock, root, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
conflicts = 0
with Session(project=root, socket=sock, autostart=False) as s:
    for _ in range(n):
        while True:
            now = s.get_context("counter")
            try:
                s.set_context("counter", (now or 0) + 1, expect=now)
                break
            except Conflict:
                conflicts += 1
print(conflicts)
"""


def test_read_modify_write_by_eight_processes_ends_at_the_exact_sum(daemon: Daemon) -> None:
    results = run_procs(COUNTER, [[str(daemon.socket), str(daemon.root), "250"] for _ in range(8)])
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    with daemon.session() as s:
        assert s.get_context("counter") == 8 * 250
    assert sum(int(r.stdout) for r in results) > 0  # they did collide, and retried


def test_ctx_set_expect_from_the_cli(daemon: Daemon, env: dict[str, str]) -> None:
    args = ["--socket", str(daemon.socket), "--project", str(daemon.root)]
    assert run_cli([*args, "ctx", "set", "plan", '{"v": 1}', "--expect", "null"], env).returncode == 0
    r = run_cli([*args, "ctx", "set", "plan", '{"v": 3}', "--expect", '{"v": 2}'], env)
    assert r.returncode == 1 and '{"v": 1}' in r.stderr and "-32009" in r.stderr
    assert run_cli([*args, "ctx", "set", "plan", '{"v": 2}', "--expect", '{"v": 1}'], env).returncode == 0
    r = run_cli([*args, "ctx", "del", "plan", "--expect", '{"v": 1}'], env)
    assert r.returncode == 1
    assert run_cli([*args, "ctx", "del", "plan", "--expect", '{"v": 2}'], env).returncode == 0
    assert run_cli([*args, "ctx", "get", "plan"], env).stdout.strip() == "null"


def test_conflict_carries_the_current_value_and_revision(daemon: Daemon) -> None:
    with daemon.session() as s:
        s.set_current_task("a")
        rev = s.get_stats().revision
        with pytest.raises(errors.Conflict) as ei:
            s.set_current_task("b", expect="x")
        assert ei.value.code == -32009 and ei.value.current == "a" and ei.value.revision == rev
        assert s.get_current_task() == "a" and s.get_stats().revision == rev  # nothing changed
        s.set_context("flag", True)
        with pytest.raises(errors.Conflict):
            s.set_context("flag", False, expect=1)  # JSON equality: true is not 1
        s.set_context("n", 1)
        s.set_context("n", 2, expect=1.0)  # but 1 and 1.0 are the same number
        s.set_current_task(None, expect="a")
        s.set_current_task("c", expect=None)  # null matches unset
        assert s.get_current_task() == "c"


# -- retry-safe appends across kill -9 ---------------------------------------------------------
def test_kill9_under_always_with_retrying_clients_keeps_every_acknowledged_message_once(make_daemon) -> None:
    d = make_daemon("--durability", "always")
    acked: dict[int, list[str]] = {k: [] for k in range(3)}
    stop = threading.Event()
    failures: list[str] = []

    def writer(k: int) -> None:
        with Session(project=d.root, socket=d.socket, autostart=False) as s:
            i = 0
            while not stop.is_set():
                content, mid = f"w{k}-{i}", f"id-w{k}-{i}"
                while True:  # until acknowledged: the same id every time, so never twice
                    try:
                        s.add_message("user", content, message_id=mid)
                        break
                    except errors.ConnectionFailed as e:
                        if stop.is_set():
                            failures.append(f"{content}: {e}")
                            return
                        time.sleep(0.05)
                acked[k].append(content)
                i += 1

    threads = [threading.Thread(target=writer, args=(k,)) for k in acked]
    for t in threads:
        t.start()
    rng = random.Random(7)
    for _ in range(6):
        time.sleep(rng.uniform(0.2, 0.6))
        d.kill9()
        d.start()
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(60)
    with d.session() as s:
        got = [m.content for m in s.get_all_messages()]
    assert len(got) == len(set(got)), "a message was added twice"
    for k, mine in acked.items():
        assert len(mine) > 0
        present = [c for c in got if c.startswith(f"w{k}-")]
        assert present[: len(mine)] == mine  # every acknowledged one, in order, once


@pytest.mark.sqlite_only("periodic durability")
def test_kill9_under_periodic_never_hands_a_revision_out_twice(make_daemon) -> None:
    d = make_daemon("--snapshot-interval", "3600")  # nothing reaches the disk before the kill
    with d.session() as s:
        for i in range(50):
            s.add_message("user", f"before {i}")
        seen = s.get_stats().revision
    d.kill9()
    d.start()
    with d.session() as s:
        assert s.get_all_messages() == []  # lost, as periodic allows
        s.add_message("user", "after")
        assert s.get_stats().revision > seen  # not one of the numbers seen before the kill


@pytest.mark.sqlite_only("restore drops what periodic durability left unsaved")
def test_revisions_survive_restore_and_clean_restarts(make_daemon) -> None:
    d = make_daemon()
    with d.session() as s:
        s.set_current_task("t")
        s.snapshot()
        s.set_current_task("u")
        r1 = s.get_stats().revision
        s.restore()  # back to "t", and a change itself
        assert s.get_current_task() == "t" and s.get_stats().revision == r1 + 1
        s.add_message("user", "x")
        r2 = s.get_stats().revision
    assert d.stop() == 0
    d.start()
    with d.session() as s:
        assert s.get_stats().revision == r2  # a clean stop: no gap
        s.add_message("user", "y")
        assert s.get_stats().revision == r2 + 1


def test_a_message_id_is_added_once_even_across_restarts(make_daemon) -> None:
    d = make_daemon("--durability", "always")
    with d.session() as s:
        s.add_message("user", "once", message_id="m-1")
        s.add_message("user", "once", message_id="m-1")
    d.kill9()
    d.start()
    with d.session() as s:
        s.add_message("user", "once", message_id="m-1")
        assert [m.content for m in s.get_all_messages()] == ["once"]
        with pytest.raises(errors.InvalidParams):
            s.add_message("user", "x", message_id="x" * 129)  # ids are 1-128 characters


def test_a_read_is_repeated_by_itself_after_a_daemon_restart(make_daemon) -> None:
    d = make_daemon()
    with d.session() as s:
        s.set_current_task("kept")
        s.snapshot()
        os.kill(d.pid, signal.SIGSTOP)  # the call is in flight when the daemon goes

        def restart() -> None:
            time.sleep(0.3)
            os.kill(d.pid, signal.SIGKILL)
            os.kill(d.pid, signal.SIGCONT)
            d.proc.wait(10)  # type: ignore[union-attr]
            d.start()

        t = threading.Thread(target=restart)
        t.start()
        assert s.get_current_task() == "kept"  # no error: repeated on the new daemon
        t.join()
        os.kill(d.pid, signal.SIGSTOP)  # a write without an id, in flight: not repeated
        killer = threading.Timer(0.3, lambda: (os.kill(d.pid, signal.SIGKILL), os.kill(d.pid, signal.SIGCONT)))
        killer.start()
        with pytest.raises(errors.ConnectionLost):
            s.set_current_task("lost?")
        killer.join()
        d.proc.wait(10)  # type: ignore[union-attr]
        d.start()
        assert s.get_current_task() == "kept"  # and the session goes on on the new daemon


@pytest.mark.sqlite_only("reads the SQLite file")
def test_message_ids_are_stored_in_an_additive_column(make_daemon) -> None:
    import sqlite3

    d = make_daemon("--durability", "always")
    with d.session() as s:
        s.add_message("user", "with id", message_id="abc")
    c = sqlite3.connect(d.db)
    cols = [r[1] for r in c.execute("PRAGMA table_info(session_messages)")]
    rows = c.execute("SELECT role, content, message_id FROM session_messages").fetchall()
    c.close()
    assert cols[:4] == ["session_id", "role", "content", "timestamp"] and "message_id" in cols
    assert rows == [("user", "with id", "abc")]
