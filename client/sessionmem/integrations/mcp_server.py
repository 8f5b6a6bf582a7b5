"""`sessionmem mcp`: the project's shared session as an MCP server (stdio), on the
official `mcp` SDK (2.x: `MCPServer`).

A coding agent launches it from its config (one line: `sessionmem mcp`, run in the
project, or with `--project DIR`); every tool call is forwarded to the project's daemon,
which the server finds, and starts when none runs, like the CLI. Errors from the daemon
(none answering, a conflict, bad params) come back as MCP tool errors carrying the
daemon's message; the server keeps serving.

Resources (the current session's parts) get update notifications from the daemon's
change feed: a background watch publishes `ResourceUpdated` for each part a change
touches (of the current session), to clients listening (`subscriptions/listen`). It
follows the current session: a change that makes another session current (its
`current` field) updates every part, and the changes that follow are that session's.

Every tool runs the typed client (`AsyncSession`'s methods); a connection that does not
serve a tool call (the resource feed, `wait_for_change`'s watch) never starts a daemon,
so a running server does not undo a `sessionmem daemon stop`.

Install: ``pip install 'sessionmem[mcp]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, TypeVar, get_args

try:
    from mcp.server.mcpserver import MCPServer
    from pydantic import BaseModel, Field
    from mcp.types import ToolAnnotations
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("`sessionmem mcp` needs the MCP SDK: pip install 'sessionmem[mcp]'") from None

import msgspec

from .. import errors
from .. import protocol as p
from .._version import __version__
from ..aio import AsyncSession
from ..calls import default_owner
from ..typed import AsyncSessionMethods

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

INSTRUCTIONS = """\
Shared short-term memory of this project, kept by a daemon that every agent working on
the project (and the humans' CLI) talks to: the current task, the conversation history,
the open files, the active ticket, context key-values. Read it before you start, write
what others should know, claim a ticket before working on it (claim_ticket fails, naming
the holder, when another agent has it; release_ticket gives it back), claim anything else
with a lease that ends by itself if you stop renewing it (acquire_lease), and
wait_for_change instead of polling."""

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
LeaseName = Annotated[str, Field(min_length=1, max_length=256,
                                 description="The lease's name: what it claims, e.g. 'file:src/parser.py' or 'deploy'.")]
Token = Annotated[int, Field(ge=0, description="The token acquire_lease returned.")]


class LeaseArgValue(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    token: int = Field(ge=0)


# Fencing (design §13): a write made "under" a lease is refused, changing nothing, once
# the lease is no longer held with that token, so an agent that stalled past its expiry
# cannot write over the agent that took the claim after it.
LeaseArg = Annotated[LeaseArgValue | None, Field(description=(
    "Write only while you still hold this lease: {name, token} as acquire_lease returned them. "
    "Refused, changing nothing, if it expired or was taken over."))]
_READ_ONLY = ToolAnnotations(read_only_hint=True)


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
        """A client for a connection of its own that never starts a daemon."""
        return AsyncSession(self._project, self._socket, autostart=False)

    async def call(self, fn: Callable[[AsyncSession], Awaitable[T]],
                   conflict: str = "conflict: the value now is {current} (revision {revision}); nothing was changed",
                   ) -> T:
        """Run one call; a sessionmem error becomes the tool error the agent reads."""
        try:
            return await fn(await self.client())
        except errors.Conflict as e:
            raise ToolError(conflict.format(current=json.dumps(e.current), revision=e.revision)) from None
        except errors.ConnectionFailed as e:
            lost, self._session = self._session, None  # made anew on the next call
            if lost is not None:
                await lost.close()
            raise ToolError(f"sessionmem: {e.message}") from None
        except errors.SessionmemError as e:
            raise ToolError(f"sessionmem: {e.message} (code {e.code})") from None
        except ValueError as e:  # refused before sending (a NaN)
            raise ToolError(f"sessionmem: {e}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _in(s: AsyncSession, session: str | None, lease: LeaseArgValue | None = None) -> AsyncSessionMethods:
    """The client's methods on ``session`` (None or "": the project's current session),
    each write fenced by ``lease`` when one is given."""
    m: AsyncSessionMethods = s.bound(session) if session else s
    return m.fenced(p.LeaseRef(lease.name, lease.token)) if lease else m


def _message(m: p.Message) -> dict[str, Any]:
    return {"role": m.role, "content": m.content, "timestamp": m.timestamp}


async def summary(s: AsyncSession, session: str | None) -> dict[str, Any]:
    """The session at a glance. Of the current session: the one current when its stats
    were read (the rest is read from that session by its id, so a switch meanwhile
    cannot mix two sessions in one answer)."""
    st = await _in(s, session).get_stats()
    of = s.bound(st.sessionId)
    files = await of.get_open_files()
    ctx = await of.get_all_context()
    return {"sessionId": st.sessionId, "currentTask": st.currentTask, "activeTicket": st.activeTicket,
            "openFiles": files, "contextKeys": list(ctx), "messagesCount": st.messagesCount,
            "revision": st.revision}


class Waited:
    """What wait_for_change has found so far: kept when its time runs out."""

    def __init__(self, after: int) -> None:
        self.changes: list[dict[str, Any]] = []
        self.revision = after  # read up to here


async def changes_after(s: AsyncSession, watcher: AsyncSession, after: int, session: str | None,
                        limit: int, found: Waited) -> None:
    """Into ``found``: the changes of ``session`` (None: the current session, followed
    through switches) after revision ``after``: every one up to the revision when the
    call began, else the first ones to come (and those made meanwhile), at most
    ``limit``. The caller bounds the wait."""
    session = session or None
    st = await s.get_stats()  # the current session and the revision, read together
    wanted, upto = session or st.sessionId, st.revision
    # Unfiltered: a change that makes another session current is another session's
    # change, and every revision is seen, so the end of the backlog (``upto``) is known.
    # A backlog's changes from before a switch in it count as the session current now's.
    changes = found.changes
    looked_again = False
    async with contextlib.aclosing(watcher.watch(since=after)) as feed:
        async for ch in feed:
            found.revision = seen = ch.revision
            if session is None and ch.current is not p.UNSET:
                wanted = ch.current
                changes.append(msgspec.to_builtins(ch))
            elif ch.sessionId == wanted:
                changes.append(msgspec.to_builtins(ch))
            if len(changes) >= limit:
                break
            if changes and seen >= upto:
                if looked_again:
                    break
                # The first change(s) to come: take with them those made meanwhile (a
                # batch, a burst), up to the revision now.
                looked_again, upto = True, (await s.get_stats()).revision
                if seen >= upto:
                    break


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

    def tool(read_only: bool = False) -> Callable[[F], F]:
        """server.tool with the docstring as the agent should read it (no source
        indentation), and read-only tools annotated as such."""
        def register(fn: F) -> F:
            return server.tool(description=inspect.cleandoc(getattr(fn, "__doc__", None) or ""),
                               annotations=_READ_ONLY if read_only else None)(fn)
        return register

    # -- tools ------------------------------------------------------------------------------
    @tool(read_only=True)
    async def get_session(session: SessionArg = None) -> dict[str, Any]:
        """The shared session at a glance: its id, the current task, the active ticket, the
        open files, the context keys, how many messages, and the revision (pass it to
        wait_for_change). `session`: another named session's id (default: the current)."""
        return await bridge.call(lambda s: summary(s, session))

    @tool()
    async def set_task(task: Annotated[str | None, Field(description="The task, or null to clear it.")],
                       lease: LeaseArg = None, session: SessionArg = None) -> str:
        """Set the task everybody is working on now (null clears it)."""
        await bridge.call(lambda s: _in(s, session, lease).set_current_task(task))
        return "task cleared" if task is None else f"task set: {task}"

    @tool()
    async def add_message(content: Annotated[str, Field(description="The message text.")],
                          role: Annotated[str, Field(description="user, assistant, system or tool.")] = "assistant",
                          lease: LeaseArg = None, session: SessionArg = None) -> str:
        """Add a message to the shared conversation, for the other agents and the humans.
        role: user, assistant, system or tool."""
        if role not in get_args(p.Role):
            raise ToolError(f"role must be {', '.join(get_args(p.Role))}, not {role!r}")
        await bridge.call(lambda s: _in(s, session, lease).add_message(role, content))  # sent with a fresh id
        return "message added"

    @tool(read_only=True)
    async def recent_messages(count: Count = 20, session: SessionArg = None) -> list[dict[str, Any]]:
        """The newest `count` messages of the shared conversation, oldest first, each
        {role, content, timestamp (epoch ms)}."""
        msgs = await bridge.call(lambda s: _in(s, session).get_recent_messages(count))
        return [_message(m) for m in msgs]

    @tool(read_only=True)
    async def search_messages(
            query: Annotated[str, Field(description="What to look for: words (all of them, any order), "
                                        "or per `mode`.")],
            mode: Annotated[str, Field(description="words (default), phrase (in this order), prefix (words "
                                       "starting so) or substring (anywhere in the text).")] = "words",
            all_sessions: Annotated[bool, Field(description="Search every session, not only this one.")] = False,
            role: Annotated[str | None, Field(description="Only messages of this role.")] = None,
            limit: Annotated[int, Field(ge=1, le=100, description="How many hits, best first.")] = 10,
            session: SessionArg = None) -> list[dict[str, Any]]:
        """Search the shared conversation history (did anyone already try X?): the best
        matching messages first, each {sessionId, index (its position in the session),
        role, timestamp (epoch ms), snippet (the match in [brackets])}."""
        if mode not in get_args(p.SearchMode):
            raise ToolError(f"mode must be {', '.join(get_args(p.SearchMode))}, not {mode!r}")
        r = await bridge.call(lambda s: _in(s, session).search_messages(
            query, all_sessions=all_sessions, mode=mode, roles=None if role is None else [role], limit=limit))
        return [{"sessionId": h.sessionId, "index": h.index, "role": h.role, "timestamp": h.timestamp,
                 "snippet": h.snippet.replace("\x02", "[").replace("\x03", "]")} for h in r.hits]

    @tool()
    async def track_file(path: Path, lease: LeaseArg = None, session: SessionArg = None) -> str:
        """Record that you have a file open (others see it in get_session)."""
        await bridge.call(lambda s: _in(s, session, lease).track_open_file(path))
        return f"tracking {path}"

    @tool()
    async def untrack_file(path: Path, lease: LeaseArg = None, session: SessionArg = None) -> str:
        """Record that you closed a file (it leaves the shared list of open files)."""
        await bridge.call(lambda s: _in(s, session, lease).untrack_file(path))
        return f"not tracking {path}"

    @tool(read_only=True)
    async def get_context(key: Key, session: SessionArg = None) -> Any:
        """The value (any JSON) stored under a context key, or null when there is none."""
        return await bridge.call(lambda s: _in(s, session).get_context(key))

    @tool()
    async def set_context(key: Key, value: Annotated[Any, Field(description="Any JSON value.")],
                          expect: Annotated[Any, Field(description="With use_expect: the value you read.")] = None,
                          use_expect: Annotated[bool, Field(description="Only set it if the value is still `expect`.")] = False,
                          lease: LeaseArg = None, session: SessionArg = None) -> str:
        """Store any JSON value under a context key, shared with every agent. To update a
        value without losing another agent's concurrent change: read it, then set it with
        use_expect=true and expect=<what you read>; a conflict error says the value now."""
        if use_expect:
            await bridge.call(lambda s: _in(s, session, lease).set_context(key, value, expect))
        else:
            await bridge.call(lambda s: _in(s, session, lease).set_context(key, value))
        return f"{key} set"

    @tool()
    async def claim_ticket(ticket_id: Annotated[str, Field(description="The ticket to take, e.g. T-7.")],
                           lease: LeaseArg = None, session: SessionArg = None) -> str:
        """Make `ticket_id` the active ticket only if none is active. Fails, naming the
        ticket that is, when another agent holds one: then pick other work."""
        await bridge.call(lambda s: _in(s, session, lease).claim_ticket(ticket_id),
                          conflict="not claimed: the active ticket is already {current}, held by another "
                                   "agent (revision {revision}); nothing was changed")
        return f"claimed {ticket_id}"

    @tool(read_only=True)
    async def wait_for_change(
        after_revision: Annotated[int, Field(ge=0, description="The revision you last saw (get_session's).")],
        timeout_seconds: Annotated[float, Field(ge=0, le=300, description="How long to wait at most.")] = 30.0,
        session: SessionArg = None,
        limit: Annotated[int, Field(ge=1, le=1000, description="Return at most this many changes.")] = 100,
    ) -> dict[str, Any]:
        """Wait until the session changes after `after_revision` (from get_session), at most
        `timeout_seconds` (up to 300). Returns every change after it, up to `limit`
        (revision, op, what changed; call again from the returned revision for more), and
        the revision read up to; or timedOut: true. Without `session`: the project's
        current session, followed when another is made current (that change is returned,
        its `current` naming the session now current). Use it instead of polling."""
        timeout = min(max(timeout_seconds, 0.0), 300.0)
        watcher = bridge.watcher()
        found = Waited(after_revision)

        async def wait(s: AsyncSession) -> None:
            try:
                async with asyncio.timeout(timeout):
                    await changes_after(s, watcher, after_revision, session, limit, found)
            except TimeoutError:
                pass  # what was found is returned

        try:
            await bridge.call(wait)
        finally:
            await watcher.close()
        if not found.changes:
            return {"timedOut": True, "revision": after_revision}
        return {"timedOut": False, "revision": found.revision, "changes": found.changes}

    @tool()
    async def release_ticket(ticket_id: Annotated[str, Field(description="The ticket you claimed, e.g. T-7.")],
                             lease: LeaseArg = None, session: SessionArg = None) -> str:
        """Give back the ticket you claimed with claim_ticket: the active ticket is cleared
        only if it is still `ticket_id` (else an error names the ticket that is active)."""
        await bridge.call(lambda s: _in(s, session, lease).set_active_ticket(None, ticket_id),
                          conflict="not released: the active ticket is {current}, not yours (revision "
                                   "{revision}); nothing was changed")
        return f"released {ticket_id}"

    @tool()
    async def delete_context(key: Key, lease: LeaseArg = None, session: SessionArg = None) -> str:
        """Remove a context key (nothing happens when there is none)."""
        await bridge.call(lambda s: _in(s, session, lease).delete_context(key))
        return f"{key} deleted"

    @tool(read_only=True)
    async def list_sessions() -> list[dict[str, Any]]:
        """Every session of the project, the most recently changed first: id, whether it is
        the current one, its task, ticket, message count and revision."""
        return [msgspec.to_builtins(x) for x in await bridge.call(lambda s: s.list_sessions())]

    @tool()
    async def acquire_lease(
        name: LeaseName,
        ttl_seconds: Annotated[float | None, Field(gt=0, le=86_400, description=(
            "Seconds it stays yours without a renew_lease; omit to hold it until this MCP server "
            "(your agent) exits."))] = 300.0,
        owner: Annotated[str | None, Field(max_length=128, description=(
            "Who holds it, as others will read it (default: $SESSIONMEM_AGENT, else host:pid)."))] = None,
        session: SessionArg = None,
    ) -> dict[str, Any]:
        """Claim `name` (a file, a task, a role: any string) with a lease: a claim with an
        owner that ends by itself when its time passes without renew_lease (so a crashed
        agent's claim ends). Returns {name, owner, token, expiresAt (epoch ms)}: keep the
        token for renew_lease and release_lease. Fails, naming the holder and when its
        lease expires, when another owner holds it: then pick other work."""
        got = await bridge.call(lambda s: _in(s, session).acquire_lease(name, ttl_seconds, owner or default_owner()))
        return {"name": got.name, "owner": got.owner, "token": got.token, "expiresAt": got.expires_at}

    @tool()
    async def renew_lease(name: LeaseName, token: Token, ttl_seconds: Annotated[float | None, Field(
            gt=0, le=86_400, description="A new ttl in seconds (default: the one it was acquired with).")] = None,
            ) -> dict[str, Any]:
        """Keep your lease: its expiry moves to now + its ttl. Fails when it is no longer
        yours (it expired and someone else took it): stop working on what it claimed."""
        got = await bridge.call(lambda s: s.renew_lease(name, token, ttl_seconds))
        return {"name": got.name, "owner": got.owner, "token": got.token, "expiresAt": got.expiresAt}

    @tool()
    async def release_lease(name: LeaseName, token: Token) -> str:
        """Give your lease back as soon as you are done, so another agent may take it."""
        await bridge.call(lambda s: s.release_lease(name, token))
        return f"released {name}"

    @tool(read_only=True)
    async def list_leases(session: SessionArg = None) -> list[dict[str, Any]]:
        """Every live lease of the project (with `session`: those concerning that session):
        name, owner, token, expiresAt (epoch ms; null: held until its holder's connection
        closes)."""
        return [msgspec.to_builtins(x) for x in await bridge.call(lambda s: s.list_leases(session))]

    # -- resources ------------------------------------------------------------------------------
    @server.resource(uri("session"), mime_type="application/json", description="The session at a glance.")
    async def session_resource() -> str:
        return json.dumps(await bridge.call(lambda s: summary(s, None)))

    @server.resource(uri("task"), mime_type="text/plain", description="The current task.")
    async def task_resource() -> str:
        return await bridge.call(lambda s: s.get_current_task()) or ""

    @server.resource(uri("ticket"), mime_type="text/plain", description="The active ticket.")
    async def ticket_resource() -> str:
        return await bridge.call(lambda s: s.get_active_ticket()) or ""

    @server.resource(uri("messages"), mime_type="application/json", description="The newest 50 messages.")
    async def messages_resource() -> str:
        return json.dumps([_message(m) for m in await bridge.call(lambda s: s.get_recent_messages(50))])

    @server.resource(uri("files"), mime_type="application/json", description="The open files.")
    async def files_resource() -> str:
        return json.dumps(await bridge.call(lambda s: s.get_open_files()))

    @server.resource(uri("context"), mime_type="application/json", description="Every context key and value.")
    async def context_resource() -> str:
        return json.dumps(await bridge.call(lambda s: s.get_all_context()))

    return server


async def _publish_changes(bridge: Bridge, bus: InMemorySubscriptionBus) -> None:
    """Resource update notifications, fed by the daemon's change feed: the changes of the
    current session, and a change that makes another session current (every part
    changes; the session it names is followed from then on). From the revision at the
    server's start on: none is missed while the watch connects. Its own client, which
    never starts a daemon: a background feed must not undo a `sessionmem daemon stop`."""
    reader = bridge.watcher()
    connected = False
    since: int | None = None
    current = ""
    try:
        while True:
            try:
                if not connected:
                    await reader.connect()
                    connected = True
                if since is None:
                    st = await reader.get_stats()  # the current session and the revision, read together
                    since, current = st.revision, st.sessionId
                async with contextlib.aclosing(reader.watch(since=since)) as feed:
                    async for ch in feed:
                        since = ch.revision
                        if ch.current is not p.UNSET:
                            current = ch.current
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
    finally:
        await reader.close()


def main(project: str | None, socket: str | None, autostart: bool) -> None:
    build(project, socket, autostart).run("stdio")
