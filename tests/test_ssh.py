"""Reaching the daemon from another host: OpenSSH's Unix-socket forwarding through a
real sshd on 127.0.0.1 (a throwaway host key, a key-only login for the test's user).

The "remote" client knows only the forwarded socket: calls, watch, the CLI; and given a
socket it never starts a daemon of its own. Skips where sshd cannot run."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Daemon, run_cli, wait_for
from sessionmem import Session, errors

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
pytestmark = pytest.mark.skipif(not (SSHD and shutil.which("ssh") and shutil.which("ssh-keygen")),
                                reason="needs OpenSSH (sshd, ssh, ssh-keygen; .ci/run installs them)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real sshd on loopback; yields (port, the client's private key)."""
    d = tmp_path / "ssh"
    d.mkdir(mode=0o700)
    for name in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    shutil.copy(d / "user.pub", d / "authorized_keys")
    os.chmod(d / "authorized_keys", 0o600)
    port = free_port()
    config = d / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
        "AllowStreamLocalForwarding yes\nStreamLocalBindUnlink yes\nLogLevel ERROR\n")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # its privilege-separation folder
    check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)  # type: ignore[list-item]
    if check.returncode != 0:
        pytest.skip(f"sshd cannot run here: {check.stderr.strip()}")
    log = d / "sshd.log"
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=open(log, "wb"))  # type: ignore[list-item]
    try:
        def listening() -> bool:
            if proc.poll() is not None:
                pytest.skip(f"sshd exited: {log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(listening, what="sshd")
        yield port, d / "user"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def forwarded(sshd: tuple[int, Path], daemon: Daemon, tmp_path: Path) -> Iterator[Path]:
    """`ssh -N -L local.sock:<daemon's socket>`: the line README shows."""
    port, key = sshd
    local = tmp_path / "remote-side" / "local.sock"
    local.parent.mkdir(mode=0o700)
    proc = subprocess.Popen(
        ["ssh", "-N", "-L", f"{local}:{daemon.socket}", "-p", str(port), "-i", str(key),
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
         "-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=ERROR", f"{getpass.getuser()}@127.0.0.1"],
        stderr=subprocess.PIPE, text=True)
    try:
        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"ssh exited: {proc.stderr.read() if proc.stderr else ''}")
            return local.exists()

        wait_for(up, what="the forwarded socket")
        yield local
    finally:
        proc.terminate()
        proc.wait(10)


def test_calls_watch_and_the_cli_through_a_forwarded_socket(forwarded: Path, daemon: Daemon, env, tmp_path: Path) -> None:
    elsewhere = tmp_path / "remote-side" / "checkout"  # another host's checkout: no .arela, no lock
    elsewhere.mkdir()
    with Session(project=elsewhere, socket=forwarded) as remote:
        assert remote.daemon.pid == daemon.pid  # the one daemon, the single writer
        remote.set_current_task("from the other host")
        remote.add_message("assistant", "over ssh ✓")
        with daemon.session() as local:
            assert local.get_current_task() == "from the other host"
            assert local.get_recent_messages(1)[0].content == "over ssh ✓"
            changes = []
            since = remote.get_stats().revision  # from here on, however long the watch takes to start

            def watch() -> None:
                for ch in remote.watch(since=since):
                    changes.append(ch)
                    return

            t = threading.Thread(target=watch)
            t.start()
            local.track_open_file("made/locally.py")
            t.join(20)
            assert [(c.op, c.filePath) for c in changes] == [("trackOpenFile", "made/locally.py")]
    e = dict(env, SESSIONMEM_SOCKET=str(forwarded))
    e.pop("SESSIONMEM_NO_AUTOSTART")  # even allowed to, the CLI starts nothing: it was given a socket
    r = run_cli(["task", "get"], e, cwd=elsewhere)
    assert r.returncode == 0 and r.stdout.strip() == "from the other host", r.stderr


def test_a_client_given_a_socket_never_starts_a_daemon(forwarded: Path, daemon: Daemon, env, tmp_path: Path) -> None:
    elsewhere = tmp_path / "remote-side" / "checkout"
    elsewhere.mkdir()
    e = dict(env, SESSIONMEM_SOCKET=str(forwarded))
    e.pop("SESSIONMEM_NO_AUTOSTART")
    assert daemon.stop() == 0  # the remote daemon is gone; the forwarding stays
    with pytest.raises(errors.ConnectionFailed):  # ssh accepts, then finds nobody there
        Session(project=elsewhere, socket=forwarded, autostart=True)
    r = run_cli(["task", "get"], e, cwd=elsewhere)
    assert r.returncode == 3, r.stderr
    # Nothing listens on the socket at all (the forwarding is down too): still nothing started.
    forwarded.unlink()
    with pytest.raises(errors.ConnectionFailed, match="never starts a daemon"):
        Session(project=elsewhere, socket=forwarded, autostart=True)
    r = run_cli(["task", "get"], e, cwd=elsewhere)
    assert r.returncode == 3 and "never starts a daemon" in r.stderr, r.stderr
    time.sleep(0.5)
    assert not (elsewhere / ".arela").exists() and not forwarded.exists()  # no database, no daemon
    out = subprocess.run(["pgrep", "-f", f"sessionmemd.*{elsewhere}"], capture_output=True, text=True)
    assert out.stdout.strip() == ""
