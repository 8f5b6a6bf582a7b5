"""Discovery of the project root, the runtime folder and the socket path (design §3)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from sessionmem import paths


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("SESSIONMEM_PROJECT", "SESSIONMEM_SOCKET"):
        monkeypatch.delenv(var, raising=False)
    run = tmp_path / "xdg"
    run.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))


def test_root_prefers_arela_then_git_then_cwd(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    inner = outer / "inner"
    deep = inner / "a" / "b"
    deep.mkdir(parents=True)
    assert paths.find_project_root(cwd=str(deep)) == deep  # nothing marks a root
    (outer / ".git").mkdir()
    assert paths.find_project_root(cwd=str(deep)) == outer
    (inner / ".git").mkdir()
    assert paths.find_project_root(cwd=str(deep)) == inner  # the nearest .git
    (outer / ".arela").mkdir()
    assert paths.find_project_root(cwd=str(deep)) == outer  # .arela wins over a nearer .git


def test_root_from_flag_and_env_is_realpath(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    assert paths.find_project_root(link) == real
    monkeypatch.setenv("SESSIONMEM_PROJECT", str(link))
    assert paths.find_project_root() == real
    with pytest.raises(paths.PathError, match="not a directory"):
        paths.find_project_root(tmp_path / "missing")


def test_socket_key_is_the_sha256_of_the_root(tmp_path: Path) -> None:
    p = paths.resolve(tmp_path)
    key = hashlib.sha256(str(tmp_path.resolve()).encode()).hexdigest()[:16]
    assert p.socket.name == f"{key}.sock"
    assert p.socket.parent == Path(os.environ["XDG_RUNTIME_DIR"]) / "sessionmem"
    assert p.db == tmp_path.resolve() / ".arela" / "memory" / "session.db"
    assert os.stat(p.socket.parent).st_mode & 0o777 == 0o700


def test_every_subfolder_finds_the_same_socket(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    cwd = os.getcwd()
    try:
        os.chdir(sub)
        a = paths.resolve()
        os.chdir(tmp_path)
        b = paths.resolve()
    finally:
        os.chdir(cwd)
    assert a == b


def test_runtime_folder_falls_back_to_tmp_when_xdg_is_not_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o777)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(shared))
    assert paths.runtime_dir(create=False) == Path(f"/tmp/sessionmem-{os.getuid()}")


@pytest.mark.parametrize("problem", ["mode", "symlink", "file"])
def test_unsafe_runtime_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, problem: str) -> None:
    run = Path(os.environ["XDG_RUNTIME_DIR"])
    target = run / "sessionmem"
    if problem == "mode":
        target.mkdir(mode=0o755)
        os.chmod(target, 0o755)
    elif problem == "symlink":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        target.symlink_to(elsewhere)
    else:
        target.write_text("")
    with pytest.raises(paths.PathError, match="unsafe runtime folder"):
        paths.runtime_dir()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to chown a folder to another user")
def test_runtime_folder_owned_by_someone_else_is_refused() -> None:
    target = Path(os.environ["XDG_RUNTIME_DIR"]) / "sessionmem"
    target.mkdir(mode=0o700)
    os.chown(target, 65534, 65534)
    with pytest.raises(paths.PathError, match="owned by uid 65534"):
        paths.runtime_dir()


def test_too_long_socket_path_is_a_clear_error(tmp_path: Path) -> None:
    long = tmp_path / ("x" * 120) / "s.sock"
    with pytest.raises(paths.PathError, match="over the 107-byte limit|over the 103-byte limit"):
        paths.resolve(tmp_path, socket=long)
