"""The daemon's memory folder keeps itself out of the project's git: a .gitignore of "*"
is written when the folder is made (issue 16 item 21)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import Daemon


@pytest.mark.skipif(not shutil.which("git"), reason="needs git")
def test_the_database_is_not_in_the_projects_git(daemon: Daemon) -> None:
    root = daemon.root
    with daemon.session() as s:
        s.add_message("user", "kept out of git")
        s.snapshot()
    memory = root / ".arela" / "memory"
    assert (memory / "session.db").exists()
    assert (memory / ".gitignore").read_text().splitlines()[-1] == "*"
    assert (memory / ".gitignore").stat().st_mode & 0o777 == 0o600
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "code.py").write_text("pass\n")
    status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=all"],
                            capture_output=True, text=True, check=True).stdout
    assert status.splitlines() == ["?? code.py"], status


def test_a_gitignore_of_the_users_is_kept(tmp_path: Path) -> None:
    from sessionmem.paths import make_private_dirs

    memory = tmp_path / "p" / ".arela" / "memory"
    make_private_dirs(memory)
    (memory / ".gitignore").write_text("mine\n")
    make_private_dirs(memory)  # there already: nothing written
    assert (memory / ".gitignore").read_text() == "mine\n"
    other = tmp_path / "elsewhere" / "db"
    make_private_dirs(other)  # a --db folder of the user's choosing: not ours to ignore
    assert not (other / ".gitignore").exists()
