"""Per-user service files: systemd socket activation on Linux, a LaunchAgent on macOS.

systemd: one template pair for every project, ``sessionmem@.socket`` and
``sessionmem@.service``; the instance name is the project key (design §3), so the
socket unit listens at ``%t/sessionmem/<key>.sock``, exactly where clients look.
The service learns its project root from ``~/.config/sessionmem/<key>.env``
(``EnvironmentFile=``), written by ``sessionmem service install``.

The store (design §12): the daemon of the service finds it as any daemon does, from
``sessionmem.toml`` at the project root when the project has one. What the installing
shell adds to that (``$SESSIONMEM_STORE``, ``$SESSIONMEM_PROJECT_KEY``, and for a
PostgreSQL store ``$PGPASSWORD``/``$PGPASSFILE``) is recorded in that env file (mode 0600,
whatever the umask: it may hold a password, which never goes into a unit, a plist's
arguments or argv), so the service serves the store a daemon started from that shell
would. A PostgreSQL store also gets a drop-in, ``sessionmem@<key>.service.d/store.conf``,
that lets the daemon open network sockets (the template allows Unix sockets only).
"""

from __future__ import annotations

import contextlib
import os
import plistlib
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .paths import Paths, project_key

SOCKET_UNIT = """\
[Unit]
Description=sessionmem socket for project %i

[Socket]
ListenStream=%t/sessionmem/%i.sock
SocketMode=0600
DirectoryMode=0700
RemoveOnStop=yes

[Install]
WantedBy=sockets.target
"""

SERVICE_UNIT = """\
[Unit]
Description=sessionmem daemon for project %i
Requires=sessionmem@%i.socket
After=sessionmem@%i.socket

[Service]
Type=notify
NotifyAccess=main
# SESSIONMEM_PROJECT (the project root) and the store's variables, if any: written
# by `sessionmem service install`, mode 0600 (it may hold a password).
EnvironmentFile=%E/sessionmem/%i.env
ExecStart={exec_start} --idle-timeout {idle_timeout}
# Idle exit is a clean exit (0): the socket stays, and the next client re-activates us.
Restart=on-failure
RestartSec=2
TimeoutStopSec=60
WatchdogSec=30
NoNewPrivileges=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RestrictAddressFamilies=AF_UNIX
SystemCallArchitectures=native
# Not PrivateTmp/ProtectSystem=strict/ProtectHome: the project (and its .arela/memory
# database) may live anywhere in the user's files, including /tmp.

[Install]
Also=sessionmem@%i.socket
"""


# The command in the generic units shipped in the repository's systemd/ folder: it
# finds sessionmemd on the user manager's PATH. `sessionmem service install` writes
# the absolute path of the Python it runs under instead.
GENERIC_EXEC_START = "/usr/bin/env sessionmemd"


def exec_start(python: str | None = None) -> str:
    return f"{shlex.quote(python or sys.executable)} -m sessionmemd"


# What the installing shell tells a daemon about its store; the PG* ones only matter
# (and are only recorded) for a PostgreSQL store.
STORE_VARS = ("SESSIONMEM_STORE", "SESSIONMEM_PROJECT_KEY")
PG_VARS = ("PGPASSWORD", "PGPASSFILE")
# Lets the daemon reach a PostgreSQL server over TCP: added to the template's AF_UNIX
# (systemd merges the allow-lists of RestrictAddressFamilies=).
STORE_DROPIN = """\
# Written by `sessionmem service install`: this project's store is PostgreSQL, which the
# daemon may reach over the network.
[Service]
RestrictAddressFamilies=AF_INET AF_INET6
"""
# Characters an EnvironmentFile value (and a plist string) carries as they are: printable
# ASCII without quotes, backslash, $ or space, which systemd's parser would take apart.
_SAFE = frozenset(chr(c) for c in range(33, 127)) - set("\"'\\$`")


