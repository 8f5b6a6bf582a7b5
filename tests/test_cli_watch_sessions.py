"""`sessionmem watch`'s lines name the session when it is not the current one, and on
every change to the sessions themselves, following the current one as it moves (issue
16 item 18)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from conftest import CLI, Daemon, wait_for


@pytest.fixture
def watcher(daemon: Daemon, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))
    proc = subprocess.Popen([*CLI, "watch"], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with daemon.session() as s:
            wait_for(lambda: s.get_stats().watchers == 1, what="the watch to subscribe")
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def lines(proc: subprocess.Popen[str], n: int) -> list[str]:
    assert proc.stdout is not None
    return [proc.stdout.readline().split("  ", 2)[2].rstrip("\n") for _ in range(n)]  # without time, revision


def test_lines_name_the_session_unless_current(daemon: Daemon, watcher: subprocess.Popen[str]) -> None:
    with daemon.session() as s:
        first = s.get_session_id()
        s.set_current_task("on the current one")
        s.create_session("planner")
    with daemon.session("planner") as p:
        p.set_current_task("on another one")
    with daemon.session() as s:
        s.set_current_session("planner")  # planner is current from here on
        s.add_message("user", "now current")
    with daemon.session(first) as f:
        f.set_context("k", 1)  # the old one, no longer current
    with daemon.session() as s:
        s.delete_session(first)
        s.create_session("side", make_current=True)
    assert lines(watcher, 8) == [
        'setCurrentTask  task="on the current one"',
        'createSession  session="planner"',
        'setCurrentTask  session="planner"  task="on another one"',
        'setCurrentSession  session="planner"  current="planner"',
        "addMessage  user: now current",
        f'setContext  session="{first}"  k = 1',
        f'deleteSession  session="{first}"',
        'createSession  session="side"  current="side"',
    ]


def test_a_replay_names_the_session_until_it_knows_the_current_one(daemon: Daemon, env: dict[str, str]) -> None:
    with daemon.session() as s:
        first = s.get_session_id()
        s.set_current_task("t")
        s.create_session("planner", make_current=True)
        s.set_current_task("u")
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))
    proc = subprocess.Popen([*CLI, "watch", "--since", "0"], env=e, stdout=subprocess.PIPE, text=True)
    try:
        assert lines(proc, 3) == [f'setCurrentTask  session="{first}"  task="t"',
                                  'createSession  session="planner"  current="planner"', 'setCurrentTask  task="u"']
    finally:
        proc.kill()
        proc.wait(10)
