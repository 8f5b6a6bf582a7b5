"""`service install|uninstall` where no user systemd answers (this machine, a container, an
ssh session without lingering): one line, non-zero, nothing left behind, and clients
still autostart (issue 16 item 15). The real systemctl, the real missing bus."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sessionmem.paths import project_key

from conftest import run_cli

pytestmark = [
    pytest.mark.skipif(sys.platform == "darwin", reason="systemd"),
    pytest.mark.skipif(not shutil.which("systemctl"), reason="needs systemctl"),
]


@pytest.fixture
def nobus(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    """An environment whose user systemd cannot be reached: XDG_RUNTIME_DIR (env's) holds no bus."""
    e = dict(env, XDG_CONFIG_HOME=str(tmp_path / "config"), HOME=str(tmp_path / "home"))
    e.pop("DBUS_SESSION_BUS_ADDRESS", None)
    r = subprocess.run(["systemctl", "--user", "show-environment"], env=e, capture_output=True, timeout=30)
    if r.returncode == 0:
        pytest.skip("a user systemd answers here")
    return e


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_install_fails_in_one_line_and_leaves_nothing(tmp_path: Path, nobus: dict[str, str]) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    r = run_cli(["--project", str(root), "service", "install"], nobus)
    assert r.returncode == 1 and r.stdout == "", r
    assert r.stderr.count("\n") == 1 and "Failed to connect to bus" in r.stderr and "nothing was installed" in r.stderr
    assert files_under(tmp_path / "config") == []  # not a file, not a folder, not the link


def test_a_failed_install_puts_back_what_another_project_installed(tmp_path: Path, nobus: dict[str, str]) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    units = tmp_path / "config" / "systemd" / "user"
    units.mkdir(parents=True)
    (units / "sessionmem@.socket").write_text("another install's\n")
    r = run_cli(["--project", str(root), "service", "install"], nobus)
    assert r.returncode == 1
    assert files_under(tmp_path / "config") == ["systemd", "systemd/user", "systemd/user/sessionmem@.socket"]
    assert (units / "sessionmem@.socket").read_text() == "another install's\n"


def installed_by_the_old_install(root: Path, nobus: dict[str, str]) -> Path:
    """What `service install` used to leave here: its files, and the link `systemctl
    enable` makes without a manager."""
    assert run_cli(["--project", str(root), "service", "install", "--no-start"], nobus).returncode == 0
    instance = f"sessionmem@{project_key(root.resolve())}.socket"
    subprocess.run(["systemctl", "--user", "enable", instance], env=nobus, capture_output=True, timeout=30)
    link = Path(nobus["XDG_CONFIG_HOME"]) / "systemd" / "user" / "sockets.target.wants" / instance
    assert link.is_symlink()
    return link


def test_uninstall_fails_in_one_line_and_removes_the_projects_files(tmp_path: Path, nobus: dict[str, str]) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    link = installed_by_the_old_install(root, nobus)
    r = run_cli(["--project", str(root), "service", "uninstall"], nobus)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Failed to connect to bus" in r.stderr, r
    assert not link.is_symlink()
    left = files_under(tmp_path / "config")
    assert not [f for f in left if project_key(root.resolve()) in f], left  # the link, the env file
    assert {"systemd/user/sessionmem@.service", "systemd/user/sessionmem@.socket"} <= set(left)  # every project's


def test_a_client_autostarts_when_no_service_manager_answers_for_the_socket(tmp_path: Path, nobus: dict[str, str]) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    installed_by_the_old_install(root, nobus)
    e = dict(nobus)
    e.pop("SESSIONMEM_NO_AUTOSTART")
    r = run_cli(["--project", str(root), "id"], e)
    try:
        assert r.returncode == 0, r.stderr
        status = run_cli(["--project", str(root), "--json", "daemon", "status"], nobus)
        assert status.returncode == 0, status.stderr
    finally:
        stopped = run_cli(["--project", str(root), "daemon", "stop"], nobus)
        if stopped.returncode != 0:
            for line in run_cli(["--project", str(root), "--json", "hello"], nobus).stdout.splitlines():
                os.kill(int(line.split('"pid":')[1].split(",")[0]), signal.SIGKILL)
    assert stopped.stdout == "stopped\n", stopped
