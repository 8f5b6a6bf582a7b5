"""The client API, written once for both clients.

Each method builds the wire call and hands it to ``self._call``. ``Session._call``
returns the result; ``AsyncSession._call`` is a coroutine function, so the very
same methods return awaitables there. Replies are decoded by the result type the
protocol's METHODS table names, so ``get_recent_messages`` yields ``Message``
objects and ``get_stats`` a ``Stats``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from . import errors
from . import protocol as p

_encode = msgspec.json.Encoder().encode
_reply_decoder = msgspec.json.Decoder(p.Reply)
_result_decoders: dict[str, msgspec.json.Decoder[Any]] = {}
_typed_decoders: dict[str, msgspec.json.Decoder[Any]] = {}
_prefixes: dict[str, bytes] = {}


# Calls whose result takes another shape with a param, named "method:variant": the
# part before ":" goes on the wire, the whole name picks the decoder.
_VARIANTS: dict[str, Any] = {
    "getRecentMessages:full": list[p.FullMessage],
    "getAllMessages:full": list[p.FullMessage],
}


def _result_type(method: str) -> Any:
    variant = _VARIANTS.get(method)
    if variant is not None:
        return variant
    spec = p.METHODS.get(method)
    return Any if spec is None else spec.result


def _result_decoder(method: str) -> msgspec.json.Decoder[Any]:
    # Built on first use: a one-shot CLI call should not pay for all of them.
    dec = _result_decoders.get(method)
    if dec is None:
        dec = _result_decoders[method] = msgspec.json.Decoder(_result_type(method))
    return dec


def _typed_decoder(method: str) -> msgspec.json.Decoder[Any]:
    dec = _typed_decoders.get(method)
    if dec is None:
        dec = _typed_decoders[method] = msgspec.json.Decoder(p.TypedReply[_result_type(method)])  # type: ignore[misc]
    return dec


def encode_call(method: str, params: dict[str, Any] | None, rid: int) -> bytes:
    """One request frame. The constant head is encoded once per method."""
    head = _prefixes.get(method)
    if head is None:
        name = method.partition(":")[0]
        head = _prefixes[method] = b'{"jsonrpc":"2.0","method":' + _encode(name) + b',"id":'
    if params:
        return head + str(rid).encode() + b',"params":' + _encode(params) + b"}\n"
    return head + str(rid).encode() + b"}\n"


def _malformed(e: Exception) -> errors.SessionmemError:
    return errors.InternalError(f"malformed reply from the daemon: {e}")


def decode_reply(frame: bytes) -> p.Reply:
    try:
        return _reply_decoder.decode(frame)
    except msgspec.DecodeError as e:
        raise _malformed(e) from None


_batch_decoder: list[msgspec.json.Decoder[list[p.Reply]]] = []  # built on first use


def encode_batch(calls: list[tuple[str, dict[str, Any] | None]], first_id: int) -> bytes:
    """One frame holding a JSON-RPC batch of ``calls``, ids from ``first_id`` on."""
    return b"[" + b",".join(encode_call(m, params, first_id + i)[:-1] for i, (m, params) in enumerate(calls)) + b"]\n"


def decode_batch(frame: bytes) -> list[p.Reply]:
    if not _batch_decoder:
        _batch_decoder.append(msgspec.json.Decoder(list[p.Reply]))
    try:
        return _batch_decoder[0].decode(frame)
    except msgspec.DecodeError as e:
        raise _malformed(e) from None


def batch_outcome(calls: list[tuple[str, dict[str, Any] | None]], first_id: int, replies: list[p.Reply]) -> list[Any]:
    """Each call's typed result, in call order; the first error (in call order) raised."""
    by_id = {r.id: r for r in replies}
    out = []
    for i, (method, _) in enumerate(calls):
        reply = by_id.get(first_id + i)
        if reply is None:
            raise errors.InternalError(f"the daemon's batch reply lacks call {i} ({method})")
        out.append(result_of(method, reply))
    return out


