"""A Google ADK ``BaseSessionService`` kept in sessionmem.

    from google.adk.runners import Runner
    from sessionmem.integrations.adk import SessionmemSessionService

    service = SessionmemSessionService()              # the project found from the cwd
    runner = Runner(agent=agent, app_name="support", session_service=service)

Every ADK write is ONE ``transact`` on the sessionmem session ``adk:<app_name>``: the
event (whole, as ADK serialises it), the session's meta (with ``expect`` = the meta the
caller's Session handle was read with) and its state records (session, ``app:``,
``user:``; ``temp:`` never stored). So several processes may append to one ADK session:
each append is all or none, and one made from a handle another writer has overtaken
fails with ADK's own ``StaleSessionError`` (re-read the session and try again, as a
runner does). Reads page through ``listContext``; nothing reads a whole app. The layout
is in ``adk_records.py``; the events land live in ``sessionmem watch`` like any change.

Limits (each raises before anything is written): an app name of 1-124 characters (it
names a sessionmem session); a create whose state has more than 9,999 keys; an append
whose request passes the daemon's ``--max-frame`` (16 MiB by default): ``ValueError``;
an event or state value nested deeper than ``--max-depth`` (64): the daemon's
``InvalidParams``. Deleting a session of more than 10,000 records takes several
transactions: the first removes the meta (the session is gone for every reader at
once), the rest follow; a create of the same id finishes what an interrupted delete
left (a create of that id WHILE such a delete runs is not guarded: the delete's later
transactions may remove the new session's first records).

Install: ``pip install 'sessionmem[adk]'``.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Optional

import msgspec

try:
    from google.adk.errors.already_exists_error import AlreadyExistsError
    from google.adk.errors.session_not_found_error import SessionNotFoundError
    from google.adk.errors import StaleSessionError
    from google.adk.events.event import Event
    from google.adk.platform import time as platform_time
    from google.adk.platform import uuid as platform_uuid
    from google.adk.sessions import _session_util
    from google.adk.sessions.base_session_service import (
        BaseSessionService,
        GetSessionConfig,
        ListSessionsResponse,
    )
    from google.adk.sessions.session import Session
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError(
        "sessionmem.integrations.adk needs Google ADK: pip install 'sessionmem[adk]'"
    ) from None

from .. import errors
from ..aio import AsyncSession
from ..api import NOT_GIVEN
from ..calls import Transaction
from ..typed import AsyncSessionMethods
from . import adk_records as r

# ADK's own contract tests (test_session_service.py, run by tests/test_adk_contract.py)
# this service fails today, each a strict xfail with its reason. Empty: it passes all.
DIVERGENCES: dict[str, str] = {}

PAGE = 1_000  # entries per listContext page (the daemon's default; its maximum is 10,000)
_FRAME_SLACK = 4_096  # the envelope around a transact's ops: id, method, session, lease


class SessionmemSessionService(BaseSessionService):
    """ADK sessions in the sessionmem daemon of ``project`` (or at ``socket``). One
    asyncio connection per event loop, made on first use."""

    def __init__(
        self,
        project: str | os.PathLike[str] | None = None,
        socket: str | os.PathLike[str] | None = None,
        *,
        autostart: bool = True,
        timeout: float = 30.0,
    ) -> None:
        self._project = project
        self._socket = socket
        self._autostart = autostart
        self._timeout = timeout
        # An AsyncSession belongs to the loop it connected on; ADK code may run on several.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncSession] = (
            weakref.WeakKeyDictionary())
        self._apps: set[str] = set()  # app sessions known to exist

    # -- connections ---------------------------------------------------------------------
    async def _client(self) -> AsyncSession:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # The client holds its loop (a strong reference back to the weak key): drop
            # those of loops that are gone (each asyncio.run makes a new one).
            for gone in [old for old in self._clients if old.is_closed()]:
                self._clients.pop(gone, None)
            made = AsyncSession(self._project, self._socket, autostart=self._autostart, timeout=self._timeout)
            await made.connect()
            client = self._clients.setdefault(loop, made)
            if client is not made:  # another task of this loop connected first
                await made.close()
        return client

    async def _app(self, app_name: str, create: bool = False) -> AsyncSessionMethods:
        """The app's sessionmem session; made (race-safe) when ``create``."""
        sid = r.app_session_id(app_name)
        client = await self._client()
        if create and sid not in self._apps:
            try:
                await client.create_session(sid)
            except errors.SessionExists:
                pass  # made before, or by a concurrent creator: either is fine
            self._apps.add(sid)
        return client.bound(sid)

    async def close(self) -> None:
        """Close this loop's connection. Call it before the loop ends (``async with``):
        the connection of a loop that ended is dropped at the next connect, unclosed."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    async def __aenter__(self) -> SessionmemSessionService:
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # -- the service ---------------------------------------------------------------------
    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: Optional[dict[str, Any]] = None,
        session_id: Optional[str] = None,
    ) -> Session:
        sid = r.normalized_id(session_id) or platform_uuid.new_uuid()
        now = platform_time.get_time()
        deltas = _session_util.extract_json_safe_state_delta(state or {})
        meta = r.new_meta(user_id, sid, now)
        ops = [("set", r.meta_key(user_id, sid), meta, None)]
        ops += r.state_ops(user_id, sid, deltas["app"], deltas["user"], deltas["session"])
        if len(ops) > r.MAX_OPS:
            raise ValueError(f"an ADK session is created in one transact of at most {r.MAX_OPS} records: "
                             f"its initial state has {len(ops) - 1} keys")
        try:
            app = await self._app(app_name, create=True)
            await self._finish_interrupted_delete(app, user_id, sid)
            await self._transact(app, ops)
        except errors.NoSuchSession:  # the app's session was deleted under us: make it again
            self._apps.discard(r.app_session_id(app_name))
            app = await self._app(app_name, create=True)
            await self._transact(app, ops)
        except errors.Conflict as e:
            raise AlreadyExistsError(f"Session with id {sid} already exists.") from e
        app_state, user_state = await asyncio.gather(
            _entries(app, r.APP_STATE_PREFIX), _entries(app, r.user_state_prefix(user_id)))
        session = Session(
            app_name=app_name, user_id=user_id, id=sid, events=[], last_update_time=now,
            state=r.merged_state(r.state_of(app_state, r.APP_STATE_PREFIX),
                                 r.state_of(user_state, r.user_state_prefix(user_id)), deltas["session"]))
        session._storage_update_marker = r.encode_marker(meta)
        return session

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: Optional[GetSessionConfig] = None,
    ) -> Optional[Session]:
        sid = r.normalized_id(session_id) or session_id
        app = await self._app(app_name)
        try:
            # The meta first: the events read after it are cut at its `next`, so the
            # handle never holds a revision newer than the events it shows.
            meta = await app.get_context(r.meta_key(user_id, sid))
            if meta is None:
                return None
            events, app_state, user_state, own_state = await asyncio.gather(
                self._events(app, user_id, sid, int(meta["next"]), config),
                _entries(app, r.APP_STATE_PREFIX),
                _entries(app, r.user_state_prefix(user_id)),
                _entries(app, r.session_state_prefix(user_id, sid)))
        except errors.NoSuchSession:
            return None
        session = Session(
            app_name=app_name, user_id=user_id, id=sid, events=events,
            last_update_time=meta["lastUpdateTime"],
            state=r.merged_state(r.state_of(app_state, r.APP_STATE_PREFIX),
                                 r.state_of(user_state, r.user_state_prefix(user_id)),
                                 r.state_of(own_state, r.session_state_prefix(user_id, sid))))
        session._storage_update_marker = r.encode_marker(meta)
        return session

    async def _events(self, app: AsyncSessionMethods, user_id: str, sid: str, nxt: int,
                      config: Optional[GetSessionConfig]) -> list[Event]:
        """The events below sequence ``nxt``, filtered as ADK's in-memory service does:
        the newest ``num_recent_events``, then those from the newest back to the first
        older than ``after_timestamp``."""
        n = config.num_recent_events if config else None
        after_ts = config.after_timestamp if config else None
        prefix = r.events_prefix(user_id, sid)
        if n == 0 or nxt == 0:
            return []
        out: list[Event] = []
        if n is None and after_ts is None:  # all of them, oldest first
            cursor: str | None = None
            while True:
                page = await app.list_context(prefix, after=cursor, limit=PAGE)
                for e in page.entries:
                    if r.event_seq(e.key) >= nxt:  # appended after the meta was read
                        return out
                    out.append(_event(e.value))
                if not page.more:
                    return out
                cursor = page.entries[-1].key
        cursor = r.event_key(user_id, sid, nxt)  # reverse: strictly below it
        while True:
            want = PAGE if n is None else min(r.MAX_PAGE, n - len(out))
            page = await app.list_context(prefix, after=cursor, limit=want, reverse=True)
            for e in page.entries:
                event = _event(e.value)
                if after_ts is not None and event.timestamp < after_ts:
                    out.reverse()
                    return out
                out.append(event)
                if n is not None and len(out) >= n:
                    out.reverse()
                    return out
            if not page.more:
                out.reverse()
                return out
            cursor = page.entries[-1].key

    async def list_sessions(self, *, app_name: str, user_id: Optional[str] = None) -> ListSessionsResponse:
        app = await self._app(app_name)
        try:
            metas, app_state, user_states, own_states = await asyncio.gather(
                _entries(app, r.sessions_prefix(user_id)),
                _entries(app, r.APP_STATE_PREFIX),
                _entries(app, r.user_state_prefix(user_id)),
                _entries(app, r.session_state_prefix(user_id)))
        except errors.NoSuchSession:
            return ListSessionsResponse()
        app_kv = r.state_of(app_state, r.APP_STATE_PREFIX)
        users = r.grouped_user_state(user_states)
        own = r.grouped_session_state(own_states)
        sessions = []
        for _, meta in metas:
            uid, sid = meta["user"], meta["id"]
            s = Session(app_name=app_name, user_id=uid, id=sid, events=[],
                        last_update_time=meta["lastUpdateTime"],
                        state=r.merged_state(app_kv, users.get(uid, {}), own.get((uid, sid), {})))
            s._storage_update_marker = r.encode_marker(meta)
            sessions.append(s)
        # ADK's documented order: least recently updated first (ties by user, then id).
        sessions.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=sessions)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        sid = r.normalized_id(session_id) or session_id
        app = await self._app(app_name)
        try:
            keys = await self._record_keys(app, user_id, sid)
            ops = [("delete", r.meta_key(user_id, sid), None, r.NO_EXPECT)]
            ops += [("delete", k, None, r.NO_EXPECT) for k in keys]
            # The meta goes in the first transaction: past 10,000 records the session
            # is gone for readers at once, and the rest follow (see the module's doc).
            for chunk in r.chunks(ops):
                await self._transact(app, chunk)
        except errors.NoSuchSession:
            return

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        app = await self._app(app_name)
        prefix = r.user_state_prefix(user_id)
        try:
            return r.state_of(await _entries(app, prefix), prefix)
        except errors.NoSuchSession:
            return {}

    async def append_event(self, session: Session, event: Event) -> Event:
        if event.partial:  # ADK's rule: partial events are not persisted
            return event
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        app = await self._app(session.app_name)
        meta = r.decode_marker(session._storage_update_marker)
        try:
            if meta is None or meta.get("id") != session.id or meta.get("user") != session.user_id:
                # A handle this service did not read: ADK's SQLite rule, then the meta
                # read now is what the transact expects.
                meta = await app.get_context(r.meta_key(session.user_id, session.id))
                if meta is None:
                    raise SessionNotFoundError(f"Session {session.id} not found.")
                if meta["lastUpdateTime"] > session.last_update_time:
                    raise StaleSessionError(_STALE)
            deltas = _session_util.extract_json_safe_state_delta(event.actions.state_delta or {})
            record = event.model_dump(mode="json", exclude_none=True)
            ops, after = r.append_ops(session.user_id, session.id, meta, record, event.timestamp,
                                      deltas["app"], deltas["user"], deltas["session"])
            await self._transact(app, ops)
        except errors.NoSuchSession:
            raise SessionNotFoundError(f"Session {session.id} not found.") from None
        except errors.Conflict as e:
            if isinstance(e.data, dict) and e.data.get("index") == 0 and e.current is None:
                raise SessionNotFoundError(f"Session {session.id} not found.") from e
            raise StaleSessionError(_STALE) from e
        session.last_update_time = event.timestamp
        session._storage_update_marker = r.encode_marker(after)
        return self._commit_event_to_session(session, event)

    # -- helpers -------------------------------------------------------------------------
    async def _transact(self, app: AsyncSessionMethods, ops: Sequence[r.Op]) -> None:
        t = Transaction()
        for method, key, value, expect in ops:
            exp = NOT_GIVEN if expect is r.NO_EXPECT else expect
            if method == "set":
                t.set_context(key, value, exp)
            else:
                t.delete_context(key, exp)
        limit = getattr((await self._client()).daemon, "maxFrame", 0)
        if limit:
            size = len(msgspec.json.encode(t.ops))
            if size + _FRAME_SLACK > limit:
                raise ValueError(f"this ADK write is {size} bytes: more than the daemon takes in one request "
                                 f"(--max-frame {limit}); nothing was written")
        await app.transact(t)

    async def _record_keys(self, app: AsyncSessionMethods, user_id: str, sid: str) -> list[str]:
        """Every event and state record of one ADK session (not its meta)."""
        events, states = await asyncio.gather(
            _entries(app, r.events_prefix(user_id, sid)),
            _entries(app, r.session_state_prefix(user_id, sid)))
        return [k for k, _ in events] + [k for k, _ in states]

    async def _finish_interrupted_delete(self, app: AsyncSessionMethods, user_id: str, sid: str) -> None:
        """Records of this id without its meta are what a delete that stopped half way
        (past 10,000 records) left: remove them before the id is used again."""
        events, states = await asyncio.gather(
            app.list_context(r.events_prefix(user_id, sid), limit=1),
            app.list_context(r.session_state_prefix(user_id, sid), limit=1))
        if not (events.entries or states.entries):
            return
        if await app.get_context(r.meta_key(user_id, sid)) is not None:
            raise errors.Conflict("exists", {"index": 0})  # the create's own Conflict
        keys = await self._record_keys(app, user_id, sid)
        for chunk in r.chunks([("delete", k, None, r.NO_EXPECT) for k in keys]):
            await self._transact(app, chunk)


_STALE = ("The session was changed by another writer since it was read (sessionmem: the "
          "append's expect on its meta failed). Please reload the session before appending.")


def _event(value: Any) -> Event:
    # Through JSON, as ADK's own services read their stored JSON: bytes come back from
    # base64 and every float exactly as written (msgspec encodes the shortest repr).
    return Event.model_validate_json(msgspec.json.encode(value))


async def _entries(app: AsyncSessionMethods, prefix: str) -> list[tuple[str, Any]]:
    """Every (key, value) under ``prefix``, in key order, a page at a time."""
    out: list[tuple[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await app.list_context(prefix, after=cursor, limit=PAGE)
        out.extend((e.key, e.value) for e in page.entries)
        if not page.more:
            return out
        cursor = page.entries[-1].key
