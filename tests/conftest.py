"""Fixtures that run the real thing: a sessionmemd process, its socket, its SQLite file."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DAEMON = [sys.executable, "-m", "sessionmemd"]
CLI = [sys.executable, "-m", "sessionmem"]  # the console script's entry point


def wait_for(pred: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def answers(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Raw:
    """A raw JSON-RPC connection: bytes in, parsed JSON out."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buf = b""
        self.next_id = 0

    def send(self, data: bytes | dict[str, Any] | list[Any]) -> None:
        if not isinstance(data, bytes):
            data = json.dumps(data).encode() + b"\n"
        self.sock.sendall(data)

    def recv(self) -> Any:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionResetError("closed by daemon")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, method: str, params: Any = None) -> Any:
        self.next_id += 1
        req: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": self.next_id}
        if params is not None:
            req["params"] = params
        self.send(req)
        reply = self.recv()
        assert reply["id"] == self.next_id, reply
        return reply

    def result(self, method: str, params: Any = None) -> Any:
        reply = self.call(method, params)
        assert "error" not in reply, reply
        return reply["result"]

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


class Daemon:
    def __init__(self, root: Path, socket_path: Path, db: Path, args: list[str], env: dict[str, str]) -> None:
        self.root = root
        self.socket = socket_path
        self.db = db
        self.args = args
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root.parent / f"daemon-{socket_path.stem}.log"

    def cmd(self, *extra: str) -> list[str]:
        return [*DAEMON, "--project", str(self.root), "--socket", str(self.socket), "--db", str(self.db), *self.args, *extra]

    def start(self, *extra: str, wait: bool = True) -> Daemon:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.cmd(*extra), stdout=log, stderr=log, env=self.env)
        if wait:
            wait_for(lambda: self._ready(), 15, f"sessionmemd on {self.socket}")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"sessionmemd exited with {self.proc.returncode}:\n{self.read_log()}")
        return answers(self.socket)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def read_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def conn(self) -> Raw:
        return Raw(self.socket)

    def session(self, session_id: str | None = None) -> Any:
        from sessionmem import Session

        return Session(project=self.root, socket=self.socket, autostart=False, session_id=session_id)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A private runtime folder and no autostart unless a test asks for it."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    e = dict(os.environ)
    e["XDG_RUNTIME_DIR"] = str(run)
    e["SESSIONMEM_NO_AUTOSTART"] = "1"
    for var in ("SESSIONMEM_PROJECT", "SESSIONMEM_SOCKET", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID"):
        e.pop(var, None)
    return e


STORES = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_stores: run the module's daemon tests against SQLite and PostgreSQL")
    config.addinivalue_line("markers", "sqlite_only(reason): a both_stores test about the SQLite file or "
                            "durability periodic (PostgreSQL always commits before the reply)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked both_stores (e.g. a module's ``pytestmark``) that starts a daemon
    runs once per store: the same test, not a copy."""
    if (metafunc.definition.get_closest_marker("both_stores") and "store" in metafunc.fixturenames
            and not metafunc.definition.get_closest_marker("sqlite_only")):
        metafunc.parametrize("store", STORES, indirect=True)


@pytest.fixture
def store(request: pytest.FixtureRequest) -> str | None:
    """The PostgreSQL URL the daemons of this test use (a database of its own), or
    None for the SQLite file (the default, and every test not marked both_stores)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return None
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def make_daemon(tmp_path: Path, env: dict[str, str], store: str | None) -> Iterator[Any]:
    made: list[Daemon] = []

    def make(*args: str, root: Path | None = None, db: Path | None = None, name: str = "d", start: bool = True) -> Daemon:
        r = root or tmp_path / "proj"
        r.mkdir(exist_ok=True)
        if store is not None:
            # One project key per project folder: daemons of one folder share its rows.
            args = ("--store", store, "--project-key", str(r), *args)
        d = Daemon(r, tmp_path / f"{name}.sock", db or r / ".arela" / "memory" / "session.db", list(args), env)
        made.append(d)
        if start:
            d.start()
        return d

    yield make
    for d in made:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)


@pytest.fixture
def daemon(make_daemon: Any) -> Daemon:
    return make_daemon()


def run_cli(args: list[str], env: dict[str, str], cwd: Path | None = None, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, cwd=cwd, input=input, capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real, small file system (to fill up, or remount read-only); skips without root."""
    if os.getuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """768 KiB: fills up after a few hundred 8 KB messages."""
    with tmpfs(tmp_path / "tiny", "768k") as mnt:
        yield mnt


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """One throwaway PostgreSQL cluster for the whole run (tests/pgcluster.py); skips,
    saying why, where no server can run."""
    from pgcluster import Cluster

    try:
        cluster = Cluster()
        cluster.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"no PostgreSQL server can run here: {e}")
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_url(pg_cluster: Any, request: pytest.FixtureRequest) -> str:
    """A database of the test's own in the run's cluster."""
    import hashlib

    name = "t_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
    return str(pg_cluster.create_database(name))
