"""`sessionmem daemon ...` and `sessionmem service ...`: running the daemon, not using it."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from .. import errors
from .base import Ctx, fail, pass_ctx
from .report import EXIT_NOT_RUNNING


# -- daemon control -------------------------------------------------------------------------
@click.group()
def daemon() -> None:
    """Start, stop and inspect this project's daemon."""


def _running(c: Ctx) -> Any:
    """The daemon's hello, or None when none answers (never starts one)."""
    try:
        # No version check: stopping or inspecting an older daemon must still work.
        s = c.session(autostart=False, check_version=False)
    except errors.ConnectionFailed:
        return None
    return s.daemon


@daemon.command("status")
@pass_ctx
def daemon_status(c: Ctx) -> None:
    """Exit 0 when a daemon answers, 3 when none does; starts nothing."""
    hello = _running(c)
    if hello is None:
        c.out(None, f"not running (socket {c.paths().socket})")
        sys.exit(EXIT_NOT_RUNNING)
    st = c.session().get_stats()
    c.out(
        {"hello": hello, "stats": st},
        f"running: pid {hello.pid}, sessionmemd {hello.daemonVersion}, protocol {hello.protocolVersion}\n"
        f"project: {hello.projectRoot}\nsocket:  {hello.socketPath}\ndb:      {hello.dbPath}\n"
        f"session: {st.sessionId} ({st.messagesCount} messages, {st.filesOpenCount} files, "
        f"{st.contextKeysCount} context keys), {st.connections} connection(s)",
    )


@daemon.command("start")
@click.option("--idle-timeout", type=float, default=None, help="Exit after this many idle seconds (default: never).")
@pass_ctx
def daemon_start(c: Ctx, idle_timeout: float | None) -> None:
    """Start a detached daemon for this project (no-op when one runs)."""
    from ..connect import start_daemon

    hello = _running(c)
    if hello is not None:
        c.out(None, f"already running: pid {hello.pid}")
        return
    paths = c.paths()
    ours = start_daemon(paths, idle_timeout=idle_timeout)  # its error, if any, is reported as such
    # "Started" only once it answers: the daemon that owns the database may be one that
    # lost its socket file and has yet to bind it again.
    deadline = time.monotonic() + 10.0
    while (hello := _running(c)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if hello is None:
        fail(f"a daemon owns {paths.db} but none answers on {paths.socket}; see {paths.log}")
    c.out(None, f"{'started' if ours else 'already running'}: pid {hello.pid}, socket {hello.socketPath}")


def _stop(c: Ctx, timeout: float = 30.0) -> bool:
    hello = _running(c)
    if hello is None:
        return False
    s = c.session()
    s.shutdown()
    s.close()
    c._session = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # gone when its pid is
        try:
            os.kill(hello.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        time.sleep(0.02)
    fail(f"daemon pid {hello.pid} did not exit within {timeout:g}s")


@daemon.command("stop")
@pass_ctx
def daemon_stop(c: Ctx) -> None:
    """Snapshot and stop the daemon (no-op when none runs)."""
    c.out(None, "stopped" if _stop(c) else "not running")


@daemon.command("restart")
@click.option("--idle-timeout", type=float, default=None)
@click.pass_context
def daemon_restart(ctx: click.Context, idle_timeout: float | None) -> None:
    """Stop the running daemon (if any) and start the installed version."""
    _stop(ctx.obj)
    ctx.invoke(daemon_start, idle_timeout=idle_timeout)


# -- service files ----------------------------------------------------------------------
@click.group()
def service() -> None:
    """Run this project's daemon as a user service (systemd socket activation / launchd)."""


def _print_files(files: list[tuple[str, str]]) -> None:
    for path, text in files:
        click.echo(f"# {path}")
        click.echo(text, nl=not text.endswith("\n"))


@service.command("install")
@click.option("--print", "only_print", is_flag=True, help="Only print the files; write and start nothing.")
@click.option("--no-start", is_flag=True, help="Write the files but do not enable or start the socket.")
@pass_ctx
def service_install(c: Ctx, only_print: bool, no_start: bool) -> None:
    """Write the unit files (or plist) for this project and start listening."""
    from .. import service as svc

    root = c.paths().root
    lay = svc.Layout.for_project(root)
    if only_print:
        try:
            store = svc.store_env(root, dict(os.environ))
        except svc.ServiceError as e:
            fail(str(e))
        # Passwords masked: --print shows what would be written, not the secret itself.
        if sys.platform == "darwin":
            _print_files([(str(lay.plist), svc.render_plist(root, store=store, masked=True).decode())])
        else:
            u = svc.render_units(root, store=store, masked=True)
            _print_files([(str(lay.unit_dir / "sessionmem@.socket"), u.socket),
                          (str(lay.unit_dir / "sessionmem@.service"), u.service),
                          (str(lay.env_file), u.env)] + ([(str(lay.dropin), u.dropin)] if u.dropin else []))
        return
    try:
        done = svc.install(root, start=not no_start)
    except svc.ServiceError as e:
        fail(str(e))
    for line in done:
        click.echo(line)


@service.command("uninstall")
@pass_ctx
def service_uninstall(c: Ctx) -> None:
    """Stop and disable this project's service and remove its files."""
    from .. import service as svc

    try:
        done = svc.uninstall(c.paths().root)
    except svc.ServiceError as e:
        fail(str(e))
    for line in done:
        click.echo(line)


@service.command("status")
@pass_ctx
def service_status(c: Ctx) -> None:
    """The service manager's view of this project's socket and daemon."""
    from .. import service as svc

    code, lines = svc.status(c.paths().root)
    for line in lines:
        click.echo(line)
    sys.exit(code)


COMMANDS: list[click.Command] = [daemon, service]
