"""Bad input to any command: one line naming it, exit 1, nothing changed (issue 16 item
14): arguments and stdin that are not UTF-8, files `export -o` cannot write."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import CLI, Daemon

CLICK = [CLI[0], "-c", "import sys; from sessionmem.cli.app import main; sys.argv[0] = 'sessionmem'; main()"]
BAD = b"a\xffb"

# Every command that takes text, the bad bytes where the text goes.
COMMANDS: list[list[bytes]] = [
    [b"task", b"set", BAD], [b"ticket", b"set", BAD], [b"ticket", b"claim", BAD],
    [b"msg", b"add", b"user", BAD], [b"files", b"track", b"ok.py", BAD], [b"files", b"untrack", BAD],
    [b"ctx", b"set", BAD, b"1"], [b"ctx", b"set", b"k", BAD], [b"ctx", b"get", BAD], [b"ctx", b"del", BAD],
    [b"sessions", b"new", b"--id", BAD], [b"sessions", b"use", BAD], [b"sessions", b"delete", BAD],
    [b"--session", BAD, b"id"], [b"id", b"--session", BAD], [b"call", b"getContext", b'{"key": "' + BAD + b'"}'],
    [b"call", b"get" + BAD], [b"import", BAD], [b"task", b"set", b"--expect", BAD, b"x"],
]


def state(daemon: Daemon) -> Any:
    with daemon.session() as s:
        return (s.export_session(), [(i.sessionId, i.revision) for i in s.list_sessions()])


def run(cmd: list[str], args: list[bytes], env: dict[str, str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*(c.encode() for c in cmd), *args], env=env, input=stdin, capture_output=True, timeout=60)


def one_line(r: subprocess.CompletedProcess[bytes], *words: bytes) -> None:
    assert r.returncode == 1, r
    assert r.stderr.count(b"\n") == 1 and r.stderr.startswith(b"sessionmem: "), r.stderr
    assert b"Traceback" not in r.stderr and all(w in r.stderr for w in words), r.stderr


@pytest.mark.parametrize("path", ["fast", "click"])
def test_arguments_that_are_not_utf8(daemon: Daemon, env: dict[str, str], path: str) -> None:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))
    with daemon.session() as s:
        s.set_context("k", 1)
    before = state(daemon)
    for args in COMMANDS:
        r = run(CLI if path == "fast" else CLICK, args, e)
        one_line(r, b"not UTF-8", rb"a\xffb")
        assert state(daemon) == before, args
    r = run(CLI if path == "fast" else CLICK, [b"id"], dict(e, SESSIONMEM_SESSION="x\udcff"))
    one_line(r, b"SESSIONMEM_SESSION is not UTF-8")


@pytest.mark.parametrize("path", ["fast", "click"])
@pytest.mark.parametrize("session", [[], [b"--session", b"other"]])
def test_stdin_that_is_not_utf8(daemon: Daemon, env: dict[str, str], path: str, session: list[bytes]) -> None:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket), LC_ALL="C")  # C: Python's stdin would pass bytes on as surrogates
    with daemon.session() as s:
        s.create_session("other")
    before = state(daemon)
    r = run(CLI if path == "fast" else CLICK, [*session, b"msg", b"add", b"user", b"-"], e, stdin=b"ok\n" + BAD)
    one_line(r, b"stdin is not UTF-8", b"byte 4")
    assert state(daemon) == before
    r = run(CLI if path == "fast" else CLICK, [*session, b"msg", b"add", b"user", b"-"], e, stdin="ok ✓".encode())
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("where", ["/nonexistent/dir/x.jsonl", "/proc/x", "{tmp}/ro/x.jsonl"])
def test_export_to_a_file_it_cannot_write(daemon: Daemon, env: dict[str, str], tmp_path: Path, where: str) -> None:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    if os.getuid() == 0 and "{tmp}" in where:
        pytest.skip("root writes into a read-only folder")
    target = where.format(tmp=tmp_path)
    r = run(CLI, [b"export", b"-o", target.encode()], e)
    one_line(r, b"cannot write " + target.encode())
    assert not Path(target).exists() and list(ro.iterdir()) == []


def test_export_writes_a_file_only_its_owner_reads(daemon: Daemon, env: dict[str, str], tmp_path: Path) -> None:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))
    with daemon.session() as s:
        s.add_message("user", "secret")
    out = tmp_path / "x.jsonl"
    old = os.umask(0o022)
    try:
        r = run(CLI, [b"export", b"-o", str(out).encode()], e)
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_mode & 0o777 == 0o600 and b"secret" in out.read_bytes()
    odd = tmp_path / "\udcff.jsonl"  # a file name the CLI only opens itself: any bytes do
    assert run(CLI, [b"export", b"-o", bytes(odd)], e).returncode == 0 and odd.exists()
