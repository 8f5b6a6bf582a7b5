"""The CLI as a user runs it: separate processes, autostart, daemon control."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import run_cli


@pytest.fixture
def project(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[Path, dict[str, str]]]:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "src" / "deep").mkdir(parents=True)
    e = dict(env)
    e.pop("SESSIONMEM_NO_AUTOSTART")
    yield root, e
    lock = root / ".arela" / "memory" / "session.db.lock"
    run_cli(["daemon", "stop"], e, cwd=root)
    if lock.exists():  # a test that failed half-way must not leave a daemon behind
        pid = lock.read_text().strip()
        if pid.isdigit():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_two_shells_see_one_session(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    r = run_cli(["task", "set", "Build the parser"], env, cwd=root)
    assert r.returncode == 0, r.stderr
    r = run_cli(["task", "get"], env, cwd=root / "src" / "deep")  # another shell, a subfolder
    assert r.returncode == 0 and r.stdout.strip() == "Build the parser"
    assert (root / ".arela" / "memory" / "session.db").exists()


def test_every_command_group(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project

    def ok(*args: str, input: str | None = None) -> str:
        r = run_cli(list(args), env, cwd=root, input=input)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout

    ok("msg", "add", "user", "hello")
    ok("msg", "add", "assistant", "-", input="from stdin\nline 2")
    ok("msg", "add", "tool", "stamped", "--timestamp", "1000")
    out = ok("msg", "recent", "2")
    assert "assistant: from stdin" in out and "tool: stamped" in out and "hello" not in out
    msgs = json.loads(ok("--json", "msg", "all"))
    assert [m["content"] for m in msgs] == ["hello", "from stdin\nline 2", "stamped"]
    assert msgs[2]["timestamp"] == 1000
    ok("files", "track", "a.py", "b.py", "a.py")
    ok("files", "untrack", "a.py")
    assert ok("files", "list").split() == ["b.py"]
    ok("ticket", "set", "T-42")
    assert ok("ticket", "get").strip() == "T-42"
    ok("ticket", "clear")
    assert json.loads(ok("--json", "ticket", "get")) is None
    ok("ctx", "set", "obj", '{"a": [1, 2]}')
    ok("ctx", "set", "word", "plain text")
    ok("ctx", "set", "num", "42", "--string")
    assert json.loads(ok("ctx", "get", "obj")) == {"a": [1, 2]}
    assert json.loads(ok("--json", "ctx", "all")) == {"obj": {"a": [1, 2]}, "word": "plain text", "num": "42"}
    ok("ctx", "del", "word")
    assert "word" not in json.loads(ok("ctx", "all"))
    snap = json.loads(ok("--json", "snapshot"))  # the 1 s timer may have written it already
    assert set(snap) >= {"written", "messages", "durationMs"}
    stats = json.loads(ok("--json", "stats"))
    assert stats["messagesCount"] == 3 and stats["filesOpenCount"] == 1
    assert stats["pendingChanges"] == 0 and stats["lastSnapshotAt"] is not None
    assert json.loads(ok("call", "getOpenFiles")) == ["b.py"]
    assert json.loads(ok("call", "getRecentMessages", '{"count": 1}'))[0]["content"] == "stamped"
    sid = ok("id").strip()
    new = ok("clear").strip()
    assert new != sid and ok("id").strip() == new
    assert json.loads(ok("--json", "hello"))["projectRoot"] == str(root)


def test_errors_are_one_readable_line(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    r = run_cli(["call", "getRecentMessages", '{"count": -1}'], env, cwd=root)
    assert r.returncode == 1 and "count" in r.stderr and "-32602" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli(["call", "nope"], env, cwd=root)
    assert r.returncode == 1 and "-32601" in r.stderr
    r = run_cli(["call", "getOpenFiles", "{not json"], env, cwd=root)
    assert r.returncode == 2 and "not JSON" in r.stderr


def test_daemon_start_stop_status_restart(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    r = run_cli(["daemon", "status"], env, cwd=root)
    assert r.returncode == 3 and "not running" in r.stdout
    r = run_cli(["--no-autostart", "task", "get"], env, cwd=root)
    assert r.returncode == 3 and "no sessionmemd answers" in r.stderr
    r = run_cli(["daemon", "status"], env, cwd=root)
    assert r.returncode == 3  # status never starts one
    r = run_cli(["daemon", "start"], env, cwd=root)
    assert r.returncode == 0 and "started" in r.stdout
    r = run_cli(["--json", "daemon", "status"], env, cwd=root)
    assert r.returncode == 0
    pid = json.loads(r.stdout)["hello"]["pid"]
    run_cli(["task", "set", "survives restart"], env, cwd=root)
    r = run_cli(["daemon", "restart"], env, cwd=root)
    assert r.returncode == 0
    r = run_cli(["--json", "daemon", "status"], env, cwd=root)
    assert json.loads(r.stdout)["hello"]["pid"] != pid
    assert run_cli(["task", "get"], env, cwd=root).stdout.strip() == "survives restart"
    r = run_cli(["daemon", "stop"], env, cwd=root)
    assert r.returncode == 0 and "stopped" in r.stdout
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert run_cli(["daemon", "status"], env, cwd=root).returncode == 3
