"""`sessionmem`: every wire method from the shell, readable output or --json."""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from typing import Any, NoReturn

import click
import msgspec

from . import errors
from .entry import EXIT_NOT_RUNNING, report
from .paths import PathError, resolve

_json = msgspec.json.Encoder()


class Ctx:
    def __init__(self, project: str | None, socket: str | None, as_json: bool, autostart: bool) -> None:
        self.project = project
        self.socket = socket
        self.as_json = as_json
        self.autostart = autostart
        self._session: Any = None

    def session(self, autostart: bool | None = None, check_version: bool = True) -> Any:
        if self._session is None:
            from .session import Session

            self._session = Session(self.project, self.socket,
                                    autostart=self.autostart if autostart is None else autostart,
                                    check_version=check_version)
        return self._session

    def paths(self) -> Any:
        return resolve(self.project, self.socket)

    def out(self, value: Any, human: str | None = None) -> None:
        if self.as_json:
            click.echo(_json.encode(value).decode())
        elif human is not None:
            if human:
                click.echo(human)
        elif value is None:
            pass
        elif isinstance(value, str):
            click.echo(value)
        else:
            click.echo(_json.encode(value).decode())


pass_ctx = click.make_pass_decorator(Ctx)


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"sessionmem: {message}", err=True)
    sys.exit(code)


class _Group(click.Group):
    """Turns sessionmem errors into one readable line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (errors.SessionmemError, PathError) as e:
            message, code = report(e) or (str(e), 1)
            _fail(message, code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--project", type=click.Path(file_okay=False), envvar="SESSIONMEM_PROJECT", help="Project root (default: discovered from the cwd).")
@click.option("--socket", type=click.Path(dir_okay=False), envvar="SESSIONMEM_SOCKET", help="Daemon socket (default: derived from the project).")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.option("--no-autostart", is_flag=True, help="Fail instead of starting a daemon (also SESSIONMEM_NO_AUTOSTART=1).")
@click.version_option(package_name="sessionmem")
@click.pass_context
def main(ctx: click.Context, project: str | None, socket: str | None, as_json: bool, no_autostart: bool) -> None:
    """Shared short-term memory for the agents working on one project."""
    ctx.obj = Ctx(project, socket, as_json, not no_autostart)


# -- session methods -------------------------------------------------------------------
@main.command("id")
@pass_ctx
def session_id(c: Ctx) -> None:
    """Print the session id."""
    c.out(c.session().get_session_id())


@main.group()
def task() -> None:
    """The current task."""


@task.command("get")
@pass_ctx
def task_get(c: Ctx) -> None:
    c.out(c.session().get_current_task())


@task.command("set")
@click.argument("text")
@pass_ctx
def task_set(c: Ctx, text: str) -> None:
    c.out(c.session().set_current_task(text))


@task.command("clear")
@pass_ctx
def task_clear(c: Ctx) -> None:
    c.out(c.session().set_current_task(None))


@main.group()
def ticket() -> None:
    """The active ticket."""


@ticket.command("get")
@pass_ctx
def ticket_get(c: Ctx) -> None:
    c.out(c.session().get_active_ticket())


@ticket.command("set")
@click.argument("ticket_id")
@pass_ctx
def ticket_set(c: Ctx, ticket_id: str) -> None:
    c.out(c.session().set_active_ticket(ticket_id))


@ticket.command("clear")
@pass_ctx
def ticket_clear(c: Ctx) -> None:
    c.out(c.session().set_active_ticket(None))


def _show_messages(c: Ctx, messages: list[Any]) -> None:
    lines = []
    for m in messages:
        when = _dt.datetime.fromtimestamp(m.timestamp / 1000).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"[{when}] {m.role}: {m.content}")
    c.out(messages, "\n".join(lines))


@main.group()
def msg() -> None:
    """Conversation history."""


@msg.command("add")
@click.argument("role", type=click.Choice(["user", "assistant", "system", "tool"]))
@click.argument("content")
@click.option("--timestamp", type=int, help="Epoch milliseconds (default: the daemon's clock).")
@pass_ctx
def msg_add(c: Ctx, role: str, content: str, timestamp: int | None) -> None:
    """Append a message; CONTENT '-' reads it from stdin."""
    if content == "-":
        content = sys.stdin.read()
    c.out(c.session().add_message(role, content, timestamp))


@msg.command("recent")
@click.argument("count", type=click.IntRange(min=0), default=10)
@pass_ctx
def msg_recent(c: Ctx, count: int) -> None:
    """The last COUNT messages, oldest first."""
    _show_messages(c, c.session().get_recent_messages(count))


@msg.command("all")
@pass_ctx
def msg_all(c: Ctx) -> None:
    _show_messages(c, c.session().get_all_messages())


@main.group()
def files() -> None:
    """Open files."""


@files.command("track")
@click.argument("paths", nargs=-1, required=True)
@pass_ctx
def files_track(c: Ctx, paths: tuple[str, ...]) -> None:
    for path in paths:
        c.session().track_open_file(path)


@files.command("untrack")
@click.argument("paths", nargs=-1, required=True)
@pass_ctx
def files_untrack(c: Ctx, paths: tuple[str, ...]) -> None:
    for path in paths:
        c.session().untrack_file(path)


@files.command("list")
@pass_ctx
def files_list(c: Ctx) -> None:
    paths = c.session().get_open_files()
    c.out(paths, "\n".join(paths))


@main.group()
def ctx() -> None:
    """Context key-values (values are JSON)."""


@ctx.command("set")
@click.argument("key")
@click.argument("value")
@click.option("--string", "as_string", is_flag=True, help="Store VALUE as a string, not JSON.")
@pass_ctx
def ctx_set(c: Ctx, key: str, value: str, as_string: bool) -> None:
    """Set KEY to VALUE, parsed as JSON (text that is not JSON is stored as a string)."""
    parsed: Any = value
    if not as_string:
        try:
            parsed = msgspec.json.decode(value)
        except msgspec.DecodeError:
            parsed = value
    c.out(c.session().set_context(key, parsed))


@ctx.command("get")
@click.argument("key")
@pass_ctx
def ctx_get(c: Ctx, key: str) -> None:
    value = c.session().get_context(key)
    c.out(value, _json.encode(value).decode())


@ctx.command("del")
@click.argument("key")
@pass_ctx
def ctx_del(c: Ctx, key: str) -> None:
    c.out(c.session().delete_context(key))


@ctx.command("all")
@pass_ctx
def ctx_all(c: Ctx) -> None:
    c.out(c.session().get_all_context())


@main.command()
@pass_ctx
def snapshot(c: Ctx) -> None:
    """Write unsaved changes to the database now."""
    r = c.session().snapshot()
    c.out(r, f"wrote {r.messages} message(s), {r.files} file change(s), {r.contextKeys} context change(s) in {r.durationMs} ms" if r.written else "nothing to write")


@main.command()
@pass_ctx
def restore(c: Ctx) -> None:
    """Reload the last snapshot, dropping unsaved changes."""
    c.out(c.session().restore())


@main.command()
@pass_ctx
def clear(c: Ctx) -> None:
    """Start a new, empty session (the old one is deleted)."""
    c.out(c.session().clear())


@main.command()
@pass_ctx
def stats(c: Ctx) -> None:
    s = c.session().get_stats()
    human = "\n".join(f"{k}: {v}" for k, v in msgspec.structs.asdict(s).items())
    c.out(s, human)


@main.command()
@pass_ctx
def hello(c: Ctx) -> None:
    """The daemon's version, pid, paths and capabilities."""
    h = c.session().daemon
    c.out(h, "\n".join(f"{k}: {v}" for k, v in msgspec.structs.asdict(h).items()))


