"""`sessionmem` commands on the session: every wire method from the shell, readable
output or --json."""

from __future__ import annotations

import sys
import time
from typing import Any, TypeVar, get_args

import click
import msgspec

from .. import errors
from ..protocol import Role
from . import report
from .base import Ctx, fail, pass_ctx
from .call import run_call

_json = msgspec.json.Encoder()
COMMANDS: list[click.Command] = []
C = TypeVar("C", bound=click.Command)


def _command(cmd: C) -> C:
    """Register a top-level command (app.py adds them to the group)."""
    COMMANDS.append(cmd)
    return cmd


# -- session methods -------------------------------------------------------------------
@_command
@click.command("id")
@pass_ctx
def session_id(c: Ctx) -> None:
    """Print the session id."""
    c.out(c.session().get_session_id())


def _text_field(name: str, help: str, getter: str, setter: str, metavar: str) -> None:
    """A `get` / `set VALUE` / `clear` group for one optional text field."""
    group = click.Group(name, help=help)
    what = help.rstrip(".").lower()

    @group.command("get", help=f"Print {what} (nothing when none is set).")
    @pass_ctx
    def get(c: Ctx) -> None:
        c.out(getattr(c.session(), getter)())

    @group.command("set", help=f"Set {what} to {metavar}.")
    @click.argument("value", metavar=metavar)
    @click.option("--expect", metavar="OLD", help="Only if the current value is OLD (else exit 1, nothing changed).")
    @click.option("--expect-unset", is_flag=True, help="Only if none is set now.")
    @pass_ctx
    def set_(c: Ctx, value: str, expect: str | None, expect_unset: bool) -> None:
        condition: dict[str, Any] = {}
        if expect is not None or expect_unset:
            condition["expect"] = None if expect_unset else expect
        c.out(getattr(c.session(), setter)(value, **condition))

    @group.command("clear", help=f"Unset {what}.")
    @pass_ctx
    def clear_(c: Ctx) -> None:
        c.out(getattr(c.session(), setter)(None))

    COMMANDS.append(group)


_text_field("task", "The current task.", "get_current_task", "set_current_task", "TEXT")
_text_field("ticket", "The active ticket.", "get_active_ticket", "set_active_ticket", "TICKET_ID")


@click.command("claim")
@click.argument("ticket_id")
@pass_ctx
def ticket_claim(c: Ctx, ticket_id: str) -> None:
    """Make TICKET_ID active only if no ticket is; exit 1 naming the holder if one is."""
    try:
        c.session().claim_ticket(ticket_id)
    except errors.Conflict as e:
        # Also when it is TICKET_ID itself: someone else claimed it first.
        sys.exit(report.claim_refused(e.current, e.revision, c.as_json))
    report.say(report.claimed(ticket_id, c.as_json))


next(g for g in COMMANDS if g.name == "ticket").add_command(ticket_claim)  # type: ignore[attr-defined]


def _show_messages(c: Ctx, messages: list[Any]) -> None:
    c.out(messages, "\n".join(report.message_line(m.role, m.content, m.timestamp) for m in messages))


@_command
@click.group()
def msg() -> None:
    """Conversation history."""


@msg.command("add")
@click.argument("role", type=click.Choice(get_args(Role)))
@click.argument("content")
@click.option("--timestamp", type=int, help="Epoch milliseconds (default: the daemon's clock).")
@pass_ctx
def msg_add(c: Ctx, role: str, content: str, timestamp: int | None) -> None:
    """Append a message; CONTENT '-' reads it from stdin."""
    if content == "-":
        content = report.stdin_text()
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
    """Every message, oldest first."""
    _show_messages(c, c.session().get_all_messages())


@msg.command("pop")
@pass_ctx
def msg_pop(c: Ctx) -> None:
    """Remove the newest message and print it (nothing when there is none)."""
    m = c.session().pop_message()
    if m is None:
        c.out(None, "no message to remove")
    else:
        _show_messages(c, [m])


@msg.command("trim")
@click.option("--keep", type=click.IntRange(min=0), required=True, help="How many of the newest to keep.")
@pass_ctx
def msg_trim(c: Ctx, keep: int) -> None:
    """Remove all but the newest --keep N messages; prints how many went."""
    removed = c.session().trim_messages(keep)
    c.out(removed, f"removed {removed} message(s)")


@_command
@click.group()
def files() -> None:
    """Open files."""


@files.command("track")
@click.argument("paths", nargs=-1, required=True)
@pass_ctx
def files_track(c: Ctx, paths: tuple[str, ...]) -> None:
    """Mark PATHS open."""
    for path in paths:
        c.session().track_open_file(path)


