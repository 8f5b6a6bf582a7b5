"""What the CLI prints, for a person (issue 16 item 20): help on every command, stats and
hello as people read times and sizes, columns that line up, multi-line messages indented
under their role, errors in the CLI's own words."""

from __future__ import annotations

import json
import re

import click

from conftest import Daemon, run_cli
from sessionmem.cli.app import main


def test_every_command_has_help_text() -> None:
    def walk(cmd: click.Command, path: str) -> list[str]:
        missing = [] if (cmd.help or "").strip() else [path]
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                missing += walk(sub, f"{path} {name}")
        return missing

    assert walk(main, "sessionmem") == []


def test_stats_and_hello_read_as_times_and_sizes(daemon: Daemon, env: dict[str, str]) -> None:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))
    with daemon.session() as s:
        s.snapshot()
    human = dict(line.split(":", 1) for line in run_cli(["stats"], e).stdout.splitlines())
    human = {k: v.strip() for k, v in human.items()}
    raw = json.loads(run_cli(["--json", "stats"], e).stdout)
    assert isinstance(raw["startTime"], int) and isinstance(raw["uptimeMs"], int)  # --json: as sent
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", human["startTime"]), human
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", human["lastSnapshotAt"]), human
    assert re.fullmatch(r"[\d.]+ (ms|s)|(\d+[dhms] ?)+", human["uptime"]), human
    assert human["lastSnapshotDuration"].endswith(("ms", "s")) and human["currentTask"] == "-"
    hello = {k: v.strip() for k, v in (line.split(":", 1) for line in run_cli(["hello"], e).stdout.splitlines())}
    assert hello["maxFrame"] == "16 MiB" and "watch, " in hello["capabilities"], hello
    assert json.loads(run_cli(["--json", "hello"], e).stdout)["maxFrame"] == 16 << 20


def test_sessions_list_columns_line_up(daemon: Daemon, env: dict[str, str]) -> None:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))
    with daemon.session() as s:
        s.create_session("a")
    with daemon.session("a") as a:
        for i in range(12):
            a.add_message("user", str(i))
        a.set_current_task("short one")
    lines = run_cli(["sessions", "list"], e).stdout.splitlines()
    assert len(lines) == 2
    for word in (" r", " msg", " files", " keys"):
        assert len({line.index(word) for line in lines}) == 1, (word, lines)
    assert lines[0].endswith("task: short one")


def test_multi_line_messages_are_indented_under_their_role(daemon: Daemon, env: dict[str, str]) -> None:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))
    with daemon.session() as s:
        s.add_message("user", "line one\nline two", timestamp=0)
        s.add_message("assistant", "ok", timestamp=0)
    out = run_cli(["msg", "recent"], e).stdout.splitlines()
    assert len(out) == 3 and out[0].endswith("] user: line one") and out[2].endswith("] assistant: ok")
    assert out[1] == " " * out[0].index("line one") + "line two"


def test_errors_name_the_cli_commands_and_options(daemon: Daemon, env: dict[str, str]) -> None:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))
    with daemon.session() as s:
        current = s.get_session_id()
    r = run_cli(["sessions", "new", "--id", ""], e)
    assert r.returncode == 1 and "--id" in r.stderr and "sessions new" in r.stderr, r.stderr
    assert "params" not in r.stderr and "createSession" not in r.stderr, r.stderr
    r = run_cli(["sessions", "delete", current], e)
    assert r.returncode == 1 and "`sessionmem sessions use`" in r.stderr and "setCurrentSession" not in r.stderr
    r = run_cli(["call", "createSession", '{"sessionId": ""}'], e)  # call: the wire's words, as typed
    assert r.returncode == 1 and "`params.sessionId`" in r.stderr and "createSession" in r.stderr, r.stderr
