"""The method table: each wire method's decoded params turned into a call on the
session host (the rules, pure), the feed (watch), or the shell (the calls that need
I/O or the daemon's runtime: snapshot, restore, shutdown, stats, hello).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Protocol

from msgspec import UNSET, Raw

from sessionmem import errors
from sessionmem import protocol as p

from .feed import Feed, Watcher
from .host import SessionHost
from .rpc import Handler, check_json_value


class Shell(Protocol):
    """What the daemon's lifecycle provides to the methods."""

    def snapshot(self) -> Coroutine[Any, Any, p.SnapshotResult]: ...
    def restore(self) -> Coroutine[Any, Any, None]: ...
    def shutdown_method(self) -> Coroutine[Any, Any, None]: ...
    def stats(self) -> p.Stats: ...
    def hello(self, params: p.HelloParams) -> p.HelloResult: ...


def _checked(value: Raw | Any, max_depth: int, field: str) -> Any:
    if value is UNSET:
        return UNSET
    raw = bytes(value)  # copy: a Raw would pin the whole request frame
    check_json_value(raw, max_depth, field)
    return Raw(raw)


def build_handlers(host: SessionHost, feed: Feed, shell: Shell, max_depth: int) -> dict[str, Handler]:
    # Handlers read host.state at call time: restore and clear replace the state object.
    def add_message(a: p.AddMessageParams) -> None:
        host.add_message(a.role, a.content, a.timestamp if type(a.timestamp) is int else None,
                         None if a.id is UNSET else a.id)  # type: ignore[arg-type]

    def set_context(a: p.SetContextParams) -> None:
        value = bytes(a.value)
        check_json_value(value, max_depth, "params.value")
        host.set_context(a.key, value, _checked(a.expect, max_depth, "params.expect"))

    def watch(a: p.WatchParams, conn: Watcher) -> p.WatchResult:
        since = None if a.since is UNSET else a.since
        session = None if a.session is UNSET else a.session
        return feed.watch(conn, since, host.revision, session)  # type: ignore[arg-type]

    def unwatch(_: p.NoParams, conn: Watcher) -> None:
        if not feed.unwatch(conn):
            raise errors.InvalidParams("unwatch: this connection has no watch to end")

    return {
        "getSessionId": lambda _: host.state.session_id,
        "getCurrentTask": lambda _: host.state.current_task,
        "setCurrentTask": lambda a: host.set_current_task(a.task, _checked(a.expect, max_depth, "params.expect")),
        "addMessage": add_message,
        "getRecentMessages": lambda a: host.state.recent_messages(a.count),
        "getAllMessages": lambda _: host.state.all_messages(),
        "trackOpenFile": lambda a: host.track_file(a.filePath),
        "untrackFile": lambda a: host.untrack_file(a.filePath),
        "getOpenFiles": lambda _: host.state.open_files(),
        "setActiveTicket": lambda a: host.set_active_ticket(a.ticketId, _checked(a.expect, max_depth, "params.expect")),
        "getActiveTicket": lambda _: host.state.active_ticket,
        "setContext": set_context,
        "getContext": lambda a: host.state.get_context(a.key),
        "deleteContext": lambda a: host.delete_context(a.key, _checked(a.expect, max_depth, "params.expect")),
        "getAllContext": lambda _: host.state.all_context(),
        "snapshot": lambda _: shell.snapshot(),
        "restore": lambda _: shell.restore(),
        "clear": lambda _: host.clear(),
        "getStats": lambda _: shell.stats(),
        "hello": shell.hello,
        "shutdown": lambda _: shell.shutdown_method(),
        "watch": watch,
        "unwatch": unwatch,
    }
