"""`sessionmem ui`: a Starlette app that shows the project's sessions live, served by
uvicorn on 127.0.0.1 only.

It is an ordinary client of the daemon: one AsyncSession for the page's reads, and one
``watch`` of every session per browser, sent on as server-sent events whose id is the
change's revision (a browser that reconnects sends ``Last-Event-ID`` and the watch
resumes there; a watch the daemon can no longer replay ends with a ``reset`` event, and
the page re-reads everything).

Every request needs the token (``?token=`` or the ``X-Sessionmem-Token`` header), a Host
of 127.0.0.1 or localhost on our port, and no Origin but our own: else 403.

Bounded: a browser's stream is fed only as fast as it reads (uvicorn waits for the
socket to drain), a send that waits longer than ``send_timeout`` seconds ends the
stream (the browser comes back with Last-Event-ID), and the watch queues at most
``aio.QUEUE_HIGH`` changes before it lets the daemon hold the rest.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import msgspec
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .. import errors
from .. import protocol as p
from ..aio import AsyncSession

PAGE = 50  # messages per page of the conversation
MAX_PAGE = 500
SEARCH_HITS = 50  # hits the page's search shows (the best first)
CONSISTENT_TRIES = 8  # reads of a session retried while it changes under them
STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_encode = msgspec.json.Encoder().encode


def _static(name: str) -> bytes:
    return importlib.resources.files("sessionmem.ui").joinpath("static", name).read_bytes()


class Guard:
    """ASGI middleware: 403 unless the Host is ours, the Origin (when sent) is ours, and
    the token is right; adds the security headers to every response."""

    def __init__(self, app: ASGIApp, token: str, port: int) -> None:
        self.app = app
        self.token = token.encode()
        hosts = [f"127.0.0.1:{port}", f"localhost:{port}"]
        self.hosts = {h.encode() for h in hosts}
        self.origins = {f"http://{h}".encode() for h in hosts}

    def allowed(self, scope: Scope) -> bool:
        headers: dict[bytes, bytes] = {}
        for k, v in scope.get("headers", []):
            if k in headers and k in (b"host", b"origin", b"x-sessionmem-token"):
                return False  # the same header twice: not a request a browser sends
            headers[k] = v
        if headers.get(b"host", b"").lower() not in self.hosts:
            return False
        origin = headers.get(b"origin")
        if origin is not None and origin.lower() not in self.origins:
            return False
        given = headers.get(b"x-sessionmem-token")
        if given is None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            tokens = query.get("token", [])
            given = tokens[0].encode() if len(tokens) == 1 else b""
        return hmac.compare_digest(given, self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                have = {k.lower() for k, _ in headers}
                message["headers"] = headers + [(k, v) for k, v in SECURITY_HEADERS if k not in have]
            await send(message)

        if not self.allowed(scope):
            await PlainTextResponse("403 Forbidden: this page needs the URL `sessionmem ui` printed\n",
                                    status_code=403)(scope, receive, send_secured)
            return
        await self.app(scope, receive, send_secured)


class UI:
    """The routes. ``pinned``: the session `--session` named (the page shows it and does
    not follow the current one); None: follow the current session."""

    def __init__(self, client: AsyncSession, token: str, pinned: str | None, send_timeout: float = 10.0,
                 ping: float = 15.0) -> None:
        self.client = client
        self.token = token
        self.pinned = pinned
        self.send_timeout = send_timeout
        self.ping = ping

    def routes(self) -> list[Route]:
        return [
            Route("/", self.index),
            Route("/static/{name}", self.static),
            Route("/api/state", self.state),
            Route("/api/sessions", self.sessions),
            Route("/api/messages", self.messages),
            Route("/api/search", self.search),
            Route("/events", self.events),
        ]

    async def index(self, request: Request) -> Response:
        page = _static("index.html").replace(b"__TOKEN__", self.token.encode())
        return Response(page, media_type="text/html; charset=utf-8")

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return PlainTextResponse("not found\n", status_code=404)
        return Response(_static(name), media_type=STATIC[name])

    async def sessions(self, request: Request) -> Response:
        return _json({"sessions": await self.client.list_sessions()})

    async def state(self, request: Request) -> Response:
        """Everything the page shows, at one revision: the feed's ``revision`` to watch
        from, the sessions, and the selected one's task, ticket, files, context and newest
        messages (``session.revision``: its last change these reflect)."""
        wanted = request.query_params.get("session") or self.pinned
        revision = (await self.client.get_stats()).revision  # before the reads: the feed replays the rest
        for _ in range(CONSISTENT_TRIES):
            infos = await self.client.list_sessions()
            info = _find(infos, wanted) if wanted else next((i for i in infos if i.current), None)
            if info is None:
                if wanted and wanted == request.query_params.get("session"):
                    return _json({"error": f"no session {wanted}"}, 404)
                wanted = None  # the pinned session is gone: show the current one
                continue
            s = self.client.bound(info.sessionId)
            task, ticket, files, context, recent, leases = await asyncio.gather(
                s.get_current_task(), s.get_active_ticket(), s.get_open_files(), s.get_all_context(),
                s.get_recent_messages(PAGE), self._leases(info.sessionId))
            after = _find(await self.client.list_sessions(), info.sessionId)
            if after is not None and after.revision == info.revision:
                return _json({
                    "revision": revision, "sessions": infos, "follow": self.pinned is None,
                    "session": {"sessionId": info.sessionId, "revision": info.revision, "current": info.current,
                                "startTime": info.startTime, "task": task, "ticket": ticket, "files": files,
                                "context": context, "messages": recent, "messagesCount": after.messagesCount,
                                "leases": leases},
                })
        return _json({"error": "the session changes too fast to read; try again"}, 503)

    async def _leases(self, sid: str) -> list[p.Lease] | None:
        """The session's live leases; None from a daemon without them (no `leases`)."""
        try:
            return await self.client.list_leases(sid)
        except errors.MethodNotFound:
            return None

    async def messages(self, request: Request) -> Response:
        """``limit`` messages before index ``before`` (paging back: getRecentMessages
        ``before``), oldest first, at the session's ``revision`` (the page checks it holds
        that revision). ``skip`` instead of ``before``: before the newest ``skip``."""
        sid = request.query_params.get("session", "")
        try:
            before = _int(request.query_params.get("before"))
            skip = _int(request.query_params.get("skip"))
            limit = min(int(request.query_params.get("limit", str(PAGE))), MAX_PAGE)
        except ValueError:
            return _json({"error": "before, skip and limit are integers"}, 400)
        if (before or 0) < 0 or (skip or 0) < 0 or limit < 0:
            return _json({"error": "before, skip and limit are >= 0"}, 400)
        for _ in range(CONSISTENT_TRIES):
            info = _find(await self.client.list_sessions(), sid)
            if info is None:
                return _json({"error": f"no session {sid}"}, 404)
            at = before if before is not None else max(0, info.messagesCount - (skip or 0))
            page = await self.client.bound(sid).get_recent_messages(limit, before=at)
            after = _find(await self.client.list_sessions(), sid)
            if after is not None and after.revision == info.revision:
                return _json({"revision": info.revision, "messages": page, "messagesCount": after.messagesCount,
                              "before": max(0, min(at, after.messagesCount) - len(page))})
        return _json({"error": "the session changes too fast to read; try again"}, 503)

    async def search(self, request: Request) -> Response:
        """searchMessages over every session: ``q`` (and ``mode``), best first. A query the
        daemon refuses is 400 with its reason."""
        q = request.query_params.get("q", "")
        mode = request.query_params.get("mode", "words")
        try:
            r = await self.client.search_messages(q, all_sessions=True, mode=mode, limit=SEARCH_HITS)
        except errors.InvalidParams as e:
            return _json({"error": str(e)}, 400)
        return _json(r)

    async def events(self, request: Request) -> Response:
        since = _revision(request.headers.get("last-event-id")) or _revision(request.query_params.get("since"))
        return EventSourceResponse(self._feed(since), ping=self.ping, send_timeout=self.send_timeout)

    async def _feed(self, since: int | None) -> AsyncIterator[ServerSentEvent]:
        watch = self.client.watch(since=since)
        try:
            yield ServerSentEvent(event="hello", data="{}", retry=1000)
            async for change in watch:
                yield ServerSentEvent(data=_encode(change).decode(), event="change", id=str(change.revision))
        except errors.Compacted:
            # The daemon cannot replay from there: the page re-reads everything.
            yield ServerSentEvent(event="reset", data="{}")
        except errors.ConnectionFailed as e:
            # The daemon stayed away longer than the client waits: end the stream; the
            # browser comes back (Last-Event-ID) and the next watch waits again.
            yield ServerSentEvent(event="down", data=_encode({"error": str(e)}).decode())
        finally:
            await watch.aclose()


