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
    """True when a service manager was told to own this project's socket, so a
    client must not autostart a competing daemon."""
    if paths.explicit_socket:
        return False
    lay = Layout.for_project(paths.root)
    if sys.platform == "darwin":
        return lay.plist.exists()
    return (lay.unit_dir / "sockets.target.wants" / f"{lay.instance}.socket").exists()


def _write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    tmp.replace(path)


def _run(cmd: list[str], log: list[str]) -> int:
    log.append("$ " + shlex.join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    out = (r.stdout + r.stderr).strip()
    if out:
        log.append(out)
    return r.returncode


def install(root: Path, *, start: bool = True) -> list[str]:
    """Write the files and enable the socket; returns what was done, line by line."""
    lay = Layout.for_project(root)
    done: list[str] = []
    if sys.platform == "darwin":
        _write(lay.plist, render_plist(root))
        done.append(f"wrote {lay.plist}")
        if start:
            _run(["launchctl", "bootstrap", f"gui/{os.getuid()}", str(lay.plist)], done)
        return done
    units = render_units(root)
    _write(lay.unit_dir / "sessionmem@.socket", units.socket)
    _write(lay.unit_dir / "sessionmem@.service", units.service)
    _write(lay.env_file, units.env)
    done += [f"wrote {lay.unit_dir / 'sessionmem@.socket'}", f"wrote {lay.unit_dir / 'sessionmem@.service'}",
             f"wrote {lay.env_file}"]
    if start:
        _run(["systemctl", "--user", "daemon-reload"], done)
        _run(["systemctl", "--user", "enable", "--now", f"{lay.instance}.socket"], done)
    return done


def uninstall(root: Path) -> list[str]:
    lay = Layout.for_project(root)
    done: list[str] = []
    if sys.platform == "darwin":
        _run(["launchctl", "bootout", f"gui/{os.getuid()}/{launchd_label(root)}"], done)
        if lay.plist.exists():
            lay.plist.unlink()
            done.append(f"removed {lay.plist}")
        return done
    _run(["systemctl", "--user", "disable", "--now", f"{lay.instance}.socket", f"{lay.instance}.service"], done)
    if lay.env_file.exists():
        lay.env_file.unlink()
        done.append(f"removed {lay.env_file}")
    # The template units serve every project; they are left for the others.
    return done


def status(root: Path) -> tuple[int, list[str]]:
    lay = Layout.for_project(root)
    out: list[str] = []
    if sys.platform == "darwin":
        code = _run(["launchctl", "print", f"gui/{os.getuid()}/{launchd_label(root)}"], out)
    else:
        code = _run(["systemctl", "--user", "status", "--no-pager", f"{lay.instance}.socket", f"{lay.instance}.service"], out)
    return code, out
