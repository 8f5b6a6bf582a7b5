"""`sessionmem store copy --to [URL]` / `--from [URL]`: a project's sessions from its SQLite
file into a PostgreSQL store under the project key, or back (sessionmemd.storecopy does
the copy; this module finds the stores and the daemon, and reports)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from .. import errors
from ..paths import resolve
from .base import Ctx, fail, pass_ctx


@click.group()
def store() -> None:
    """Move this project's sessions between its SQLite file and a PostgreSQL store."""


@store.command("copy")
@click.option("--to", "to_url", is_flag=False, flag_value="", default=None, metavar="[URL]",
              help="Copy the SQLite file's sessions into this PostgreSQL store (no URL: the one "
                   "$SESSIONMEM_STORE or sessionmem.toml names).")
@click.option("--from", "from_url", is_flag=False, flag_value="", default=None, metavar="[URL]",
              help="Copy this PostgreSQL store's sessions into the SQLite file (no URL: as for --to).")
@click.option("--project-key", default=None,
              help="The project's key in the PostgreSQL store (else $SESSIONMEM_PROJECT_KEY, sessionmem.toml, "
                   "the git origin: as the daemon finds it).")
@click.option("--db", type=click.Path(dir_okay=False), default=None,
              help="The SQLite file (default: <root>/.arela/memory/session.db).")
@pass_ctx
def copy(c: Ctx, to_url: str | None, from_url: str | None, project_key: str | None, db: str | None) -> None:
    """Copy every session, all or nothing, into a store that holds none.

    Works while daemons run: the source is read at one moment (a daemon serving the SQLite
    file is asked for a snapshot first); a daemon serving the target must be stopped first.
    The URL's password is never printed: give it through PGPASSWORD, ~/.pgpass,
    $SESSIONMEM_STORE or sessionmem.toml rather than on this command line, which ps shows."""
    from sessionmemd import storecopy
    from sessionmemd.storeurl import StoreChoiceError, choose, mask

    if (to_url is None) == (from_url is None):
        raise click.UsageError("give exactly one of --to [URL] and --from [URL]")
    paths = resolve(c.project, c.socket, db)
    given = to_url if to_url is not None else from_url
    try:
        choice = choose(paths.root, given or None, project_key, dict(os.environ))
    except StoreChoiceError as e:
        fail(str(e))
    if choice.url is None or choice.project_key is None:
        fail("no PostgreSQL store to copy " + ("to" if to_url is not None else "from") +
             ": give a URL, or name one in $SESSIONMEM_STORE or [store] url in sessionmem.toml")
    served: int | None = None
    try:
        if to_url is not None:
            served = _flush(c, paths.db)
            report = storecopy.copy(storecopy.SqliteSource(paths.db),
                                    storecopy.PgTarget(choice.url, choice.project_key))
        else:
            report = storecopy.copy(storecopy.PgSource(choice.url, choice.project_key),
                                    storecopy.SqliteTarget(paths.db))
    except storecopy.CopyError as e:
        fail(mask(str(e), choice.url))
    line = (f"copied {report.sessions} session(s) ({report.messages} messages, {report.files} files, "
            f"{report.context_keys} context keys, {report.leases} lease(s)) from {report.source} to "
            f"{report.target}; current session: {report.current}")
    if report.replaced:
        line += f"; replaced the target's empty session(s) {', '.join(report.replaced)}"
    c.out({"sessions": report.sessions, "messages": report.messages, "files": report.files,
           "contextKeys": report.context_keys, "leases": report.leases, "current": report.current,
           "revision": report.revision, "replaced": report.replaced, "source": report.source,
           "target": report.target}, line)
    if served is not None:
        click.echo(f"sessionmem: note: sessionmemd (pid {served}) still serves {paths.db}: what it is told from "
                   f"now on stays there. To switch, stop it (`sessionmem daemon stop`) and name the store in "
                   f"sessionmem.toml or $SESSIONMEM_STORE", err=True)


def _flush(c: Ctx, db: Path) -> int | None:
    """The pid of the daemon serving the SQLite file ``db``, after it wrote everything it
    acknowledged (a snapshot: under durability periodic the last second may be in memory
    only); None when no daemon serves that file. Never starts one."""
    from ..session import Session

    try:
        # No version or store check: whatever it is, only what it serves matters here.
        s: Any = Session(c.project, c.socket, autostart=False, check_version=False)
    except errors.ConnectionFailed:
        return None
    with s:
        hello = s.daemon
        if hello.store not in ("sqlite", "") or Path(hello.dbPath).resolve() != db.resolve():
            return None  # it serves another store: the file is nobody's now
        s.snapshot()
        return int(hello.pid)


COMMANDS: list[click.Command] = [store]
