"""The client API, written once for both clients.

Each method builds the wire call and hands it to ``self._call``. ``Session._call``
returns the result; ``AsyncSession._call`` is a coroutine function, so the very
same methods return awaitables there. Replies are decoded by the result type the
protocol's METHODS table names, so ``get_recent_messages`` yields ``Message``
objects and ``get_stats`` a ``Stats``.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec

from . import errors
from . import protocol as p

_encode = msgspec.json.Encoder().encode
_reply_decoder = msgspec.json.Decoder(p.Reply)
_result_decoders: dict[str, msgspec.json.Decoder[Any]] = {}
_typed_decoders: dict[str, msgspec.json.Decoder[Any]] = {}
_prefixes: dict[str, bytes] = {}


def _result_type(method: str) -> Any:
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
        head = _prefixes[method] = b'{"jsonrpc":"2.0","method":' + _encode(method) + b',"id":'
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
_REPEATABLE = frozenset(n for n, spec in p.METHODS.items() if not spec.mutates) - {"shutdown", "watch", "unwatch"}


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


class SessionAPI:
    """Every wire method in snake_case; see docs/protocol.md for the semantics.

    ``expect`` (on the setters, deletes): leave it out for an unconditional write; give
    the value you believe is current (``None`` for unset or absent) and the write
    applies only if it still is, else :class:`sessionmem.Conflict` is raised carrying
    the value now (``.current``) and the revision (``.revision``)."""

    def _call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        raise NotImplementedError

    def get_session_id(self) -> Any:
        return self._call("getSessionId")

    def get_current_task(self) -> Any:
        return self._call("getCurrentTask")

    def set_current_task(self, task: str | None, expect: Any = NOT_GIVEN) -> Any:
        return self._call("setCurrentTask", _with_expect({"task": task}, expect))

    def add_message(
        self, role: str, content: str, timestamp: int | None = None, message_id: str | None = None
    ) -> Any:
        """Append a message. It is sent with an id (``message_id``, or a fresh one), so
        the client can send it again after a daemon restart without duplicating it."""
        params: dict[str, Any] = {"role": role, "content": content,
                                  "id": message_id or new_message_id()}
        if timestamp is not None:
            params["timestamp"] = timestamp
        return self._call("addMessage", params)

    def get_recent_messages(self, count: int) -> Any:
        return self._call("getRecentMessages", {"count": count})

    def get_all_messages(self) -> Any:
        return self._call("getAllMessages")

    def track_open_file(self, file_path: str) -> Any:
        return self._call("trackOpenFile", {"filePath": file_path})

    def untrack_file(self, file_path: str) -> Any:
        return self._call("untrackFile", {"filePath": file_path})

    def get_open_files(self) -> Any:
        return self._call("getOpenFiles")

    def set_active_ticket(self, ticket_id: str | None, expect: Any = NOT_GIVEN) -> Any:
        return self._call("setActiveTicket", _with_expect({"ticketId": ticket_id}, expect))

    def claim_ticket(self, ticket_id: str) -> Any:
        """Make ``ticket_id`` active only if no ticket is: raises Conflict naming the
        holder (``.current``) when another agent got there first."""
        return self.set_active_ticket(ticket_id, expect=None)

    def get_active_ticket(self) -> Any:
        return self._call("getActiveTicket")

    def set_context(self, key: str, value: Any, expect: Any = NOT_GIVEN) -> Any:
        return self._call("setContext", _with_expect({"key": key, "value": value}, expect))

    def get_context(self, key: str) -> Any:
        return self._call("getContext", {"key": key})

    def delete_context(self, key: str, expect: Any = NOT_GIVEN) -> Any:
        return self._call("deleteContext", _with_expect({"key": key}, expect))

    def get_all_context(self) -> Any:
        return self._call("getAllContext")

    def snapshot(self) -> Any:
        return self._call("snapshot")

    def restore(self) -> Any:
        return self._call("restore")

    def clear(self) -> Any:
        return self._call("clear")

    def get_stats(self) -> Any:
        return self._call("getStats")

    def hello(self) -> Any:
        return self._call("hello", hello_params())

    def shutdown(self) -> Any:
        return self._call("shutdown")

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Any method by its wire name, params by name."""
        return self._call(method, params)
