"""`sessionmem call METHOD PARAMS`: PARAMS is one JSON object or array, checked before
anything is sent, on every path (issue 16 item 5)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import CLI, Daemon, run_cli

CLICK = ["-c", "import sys; from sessionmem.cli.app import main; sys.argv[0] = 'sessionmem'; main()"]

BAD = [
    ('{}, "method": "clear"', "more follows it at character 2"),  # would have rewritten the frame
    ('{"key": "k"}, "id": 7', "more follows it at character 12"),
    ("5", "one JSON object or array"),
    ('"text"', "one JSON object or array"),
    ("", "one JSON object or array"),
    ('{"key": 1,}', "at character 10"),  # an offset into the argument, not into the frame
    ('{"key": NaN}', "NaN is not JSON"),
    ("[1e99999]", "out of range"),
    ('{"a":\n1}, "method": "clear"', "more follows it at character 8"),  # over lines: the full path's case
]


@pytest.mark.parametrize("params,why", BAD)
@pytest.mark.parametrize("path", ["fast", "click"])
def test_params_that_are_not_one_json_value_are_refused_and_nothing_changes(
        daemon: Daemon, env: dict[str, str], params: str, why: str, path: str) -> None:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))
    with daemon.session() as s:
        s.set_context("k", 1)
        before = s.get_session_id()
    cmd = CLI if path == "fast" else [CLI[0], *CLICK]
    r = subprocess.run([*cmd, "call", "getStats", params], env=e, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r
    assert r.stdout == "" and r.stderr.count("\n") == 1 and why in r.stderr, r.stderr
    assert r.stderr.startswith("sessionmem: PARAMS_JSON"), r.stderr
    with daemon.session() as s:
        assert s.get_session_id() == before and s.get_context("k") == 1  # not cleared


def test_params_are_checked_before_anything_is_sent(tmp_path: Path, env: dict[str, str]) -> None:
    # No daemon at all: a check made before connecting says so (exit 2), not "none answers" (3).
    e = dict(env, SESSIONMEM_SOCKET=str(tmp_path / "none.sock"))
    r = run_cli(["--no-autostart", "call", "getStats", '{}, "method": "clear"'], e)
    assert r.returncode == 2 and "more follows it" in r.stderr, r


def test_good_params_still_go_as_they_are(daemon: Daemon, env: dict[str, str]) -> None:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))
    with daemon.session() as s:
        s.set_context("k", [1, "✓"])
    for params in ('{"key": "k"}', ' {"key":\n"k"} ', '{"key": "k"}\n'):
        r = run_cli(["call", "getContext", params], e)
        assert (r.returncode, r.stdout) == (0, '[1,"✓"]\n'), r

