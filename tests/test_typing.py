"""The client as a typed library: a method per wire method on both clients, each with
its real return type, `mypy --strict client/` and `ruff check` clean."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from sessionmem import AsyncSession, Session
from sessionmem import protocol as p

ROOT = Path(__file__).resolve().parents[1]
# JSON values of any shape: their type is honestly Any.
ANY_BY_NATURE = {"get_context", "call"}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@pytest.mark.parametrize("cls", [Session, AsyncSession])
def test_every_wire_method_has_a_typed_method(cls: type) -> None:
    missing = {m for m in p.METHODS if m != "unwatch" and not hasattr(cls, snake(m))}
    assert missing == set()  # unwatch: ending the iterator of watch() is how a client unwatches
    untyped = set()
    for name in dir(cls):
        member = getattr(cls, name)
        if name.startswith("_") or not callable(member) or name in ("close", "connect"):
            continue
        hints = typing.get_type_hints(member)
        if "return" not in hints or hints["return"] is typing.Any:
            untyped.add(name)
    assert untyped == ANY_BY_NATURE


def _tool(name: str) -> str:
    exe = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if exe is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]' installs it)")
    return exe


def test_mypy_strict_on_the_client_is_clean() -> None:
    r = subprocess.run([_tool("mypy"), "--strict", "--no-incremental", "client/"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_is_clean() -> None:
    r = subprocess.run([_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
