"""A real user service: unit files checked by systemd, socket activation, sd_notify, launchd."""

from __future__ import annotations

import plistlib
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sessionmem import Session, errors
from sessionmem.paths import project_key
from sessionmem.service import render_plist

from conftest import DAEMON, answers, run_cli, wait_for


def printed_files(out: str) -> dict[str, str]:
    """Split `service install --print` output into {path: content}."""
    files: dict[str, str] = {}
    current = None
    for line in out.splitlines(keepends=True):
        if line.startswith("# /"):
            current = line[2:].strip()
            files[current] = ""
        else:
            assert current is not None
            files[current] += line
    return files


@pytest.mark.skipif(sys.platform == "darwin", reason="systemd units are for Linux")
@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze (Debian package systemd)")
def test_printed_units_are_the_ones_systemd_accepts(tmp_path: Path, env: dict[str, str]) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    e = dict(env, XDG_CONFIG_HOME=str(tmp_path / "config"))
    r = run_cli(["--project", str(root), "service", "install", "--print"], e)
    assert r.returncode == 0, r.stderr
    files = printed_files(r.stdout)
    key = project_key(root.resolve())
    unit_dir = tmp_path / "config" / "systemd" / "user"
    assert set(files) == {str(unit_dir / "sessionmem@.socket"), str(unit_dir / "sessionmem@.service"),
                          str(tmp_path / "config" / "sessionmem" / f"{key}.env")}
    assert not unit_dir.exists()  # --print writes nothing
    socket_unit = files[str(unit_dir / "sessionmem@.socket")]
    service_unit = files[str(unit_dir / "sessionmem@.service")]
    assert "ListenStream=%t/sessionmem/%i.sock" in socket_unit and "SocketMode=0600" in socket_unit
    assert "DirectoryMode=0700" in socket_unit and "Type=notify" in service_unit
    assert files[str(tmp_path / "config" / "sessionmem" / f"{key}.env")] == f"SESSIONMEM_PROJECT={root.resolve()}\n"
    # systemd checks the very text that was printed, as an instance for this project.
    check = tmp_path / "check"
    check.mkdir()
    (check / f"sessionmem@{key}.socket").write_text(socket_unit)
    (check / f"sessionmem@{key}.service").write_text(service_unit)
    run = tmp_path / "xdg-run"
    run.mkdir(mode=0o700)
    v = subprocess.run(["systemd-analyze", "--user", "verify", "--man=no",
                        str(check / f"sessionmem@{key}.socket"), str(check / f"sessionmem@{key}.service")],
                       capture_output=True, text=True, env=dict(e, XDG_RUNTIME_DIR=str(run)), timeout=60)
    assert v.returncode == 0 and v.stdout.strip() == "" and v.stderr.strip() == "", v.stdout + v.stderr
    # and the check does catch a broken unit, so its silence above means something
    (check / f"sessionmem@{key}.service").write_text(service_unit.replace("ExecStart=", "ExecStart=/nonexistent/"))
    bad = subprocess.run(["systemd-analyze", "--user", "verify", "--man=no", str(check / f"sessionmem@{key}.service")],
                         capture_output=True, text=True, env=dict(e, XDG_RUNTIME_DIR=str(run)), timeout=60)
    assert bad.returncode != 0


def test_install_writes_the_printed_files(tmp_path: Path, env: dict[str, str]) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    e = dict(env, XDG_CONFIG_HOME=str(tmp_path / "config"), HOME=str(tmp_path / "home"))
    printed = printed_files(run_cli(["--project", str(root), "service", "install", "--print"], e).stdout)
    r = run_cli(["--project", str(root), "service", "install", "--no-start"], e)
    assert r.returncode == 0, r.stderr
    for path, text in printed.items():
        assert Path(path).read_text() == text