@main.command()
@click.argument("method")
@click.argument("params", required=False)
@pass_ctx
def call(c: Ctx, method: str, params: str | None) -> None:
    """Call METHOD with PARAMS_JSON (an object) and print the raw JSON result."""
    args = None
    if params:
        try:
            args = msgspec.json.decode(params)
        except msgspec.DecodeError as e:
            _fail(f"PARAMS_JSON is not JSON: {e}", 2)
    click.echo(_json.encode(c.session().call(method, args)).decode())


# -- daemon control -------------------------------------------------------------------------
@main.group()
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
    from .connect import daemon_command
    import subprocess

    hello = _running(c)
    if hello is not None:
        c.out(None, f"already running: pid {hello.pid}")
        return
    paths = c.paths()
    proc = subprocess.run(daemon_command(paths, idle_timeout), stdin=subprocess.DEVNULL, check=False)
    if proc.returncode not in (errors.EXIT_OK, errors.EXIT_ALREADY_RUNNING):
        sys.exit(proc.returncode)
    c._session = None
    hello = _running(c)
    c.out(None, f"started: pid {hello.pid}, socket {paths.socket}" if hello else "started")


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
    _fail(f"daemon pid {hello.pid} did not exit within {timeout:g}s")


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
@main.group()
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
    from . import service as svc

    root = c.paths().root
    lay = svc.Layout.for_project(root)
    if only_print:
        if sys.platform == "darwin":
            _print_files([(str(lay.plist), svc.render_plist(root).decode())])
        else:
            u = svc.render_units(root)
            _print_files([(str(lay.unit_dir / "sessionmem@.socket"), u.socket),
                          (str(lay.unit_dir / "sessionmem@.service"), u.service),
                          (str(lay.env_file), u.env)])
        return
    for line in svc.install(root, start=not no_start):
        click.echo(line)


@service.command("uninstall")
@pass_ctx
def service_uninstall(c: Ctx) -> None:
    """Stop and disable this project's service and remove its files."""
    from . import service as svc

    for line in svc.uninstall(c.paths().root):
        click.echo(line)


@service.command("status")
@pass_ctx
def service_status(c: Ctx) -> None:
    """The service manager's view of this project's socket and daemon."""
    from . import service as svc

    code, lines = svc.status(c.paths().root)
    for line in lines:
        click.echo(line)
    sys.exit(code)


if __name__ == "__main__":
    main()