@dataclass(frozen=True)
class StoreEnv:
    """The store variables the service gets, and whether its store is PostgreSQL."""

    recorded: dict[str, str]
    postgres: bool

    def masked(self) -> dict[str, str]:
        """As --print shows them: no password."""
        from .storename import mask

        url = self.recorded.get("SESSIONMEM_STORE")
        return {k: ("***" if k == "PGPASSWORD" else mask(v, url)) for k, v in self.recorded.items()}


def store_env(root: Path, environ: dict[str, str]) -> StoreEnv:
    """What of ``environ`` the service must get to serve the store a daemon started here
    would (its choice checked as the daemon checks it); ServiceError when it cannot be
    recorded safely or would not start."""
    from sessionmemd.storeurl import StoreChoiceError, choose

    try:
        choice = choose(root, None, None, environ)
    except StoreChoiceError as e:
        raise ServiceError(f"{e}; nothing was installed") from None
    names = STORE_VARS + (PG_VARS if choice.url is not None else ())
    recorded = {k: environ[k] for k in names if environ.get(k)}
    for name, value in recorded.items():
        if not set(value) <= _SAFE:
            how = ("use ~/.pgpass, or percent-encode the password in the URL" if name == "PGPASSWORD"
                   else "percent-encode them (%24 for $, %22 for \", %20 for a space)")
            raise ServiceError(f"${name} holds characters a unit's EnvironmentFile cannot carry safely (quotes, "
                               f"backslash, $, spaces or non-ASCII): {how}; nothing was installed")
    return StoreEnv(recorded, choice.url is not None)


@dataclass(frozen=True)
class Units:
    socket: str
    service: str
    env: str
    dropin: str | None = None  # the PostgreSQL store's drop-in (STORE_DROPIN), else None


def render_units(
    root: Path, python: str | None = None, idle_timeout: float = 900, command: str | None = None,
    store: StoreEnv | None = None, masked: bool = False,
) -> Units:
    """The unit files and this project's env file (with the store's variables; their
    passwords masked when ``masked``, for --print)."""
    variables = {} if store is None else (store.masked() if masked else store.recorded)
    return Units(
        socket=SOCKET_UNIT,
        service=SERVICE_UNIT.format(
            exec_start=command or exec_start(python), idle_timeout=f"{idle_timeout:g}"
        ),
        env=f"SESSIONMEM_PROJECT={root}\n" + "".join(f"{k}={v}\n" for k, v in variables.items()),
        dropin=STORE_DROPIN if store is not None and store.postgres else None,
    )


def launchd_label(root: Path) -> str:
    return f"dev.sessionmem.{project_key(root)}"


def render_plist(root: Path, python: str | None = None, store: StoreEnv | None = None,
                 masked: bool = False) -> bytes:
    """A LaunchAgent that keeps this project's daemon running (launchd's socket
    activation needs launch_activate_socket(), which the stdlib cannot call, so
    on macOS the daemon is started at login and restarted if it crashes). The store's
    variables go in its environment, never its arguments; install writes it 0600."""
    logs = Path.home() / "Library" / "Logs" / "sessionmem"
    doc = {
        "Label": launchd_label(root),
        "ProgramArguments": [python or sys.executable, "-m", "sessionmemd", "--project", str(root)],
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ProcessType": "Background",
        "StandardErrorPath": str(logs / f"{project_key(root)}.log"),
        "WorkingDirectory": str(root),
    }
    if store is not None and store.recorded:
        doc["EnvironmentVariables"] = store.masked() if masked else dict(store.recorded)
    return plistlib.dumps(doc)


def _config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


