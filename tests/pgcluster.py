"""A throwaway PostgreSQL cluster for the tests: Debian's server binaries, `initdb` and
`pg_ctl` in a temporary folder, reached only through a Unix socket in that folder (no TCP
port), run as a non-root user because PostgreSQL refuses to run as root. One cluster per
test run; each test that needs one makes a database of its own in it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "sessionmem"  # the cluster's own role (trust authentication over its socket)


def server_bin() -> Path | None:
    """The newest installed server's bin folder (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _run_as() -> list[str]:
    """How to run the server's commands: as ourselves, or as root through a non-root user."""
    if os.getuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"]
    raise RuntimeError("running as root and no non-root user (postgres, nobody) to run PostgreSQL as")


class Cluster:
    def __init__(self, durable: bool = False) -> None:
        # durable: fsync on (PostgreSQL's default) for benchmarks comparing production
        # settings; the tests' clusters run without it (see start).
        self.durable = durable
        bin_dir = server_bin()
        if bin_dir is None:
            raise RuntimeError("no PostgreSQL server here (Debian package postgresql; .ci/run installs it)")
        self.bin = bin_dir
        self.as_user = _run_as()
        self.base = Path(tempfile.mkdtemp(prefix="sessionmem-pg-"))
        self.data = self.base / "data"
        self.sock_dir = self.base  # the socket file: <base>/.s.PGSQL.5432
        if self.as_user:
            user = self.as_user[2]
            pw = pwd.getpwnam(user)
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        os.chmod(self.base, 0o700)
        self.log = self.base / "server.log"

    def _cmd(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> None:
        r = self._cmd(str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                      "--no-sync", "-E", "UTF8", "--locale=C")
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed: {r.stderr.strip() or r.stdout.strip()}")
        # No TCP at all: the socket in our own folder is the only way in. fsync off: a
        # throwaway cluster (durability across a crash of the server is not under test).
        self._pg_ctl_start()

    def _pg_ctl_start(self) -> None:
        sync = "-c fsync=on -c synchronous_commit=on" if self.durable else "-c fsync=off"
        opts = f"-c listen_addresses='' -k {self.sock_dir} {sync} -c max_connections=100"
        r = self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts,
                      "-w", "-t", "60", "start")
        if r.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {r.stderr.strip()}\n{log[-2000:]}")

    def stop(self, mode: str = "fast") -> None:
        self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self._pg_ctl_start()

    def url(self, database: str = "postgres") -> str:
        """A libpq URL for ``database`` over the cluster's Unix socket."""
        return f"postgresql:///{database}?host={self.sock_dir}&user={SUPERUSER}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        psql = self.bin / "psql"
        r = subprocess.run([str(psql if psql.exists() else "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-d", self.url(database), "-c", sql], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr.strip()}")
        return r.stdout.strip()

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)