@pytest.mark.skipif(not shutil.which("systemd-socket-activate"), reason="needs systemd-socket-activate")
def test_socket_activation_survives_idle_exit_and_reactivation(tmp_path: Path, env: dict[str, str]) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    sock = tmp_path / "act.sock"
    cmd = ["systemd-socket-activate", "-l", str(sock), "-E", f"SESSIONMEM_PROJECT={root}",
           *DAEMON, "--idle-timeout", "0.5", "--snapshot-interval", "3600"]
    log = open(tmp_path / "log", "ab")

    def activate() -> subprocess.Popen[bytes]:
        n = (tmp_path / "log").read_text().count("Listening on")
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
        wait_for(lambda: (tmp_path / "log").read_text().count("Listening on") > n, what="the activator")
        return proc

    first = activate()
    with Session(project=root, socket=sock, autostart=False) as s:  # this connection starts it
        assert s.daemon.pid == first.pid  # the activator exec'd the daemon on the inherited fd
        assert s.daemon.socketPath == str(sock)
        s.set_current_task("activated")
        s.add_message("user", "before idle exit")
    assert first.wait(30) == 0  # idle exit, after a final snapshot
    assert sock.exists()  # never removed: the service manager owns it
    second = activate()
    with Session(project=root, socket=sock, autostart=False) as s:
        assert s.daemon.pid == second.pid != first.pid
        assert s.get_current_task() == "activated"
        assert [m.content for m in s.get_all_messages()] == ["before idle exit"]
    assert second.wait(30) == 0
    assert sock.exists()
    logs = (tmp_path / "log").read_text()
    assert "idle" in logs


def test_sd_notify_ready_status_stopping_and_watchdog(make_daemon, tmp_path: Path) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    addr = tmp_path / "notify.sock"
    notify.bind(str(addr))
    notify.settimeout(15)
    d = make_daemon(start=False)
    d.env = dict(d.env, NOTIFY_SOCKET=str(addr), WATCHDOG_USEC="200000")
    d.start(wait=False)
    ready = notify.recv(4096).decode().split("\n")
    assert "READY=1" in ready and any(x.startswith("STATUS=") for x in ready)
    assert f"MAINPID={d.pid}" in ready
    assert answers(d.socket)  # READY only once the socket serves
    assert notify.recv(4096) == b"WATCHDOG=1"
    d.send_signal(signal.SIGTERM)
    seen = []
    while True:
        msg = notify.recv(4096).decode()
        seen.append(msg)
        if "STOPPING=1" in msg:
            break
    assert d.proc is not None and d.proc.wait(30) == 0
    notify.close()


def test_journald_logs_carry_no_timestamps(make_daemon) -> None:
    d = make_daemon(start=False)
    d.env = dict(d.env, JOURNAL_STREAM="8:12345")
    d.start()
    d.stop()
    lines = [x for x in d.read_log().splitlines() if "sessionmemd[" in x]
    assert lines and all(x.startswith("sessionmemd[") for x in lines)


def test_launchd_plist_names_the_program_and_arguments(tmp_path: Path) -> None:
    doc = plistlib.loads(render_plist(tmp_path, python="/opt/py/bin/python3"))
    assert doc["Label"] == f"dev.sessionmem.{project_key(tmp_path)}"
    assert doc["ProgramArguments"] == ["/opt/py/bin/python3", "-m", "sessionmemd", "--project", str(tmp_path)]
    assert doc["RunAtLoad"] is True and doc["KeepAlive"] == {"SuccessfulExit": False}


def test_no_autostart_when_a_service_manager_owns_the_socket(tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # The one stand-in of this file: a user systemd cannot run here, so a `systemctl` on
    # PATH answers for it, saying the socket unit is active (the link alone is not enough:
    # tests/test_service_nobus.py).
    root = tmp_path / "proj"
    root.mkdir()
    config = tmp_path / "config"
    wants = config / "systemd" / "user" / "sockets.target.wants"
    wants.mkdir(parents=True)
    (wants / f"sessionmem@{project_key(root.resolve())}.socket").symlink_to("/dev/null")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    asked = tmp_path / "asked"
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {asked}\n[ "$1 $2" = "--user is-active" ]\n')
    (bin_dir / "systemctl").chmod(0o755)
    for k, v in dict(env, XDG_CONFIG_HOME=str(config), PATH=f"{bin_dir}:{env['PATH']}").items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("SESSIONMEM_NO_AUTOSTART")
    if sys.platform == "darwin":
        pytest.skip("checks the systemd marker")
    with pytest.raises(errors.ConnectionFailed, match="service manager owns"):
        Session(project=root, autostart=True)
    assert not list(Path(env["XDG_RUNTIME_DIR"]).glob("sessionmem/*.sock"))
    assert asked.read_text().split() == ["--user", "is-active", "--quiet", f"sessionmem@{project_key(root.resolve())}.socket"]


def test_repository_units_are_the_generic_rendering() -> None:
    from sessionmem.service import GENERIC_EXEC_START, render_units

    repo = Path(__file__).resolve().parent.parent / "systemd"
    u = render_units(Path("/"), command=GENERIC_EXEC_START)
    assert (repo / "sessionmem@.socket").read_text() == u.socket
    assert (repo / "sessionmem@.service").read_text() == u.service