@dataclass(frozen=True)
class Layout:
    """Where install writes each file."""

    unit_dir: Path
    env_file: Path
    instance: str
    plist: Path

    @property
    def dropin(self) -> Path:
        """The PostgreSQL store's drop-in for this project's service instance."""
        return self.unit_dir / f"{self.instance}.service.d" / "store.conf"

    @classmethod
    def for_project(cls, root: Path) -> Layout:
        key = project_key(root)
        return cls(
            unit_dir=_config_home() / "systemd" / "user",
            env_file=_config_home() / "sessionmem" / f"{key}.env",
            instance=f"sessionmem@{key}",
            plist=Path.home() / "Library" / "LaunchAgents" / f"{launchd_label(root)}.plist",
        )


def managed_by_service(paths: Paths) -> bool:
    """True when a service manager answers for this project's socket, so a client must
    not autostart a competing daemon. The files install writes are not enough: with no
    user manager running (a container, an ssh session without lingering) they promise a
    socket nobody listens on, and a client that trusted them would never start one."""
    if paths.explicit_socket:
        return False
    lay = Layout.for_project(paths.root)
    if sys.platform == "darwin":
        if not lay.plist.exists():
            return False
        return _asked(["launchctl", "print", f"gui/{os.getuid()}/{launchd_label(paths.root)}"])
    if not (lay.unit_dir / "sockets.target.wants" / f"{lay.instance}.socket").exists():
        return False  # not installed: no process to start
    return _asked(["systemctl", "--user", "is-active", "--quiet", f"{lay.instance}.socket"])


