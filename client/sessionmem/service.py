"""Per-user service files: systemd socket activation on Linux, a LaunchAgent on macOS.

systemd: one template pair for every project, ``sessionmem@.socket`` and
``sessionmem@.service``; the instance name is the project key (design §3), so the
socket unit listens at ``%t/sessionmem/<key>.sock``, exactly where clients look.
The service learns its project root from ``~/.config/sessionmem/<key>.env``
(``EnvironmentFile=``), written by ``sessionmem service install``.
"""

from __future__ import annotations

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
# SESSIONMEM_PROJECT: the project root, written by `sessionmem service install`.
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


@dataclass(frozen=True)
class Units:
    socket: str
    service: str
    env: str


def render_units(
    root: Path, python: str | None = None, idle_timeout: float = 900, command: str | None = None
) -> Units:
    return Units(
        socket=SOCKET_UNIT,
        service=SERVICE_UNIT.format(
            exec_start=command or exec_start(python), idle_timeout=f"{idle_timeout:g}"
        ),
        env=f"SESSIONMEM_PROJECT={root}\n",
    )


def launchd_label(root: Path) -> str:
    return f"dev.sessionmem.{project_key(root)}"


def render_plist(root: Path, python: str | None = None) -> bytes:
    """A LaunchAgent that keeps this project's daemon running (launchd's socket
    activation needs launch_activate_socket(), which the stdlib cannot call, so
    on macOS the daemon is started at login and restarted if it crashes)."""
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


def _write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
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
                _write(path, was[1])
        for folder in self.new_dirs:
            try:
                folder.rmdir()
            except OSError:
                pass  # something else lives there now


def install(root: Path, *, start: bool = True) -> list[str]:
    """Write the files and enable the socket; returns what was done, line by line.
    ServiceError when a step fails (no user service manager answers, say), after putting
    every file back as it was."""
    lay = Layout.for_project(root)
    done: list[str] = []
    if sys.platform == "darwin":
        undo = _Undo([lay.plist])
        _write(lay.plist, render_plist(root))
        done.append(f"wrote {lay.plist}")
        if start and (why := _step(["launchctl", "bootstrap", f"gui/{os.getuid()}", str(lay.plist)], done)):
            undo.undo()
            raise ServiceError(f"{why}; nothing was installed")
        return done
    units = render_units(root)
    link = lay.unit_dir / "sockets.target.wants" / f"{lay.instance}.socket"
    files = {lay.unit_dir / "sessionmem@.socket": units.socket, lay.unit_dir / "sessionmem@.service": units.service,
             lay.env_file: units.env}
    undo = _Undo([*files, link])
    for path, text in files.items():
        _write(path, text)
        done.append(f"wrote {path}")
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
        removed = [lay.unit_dir / "sockets.target.wants" / f"{lay.instance}.socket", lay.env_file]
    gone = []
    for path in removed:
        if path.is_symlink() or path.exists():
            path.unlink()
            gone.append(str(path))
            done.append(f"removed {path}")
    if why is not None:
        left = f"removed {', '.join(gone)} all the same" if gone else "no file of it was left"
        raise ServiceError(f"{why}; {left}")
    return done


def status(root: Path) -> tuple[int, list[str]]:
    lay = Layout.for_project(root)
    out: list[str] = []
    if sys.platform == "darwin":
        code = _run(["launchctl", "print", f"gui/{os.getuid()}/{launchd_label(root)}"], out)
    else:
        code = _run(["systemctl", "--user", "status", "--no-pager", f"{lay.instance}.socket", f"{lay.instance}.service"], out)
    return code, out