@files.command("untrack")
@click.argument("paths", nargs=-1, required=True)
@pass_ctx
def files_untrack(c: Ctx, paths: tuple[str, ...]) -> None:
    """Mark PATHS no longer open."""
    for path in paths:
        c.session().untrack_file(path)


@files.command("list")
@pass_ctx
def files_list(c: Ctx) -> None:
    """The open files, one a line, in the order they were opened."""
    paths = c.session().get_open_files()
    c.out(paths, "\n".join(paths))


@_command
@click.group()
def ctx() -> None:
    """Context key-values (values are JSON)."""


def _json_or_text(value: str, as_string: bool = False, name: str = "VALUE") -> Any:
    """``value`` parsed as JSON; text that is not JSON is kept as a string, unless it starts
    like JSON (an object, an array, a string, a number): a typo there is an error (exit 2),
    not a string stored in its place."""
    if as_string:
        return value
    try:
        return msgspec.json.decode(value)
    except msgspec.DecodeError as e:
        if value.lstrip()[:1] in tuple('{["-0123456789'):
            fail(f"{name} {value[:40]!r} starts like JSON but is not: {e}; to store it as text, use --string", 2)
        return value


@ctx.command("set")
@click.argument("key")
@click.argument("value")
@click.option("--string", "as_string", is_flag=True, help="Store VALUE as a string, not JSON.")
@click.option("--expect", metavar="OLD", help="Only if the value now is OLD (JSON; null: absent), else exit 1.")
@pass_ctx
def ctx_set(c: Ctx, key: str, value: str, as_string: bool, expect: str | None) -> None:
    """Set KEY to VALUE, parsed as JSON. Other text is stored as a string, but text that
    starts like JSON ({ [ " a digit -) and is not JSON is an error: --string stores it."""
    condition = {} if expect is None else {"expect": _json_or_text(expect, as_string and expect != "null", "--expect")}
    c.out(c.session().set_context(key, _json_or_text(value, as_string), **condition))


@ctx.command("get")
@click.argument("key")
@pass_ctx
def ctx_get(c: Ctx, key: str) -> None:
    """Print KEY's value as JSON (null when it has none)."""
    value = c.session().get_context(key)
    c.out(value, _json.encode(value).decode())


@ctx.command("del")
@click.argument("key")
@click.option("--expect", metavar="OLD", help="Only if the value now is OLD (JSON), else exit 1.")
@pass_ctx
def ctx_del(c: Ctx, key: str, expect: str | None) -> None:
    """Remove KEY."""
    condition = {} if expect is None else {"expect": _json_or_text(expect, name="--expect")}
    c.out(c.session().delete_context(key, **condition))


@ctx.command("all")
@pass_ctx
def ctx_all(c: Ctx) -> None:
    """Every key and its value, as one JSON object."""
    c.out(c.session().get_all_context())


@_command
@click.command()
@pass_ctx
def snapshot(c: Ctx) -> None:
    """Write unsaved changes to the database now."""
    r = c.session().snapshot()
    c.out(r, f"wrote {r.messages} message(s), {r.files} file change(s), {r.contextKeys} context change(s) in {r.durationMs} ms" if r.written else "nothing to write")


@_command
@click.command()
@pass_ctx
def restore(c: Ctx) -> None:
    """Reload the last snapshot, dropping unsaved changes."""
    c.out(c.session().restore())


@_command
@click.command()
@pass_ctx
def sync(c: Ctx) -> None:
    """Return once the daemon has applied every change committed before (several hosts
    on one PostgreSQL project); print the revision."""
    r = c.session().sync()
    c.out(r, f"revision {r.revision}")


@_command
@click.command()
@pass_ctx
def clear(c: Ctx) -> None:
    """Start a new, empty session (the old one is deleted). With --session ID: empty
    that session and keep its id."""
    c.out(c.session().clear())


def _fields(struct: Any) -> str:
    """A reply's fields, one a line, aligned, each as a person reads it (--json: as sent)."""
    values = msgspec.structs.asdict(struct)
    labels = {k: k.removesuffix("Ms") + ":" for k in values}  # the unit goes with the value
    width = max(map(len, labels.values()), default=0)
    return "\n".join(f"{labels[k]:{width}} {_readable(k, v)}" for k, v in values.items())


