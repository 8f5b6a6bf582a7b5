"""`ctx set KEY VALUE`: text that starts like JSON but is not JSON is an error naming the
problem and --string, not a string stored in its place (issue 16 item 19)."""

from __future__ import annotations

import pytest

from conftest import Daemon, run_cli


@pytest.mark.parametrize("value,problem", [
    ('{"a": 1', "truncated"), ("[1, 2", "truncated"), ('"unclosed', "truncated"), ("1e99999", "out of range"),
    ("12abc", "trailing characters"), ("-5x", "trailing characters"), ("[1e400]", "out of range"),
])
def test_text_that_starts_like_json_and_is_not(daemon: Daemon, env: dict[str, str], value: str, problem: str) -> None:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))
    with daemon.session() as s:
        s.set_context("k", "before")
    r = run_cli(["ctx", "set", "k", "--", value], e)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r
    assert problem in r.stderr and "--string" in r.stderr and repr(value) in r.stderr, r.stderr
    r = run_cli(["ctx", "set", "k2", "x", "--expect", value], e)
    assert r.returncode == 2 and "--expect" in r.stderr and "--string" in r.stderr, r.stderr
    with daemon.session() as s:
        assert s.get_all_context() == {"k": "before"}  # nothing stored
    r = run_cli(["ctx", "set", "--string", "k", "--", value], e)
    assert r.returncode == 0, r.stderr
    with daemon.session() as s:
        assert s.get_context("k") == value


def test_json_and_plain_text(daemon: Daemon, env: dict[str, str]) -> None:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))
    for value, stored in (('{"a": [1, 2.5]}', {"a": [1, 2.5]}), ("-3", -3), ('"q"', "q"), ("hello world", "hello world"),
                          ("true", True), ("trueish", "trueish")):
        r = run_cli(["ctx", "set", "k", "--", value], e)
        assert r.returncode == 0, r.stderr
        with daemon.session() as s:
            assert s.get_context("k") == stored, value
