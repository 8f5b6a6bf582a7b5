"""Global options where people put them: after the subcommand too, on the one-shot path
and the click path alike (issue 16 item 16)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import CLI, Daemon
from sessionmem.cli.argv import hoist
from sessionmem.cli.entry import parse_globals

CLICK = [CLI[0], "-c", "import sys; from sessionmem.cli.app import main; sys.argv[0] = 'sessionmem'; main()"]


@pytest.mark.parametrize("argv,hoisted", [
    (["watch", "--json"], ["--json", "watch"]),
    (["task", "get", "--session", "planner"], ["--session", "planner", "task", "get"]),
    (["task", "get", "--session=planner", "--no-autostart"], ["--session=planner", "--no-autostart", "task", "get"]),
    (["msg", "add", "user", "--", "--json"], ["msg", "add", "user", "--", "--json"]),
    (["ctx", "get", "k", "--project", "/p", "--socket", "/s"], ["--project", "/p", "--socket", "/s", "ctx", "get", "k"]),
    (["task", "get", "--session"], ["task", "get", "--session"]),  # no value: left for click to name
])
def test_hoist(argv: list[str], hoisted: list[str]) -> None:
    assert hoist(argv) == hoisted


def test_the_fast_path_reads_options_after_the_subcommand(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SESSIONMEM_SESSION", raising=False)
    parsed = parse_globals(["msg", "recent", "3", "--json", "--session", "planner"])
    assert parsed is not None
    opts, rest = parsed
    assert rest == ["msg", "recent", "3"] and opts["as_json"] and opts["session"] == "planner"


@pytest.mark.parametrize("path", ["fast", "click"])
def test_options_after_the_subcommand(daemon: Daemon, env: dict[str, str], tmp_path: Path, path: str) -> None:
    cmd = CLI if path == "fast" else CLICK
    e = dict(env)  # no SESSIONMEM_SOCKET: --socket, written last, must find the daemon

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cmd, *args, "--socket", str(daemon.socket)], env=e, capture_output=True, text=True,
                              timeout=60)

    with daemon.session() as s:
        s.create_session("planner")
        s.add_message("user", "hi")
    r = run("task", "set", "plan it", "--session", "planner")
    assert r.returncode == 0, r.stderr
    r = run("task", "get", "--session", "planner")
    assert (r.returncode, r.stdout) == (0, "plan it\n"), r.stderr
    r = run("task", "get", "--json", "--session=planner")
    assert (r.returncode, json.loads(r.stdout)) == (0, "plan it"), r.stderr
    r = run("msg", "recent", "--json")
    assert r.returncode == 0 and [m["content"] for m in json.loads(r.stdout)] == ["hi"], r.stderr
    r = run("sessions", "list", "--json", "--no-autostart")
    assert r.returncode == 0 and {i["sessionId"] for i in json.loads(r.stdout)} >= {"planner"}, r.stderr
    r = subprocess.run([*cmd, "msg", "add", "--socket", str(daemon.socket), "user", "--", "--json"], env=e,
                       capture_output=True, text=True, timeout=60)  # after --: text
    assert r.returncode == 0, r.stderr
    with daemon.session() as s:
        assert s.get_current_task() is None and [m.content for m in s.get_all_messages()] == ["hi", "--json"]
    with daemon.session() as s:
        since = s.get_stats().revision
        s.set_context("k", 1)
    # --since: the change is replayed to the watcher, whenever it subscribes.
    watch = subprocess.Popen([*cmd, "watch", "--since", str(since), "--json", "--socket", str(daemon.socket)], env=e,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert watch.stdout is not None
        line = watch.stdout.readline()
        assert json.loads(line)["op"] == "setContext", (line, watch.stderr)
    finally:
        watch.kill()
        watch.wait(10)