def _readable(name: str, value: Any) -> str:
    """Epoch milliseconds as local time, milliseconds as a duration, bytes in KiB/MiB: by
    the field's name (the wire's: ``...At``/``startTime``, ``...Ms``, ``maxFrame``)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if not isinstance(value, (int, float)):
        return str(value)
    if name.endswith("At") or name == "startTime":
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value / 1000))
    if name.endswith("Ms"):
        return _duration(value / 1000)
    if name == "maxFrame":
        return _size(value)
    return str(value)


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    d, h = divmod(h, 24)
    return " ".join(f"{n}{unit}" for n, unit in ((d, "d"), (h, "h"), (m, "m"), (s, "s")) if n) or "0s"


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.4g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@_command
@click.command()
@pass_ctx
def stats(c: Ctx) -> None:
    """The session's counts and the daemon's figures (getStats)."""
    s = c.session().get_stats()
    c.out(s, _fields(s))


@_command
@click.command()
@pass_ctx
def hello(c: Ctx) -> None:
    """The daemon's version, pid, paths and capabilities."""
    h = c.session().daemon
    c.out(h, _fields(h))


def _gist(ch: Any) -> str:
    if ch.message is not msgspec.UNSET:
        text = ch.message.content.replace("\n", " ")
        return f"{ch.message.role}: {text[:100]}{'...' if len(text) > 100 else ''}"
    for field in ("task", "ticketId", "filePath", "newSessionId", "forkFrom", "removed"):
        value = getattr(ch, field)
        if value is not msgspec.UNSET:
            return f"{field}={_json.encode(value).decode()}"
    if ch.key is not msgspec.UNSET:
        value = "" if ch.value is msgspec.UNSET else " = " + _json.encode(ch.value).decode()[:100]
        return f"{ch.key}{value}"
    if ch.lease is not msgspec.UNSET:  # acquireLease, releaseLease, leaseExpired
        return f"{ch.lease.name} owner={ch.lease.owner} token={ch.lease.token}"
    return ""


# Changes to the set of sessions, or to which one is current: their line names the session.
SESSION_OPS = frozenset({"createSession", "deleteSession", "setCurrentSession", "importSession", "clear", "restore"})


def _watch_line(ch: Any, current: str | None) -> str:
    """A change as `watch` prints it: time, revision, op, the session when it is not the
    current one (``current``, as it was before this change; None: not known) or the
    change is to sessions, the gist, and the session current after it when it moved."""
    words = [time.strftime("%H:%M:%S", time.localtime(ch.at / 1000)), f"r{ch.revision}", ch.op]
    if ch.op in SESSION_OPS or ch.sessionId != current:
        words.append(f"session={_json.encode(ch.sessionId).decode()}")
    words.append(_gist(ch))
    if ch.current is not msgspec.UNSET:
        words.append(f"current={_json.encode(ch.current).decode()}")
    return "  ".join(w for w in words if w)


@_command
@click.command()
@click.option("--since", type=click.IntRange(min=0), default=None, help="Replay the changes after revision R first.")
@pass_ctx
def watch(c: Ctx, since: int | None) -> None:
    """Print a line per change as it happens (until Ctrl-C): time, revision, op, the
    session when it is not the current one, the gist."""
    s = c.session()
    current: str | None = None
    if since is None:
        # The current session and the revision it is current at, in one read (the call
        # binds no session), then every change after it: each that moves the current
        # session says so (Change.current). A replay (--since) starts where the current
        # session is not known: its lines all name theirs until one moves it.
        now = s.call("getStats")
        current, since = now.sessionId, now.revision
    try:
        for ch in s.watch(since):
            click.echo(_json.encode(ch).decode() if c.as_json else _watch_line(ch, current))
            sys.stdout.flush()  # a line as it happens, also into a pipe (`| grep`, an agent)
            if ch.current is not msgspec.UNSET:
                current = ch.current
    except KeyboardInterrupt:
        return


@_command
@click.command()
@pass_ctx
def mcp(c: Ctx) -> None:
    """Serve this project's session as an MCP server on stdin/stdout (for a coding agent's
    config: `sessionmem mcp`). Needs the extra: pip install 'sessionmem[mcp]'."""
    try:
        from ..integrations import mcp_server
    except ImportError as e:
        fail(str(e), 1)
    mcp_server.main(c.project, c.socket, c.autostart)


@_command
@click.command()
@click.argument("method")
@click.argument("params", required=False)
@pass_ctx
def call(c: Ctx, method: str, params: str | None) -> None:
    """Call METHOD with PARAMS_JSON (an object, sent as it is: --session does not apply)
    and print the raw JSON result."""
    sys.exit(run_call(c.project, c.socket, not c.autostart, method, params))
