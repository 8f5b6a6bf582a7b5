"""The console script's fast path for `call`, and its hand-off to click for everything else."""

from __future__ import annotations

import pytest

from sessionmem.cli.entry import parse_call


@pytest.mark.parametrize("argv,expected", [
    (["call", "getSessionId"], {"method": "getSessionId", "params": None}),
    (["call", "getRecentMessages", '{"count": 2}'], {"method": "getRecentMessages", "params": '{"count": 2}'}),
    (["--json", "--project", "/p", "call", "x"], {"method": "x", "project": "/p", "as_json": True}),
    (["--socket=/s.sock", "--no-autostart", "call", "x"], {"socket": "/s.sock", "no_autostart": True}),
])
def test_plain_calls_take_the_fast_path(argv: list[str], expected: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SESSIONMEM_PROJECT", raising=False)
    monkeypatch.delenv("SESSIONMEM_SOCKET", raising=False)
    opts = parse_call(argv)
    assert opts is not None
    for k, v in expected.items():
        assert opts[k] == v


def test_environment_supplies_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONMEM_PROJECT", "/from/env")
    opts = parse_call(["call", "x"])
    assert opts is not None and opts["project"] == "/from/env"


@pytest.mark.parametrize("argv", [
    [], ["--help"], ["call"], ["call", "--help"], ["call", "x", "--help"], ["call", "x", "{}", "extra"],
    ["task", "get"], ["--project"], ["--unknown", "call", "x"], ["--json=1", "call", "x"], ["call", "-x"],
])
def test_everything_else_goes_to_click(argv: list[str]) -> None:
    assert parse_call(argv) is None