def result_of(method: str, reply: p.Reply) -> Any:
    """The typed result of a reply, or the typed exception its error names."""
    if reply.error is not p.UNSET:
        raise errors.from_wire(reply.error)  # type: ignore[arg-type]
    raw = reply.result
    if raw is p.UNSET:
        raise errors.InternalError("reply holds neither result nor error")
    try:
        return _result_decoder(method).decode(raw)  # type: ignore[arg-type]
    except msgspec.DecodeError as e:
        raise _malformed(e) from None


def decode_typed(method: str, frame: bytes) -> p.TypedReply[Any]:
    """Decode a reply and its result in one pass (the blocking client's fast path)."""
    try:
        return _typed_decoder(method).decode(frame)
    except msgspec.ValidationError:
        # An error reply, or a result of an unexpected shape: decode loosely to tell.
        reply = decode_reply(frame)
        result_of(method, reply)
        raise
    except msgspec.DecodeError as e:
        raise _malformed(e) from None


def hello_params() -> dict[str, Any]:
    from ._version import __version__

    return {"clientVersion": __version__, "protocolVersion": p.PROTOCOL_VERSION}


def check_hello(hello: p.HelloResult) -> None:
    if hello.protocolVersion != p.PROTOCOL_VERSION:
        raise errors.VersionMismatch(
            f"sessionmemd {hello.daemonVersion} (pid {hello.pid}) speaks protocol "
            f"{hello.protocolVersion}, this client speaks {p.PROTOCOL_VERSION}: "
            f"run `sessionmem daemon restart` to start the installed version",
            {"daemon": hello.protocolVersion, "client": p.PROTOCOL_VERSION},
        )


class _NotGiven:
    """``expect`` left out: the write is unconditional (``expect=None`` means "unset")."""

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Any = _NotGiven()


def _with_expect(params: dict[str, Any], expect: Any) -> dict[str, Any]:
    if expect is not NOT_GIVEN:
        params["expect"] = expect
    return params


def new_message_id() -> str:
    """A fresh id for addMessage, so a retried append is added once. Not uuid4: the
    uuid module costs a one-shot CLI call a few milliseconds of imports."""
    return os.urandom(16).hex()


# Calls that may be sent again when the daemon went away before replying: they read,
# or (addMessage with an id) the daemon recognises the repeat.
_REPEATABLE = (frozenset(n for n, spec in p.METHODS.items() if not spec.mutates) - {"shutdown", "watch", "unwatch"}
               | frozenset(_VARIANTS))


def safe_to_repeat(method: str, params: dict[str, Any] | None) -> bool:
    if method in _REPEATABLE:
        return True
    return method == "addMessage" and params is not None and "id" in params


