"""`sessionmem sessions ...`, `export` and `import`: the project's named sessions."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import IO, Any

import click
import msgspec

from .. import errors
from .base import Ctx, fail, pass_ctx

_json = msgspec.json.Encoder()
_check_line = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
FRAME_SLACK = 4096  # the request's envelope around the records


@click.group()
def sessions() -> None:
    """Named sessions: list, create or fork, make current, delete."""


@sessions.command("list")
@pass_ctx
def sessions_list(c: Ctx) -> None:
    """Every session, the most recently changed first (* marks the current one)."""
    infos = c.session().list_sessions()
    rows = [[f"{'*' if i.current else ' '} {i.sessionId}", f"r{i.revision}", f"{i.messagesCount} msg",
             f"{i.filesOpenCount} files", f"{i.contextKeysCount} keys",
             f"task: {i.currentTask}" if i.currentTask else ""] for i in infos]
    c.out(infos, "\n".join(_columns(rows, right={2, 3, 4})))


def _columns(rows: list[list[str]], right: set[int]) -> list[str]:
    """The rows as lines whose columns line up (those in ``right`` flush right: numbers)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))] if rows else []
    return ["  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            .rstrip() for row in rows]


@sessions.command("new")
@click.option("--id", "session_id", metavar="ID", help="Its id (default: a new UUID).")
@click.option("--fork-from", metavar="ID", help="Copy session ID: task, ticket, files, context, messages.")
@click.option("--up-to", type=click.IntRange(min=0), help="With --fork-from: copy only its first N messages.")
@click.option("--use", is_flag=True, help="Make it the current session.")
@pass_ctx
def sessions_new(c: Ctx, session_id: str | None, fork_from: str | None, up_to: int | None, use: bool) -> None:
    """Create a session and print its id."""
    if up_to is not None and fork_from is None:
        fail("--up-to needs --fork-from", 2)
    c.out(c.session().create_session(session_id, fork_from, up_to, use))


@sessions.command("use")
@click.argument("session_id", metavar="ID")
@pass_ctx
def sessions_use(c: Ctx, session_id: str) -> None:
    """Make session ID the current one (resume it)."""
    c.out(c.session().set_current_session(session_id))


@sessions.command("delete")
@click.argument("session_id", metavar="ID")
@pass_ctx
def sessions_delete(c: Ctx, session_id: str) -> None:
    """Delete session ID (not the current one)."""
    c.out(c.session().delete_session(session_id))


@click.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write to FILE (default: stdout).")
@pass_ctx
def export(c: Ctx, output: str | None) -> None:
    """Write the session (--session ID, else the current one) as JSONL: a header line,
    then one line per message, file and context key."""
    records = c.session().export_session()
    if output is None:
        _write_lines(sys.stdout.buffer, records)
        sys.stdout.flush()
        return
    # Into a temporary file renamed into place: FILE is never left half written. 0600, as
    # the daemon's files are: an export holds the whole conversation.
    path = Path(output)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            _write_lines(f, records)
        os.replace(tmp, path)
    except OSError as e:
        fail(f"cannot write {output}: {e.strerror or e}")
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _write_lines(f: IO[bytes], records: list[Any]) -> None:
    for r in records:
        f.write(_json.encode(r) + b"\n")


@click.command("import")
@click.argument("file", type=click.File("rb"))
@click.option("--id", "session_id", metavar="ID", help="Import under this id (default: the export's).")
@click.option("--use", is_flag=True, help="Make it the current session.")
@pass_ctx
def import_(c: Ctx, file: IO[bytes], session_id: str | None, use: bool) -> None:
    """Create a session from an export (FILE, or - for stdin) and print its id.
    All or nothing: on any error nothing is imported."""
    s = c.session()
    limit = (s.daemon.maxFrame or 16 << 20) - FRAME_SLACK
    records, lines = _read_records(file, limit)
    try:
        c.out(s.import_session(records, session_id, use))
    except errors.InvalidParams as e:
        i = e.data.get("record") if isinstance(e.data, dict) else None
        if isinstance(i, int) and 0 <= i < len(lines):
            fail(f"{file.name}: line {lines[i]}: {e.message.replace(f'records[{i}]: ', '')}")
        raise


def _read_records(file: IO[bytes], limit: int) -> tuple[list[bytes], list[int]]:
    """Each non-blank line checked to be a JSON object, with its line number. Reading
    stops at ``limit`` bytes: the daemon takes no larger request."""
    records: list[bytes] = []
    lines: list[int] = []
    size = 0
    n = 0
    while line := file.readline(limit - size + 1):  # bounded: a 1 GB line is not read whole
        n += 1
        size += len(line)
        if size > limit:
            fail(f"{file.name}: line {n}: the export is larger than the daemon takes in one request "
                  f"({limit} bytes; its --max-frame); nothing was imported")
        line = line.strip()
        if not line:
            continue
        try:
            _check_line(line)
        except (msgspec.DecodeError, RecursionError) as e:
            fail(f"{file.name}: line {n}: not a JSON object: {e}; nothing was imported")
        records.append(line)
        lines.append(n)
    if not records:
        fail(f"{file.name}: empty: an export starts with a session header line; nothing was imported")
    return records, lines


COMMANDS: list[click.Command] = [sessions, export, import_]
