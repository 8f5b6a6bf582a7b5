"""Where things live, as ``pathlib`` paths: a ``Paths`` for the clients and the daemon,
computed by locate.py (which holds the rules, as strings, for the one-shot CLI path)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from . import locate
from .locate import SUN_PATH_MAX, PathError, project_key

__all__ = ["SUN_PATH_MAX", "PathError", "Paths", "find_project_root", "make_private_dirs", "project_key",
           "resolve", "runtime_dir"]


def find_project_root(project: str | os.PathLike[str] | None = None, cwd: str | None = None) -> Path:
    """--project, else $SESSIONMEM_PROJECT, else nearest ancestor with .arela/, else
    nearest with .git, else the working directory; always realpath-resolved."""
    return Path(locate.find_root(project, cwd))


def runtime_dir(create: bool = True) -> Path:
    return Path(locate.runtime_dir(create))


# The memory folder (locate.py's default database is in it): a .gitignore of "*" made with
# it keeps the database, its lock and its journals out of the project's git.
MEMORY_FOLDER = (".arela", "memory")


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and any missing parent 0700, whatever the umask: ``mkdir(parents=
    True, mode=...)`` gives the mode to the last folder only, the others get the umask's.
    A memory folder (MEMORY_FOLDER) it creates gets its .gitignore."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            continue  # a racing process made it
        os.chmod(folder, 0o700)  # mkdir's mode passes through the umask
        if (folder.parent.name, folder.name) == MEMORY_FOLDER:
            _ignore_all(folder)


def _ignore_all(folder: Path) -> None:
    try:
        fd = os.open(folder / ".gitignore", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # the user's own: theirs to keep
    with open(fd, "w") as f:
        f.write("# sessionmem's database: not for git\n*\n")


class Paths(NamedTuple):  # not a dataclass: importing dataclasses costs a CLI call ~4 ms
    root: Path
    db: Path
    socket: Path
    explicit_socket: bool

    @property
    def log(self) -> Path:
        return self.socket.with_name(self.socket.name.removesuffix(".sock") + ".log")


def resolve(
    project: str | os.PathLike[str] | None = None,
    socket: str | os.PathLike[str] | None = None,
    db: str | os.PathLike[str] | None = None,
    *,
    create_runtime: bool = True,
) -> Paths:
    root, db_path, sock, explicit = locate.locate(project, socket, db, create_runtime=create_runtime)
    return Paths(Path(root), Path(db_path), Path(sock), explicit)
