"""The method table: each wire method's decoded params turned into a state call.

Pure apart from what it is handed: the clock and id source come in as callables,
and the calls that need I/O (snapshot, restore, shutdown, stats of the shell)
go to a :class:`Host`, which the daemon implements.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from msgspec import Raw

from sessionmem import protocol as p

from .rpc import Handler, check_json_value
from .state import SessionState


class Host(Protocol):
    state: SessionState

    def snapshot(self) -> Coroutine[Any, Any, p.SnapshotResult]: ...
    def restore(self) -> Coroutine[Any, Any, None]: ...
    def shutdown_method(self) -> Coroutine[Any, Any, None]: ...
    def stats(self) -> p.Stats: ...
    def hello(self, params: p.HelloParams) -> p.HelloResult: ...


def build_handlers(
    host: Host, now_ms: Callable[[], int], new_id: Callable[[], str], max_depth: int
) -> dict[str, Handler]:
    # Handlers read host.state at call time: restore and clear replace the state object.
    def add_message(a: p.AddMessageParams) -> None:
        ts = a.timestamp if type(a.timestamp) is int else now_ms()
        host.state.add_message(a.role, a.content, ts)

    def set_context(a: p.SetContextParams) -> None:
        value = bytes(a.value)  # copy: a Raw would pin the whole request frame
        check_json_value(value, max_depth, "params.value")
        host.state.set_context(a.key, value)

    def get_context(a: p.KeyParams) -> Raw | None:
        return host.state.get_context(a.key)

    def clear(_: p.NoParams) -> str:
        host.state.clear(new_id(), now_ms())
        return host.state.session_id

    return {
        "getSessionId": lambda _: host.state.session_id,
        "getCurrentTask": lambda _: host.state.current_task,
        "setCurrentTask": lambda a: host.state.set_current_task(a.task),
        "addMessage": add_message,
        "getRecentMessages": lambda a: host.state.recent_messages(a.count),
        "getAllMessages": lambda _: host.state.all_messages(),
        "trackOpenFile": lambda a: host.state.track_file(a.filePath),
        "untrackFile": lambda a: host.state.untrack_file(a.filePath),
        "getOpenFiles": lambda _: host.state.open_files(),
        "setActiveTicket": lambda a: host.state.set_active_ticket(a.ticketId),
        "getActiveTicket": lambda _: host.state.active_ticket,
        "setContext": set_context,
        "getContext": get_context,
        "deleteContext": lambda a: host.state.delete_context(a.key),
        "getAllContext": lambda _: host.state.all_context(),
        "snapshot": lambda _: host.snapshot(),
        "restore": lambda _: host.restore(),
        "clear": clear,
        "getStats": lambda _: host.stats(),
        "hello": host.hello,
        "shutdown": lambda _: host.shutdown_method(),
    }
