"""The wire as both clients speak it: encoding calls and batches, decoding replies by
the result type the protocol's METHODS table names (so ``getRecentMessages`` yields
``Message`` objects and ``getStats`` a ``Stats``), and which calls are safe to repeat.
The calls themselves are built in calls.py."""

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
    """One request frame. The constant head is encoded once per method. Raises
    ValueError, sending nothing, for a NaN or an infinity anywhere in ``params``."""
    head = _prefixes.get(method)
    if head is None:
        name = method.partition(":")[0]
        head = _prefixes[method] = b'{"jsonrpc":"2.0","method":' + _encode(name) + b',"id":'
    if params:
        body = _encode(params)
        # msgspec writes NaN and ±Infinity as null (JSON has neither), which would store
        # null, or match an absent key with expect. Only a body holding "null" can hold
        # one: the search is a C scan of bytes already made; the walk runs only then.
        if b"null" in body:
            refuse_non_finite(params)
        return head + str(rid).encode() + b',"params":' + body + b"}\n"
    return head + str(rid).encode() + b"}\n"


def refuse_non_finite(params: dict[str, Any]) -> None:
    """Raise ValueError naming the param (and where in it) holding a NaN or an infinity."""
    for name, value in params.items():
        path = _non_finite(value)
        if path is not None:
            where = name + "".join(f"[{k!r}]" for k in reversed(path))
            raise ValueError(f"param {where} is not a finite number: JSON has no NaN or Infinity "
                             f"(sent as null, it would mean null)")


def _non_finite(value: Any) -> list[Any] | None:
    """The path (innermost key first) to a non-finite float in ``value``, or None."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return None
    if isinstance(value, float):
        return None if value - value == 0.0 else []  # inf - inf and nan - nan are nan
    items: Any
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = enumerate(value)
    elif isinstance(value, msgspec.Struct):
        items = ((f, getattr(value, f)) for f in value.__struct_fields__)
    else:
        return None
    for key, item in items:
        path = _non_finite(item)
        if path is not None:
            path.append(key)
            return path
    return None


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
        raise errors.from_wire(reply.error)
    raw = reply.result
    if raw is p.UNSET:
        raise errors.InternalError("reply holds neither result nor error")
    try:
        return _result_decoder(method).decode(raw)
    except msgspec.DecodeError as e:
        raise _malformed(e) from None


def decode_typed(method: str, frame: bytes) -> p.TypedReply[Any]:
    """Decode a reply and its result in one pass (the blocking client's fast path)."""
    try:
        reply: p.TypedReply[Any] = _typed_decoder(method).decode(frame)
        return reply
    except msgspec.ValidationError:
        # An error reply, or a result of an unexpected shape: decode loosely to tell.
        result_of(method, decode_reply(frame))
        raise
    except msgspec.DecodeError as e:
        raise _malformed(e) from None


def hello_params() -> dict[str, Any]:
    from ._version import __version__

    return {"clientVersion": __version__, "protocolVersion": p.PROTOCOL_VERSION}


def check_hello(hello: p.HelloResult) -> None:
    """The daemon speaks our protocol and serves the store $SESSIONMEM_STORE names (when
    it names one), or an error saying what to do."""
    if hello.protocolVersion != p.PROTOCOL_VERSION:
        raise errors.VersionMismatch(
            f"sessionmemd {hello.daemonVersion} (pid {hello.pid}) speaks protocol "
            f"{hello.protocolVersion}, this client speaks {p.PROTOCOL_VERSION}: "
            f"run `sessionmem daemon restart` to start the installed version",
            {"daemon": hello.protocolVersion, "client": p.PROTOCOL_VERSION},
        )
    if os.environ.get("SESSIONMEM_STORE"):
        from .storename import check_store  # urllib.parse: only for a client told a store

        check_store(hello, os.environ)


class _NotGiven:
    """``expect`` left out: the write is unconditional (``expect=None`` means "unset")."""

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Any = _NotGiven()




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
