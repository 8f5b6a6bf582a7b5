"""`sessionmemd`: run the daemon in the foreground (or detached with --background)."""

from __future__ import annotations

import dataclasses
import logging
import os
import resource
import signal
import sys
from collections.abc import Callable

import click
import msgspec

from sessionmem import errors
from sessionmem.paths import PathError, resolve

from .config import Config
from .daemon import Daemon
from .listener import AlreadyRunning
from .server import Limits
from .dbcheck import BadDatabase, DatabaseUnusable
from .storage import StoreError
from .storeurl import StoreChoiceError, choose, mask

log = logging.getLogger("sessionmemd")
_DEFAULTS = Limits()


def _setup_logging(level: str) -> None:
    # journald stamps lines itself; elsewhere (a terminal, a log file) we do.
    fmt = "sessionmemd[%(process)d] %(levelname)s %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False


# Descriptors the daemon needs besides its clients: std streams, log, listener, event
# loop, the SQLite files of two connections, lock files, the writer thread's.
FD_RESERVE = 64


def _fit_connections(cfg: Config) -> Config:
    """Raise the fd limit to fit --max-connections, and clamp the connection limit to
    what the process can open: a client past the fd limit would otherwise be dropped
    by accept() with no -32002 and nothing logged."""
    wanted = cfg.limits.max_connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted + FD_RESERVE if hard == resource.RLIM_INFINITY else min(wanted + FD_RESERVE, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    fits = wanted if soft == resource.RLIM_INFINITY else max(1, min(wanted, soft - FD_RESERVE))
    if fits < wanted:
        log.warning("--max-connections %d does not fit the open-file limit (%d, hard %s): "
                    "accepting at most %d connections", wanted, soft,
                    "unlimited" if hard == resource.RLIM_INFINITY else hard, fits)
    return dataclasses.replace(cfg, limits=msgspec.structs.replace(cfg.limits, max_connections=fits))


def _run(cfg: Config, on_ready: Callable[[], None]) -> tuple[int, str]:
    """Run the daemon to its end. Returns (exit code, error message for startup failures)."""
    import uvloop

    from . import heap

    heap.one_arena()  # before the writer and reader threads exist

    os.umask(0o077)  # everything the daemon creates is private, whatever it inherited
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file-size limit becomes EFBIG, not death
    # While the writer thread holds the GIL for a big snapshot, the loop waits for it at
    # most this long per hand-over (default 5 ms): small requests stay quick.
    sys.setswitchinterval(0.001)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    cfg = _fit_connections(cfg)

    async def main() -> int:
        return await Daemon(cfg, on_ready).run()

    try:
        return uvloop.run(main()), ""
    except AlreadyRunning as e:
        return errors.EXIT_ALREADY_RUNNING, str(e)
    except BadDatabase as e:
        return errors.EXIT_BAD_DATABASE, str(e)
    except DatabaseUnusable as e:
        return (errors.EXIT_NO_PERMISSION if e.permission else errors.EXIT_IO), str(e)
    except PathError as e:
        return errors.EXIT_CONFIG, str(e)
    except StoreError as e:  # a server store: unreachable, refused, a newer schema
        return errors.EXIT_IO, mask(str(e), cfg.store_url)
    except OSError as e:
        return errors.EXIT_CONFIG, f"cannot start: {e}"


def _background(cfg: Config, log_path: str) -> None:
    """Classic daemon start: fork, the child detaches and reports "ready" or its
    real startup error through a pipe, the parent relays it and exits with the
    child's code. The caller never waits on a timeout and never owns a zombie."""
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        report = b"".join(chunks).decode(errors="replace")
        status, _, message = report.partition("\n")
        if status == "READY":
            sys.exit(errors.EXIT_OK)
        if not status:  # the child died before saying anything
            _, st = os.waitpid(pid, 0)
            message = f"sessionmemd exited during startup (status {st}); see {log_path}"
            status = str(errors.EXIT_FAILURE)
        click.echo(f"sessionmemd: {message}", err=True)
        sys.exit(int(status))
    os.close(r)
    os.setsid()
    os.chdir("/")  # every path is absolute by now; do not pin the caller's folder
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    if os.fstat(fd).st_size > 10 * 1024 * 1024:
        os.ftruncate(fd, 0)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(fd, 2)
    os.close(null)
    os.close(fd)

    def ready() -> None:
        os.write(w, b"READY\n")
        os.close(w)

    code, message = _run(cfg, ready)
    if message:
        log.error("%s", message)
        try:
            os.write(w, f"{code}\n{message}".encode())
            os.close(w)
        except OSError:
            pass  # already reported ready
    os._exit(code)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--project", type=click.Path(file_okay=False), help="Project root (default: discovered from the cwd).")
@click.option("--db", type=click.Path(dir_okay=False), help="SQLite file (default: <root>/.arela/memory/session.db).")
@click.option("--socket", "socket_path", type=click.Path(dir_okay=False), help="Unix socket path (default: <runtime>/<key>.sock).")
@click.option("--snapshot-interval", type=click.FloatRange(min=0.01), default=1.0, show_default=True, help="Seconds between snapshots of changes.")
@click.option("--durability", type=click.Choice(["periodic", "always"]), default="periodic", show_default=True)
@click.option("--fsync", is_flag=True, help="fsync every commit: survives power loss, not only crashes (slower).")
@click.option("--idle-timeout", type=click.FloatRange(min=0.1), default=None, help="Exit (after a final snapshot) when idle this many seconds.")
@click.option("--max-frame", type=click.IntRange(min=1024), default=_DEFAULTS.max_frame, show_default=True, help="Largest request line in bytes.")
@click.option("--max-connections", type=click.IntRange(min=1), default=_DEFAULTS.max_connections, show_default=True)
@click.option("--max-output", type=click.IntRange(min=65536), default=_DEFAULTS.max_output, show_default=True, help="Unsent output bytes after which a connection is cut off.")
@click.option("--max-depth", type=click.IntRange(min=1, max=500), default=_DEFAULTS.max_depth, show_default=True, help="Deepest nesting of a context value.")
@click.option("--max-messages", type=click.IntRange(min=1), default=None, help="Keep at most the newest N messages of every session (default: no bound).")
@click.option("--session-idle", type=click.FloatRange(min=0.1), default=300.0, show_default=True, help="Seconds unused after which a session (not the current one) is written and dropped from memory.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True)
@click.option("--store", default=None, help="postgresql://... URL of a PostgreSQL store (else $SESSIONMEM_STORE, "
              "else [store] url in <root>/sessionmem.toml, else the SQLite file). Durability is then always "
              "'always'. Pass a password through PGPASSWORD, ~/.pgpass, the variable or the toml, not here: argv shows in ps.")
@click.option("--project-key", default=None, help="The project's key in a PostgreSQL store (else $SESSIONMEM_PROJECT_KEY, "
              "else [store] project_key in sessionmem.toml, else the git origin as host/owner/repo).")
@click.option("--recover", is_flag=True, help="Move an unusable database aside (renamed, never deleted) and start empty.")
@click.option("--background", is_flag=True, help="Detach; exit once the daemon serves (0) or failed (its error).")
@click.version_option(package_name="sessionmem")
def main(
    project: str | None,
    db: str | None,
    socket_path: str | None,
    snapshot_interval: float,
    durability: str,
    fsync: bool,
    idle_timeout: float | None,
    max_frame: int,
    max_connections: int,
    max_output: int,
    max_depth: int,
    max_messages: int | None,
    session_idle: float,
    log_level: str,
    recover: bool,
    background: bool,
    store: str | None = None,
    project_key: str | None = None,
) -> None:
    """The sessionmem daemon: serves one project's session over a Unix socket."""
    _setup_logging(log_level)
    try:
        paths = resolve(project, socket_path, db)
    except PathError as e:
        click.echo(f"sessionmemd: {e}", err=True)
        sys.exit(errors.EXIT_CONFIG)
    try:
        choice = choose(paths.root, store, project_key, dict(os.environ))
    except StoreChoiceError as e:
        click.echo(f"sessionmemd: {e}", err=True)
        sys.exit(errors.EXIT_CONFIG)
    if choice.url is not None:
        # Every change committed in PostgreSQL before it is acknowledged (design §12).
        durability = "always"
    cfg = Config(
        paths=paths,
        snapshot_interval=snapshot_interval,
        durability=durability,  # type: ignore[arg-type]
        idle_timeout=idle_timeout,
        limits=Limits(max_frame=max_frame, max_connections=max_connections,
                      max_output=max_output, max_depth=max_depth),
        recover=recover,
        fsync=fsync,
        max_messages=max_messages,
        session_idle=session_idle,
        store_url=choice.url,
        project_key=choice.project_key,
    )
    if background:
        _background(cfg, str(paths.log))
    code, message = _run(cfg, lambda: None)
    if message:
        log.error("%s", message)
    sys.exit(code)


if __name__ == "__main__":
    main()