def _find(infos: list[p.SessionInfo], sid: str | None) -> p.SessionInfo | None:
    return next((i for i in infos if i.sessionId == sid), None)


def _int(text: str | None) -> int | None:
    return None if text is None else int(text)


def _revision(text: str | None) -> int | None:
    return int(text) if text is not None and text.isascii() and text.isdigit() and len(text) < 20 else None


def _json(value: Any, status: int = 200) -> Response:
    return Response(_encode(value), status_code=status, media_type="application/json")


def build(client: AsyncSession, token: str, port: int, pinned: str | None, send_timeout: float = 10.0,
          ping: float = 15.0) -> ASGIApp:
    """The whole app: the routes behind the Guard."""
    ui = UI(client, token, pinned, send_timeout, ping)
    app = Starlette(routes=ui.routes(), exception_handlers={errors.SessionmemError: _daemon_error})
    return Guard(app, token, port)


async def _daemon_error(request: Request, exc: Exception) -> Response:
    """A read the daemon refused or could not answer: a status and the reason, no traceback
    (a session deleted between two reads is 404; a daemon away longer than the client
    waits, 503: the page tries again)."""
    status = 404 if isinstance(exc, errors.NoSuchSession) else 503 if isinstance(exc, errors.ConnectionFailed) else 500
    return _json({"error": str(exc)}, status)

