"""Where things live, as plain strings: project root, runtime folder, socket, database
(design §3). paths.py wraps these in a ``Paths`` of ``pathlib`` paths; the one-shot CLI
path (oneshot.py) uses them as they are, because importing ``pathlib`` (with ``re``,
``urllib.parse``, ``ipaddress``) would cost a call as much again as it costs now.

Every process of one project must compute the same socket path, so the root is always
realpath-resolved and the socket name is a hash of it.
"""

from __future__ import annotations

import os

try:  # the builtin SHA-256: hashlib would load OpenSSL, ~2.5 ms of every CLI call
    from _sha2 import sha256  # type: ignore[import-not-found, unused-ignore]  # Python 3.12+
except ImportError:
    try:
        from _sha256 import sha256  # type: ignore[import-not-found, no-redef, unused-ignore]  # 3.11
    except ImportError:
        from hashlib import sha256  # type: ignore[assignment, unused-ignore]

# sun_path is 108 bytes on Linux (104 on macOS) including the terminating NUL.
SUN_PATH_MAX = 104 if os.uname().sysname == "Darwin" else 108
_S_IFMT, _S_IFDIR, _S_IFLNK = 0o170000, 0o040000, 0o120000  # stat's, without importing it


class PathError(Exception):
    """A path that cannot be used safely; the message says why and what to do."""


def find_root(project: str | os.PathLike[str] | None = None, cwd: str | None = None) -> str:
    """--project, else $SESSIONMEM_PROJECT, else nearest ancestor with .arela/, else
    nearest with .git, else the working directory; always realpath-resolved."""
    explicit = project if project is not None else os.environ.get("SESSIONMEM_PROJECT") or None
    if explicit is not None:
        root = os.path.realpath(explicit)
        if not os.path.isdir(root):
            raise PathError(f"project root {root} is not a directory")
        return root
    start = os.path.realpath(cwd if cwd is not None else os.getcwd())
    for marker in (".arela", ".git"):
        folder = start
        while True:
            if os.path.exists(os.path.join(folder, marker)):
                return folder
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
    return start


def project_key(root: str | os.PathLike[str]) -> str:
    return str(sha256(os.fspath(root).encode("utf-8")).hexdigest()[:16])


def default_db(root: str) -> str:
    return os.path.join(root, ".arela", "memory", "session.db")


def private_dir_problem(path: str, uid: int) -> str | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    kind = st.st_mode & _S_IFMT
    if kind == _S_IFLNK:
        return f"{path} is a symlink"
    if kind != _S_IFDIR:
        return f"{path} is not a directory"
    if st.st_uid != uid:
        return f"{path} is owned by uid {st.st_uid}, not {uid}"
    if st.st_mode & 0o077:
        return f"{path} has mode {oct(st.st_mode & 0o777)}, wider than 0700"
    return None


def runtime_dir(create: bool = True) -> str:
    """$XDG_RUNTIME_DIR/sessionmem when that is ours and private, else
    /tmp/sessionmem-<uid>. Created 0700; refused when someone else could use it."""
    uid = os.getuid()
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg) and private_dir_problem(xdg, uid) is None:
        base = os.path.join(xdg, "sessionmem")
    else:
        base = f"/tmp/sessionmem-{uid}"
    problem = private_dir_problem(base, uid)
    if problem == "missing":
        if not create:
            return base
        try:
            os.mkdir(base, 0o700)
        except FileExistsError:
            pass  # another process won the race; checked below
        problem = private_dir_problem(base, uid)
    if problem is not None:
        raise PathError(
            f"unsafe runtime folder: {problem}. Remove it (or fix its owner and mode "
            f"to 0700) so sessionmem can create a private one"
        )
    return base


def check_socket_path(path: str) -> str:
    if len(os.fsencode(path)) >= SUN_PATH_MAX:
        raise PathError(
            f"socket path is {len(os.fsencode(path))} bytes, over the {SUN_PATH_MAX - 1}-byte "
            f"limit of Unix sockets: {path}; choose a shorter --socket"
        )
    return path


def locate(
    project: str | os.PathLike[str] | None = None,
    socket: str | os.PathLike[str] | None = None,
    db: str | os.PathLike[str] | None = None,
    *,
    create_runtime: bool = True,
) -> tuple[str, str, str, bool]:
    """(root, database, socket, whether the socket was given: --socket or
    $SESSIONMEM_SOCKET)."""
    root = find_root(project)
    sock = socket if socket is not None else os.environ.get("SESSIONMEM_SOCKET") or None
    if sock is not None:
        sock_path = os.path.abspath(sock)
    else:
        sock_path = os.path.join(runtime_dir(create_runtime), f"{project_key(root)}.sock")
    # realpath: one database is one daemon however it is named (a symlinked --db or
    # .arela/), and every client finds its lock file under the same name.
    db_path = os.path.realpath(db if db is not None else default_db(root))
    return root, db_path, check_socket_path(sock_path), sock is not None
