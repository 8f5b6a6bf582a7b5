"""The blocking client under interruption, refusals and planted sockets: real daemons,
real processes of another uid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionmem import Session, errors

from conftest import Daemon, run_cli

ROOT = os.getuid() == 0


def test_an_interrupted_call_never_hands_its_reply_to_the_next(daemon: Daemon) -> None:
    with daemon.session() as s:
        s.set_current_task("the task")
        s.set_context("k", "the value")

        def interrupt(*_: object) -> None:
            raise KeyboardInterrupt  # what Ctrl-C does while a call waits

        old = signal.signal(signal.SIGALRM, interrupt)
        os.kill(daemon.pid, signal.SIGSTOP)  # the reply comes only after the interrupt
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(KeyboardInterrupt):
                s.get_current_task()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
            os.kill(daemon.pid, signal.SIGCONT)
        assert s.get_context("k") == "the value"  # was: "the task", the late reply
        assert s.get_current_task() == "the task"


def test_a_request_over_the_frame_limit_reports_the_limit_not_a_lost_daemon(make_daemon, env: dict[str, str]) -> None:
    d = make_daemon("--max-frame", "65536")
    r = run_cli(["--socket", str(d.socket), "--project", str(d.root), "msg", "add", "user", "-"],
                env, input="x" * 3_000_000)  # far past the socket buffer: the send itself meets the close
    assert r.returncode == 1, r.stderr
    assert "-32001" in r.stderr and "lost the daemon" not in r.stderr
    with d.session() as s:
        with pytest.raises(errors.FrameTooLargeError):
            s.add_message("user", "y" * 300_000)
        assert s.get_stats().messagesCount == 0  # and the session reconnects by itself


# -- a socket of another user --------------------------------------------------------------
@pytest.fixture
def foreign_server(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A listener run by uid 65534 that prints whatever it is sent."""
    if not ROOT:
        pytest.skip("needs root to run a listener as another uid")
    pub = Path(tempfile.mkdtemp(prefix="sm-foreign-"))
    os.chmod(pub, 0o777)
    sock = pub / "theirs.sock"
    code = textwrap.dedent(
        """
        import os, socket, sys
        os.setgid(65534); os.setuid(65534)
        s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o777); s.listen()
        print("ready", flush=True)
        s.settimeout(20)
        try:
            while True:
                c, _ = s.accept()
                c.settimeout(2)
                try:
                    data = c.recv(65536)
                except OSError:
                    data = b""
                print(repr(data), flush=True)
                c.close()
        except OSError:
            pass
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(sock)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield sock, proc
    proc.kill()
    proc.wait(10)


def _received(proc: subprocess.Popen[str]) -> list[str]:
    proc.kill()
    out, _ = proc.communicate(timeout=10)
    return [line for line in out.splitlines() if line not in ("b''",)]


def test_a_socket_served_by_another_user_gets_no_request(foreign_server: tuple[Path, subprocess.Popen[str]], tmp_path: Path) -> None:
    sock, proc = foreign_server
    with pytest.raises(errors.ConnectionFailed) as ei:
        Session(project=tmp_path, socket=sock, autostart=False)
    assert "uid 65534" in ei.value.message
    assert _received(proc) == []  # not even the hello


def test_a_lock_file_of_another_user_is_not_followed(foreign_server: tuple[Path, subprocess.Popen[str]], tmp_path: Path, env: dict[str, str]) -> None:
    sock, proc = foreign_server
    root = tmp_path / "proj"
    (root / ".arela" / "memory").mkdir(parents=True)
    lock = root / ".arela" / "memory" / "session.db.lock"
    lock.write_text(f"1\n{sock}\n")
    os.chown(lock, 65534, 65534)
    r = run_cli(["--project", str(root), "task", "set", "secret"], env)
    assert r.returncode == 3, r.stderr  # no daemon of ours: nothing was sent anywhere
    assert _received(proc) == []


def test_a_lock_file_of_our_own_naming_a_foreign_socket_is_refused(foreign_server: tuple[Path, subprocess.Popen[str]], tmp_path: Path, env: dict[str, str]) -> None:
    sock, proc = foreign_server
    root = tmp_path / "proj"
    (root / ".arela" / "memory").mkdir(parents=True)
    (root / ".arela" / "memory" / "session.db.lock").write_text(f"1\n{sock}\n")
    r = run_cli(["--project", str(root), "task", "set", "secret"], env)
    assert r.returncode != 0
    assert _received(proc) == []


def test_the_daemon_binds_again_when_its_socket_file_is_deleted(daemon: Daemon, env: dict[str, str]) -> None:
    with daemon.session() as s:
        s.set_current_task("still here")
    os.unlink(daemon.socket)  # a tmp cleaner, a logout emptying $XDG_RUNTIME_DIR
    args = ["--socket", str(daemon.socket), "--project", str(daemon.root)]
    r = run_cli([*args, "daemon", "start"], env)  # at once: never "started" when nothing answers
    assert r.returncode == 0 and f"pid {daemon.pid}" in r.stdout, r.stdout + r.stderr
    r = run_cli([*args, "task", "get"], env)
    assert r.returncode == 0 and r.stdout.strip() == "still here"
    r = run_cli([*args, "daemon", "status"], env)
    assert r.returncode == 0 and f"pid {daemon.pid}" in r.stdout
    assert "bound it again" in daemon.read_log()