def _asked(cmd: list[str]) -> bool:
    """The service manager's yes (exit 0); no when it cannot be asked."""
    try:
        return subprocess.run(cmd, capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class ServiceError(Exception):
    """A step of install or uninstall failed: the message is one line, saying which and
    what was left (nothing, for install)."""


def _write(path: Path, data: str | bytes, private: bool = False) -> None:
    """Write ``path`` whole (a temporary file renamed over it); ``private``: mode 0600 from
    the moment it exists, whatever the umask (it may hold a password)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    try:
        if private:
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data.encode() if isinstance(data, str) else data)
    finally:
        if fd >= 0:
            os.close(fd)
    tmp.replace(path)


def _run(cmd: list[str], log: list[str]) -> int:
    log.append("$ " + shlex.join(cmd))
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as e:  # no systemctl / launchctl at all
        log.append(f"{cmd[0]}: {e.strerror}")
        return 127
    out = (r.stdout + r.stderr).strip()
    if out:
        log.append(out)
    return r.returncode


def _step(cmd: list[str], log: list[str]) -> str | None:
    """Run a step; None when it worked, else one line: the command and its last word."""
    before = len(log)
    if _run(cmd, log) == 0:
        return None
    said = [line for entry in log[before + 1 :] for line in entry.splitlines() if line.strip()]
    return f"`{shlex.join(cmd)}` failed: {said[-1].strip() if said else 'no output'}"


class _Undo:
    """The files and links install touches, as they were, to put back if a step fails:
    a failed install leaves nothing behind (not even a folder it made)."""

    def __init__(self, paths: list[Path]) -> None:
        self.was: dict[Path, tuple[str, str | bytes] | None] = {}
        new_dirs: set[Path] = set()
        for path in paths:
            if path.is_symlink():
                self.was[path] = ("link", os.readlink(path))
            elif path.exists():
                self.was[path] = ("file", path.read_bytes())
            else:
                self.was[path] = None
            parent = path.parent
            while not parent.exists():
                new_dirs.add(parent)
                parent = parent.parent
        self.new_dirs = sorted(new_dirs, key=lambda d: len(d.parts), reverse=True)  # the deepest first

    def undo(self) -> None:
        for path, was in self.was.items():
            if path.is_symlink() or path.exists():
                path.unlink()
            if was is not None and was[0] == "link":
                path.symlink_to(was[1])
            elif was is not None:
                _write(path, was[1], private=True)  # an env file may hold a password
        for folder in self.new_dirs:
            try:
                folder.rmdir()
            except OSError:
                pass  # something else lives there now


def install(root: Path, *, start: bool = True, environ: dict[str, str] | None = None) -> list[str]:
    """Write the files and enable the socket; returns what was done, line by line.
    ServiceError when a step fails (no user service manager answers, say), after putting
    every file back as it was. ``environ`` (default: ours) gives the store's variables
    (store_env)."""
    lay = Layout.for_project(root)
    done: list[str] = []
    store = store_env(root, dict(os.environ if environ is None else environ))
    if store.recorded:
        done.append(f"recorded {', '.join(store.recorded)} (mode 0600)")
    if sys.platform == "darwin":
        undo = _Undo([lay.plist])
        _write(lay.plist, render_plist(root, store=store), private=True)
        done.append(f"wrote {lay.plist}")
        if start and (why := _step(["launchctl", "bootstrap", f"gui/{os.getuid()}", str(lay.plist)], done)):
            undo.undo()
            raise ServiceError(f"{why}; nothing was installed")
        return done
    units = render_units(root, store=store)
    link = lay.unit_dir / "sockets.target.wants" / f"{lay.instance}.socket"
    files = {lay.unit_dir / "sessionmem@.socket": units.socket, lay.unit_dir / "sessionmem@.service": units.service,
             lay.env_file: units.env}
    undo = _Undo([*files, link, lay.dropin])
    for path, text in files.items():
        _write(path, text, private=path == lay.env_file)
        done.append(f"wrote {path}")
    if units.dropin is not None:
        _write(lay.dropin, units.dropin)
        done.append(f"wrote {lay.dropin}")
    elif lay.dropin.exists():  # the store is no longer PostgreSQL
        _remove_dropin(lay)
        done.append(f"removed {lay.dropin}")
    if start:
        for cmd in (["systemctl", "--user", "daemon-reload"],
                    ["systemctl", "--user", "enable", "--now", f"{lay.instance}.socket"]):
            if why := _step(cmd, done):
                # `enable` may have made its link before `--now` found no manager: the
                # link alone would tell every client a service owns the socket.
                _run(["systemctl", "--user", "disable", f"{lay.instance}.socket"], [])
                undo.undo()
                raise ServiceError(f"{why}; nothing was installed (the daemon still starts on demand)")
    return done


def uninstall(root: Path) -> list[str]:
    """Stop and disable the service, remove this project's files; ServiceError when the
    service manager could not be told (its files are removed all the same)."""
    lay = Layout.for_project(root)
    done: list[str] = []
    if sys.platform == "darwin":
        why = _step(["launchctl", "bootout", f"gui/{os.getuid()}/{launchd_label(root)}"], done)
        removed = [lay.plist]
    else:
        why = _step(["systemctl", "--user", "disable", "--now", f"{lay.instance}.socket",
                     f"{lay.instance}.service"], done)
        # The template units serve every project; they are left for the others.
        removed = [lay.unit_dir / "sockets.target.wants" / f"{lay.instance}.socket", lay.env_file, lay.dropin]
    gone = []
    for path in removed:
        if path.is_symlink() or path.exists():
            path.unlink()
            gone.append(str(path))
            done.append(f"removed {path}")
    _remove_dropin(lay)
    if why is not None:
        left = f"removed {', '.join(gone)} all the same" if gone else "no file of it was left"
        raise ServiceError(f"{why}; {left}")
    return done


def _remove_dropin(lay: Layout) -> None:
    """This project's drop-in, and its folder when nothing else is in it."""
    with contextlib.suppress(FileNotFoundError):
        lay.dropin.unlink()
    with contextlib.suppress(OSError):
        lay.dropin.parent.rmdir()


def status(root: Path) -> tuple[int, list[str]]:
    lay = Layout.for_project(root)
    out: list[str] = []
    if sys.platform == "darwin":
        code = _run(["launchctl", "print", f"gui/{os.getuid()}/{launchd_label(root)}"], out)
    else:
        code = _run(["systemctl", "--user", "status", "--no-pager", f"{lay.instance}.socket", f"{lay.instance}.service"], out)
    return code, out
