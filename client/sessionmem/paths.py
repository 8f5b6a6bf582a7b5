"""Where things live: project root, database, runtime folder, socket (design §3).

Every process of one project must compute the same socket path, so the root is
always realpath-resolved and the socket name is a hash of it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import NamedTuple

try:  # the builtin SHA-256: hashlib would load OpenSSL, ~2.5 ms of every CLI call
    from _sha2 import sha256  # type: ignore[import-not-found]  # Python 3.12+
except ImportError:
    try:
        from _sha256 import sha256  # type: ignore[import-not-found, no-redef]  # 3.11
    except ImportError:
        from hashlib import sha256  # type: ignore[assignment]

# sun_path is 108 bytes on Linux (104 on macOS) including the terminating NUL.
SUN_PATH_MAX = 104 if os.uname().sysname == "Darwin" else 108


class PathError(Exception):
    """A path that cannot be used safely; the message says why and what to do."""


def find_project_root(project: str | os.PathLike[str] | None = None, cwd: str | None = None) -> Path:
    """--project, else $SESSIONMEM_PROJECT, else nearest ancestor with .arela/, else
    nearest with .git, else the working directory; always realpath-resolved."""
    explicit = project if project is not None else os.environ.get("SESSIONMEM_PROJECT") or None
    if explicit is not None:
        root = Path(os.path.realpath(explicit))
        if not root.is_dir():
            raise PathError(f"project root {root} is not a directory")
        return root
    start = Path(os.path.realpath(cwd if cwd is not None else os.getcwd()))
    for marker in (".arela", ".git"):
        for folder in (start, *start.parents):
            if (folder / marker).exists():
                return folder
    return start


def project_key(root: Path) -> str:
    return sha256(str(root).encode("utf-8")).hexdigest()[:16]


def default_db_path(root: Path) -> Path:
    return root / ".arela" / "memory" / "session.db"


def _private_dir_problem(path: Path, uid: int) -> str | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symlink"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if st.st_uid != uid:
        return f"{path} is owned by uid {st.st_uid}, not {uid}"
    if st.st_mode & 0o077:
        return f"{path} has mode {oct(st.st_mode & 0o777)}, wider than 0700"
    return None


def runtime_dir(create: bool = True) -> Path:
    """$XDG_RUNTIME_DIR/sessionmem when that is ours and private, else
    /tmp/sessionmem-<uid>. Created 0700; refused when someone else could use it."""
    uid = os.getuid()
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg) and _private_dir_problem(Path(xdg), uid) is None:
        base = Path(xdg) / "sessionmem"
    else:
        base = Path(f"/tmp/sessionmem-{uid}")
    problem = _private_dir_problem(base, uid)
    if problem == "missing":
        if not create:
            return base
        try:
            os.mkdir(base, 0o700)
        except FileExistsError:
            pass  # another process won the race; checked below
        problem = _private_dir_problem(base, uid)
    if problem is not None:
        raise PathError(
            f"unsafe runtime folder: {problem}. Remove it (or fix its owner and mode "
            f"to 0700) so sessionmem can create a private one"
        )
    return base


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and any missing parent 0700, whatever the umask: ``mkdir(parents=
    True, mode=...)`` gives the mode to the last folder only, the others get the umask's."""
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


def check_socket_path(path: Path) -> Path:
    if len(os.fsencode(path)) >= SUN_PATH_MAX:
        raise PathError(
            f"socket path is {len(os.fsencode(path))} bytes, over the {SUN_PATH_MAX - 1}-byte "
            f"limit of Unix sockets: {path}; choose a shorter --socket"
        )
    return path


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
    root = find_project_root(project)
    sock_env = os.environ.get("SESSIONMEM_SOCKET") or None
    sock = socket if socket is not None else sock_env
    if sock is not None:
        sock_path = Path(os.path.abspath(sock))
    else:
        sock_path = runtime_dir(create_runtime) / f"{project_key(root)}.sock"
    # realpath: one database is one daemon however it is named (a symlinked --db or
    # .arela/), and every client finds its lock file under the same name.
    db_path = Path(os.path.realpath(db if db is not None else default_db_path(root)))
    return Paths(root, db_path, check_socket_path(sock_path), sock is not None)
