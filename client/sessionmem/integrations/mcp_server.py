"""`sessionmem mcp`: the project's shared session as an MCP server (stdio), on the
official `mcp` SDK (2.x: `MCPServer`).

A coding agent launches it from its config (one line: `sessionmem mcp`, run in the
project, or with `--project DIR`); every tool call is forwarded to the project's daemon,
which the server finds, and starts when none runs, like the CLI. Errors from the daemon
(none answering, a conflict, bad params) come back as MCP tool errors carrying the
daemon's message; the server keeps serving.

Resources (the current session's parts) get update notifications from the daemon's
change feed: a background watch publishes `ResourceUpdated` for each part a change
touches (of the current session), to clients listening (`subscriptions/listen`).

Install: ``pip install 'sessionmem[mcp]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, TypeVar

try:
    from mcp.server.mcpserver import MCPServer
    from pydantic import Field
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("`sessionmem mcp` needs the MCP SDK: pip install 'sessionmem[mcp]'") from None

from .. import errors
from .. import protocol as p
from .._version import __version__
from ..aio import AsyncSession
from ..framing import encode_frame

T = TypeVar("T")

INSTRUCTIONS = """\
Shared short-term memory of this project, kept by a daemon that every agent working on
the project (and the humans' CLI) talks to: the current task, the conversation history,
the open files, the active ticket, context key-values. Read it before you start, write
what others should know, claim a ticket before working on it (claim_ticket fails, naming
the holder, when another agent has it), and wait_for_change instead of polling."""

# Which resources a change of each op touches.
_TOUCHES: dict[str, tuple[str, ...]] = {
    "setCurrentTask": ("task",), "setActiveTicket": ("ticket",), "addMessage": ("messages",),
    "popMessage": ("messages",), "trimMessages": ("messages",), "trackOpenFile": ("files",),
    "untrackFile": ("files",), "setContext": ("context",), "deleteContext": ("context",),
}
PARTS = ("session", "task", "ticket", "messages", "files", "context")


# The params every agent sees in the tools' input schemas.
SessionArg = Annotated[str | None, Field(description="A named session's id; omit for the project's current session.")]
Count = Annotated[int, Field(ge=0, le=10_000, description="How many of the newest messages.")]
Path = Annotated[str, Field(description="The file's path, as you name it (relative to the project root is best).")]
Key = Annotated[str, Field(description="The context key.")]


def uri(part: str) -> str:
    return f"sessionmem://session/{part}"


class Bridge:
    """One connection to the daemon, made on first use and remade after it is lost."""

    def __init__(self, project: str | None, socket: str | None, autostart: bool) -> None:
        self._project, self._socket, self._autostart = project, socket, autostart
        self._session: AsyncSession | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> AsyncSession:
        async with self._lock:
            if self._session is None:
                self._session = await AsyncSession(self._project, self._socket, autostart=self._autostart).connect()
            return self._session

    def watcher(self) -> AsyncSession:
        return AsyncSession(self._project, self._socket, autostart=self._autostart)

    async def call(self, fn: Callable[[AsyncSession], Awaitable[T]],
                   conflict: str = "conflict: the value now is {current} (revision {revision}); nothing was changed",
                   ) -> T:
        """Run one call; a sessionmem error becomes the tool error the agent reads."""
        try:
            return await fn(await self.client())
        except errors.Conflict as e:
            raise ToolError(conflict.format(current=json.dumps(e.current), revision=e.revision)) from None
        except errors.ConnectionFailed as e:
            self._session = None  # made anew on the next call
            raise ToolError(f"sessionmem: {e.message}") from None
        except errors.SessionmemError as e:
            raise ToolError(f"sessionmem: {e.message} (code {e.code})") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _args(session: str | None, **params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None} | ({"session": session} if session else {})


def build(project: str | None = None, socket: str | None = None, autostart: bool = True) -> MCPServer:
    bridge = Bridge(project, socket, autostart)
    bus = InMemorySubscriptionBus()

    @contextlib.asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[None]:
        feed = asyncio.create_task(_publish_changes(bridge, bus))
        try:
            yield
        finally:
            feed.cancel()
            with contextlib.suppress(BaseException):
                await feed
            await bridge.close()

    server = MCPServer("sessionmem", version=__version__, instructions=INSTRUCTIONS, subscriptions=bus,
                       lifespan=lifespan)

    async def summary(session: str | None) -> dict[str, Any]:
        async def get(s: AsyncSession) -> dict[str, Any]:
            st: p.Stats = await s.call("getStats", _args(session))
            files = await s.call("getOpenFiles", _args(session))
            ctx = await s.call("getAllContext", _args(session))
            return {"sessionId": st.sessionId, "currentTask": st.currentTask, "activeTicket": st.activeTicket,
                    "openFiles": files, "contextKeys": list(ctx), "messagesCount": st.messagesCount,
                    "revision": st.revision}
        return await bridge.call(get)

    # -- tools ------------------------------------------------------------------------------
    @server.tool()
    async def get_session(session: SessionArg = None) -> dict[str, Any]:
        """The shared session at a glance: its id, the current task, the active ticket, the
        open files, the context keys, how many messages, and the revision (pass it to
        wait_for_change). `session`: another named session's id (default: the current)."""
        return await summary(session)

    @server.tool()
    async def set_task(task: Annotated[str | None, Field(description="The task, or null to clear it.")],
                       session: SessionArg = None) -> str:
        """Set the task everybody is working on now (null clears it)."""
        await bridge.call(lambda s: s.call("setCurrentTask", _args(session, task=task) | {"task": task}))
        return "task cleared" if task is None else f"task set: {task}"

    @server.tool()
    async def add_message(content: Annotated[str, Field(description="The message text.")],
                          role: Annotated[str, Field(description="user, assistant, system or tool.")] = "assistant",
                          session: SessionArg = None) -> str:
        """Add a message to the shared conversation, for the other agents and the humans.
        role: user, assistant, system or tool."""
        if role not in ("user", "assistant", "system", "tool"):
            raise ToolError(f"role must be user, assistant, system or tool, not {role!r}")
        params = _args(session, role=role, content=content, id=os.urandom(16).hex())
        await bridge.call(lambda s: s.call("addMessage", params))
        return "message added"

    @server.tool()
    async def recent_messages(count: Count = 20, session: SessionArg = None) -> list[dict[str, Any]]:
        """The newest `count` messages of the shared conversation, oldest first, each
        {role, content, timestamp (epoch ms)}."""
        msgs: list[p.Message] = await bridge.call(lambda s: s.call("getRecentMessages", _args(session, count=count)))
        return [{"role": m.role, "content": m.content, "timestamp": m.timestamp} for m in msgs]

    @server.tool()
    async def track_file(path: Path, session: SessionArg = None) -> str:
        """Record that you have a file open (others see it in get_session)."""
        await bridge.call(lambda s: s.call("trackOpenFile", _args(session, filePath=path)))
        return f"tracking {path}"

    @server.tool()
    async def untrack_file(path: Path, session: SessionArg = None) -> str:
        """Record that you closed a file (it leaves the shared list of open files)."""
        await bridge.call(lambda s: s.call("untrackFile", _args(session, filePath=path)))
        return f"not tracking {path}"

    @server.tool()
    async def get_context(key: Key, session: SessionArg = None) -> Any:
        """The value (any JSON) stored under a context key, or null when there is none."""
        return await bridge.call(lambda s: s.call("getContext", _args(session, key=key)))

    @server.tool()
    async def set_context(key: Key, value: Annotated[Any, Field(description="Any JSON value.")],
                          expect: Annotated[Any, Field(description="With use_expect: the value you read.")] = None,
                          use_expect: Annotated[bool, Field(description="Only set it if the value is still `expect`.")] = False,
                          session: SessionArg = None) -> str:
        """Store any JSON value under a context key, shared with every agent. To update a
        value without losing another agent's concurrent change: read it, then set it with
        use_expect=true and expect=<what you read>; a conflict error says the value now."""
        params = _args(session, key=key) | {"value": value}
        if use_expect:
            params["expect"] = expect
        await bridge.call(lambda s: s.call("setContext", params))
        return f"{key} set"

    @server.tool()
    async def claim_ticket(ticket_id: Annotated[str, Field(description="The ticket to take, e.g. T-7.")],
                           session: SessionArg = None) -> str:
        """Make `ticket_id` the active ticket only if none is active. Fails, naming the
        ticket that is, when another agent holds one: then pick other work."""
        params = _args(session, ticketId=ticket_id) | {"expect": None}
        await bridge.call(lambda s: s.call("setActiveTicket", params),
                          conflict="not claimed: the active ticket is already {current}, held by another "
                                   "agent (revision {revision}); nothing was changed")
        return f"claimed {ticket_id}"

    @server.tool()
    async def wait_for_change(
        after_revision: Annotated[int, Field(ge=0, description="The revision you last saw (get_session's).")],
        timeout_seconds: Annotated[float, Field(ge=0, le=300, description="How long to wait at most.")] = 30.0,
        session: SessionArg = None,
    ) -> dict[str, Any]:
        """Wait until the session changes after `after_revision` (from get_session), at most
        `timeout_seconds` (up to 300). Returns the changes (revision, op, what changed) and
        the newest revision, or timedOut: true. Use it instead of polling."""
        timeout = min(max(timeout_seconds, 0.0), 300.0)
        changes: list[dict[str, Any]] = []
        watcher = bridge.watcher()
        try:
            async with asyncio.timeout(timeout):
                async for ch in watcher.watch(since=after_revision, session=session):
                    changes.append(json.loads(encode_frame(ch)))
                    break
        except TimeoutError:
            pass
        except errors.SessionmemError as e:
            raise ToolError(f"sessionmem: {e.message} (code {e.code})") from None
        if not changes:
            return {"timedOut": True, "revision": after_revision}
        return {"timedOut": False, "revision": changes[-1]["revision"], "changes": changes}

    # -- resources ------------------------------------------------------------------------------
    @server.resource(uri("session"), mime_type="application/json", description="The session at a glance.")
    async def session_resource() -> str:
        return json.dumps(await summary(None))

    @server.resource(uri("task"), mime_type="text/plain", description="The current task.")
    async def task_resource() -> str:
        return await bridge.call(lambda s: s.get_current_task()) or ""

    @server.resource(uri("ticket"), mime_type="text/plain", description="The active ticket.")
    async def ticket_resource() -> str:
        return await bridge.call(lambda s: s.get_active_ticket()) or ""

    @server.resource(uri("messages"), mime_type="application/json", description="The newest 50 messages.")
    async def messages_resource() -> str:
        msgs = await bridge.call(lambda s: s.get_recent_messages(50))
        return json.dumps([{"role": m.role, "content": m.content, "timestamp": m.timestamp} for m in msgs])

    @server.resource(uri("files"), mime_type="application/json", description="The open files.")
    async def files_resource() -> str:
        return json.dumps(await bridge.call(lambda s: s.get_open_files()))

    @server.resource(uri("context"), mime_type="application/json", description="Every context key and value.")
    async def context_resource() -> str:
        return json.dumps(await bridge.call(lambda s: s.get_all_context()))

    return server


async def _publish_changes(bridge: Bridge, bus: InMemorySubscriptionBus) -> None:
    """Resource update notifications, fed by the daemon's change feed: the changes of the
    current session, and a change of which session is current (every part changes).
    From the revision at the server's start on: none is missed while the watch connects."""
    since: int | None = None
    while True:
        try:
            client = await bridge.client()
            current = await client.get_session_id()
            if since is None:
                since = (await client.get_stats()).revision
            async for ch in bridge.watcher().watch(since=since):
                since = ch.revision
                if ch.op == "setCurrentSession" or (ch.op == "clear" and ch.newSessionId is not p.UNSET):
                    current = ch.sessionId if ch.op == "setCurrentSession" else str(ch.newSessionId)
                    parts: tuple[str, ...] = PARTS[1:]
                elif ch.sessionId != current:
                    continue
                else:
                    parts = _TOUCHES.get(ch.op, PARTS[1:])
                for part in ("session", *parts):
                    await bus.publish(ResourceUpdated(uri=uri(part)))
        except errors.Compacted:
            since = None  # too far behind: from now on
        except errors.SessionmemError:
            await asyncio.sleep(1.0)  # no daemon yet: watch again


def main(project: str | None, socket: str | None, autostart: bool) -> None:
    build(project, socket, autostart).run("stdio")
