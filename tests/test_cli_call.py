"""`sessionmem call`: one implementation, whose happy path imports no msgspec, click,
pathlib or typing, and whose every other case takes the full path with the same result."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import get_args

from conftest import CLI, Daemon, run_cli
from sessionmem import protocol as p
from sessionmem.cli import oneshot

PKG = Path(__file__).resolve().parents[1] / "client" / "sessionmem"


def test_the_fast_path_speaks_the_protocol_version() -> None:
    assert oneshot.PROTOCOL_VERSION == p.PROTOCOL_VERSION


def test_the_fast_path_knows_the_roles() -> None:
    assert oneshot.ROLES == get_args(p.Role)


def test_results_are_the_daemons_json_on_both_paths(daemon: Daemon, env) -> None:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))
    with daemon.session() as s:
        s.set_context("k", {"a": [1, 2.5, None, "✓"]})
        s.add_message("user", "line one\nline two", timestamp=5)
    cases = [("getSessionId", None), ("getContext", '{"key": "k"}'), ("getRecentMessages", '{"count": 1}'),
             ("listSessions", None), ("getAllContext", "{}")]
    for method, params in cases:
        fast = run_cli(["call", method, *([params] if params else [])], e)
        # The same call, forced down the full path: params spread over lines need a JSON parser.
        full = run_cli(["call", method, *([params.replace(" ", "\n ")] if params else [])], e)
        assert fast.returncode == full.returncode == 0, (fast.stderr, full.stderr)
        assert json.loads(fast.stdout) == json.loads(full.stdout), method
    out = json.loads(run_cli(["call", "getRecentMessages", '{"count": 1}'], e).stdout)
    assert out == [{"role": "user", "content": "line one\nline two", "timestamp": 5}]


def test_errors_and_odd_input_take_the_full_path(daemon: Daemon, env) -> None:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))
    r = run_cli(["call", "getRecentMessages", '{"count": -1}'], e)
    assert r.returncode == 1 and "params.count" in r.stderr and "(code -32602)" in r.stderr
    r = run_cli(["call", "getContext", "{nope"], e)
    assert r.returncode == 2 and "PARAMS_JSON is not JSON" in r.stderr
    r = run_cli(["call", "noSuchMethod"], e)
    assert r.returncode == 1 and "(code -32601)" in r.stderr
    r = run_cli(["call", "get-session-id"], e)  # not a name the fast path builds a frame for
    assert r.returncode == 1 and "(code -32601)" in r.stderr
    with daemon.session() as s:
        s.claim_ticket("T-1")
    r = run_cli(["call", "setActiveTicket", '{"ticketId": "T-2", "expect": null}'], e)
    assert r.returncode == 1 and 'the value now is "T-1"' in r.stderr
    assert daemon.stop() == 0
    r = run_cli(["--no-autostart", "call", "getSessionId"], dict(env, SESSIONMEM_SOCKET=str(daemon.socket)))
    assert r.returncode == 3 and "no sessionmemd answers" in r.stderr


def imports(cmd: list[str], env: dict[str, str]) -> tuple[set[str], str]:
    r = subprocess.run([sys.executable, "-X", "importtime", *cmd], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    return {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}, r.stdout


def test_a_plain_call_imports_none_of_the_heavy_modules(daemon: Daemon, env) -> None:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))
    python, _ = imports(["-c", "pass"], e)  # what Python itself loads here (site, an editable install's finder)
    mine, out = imports([*CLI[1:], "call", "getSessionId"], e)
    assert json.loads(out) == daemon.session().get_session_id()
    imported = mine - python
    assert "sessionmem.cli.oneshot" in imported
    heavy = {"msgspec", "click", "pathlib", "typing", "sessionmem.session", "sessionmem.protocol", "json"}
    assert not heavy & imported, heavy & imported


def test_the_cli_modules_import_each_other_without_a_circle() -> None:
    graph: dict[str, set[str]] = {}
    for f in (PKG / "cli").glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module} if node.module else {a.name for a in node.names}
        graph[f.stem] = {d for d in deps if (PKG / "cli" / f"{d}.py").exists()}
    assert graph["entry"] == {"call", "app", "oneshot", "argv"} and graph["oneshot"] == {"report"}

    def visit(node: str, path: list[str]) -> None:
        assert node not in path, f"import circle: {' -> '.join([*path, node])}"
        for dep in graph[node]:
            visit(dep, [*path, node])

    for module in graph:
        visit(module, [])


CLICK = [sys.executable, "-c", "import sys; from sessionmem.cli.app import main; sys.argv[0] = 'sessionmem'; main()"]


def test_the_one_shot_commands_print_what_the_click_commands_print(daemon: Daemon, env) -> None:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))

    def both(*args: str, stdin: str | None = None) -> tuple[subprocess.CompletedProcess[str], ...]:
        fast = subprocess.run([*CLI, *args], env=e, input=stdin, capture_output=True, text=True, timeout=60)
        slow = subprocess.run([*CLICK, *args], env=e, input=stdin, capture_output=True, text=True, timeout=60)
        return fast, slow

    tricky = 'quote " backslash \\ tab \t newline \n nul \x01 ünïcødé ✓'
    with daemon.session() as s:
        s.create_session("other")
    for args in (["id"], ["task", "get"], ["--json", "task", "get"], ["ticket", "get"]):
        fast, slow = both(*args)
        assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr), args
    for setter in (["task", "set", tricky], ["ticket", "set", "T-✓"], ["--session", "other", "task", "set", "x"]):
        for run in both(*setter):
            assert run.returncode == 0 and run.stdout == "", (setter, run.stderr)
    assert both("task", "get")[0].stdout == tricky + "\n" == both("task", "get")[1].stdout
    assert both("--session", "other", "task", "get")[0].stdout == "x\n"
    for args in (["ticket", "clear"], ["task", "clear"]):
        assert [r.returncode for r in both(*args)] == [0, 0]
    fast, slow = both("ticket", "claim", "T-1")  # the fast one claims it, the click one is refused
    assert (fast.returncode, fast.stdout) == (0, "claimed T-1\n")
    assert slow.returncode == 1 and "already T-1" in slow.stderr
    fast, slow = both("--json", "ticket", "claim", "T-2")
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr)
    assert json.loads(fast.stdout) == {"claimed": None, "heldBy": "T-1", "revision": json.loads(fast.stdout)["revision"]}
    for run in both("msg", "add", "user", tricky):
        assert run.returncode == 0 and run.stdout == ""
    for run in both("msg", "add", "assistant", "-", stdin="from stdin\n✓"):
        assert run.returncode == 0
    with daemon.session() as s:
        s.set_context("k", {"n": [1, 2.5, None]})
        assert [m.content for m in s.get_all_messages()] == [tricky, tricky, "from stdin\n✓", "from stdin\n✓"]
    fast, slow = both("ctx", "get", "k")
    assert json.loads(fast.stdout) == json.loads(slow.stdout) == {"n": [1, 2.5, None]}
    for run in both("files", "list"):
        assert run.stdout == ""  # none: nothing printed
    with daemon.session() as s:
        s.track_open_file("b ✓.py")
        s.track_open_file("a.py")
    for args in (["msg", "recent", "3"], ["msg", "recent"], ["msg", "all"], ["--json", "msg", "recent", "2"],
                 ["files", "list"], ["--json", "files", "list"], ["ctx", "all"], ["--session", "other", "msg", "all"]):
        fast, slow = both(*args)
        assert fast.returncode == slow.returncode == 0, (args, fast.stderr, slow.stderr)
        if "--json" in args or args[0] == "ctx":
            assert json.loads(fast.stdout) == json.loads(slow.stdout), args
        else:
            assert fast.stdout == slow.stdout, args
    fast, slow = both("--session", "nope", "task", "get")
    assert fast.returncode == slow.returncode == 1 and fast.stderr == slow.stderr and "-32011" in fast.stderr


def test_the_one_shot_commands_import_none_of_the_heavy_modules(daemon: Daemon, env) -> None:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))
    python, _ = imports(["-c", "pass"], e)
    heavy = {"msgspec", "click", "pathlib", "typing", "json", "re"}
    for args in (["task", "set", "t"], ["task", "get"], ["msg", "add", "user", "hi"], ["ctx", "get", "k"], ["id"],
                 ["ticket", "claim", "T-1"], ["--json", "msg", "recent", "3"], ["msg", "recent", "3"], ["files", "list"]):
        mine, _ = imports([*CLI[1:], *args], e)
        assert not heavy & (mine - python), (args, heavy & (mine - python))