def watch_params(since: int | None, session: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if since is not None:
        params["since"] = since
    if session is not None:
        params["session"] = session
    return params


_change_decoder: list[msgspec.json.Decoder[p.Notification[p.Change]]] = []  # built on first use


def decode_change(frame: bytes) -> p.Change | None:
    """The change a ``changed`` notification carries; None for any other frame."""
    if b'"method"' not in frame:
        return None
    if not _change_decoder:
        _change_decoder.append(msgspec.json.Decoder(p.Notification[p.Change]))
    try:
        note = _change_decoder[0].decode(frame)
    except msgspec.DecodeError as e:
        raise _malformed(e) from None
    return note.params if note.method == "changed" else None


def _session_id(result: p.SessionIdResult) -> str:
    return result.sessionId


def _nothing(_result: Any) -> None:
    return None


def _records(records: Iterable[p.Record | dict[str, Any] | bytes]) -> list[Any]:
    """Records as exportSession returns them, as dicts, or as JSON lines."""
    return [msgspec.Raw(r) if isinstance(r, bytes) else r for r in records]


class SessionAPI:
    """Every wire method in snake_case; see docs/protocol.md for the semantics.

    ``session_id`` (the constructor's): every call of a session method goes to that
    session instead of the project's current one (it must exist: create it with
    ``create_session``); ``clear()`` then empties it and keeps its id.

    ``expect`` (on the setters, deletes, ``pop_message``): leave it out for an
    unconditional write; give the value you believe is current (``None`` for unset or
    absent) and the write applies only if it still is, else :class:`sessionmem.Conflict`
    is raised carrying the value now (``.current``) and the revision (``.revision``)."""

    session_id: str | None = None

    def _call(self, method: str, params: dict[str, Any] | None = None,
              then: Callable[[Any], Any] | None = None) -> Any:
        """Send one call; its typed result, passed through ``then`` when given."""
        raise NotImplementedError

    def _batch(self, calls: list[tuple[str, dict[str, Any] | None]]) -> Any:
        """Send ``calls`` as one JSON-RPC batch; the list of their results."""
        raise NotImplementedError

    def _s(self, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Params of a session method: the bound session added, when there is one."""
        if self.session_id is None:
            return params
        if params is None:
            return {"session": self.session_id}
        params["session"] = self.session_id
        return params

    def get_session_id(self) -> Any:
        return self._call("getSessionId", self._s())

    def get_current_task(self) -> Any:
        return self._call("getCurrentTask", self._s())

    def set_current_task(self, task: str | None, expect: Any = NOT_GIVEN) -> Any:
        return self._call("setCurrentTask", self._s(_with_expect({"task": task}, expect)))

    def add_message(
        self, role: str, content: str, timestamp: int | None = None, message_id: str | None = None,
        data: Any = NOT_GIVEN,
    ) -> Any:
        """Append a message. It is sent with an id (``message_id``, or a fresh one), so
        the client can send it again after a daemon restart without duplicating it.
        ``data``: any JSON kept with the message (read back with ``full=True``)."""
        params: dict[str, Any] = {"role": role, "content": content,
                                  "id": message_id or new_message_id()}
        if timestamp is not None:
            params["timestamp"] = timestamp
        if data is not NOT_GIVEN:
            params["data"] = data
        return self._call("addMessage", self._s(params))

    def add_messages(self, messages: Iterable[Mapping[str, Any]]) -> Any:
        """Append several messages, each a mapping of ``add_message``'s arguments
        (``role``, ``content``, and ``timestamp``, ``message_id``, ``data`` when wanted),
        in one JSON-RPC batch: the daemon adds them one after the other with no other
        client's change between them. Retried like ``add_message`` (each has an id)."""
        calls: list[tuple[str, dict[str, Any] | None]] = []
        for m in messages:
            params: dict[str, Any] = {"role": m["role"], "content": m["content"],
                                      "id": m.get("message_id") or new_message_id()}
            if m.get("timestamp") is not None:
                params["timestamp"] = m["timestamp"]
            if "data" in m:
                params["data"] = m["data"]
            calls.append(("addMessage", self._s(params)))
        if not calls:
            return self._call("getSessionId", self._s(), _nothing)  # still checks the session
        return self._batch(calls)

    def get_recent_messages(self, count: int, full: bool = False) -> Any:
        """The last ``count`` messages, oldest first: ``Message`` objects, or with
        ``full`` ``FullMessage`` objects that carry their id and data."""
        if full:
            return self._call("getRecentMessages:full", self._s({"count": count, "full": True}))
        return self._call("getRecentMessages", self._s({"count": count}))

    def get_all_messages(self, full: bool = False) -> Any:
        if full:
            return self._call("getAllMessages:full", self._s({"full": True}))
        return self._call("getAllMessages", self._s())

    def pop_message(self, expect: Any = NOT_GIVEN) -> Any:
        """Remove and return the newest message (a ``FullMessage``), None when there is
        none. ``expect``: the newest as ``{"role", "content", "timestamp"}`` (or a
        ``Message``), None for an empty session."""
        if isinstance(expect, p.Message):
            expect = msgspec.structs.asdict(expect)
        return self._call("popMessage", self._s(_with_expect({}, expect)))

    def trim_messages(self, keep: int) -> Any:
        """Keep the newest ``keep`` messages; returns how many were removed."""
        return self._call("trimMessages", self._s({"keep": keep}))

    def track_open_file(self, file_path: str) -> Any:
        return self._call("trackOpenFile", self._s({"filePath": file_path}))

    def untrack_file(self, file_path: str) -> Any:
        return self._call("untrackFile", self._s({"filePath": file_path}))

    def get_open_files(self) -> Any:
        return self._call("getOpenFiles", self._s())

    def set_active_ticket(self, ticket_id: str | None, expect: Any = NOT_GIVEN) -> Any:
        return self._call("setActiveTicket", self._s(_with_expect({"ticketId": ticket_id}, expect)))

    def claim_ticket(self, ticket_id: str) -> Any:
        """Make ``ticket_id`` active only if no ticket is: raises Conflict naming the
        holder (``.current``) when another agent got there first."""
        return self.set_active_ticket(ticket_id, expect=None)

    def get_active_ticket(self) -> Any:
        return self._call("getActiveTicket", self._s())

    def set_context(self, key: str, value: Any, expect: Any = NOT_GIVEN) -> Any:
        return self._call("setContext", self._s(_with_expect({"key": key, "value": value}, expect)))

    def get_context(self, key: str) -> Any:
        return self._call("getContext", self._s({"key": key}))

    def delete_context(self, key: str, expect: Any = NOT_GIVEN) -> Any:
        return self._call("deleteContext", self._s(_with_expect({"key": key}, expect)))

    def get_all_context(self) -> Any:
        return self._call("getAllContext", self._s())

    def snapshot(self) -> Any:
        return self._call("snapshot")

    def restore(self) -> Any:
        return self._call("restore")

    def clear(self) -> Any:
        """Unbound: the original's clear (a new current session, the old one deleted),
        returning the new id. Bound to ``session_id``: that session emptied, its id kept."""
        return self._call("clear", self._s())

    def get_stats(self) -> Any:
        return self._call("getStats", self._s())

    # -- sessions ----------------------------------------------------------------------
    def create_session(self, session_id: str | None = None, fork_from: str | None = None,
                       up_to: int | None = None, make_current: bool = False) -> Any:
        """A new session (its id returned): empty, or a fork of ``fork_from`` with its
        task, ticket, files, context and first ``up_to`` messages (all when None)."""
        params: dict[str, Any] = {"makeCurrent": make_current}
        if session_id is not None:
            params["sessionId"] = session_id
        if fork_from is not None:
            params["forkFrom"] = fork_from
        if up_to is not None:
            params["forkUpTo"] = up_to
        return self._call("createSession", params, _session_id)

    def list_sessions(self) -> Any:
        """Every session (``SessionInfo``), the most recently changed first."""
        return self._call("listSessions")

    def set_current_session(self, session_id: str) -> Any:
        return self._call("setCurrentSession", {"sessionId": session_id})

    def delete_session(self, session_id: str) -> Any:
        return self._call("deleteSession", {"sessionId": session_id})

    def export_session(self, session: str | None = None) -> Any:
        """The session (``session``, else the bound one, else the current) as export
        records: a header, then its messages, files and context (docs/protocol.md)."""
        params = {"session": session} if session is not None else self._s()
        return self._call("exportSession", params)

    def import_session(self, records: Iterable[p.Record | dict[str, Any] | bytes],
                       session_id: str | None = None, make_current: bool = False) -> Any:
        """A new session made from export records (all or nothing); its id returned."""
        params: dict[str, Any] = {"records": _records(records), "makeCurrent": make_current}
        if session_id is not None:
            params["sessionId"] = session_id
        return self._call("importSession", params, _session_id)

    def hello(self) -> Any:
        return self._call("hello", hello_params())

    def shutdown(self) -> Any:
        return self._call("shutdown")

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Any method by its wire name, params by name."""
        if params and params.get("full") is True and f"{method}:full" in _VARIANTS:
            method = f"{method}:full"
        return self._call(method, params)
