"""An OpenAI Agents SDK ``Session`` kept in a sessionmem session.

    from agents import Agent, Runner
    from sessionmem.integrations.openai_agents import SessionmemSession

    session = SessionmemSession("support-42")          # the project found from the cwd
    await Runner.run(agent, "Hi", session=session)

Every conversation item the SDK stores is one message of the named sessionmem session:
the item itself, exactly, in the message's ``data``; a readable ``role`` and
``content`` beside it, so ``sessionmem --session support-42 msg recent`` and every other
agent on the project see the conversation. Several processes may use one session id:
the daemon orders their appends, and the items of one ``add_items`` go in together
(one JSON-RPC batch), never interleaved with another process's.

Calls go through the blocking client in a worker thread (``asyncio.to_thread``), as the
SDK's own ``SQLiteSession`` does its SQLite: the event loop never blocks, and one
session object may serve several threads, each with its own event loop.

Install: ``pip install 'sessionmem[openai-agents]'``.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

try:
    from agents.memory.session_settings import SessionSettings, resolve_session_limit
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError(
        "sessionmem.integrations.openai_agents needs the OpenAI Agents SDK: "
        "pip install 'sessionmem[openai-agents]'"
    ) from None

from .. import errors
from ..protocol import FullMessage
from ..session import Session

T = TypeVar("T")
Item = dict[str, Any]  # agents.items.TResponseInputItem: TypedDicts, JSON-shaped
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def readable(item: Item) -> tuple[str, str]:
    """The role and text another tool shows for an SDK item."""
    kind = item.get("type")
    role = item.get("role")
    if kind in (None, "message") and isinstance(role, str):
        return _ROLES.get(role, "user"), _text(item.get("content"))
    if kind == "function_call":
        return "assistant", f"{item.get('name')}({item.get('arguments', '')})"
    if kind == "function_call_output":
        out = item.get("output")
        return "tool", out if isinstance(out, str) else json.dumps(out, ensure_ascii=False)
    if kind == "reasoning":
        summary = " ".join(p.get("text", "") for p in item.get("summary") or [] if isinstance(p, dict))
        return "assistant", f"(reasoning) {summary}".rstrip()
    return "assistant", f"({kind}) {json.dumps(item, ensure_ascii=False)[:2000]}"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                text = part.get("text") or part.get("refusal")
                parts.append(text if isinstance(text, str) else f"[{part.get('type', 'part')}]")
        return "\n".join(parts)
    return "" if content is None else json.dumps(content, ensure_ascii=False)


def as_item(m: FullMessage) -> Item:
    """The SDK item a message holds; a message another tool added becomes a plain
    input message with its role and text."""
    if isinstance(m.data, dict):
        return m.data
    role = m.role if m.role in ("user", "assistant", "system") else "assistant"
    return {"role": role, "content": m.content}


class SessionmemSession:
    """The SDK's ``Session`` protocol over one named sessionmem session (made on first
    use). ``session_settings.limit`` is the default of ``get_items``."""

    session_settings: SessionSettings | None = None

    def __init__(
        self,
        session_id: str,
        *,
        project: str | os.PathLike[str] | None = None,
        socket: str | os.PathLike[str] | None = None,
        autostart: bool = True,
        session_settings: SessionSettings | None = None,
    ) -> None:
        self.session_id = session_id
        self.session_settings = session_settings or SessionSettings()
        self._project = project
        self._socket = socket
        self._autostart = autostart
        self._client: Session | None = None
        self._lock = threading.Lock()
        self._exists = False

    # -- the protocol ---------------------------------------------------------------------
    async def get_items(self, limit: int | None = None) -> list[Item]:
        """The newest ``limit`` items in order (``None``: ``session_settings.limit``, and
        when that is None too, all of them; 0: none; below 0: all, as SQLiteSession)."""
        n = resolve_session_limit(limit, self.session_settings)
        if n == 0:
            return []
        return await self._run(lambda s: [as_item(m) for m in self._read(s, n)])

    async def add_items(self, items: list[Item]) -> None:
        if not items:
            return
        messages = []
        for item in items:
            role, content = readable(item)
            messages.append({"role": role, "content": content, "data": item})
        await self._run(lambda s: self._write(s, lambda: s.add_messages(messages)))

    async def pop_item(self) -> Item | None:
        def pop(s: Session) -> Item | None:
            try:
                m = s.pop_message()
            except errors.NoSuchSession:
                return None
            return None if m is None else as_item(m)

        return await self._run(pop)

    async def clear_session(self) -> None:
        def clear(s: Session) -> None:
            try:
                s.clear()  # bound: this session emptied, its id kept
            except errors.NoSuchSession:
                pass

        await self._run(clear)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- plumbing -----------------------------------------------------------------------------
    @staticmethod
    def _read(s: Session, n: int | None) -> list[FullMessage]:
        try:
            if n is None or n < 0:
                return s.get_all_messages(full=True)
            return s.get_recent_messages(n, full=True)
        except errors.NoSuchSession:
            return []

    def _write(self, s: Session, write: Callable[[], T]) -> T:
        """Write, making the session first when it does not exist (yet, or any more)."""
        if not self._exists:
            self._create(s)
        try:
            return write()
        except errors.NoSuchSession:
            self._create(s)  # deleted meanwhile: made again
            return write()

    def _create(self, s: Session) -> None:
        try:
            s.create_session(self.session_id)
        except errors.SessionExists:
            pass
        self._exists = True

    def _client_now(self) -> Session:
        with self._lock:
            if self._client is None:
                self._client = Session(self._project, self._socket, autostart=self._autostart,
                                       session_id=self.session_id)
            return self._client

    async def _run(self, fn: Callable[[Session], T]) -> T:
        return await asyncio.to_thread(lambda: fn(self._client_now()))


__all__ = ["SessionmemSession", "as_item", "readable"]
