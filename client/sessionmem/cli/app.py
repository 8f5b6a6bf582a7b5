"""The `sessionmem` click group: global options, and every command module's commands."""

from __future__ import annotations

import click

from . import admin, commands, leases, search, sessions, store, ui
from .base import Ctx, Group

@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--project", type=click.Path(file_okay=False), envvar="SESSIONMEM_PROJECT", help="Project root (default: discovered from the cwd).")
@click.option("--socket", type=click.Path(dir_okay=False), envvar="SESSIONMEM_SOCKET", help="Daemon socket (default: derived from the project).")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.option("--no-autostart", is_flag=True, help="Fail instead of starting a daemon (also SESSIONMEM_NO_AUTOSTART=1).")
@click.option("--session", "session_id", metavar="ID", envvar="SESSIONMEM_SESSION", help="Work on session ID instead of the current one (see `sessions`).")
@click.version_option(package_name="sessionmem")
@click.pass_context
def main(ctx: click.Context, project: str | None, socket: str | None, as_json: bool, no_autostart: bool,
         session_id: str | None) -> None:
    """Shared short-term memory for the agents working on one project."""
    ctx.obj = Ctx(project, socket, as_json, not no_autostart, session_id)




for module in (commands, admin, sessions, ui, leases, search, store):
    for command in module.COMMANDS:
        main.add_command(command)
