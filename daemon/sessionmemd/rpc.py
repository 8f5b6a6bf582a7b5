"""JSON-RPC 2.0 dispatch: one frame in, one reply frame (or none) out. Sans-I/O.

A handler returns a value to encode, or a coroutine when the answer needs the
I/O shell (snapshot, restore, shutdown, a session not in memory yet): the frame's reply then comes back as a
:class:`PendingReply` that replies.Replies awaits and finishes with :meth:`finish`.
With ``durable`` set (durability=always), a mutating call's reply is pending too:
its value is known, but it may only be sent once the change is committed.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Coroutine
from typing import Any, Literal, NamedTuple, Union

import msgspec
from msgspec import UNSET, Raw, UnsetType

from sessionmem import errors
from sessionmem import protocol as p

Handler = Callable[..., Any]  # (params) -> result, or (params, connection) -> result

# Answered at once even while a write turn commits (``hold``): a watch reports the
# revision no undo can take back and starts its feed there (notifications are sent only
# once committed), and its first notifications must follow its reply, which a held
# reply, sent on a later loop turn than the feed's flush, would not.
UNHELD = frozenset({"watch", "unwatch"})


class Pending(NamedTuple):
    id: p.RequestId | UnsetType  # UNSET: a notification, answered by nothing
    # The coroutine that produces the result, or None when the result is ``value``
    # and only waits for the commit of the change that produced it.
    work: Coroutine[Any, Any, Any] | None
    value: Any = None
    # The work changes the session (a write that waited for its session to load) and
    # durability=always: the reply also waits for the commit.
    commit: bool = False


class PendingReply(NamedTuple):
    parts: list[bytes | Pending]
    batch: bool

    def pending(self) -> list[Pending]:
        return [x for x in self.parts if type(x) is not bytes]  # type: ignore[misc]


_decode_request = msgspec.json.Decoder(p.Request).decode
_decode_batch = msgspec.json.Decoder(list[Raw]).decode
_check_json = msgspec.json.Decoder(Raw).decode
_decode_any = msgspec.json.decode
_EMPTY_PARAMS = b"{}"


def _typed_request(name: str, spec: p.MethodSpec) -> type:
    """A request Struct for one method, tagged by its name: a union of these decodes
    envelope and params in a single pass."""
    try:
        spec.params()  # params may be omitted when none of them is required
        field: tuple[Any, ...] = ("params", spec.params, msgspec.field(default_factory=spec.params))
    except TypeError:
        field = ("params", spec.params)
    return msgspec.defstruct(
        f"{name}Request",
        [("jsonrpc", Literal["2.0"]), field, ("id", p.RequestId | UnsetType, UNSET)],
        tag_field="method",
        tag=name,
        kw_only=True,
    )


_TYPED_REQUESTS = tuple(_typed_request(n, s) for n, s in p.METHODS.items())
_decode_typed_request = msgspec.json.Decoder(Union[_TYPED_REQUESTS]).decode  # type: ignore[valid-type]


def check_json_value(raw: bytes, max_depth: int, field: str) -> None:
    """Raise InvalidParams unless an arbitrary JSON value (kept as Raw, which msgspec
    does not look into) is one every client can read back: valid UTF-8, numbers in
    range (``1e99999`` is valid JSON syntax, but no float: every Python client's
    get_all_context() would fail on it), nesting within ``max_depth``."""
    try:
        value = _decode_any(raw)
    except RecursionError:
        raise errors.InvalidParams(f"`{field}` nests deeper than {max_depth} levels") from None
    except (UnicodeDecodeError, msgspec.DecodeError) as e:
        raise errors.InvalidParams(f"`{field}` is not a JSON value clients can read: {e}") from None
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return  # cannot nest deeper than it has brackets
    level: list[Any] = [value]
    depth = 0
    while True:
        containers = [v for v in level if type(v) is list or type(v) is dict]
        if not containers:
            return
        depth += 1
        if depth > max_depth:
            raise errors.InvalidParams(f"`{field}` nests deeper than {max_depth} levels")
        level = []
        for v in containers:
            level.extend(v.values() if isinstance(v, dict) else v)


def _params_message(method: str, e: msgspec.ValidationError) -> str:
    text = str(e).replace("`$", "`params")
    return f"invalid params for {method}: {text}"


class Dispatcher:
    def __init__(
        self,
        handlers: dict[str, Handler],
        on_internal_error: Callable[[str, BaseException], None] = lambda m, e: None,
    ) -> None:
        self._table: dict[str, tuple[Callable[[bytes], Any], Handler, bool]] = {}
        self._by_type: dict[type, tuple[str, Handler, bool]] = {}
        for name, spec in p.METHODS.items():
            self._table[name] = (msgspec.json.Decoder(spec.params).decode, handlers[name], spec.mutates)
        for cls in _TYPED_REQUESTS:
            name = cls.__struct_config__.tag  # type: ignore[attr-defined]
            self._by_type[cls] = (name, handlers[name], p.METHODS[name].mutates)
        # Handlers that also take the calling connection: rare, so the common path
        # pays one set lookup, not an extra argument.
        self._with_conn = p.CONNECTION_METHODS
        self._encode = msgspec.json.Encoder().encode
        self._on_internal_error = on_internal_error
        self.durable = False  # durability=always: mutating replies wait for the commit
        # Once the daemon stops, every call still read (a pipelining client's backlog, a
        # batch) gets this error and runs nothing: the final snapshot must hold every
        # change that was acknowledged, and no change may follow it.
        self.refusing: errors.SessionmemError | None = None
        # While the store cannot take writes (a PostgreSQL outage: turns.py), every
        # mutating call gets this error before anything is applied; reads go on.
        self.writes_refused: errors.SessionmemError | None = None
        # Several daemons on one store (turns.py): a mutating call is run by the next
        # write turn, decided on the store's latest state; the reply waits for it.
        # A read behind such a write on one connection waits for it too (``deferring``:
        # the connections with calls waiting for a turn), so it sees the write.
        self.defer: Callable[[Callable[[], Any], Any], Coroutine[Any, Any, Any]] | None = None
        self.deferring: dict[Any, int] = {}
        # While a write turn's calls are applied and not yet committed, every other call
        # waits for the commit (``hold``), so none sees what may still be undone.
        self.hold: Callable[[Callable[[], Any], Any], Coroutine[Any, Any, Any]] | None = None

    # -- one frame -------------------------------------------------------------------
    def handle_frame(self, frame: bytes, conn: Any = None) -> bytes | PendingReply | None:
        """Returns the reply frame (newline included), a PendingReply, or None."""
        r = self._frame(frame, conn)
        return r + b"\n" if type(r) is bytes else r

    def handle_frames(
        self, frames: list[bytes], budget: int = 1 << 62, conn: Any = None
    ) -> tuple[list[bytes], list[PendingReply], int]:
        """Frames of one read, in order, until the replies ready now pass ``budget``
        bytes. Returns those replies (for one writelines: joining them would build, and
        page-fault in, a fresh megabyte-sized buffer per read when replies carry
        messages), those still pending, and how many frames were handled: the caller
        keeps the rest until the client has read what it asked for so far."""
        out: list[bytes] = []
        pending: list[PendingReply] = []
        one = self._handle_one
        size = 0
        for i, frame in enumerate(frames):
            if frame[:1] == b"{":  # the common case, without a detour
                r: Any = one(frame, conn)
                if type(r) is Pending:
                    r = PendingReply([r], batch=False)
            else:
                r = self._frame(frame, conn)
            if r is None:
                continue
            if type(r) is bytes:
                out += (r, b"\n")  # no copy of a big reply just to end it with a newline
                size += len(r)
                if size > budget:
                    return out, pending, i + 1
            else:
                pending.append(r)
        return out, pending, len(frames)

    def _frame(self, frame: bytes, conn: Any) -> bytes | PendingReply | None:
        """One frame's reply without its newline, a PendingReply, or None."""
        first = frame[:1]
        if first == b"[":
            return self._handle_batch(frame, conn)
        if first != b"{":
            stripped = frame.strip()
            if not stripped:
                return None  # blank lines (a human at socat pressing enter) are ignored
            if stripped[:1] == b"[":
                return self._handle_batch(stripped, conn)
        part = self._handle_one(frame, conn)
        if part is None or type(part) is bytes:
            return part
        return PendingReply([part], batch=False)

    def _handle_batch(self, frame: bytes, conn: Any) -> bytes | PendingReply | None:
        try:
            items = _decode_batch(frame)
        except (msgspec.DecodeError, RecursionError) as e:
            return self._error(None, errors.ParseError(f"parse error: {_reason(e)}"))
        if not items:
            return self._error(None, errors.InvalidRequest("invalid request: empty batch"))
        parts = [r for r in (self._handle_one(bytes(item), conn) for item in items) if r is not None]
        if not parts:
            return None
        if all(type(x) is bytes for x in parts):
            return b"[" + b",".join(parts) + b"]"  # type: ignore[arg-type]
        return PendingReply(parts, batch=True)

    def _handle_one(self, frame: bytes, conn: Any = None) -> bytes | Pending | None:
        # Fast path: a valid request decodes, params and all, in one pass. Anything
        # else takes the slow path, which decodes step by step to name the error.
        try:
            req = _decode_typed_request(frame)
        except Exception:
            return self._handle_slow(frame, conn)
        name, handler, mutates = self._by_type[type(req)]
        return self._run(name, handler, mutates, req.id, req.params, conn)

    def _handle_slow(self, frame: bytes, conn: Any) -> bytes | Pending | None:
        try:
            req = _decode_request(frame)
        except UnicodeDecodeError as e:
            return self._error(None, errors.InvalidRequest(f"invalid request: {e}"))
        except msgspec.ValidationError as e:
            try:
                _check_json(frame)
            except (msgspec.DecodeError, RecursionError) as pe:
                return self._error(None, errors.ParseError(f"parse error: {_reason(pe)}"))
            return self._error(None, errors.InvalidRequest(f"invalid request: {e}"))
        except (msgspec.DecodeError, RecursionError) as e:
            return self._error(None, errors.ParseError(f"parse error: {_reason(e)}"))
        rid = req.id
        entry = self._table.get(req.method)
        if entry is None:
            return self._reply_error(rid, errors.MethodNotFound(f"method not found: {req.method!r}"))
        decode, handler, mutates = entry
        try:
            params = decode(_EMPTY_PARAMS if req.params is UNSET else req.params)
        except msgspec.ValidationError as e:
            return self._reply_error(rid, errors.InvalidParams(_params_message(req.method, e)))
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as e:
            return self._reply_error(rid, errors.InvalidParams(f"invalid params for {req.method}: {_reason(e)}"))
        return self._run(req.method, handler, mutates, rid, params, conn)

    def _run(
        self, method: str, handler: Handler, mutates: bool, rid: Any, params: Any, conn: Any
    ) -> bytes | Pending | None:
        if self.refusing is not None:
            return self._reply_error(rid, self.refusing)
        if mutates and self.writes_refused is not None:
            return self._reply_error(rid, self.writes_refused)
        if self.defer is not None:
            wait = self.defer if mutates or conn in self.deferring else \
                None if method in UNHELD else self.hold
            if wait is not None:
                if method in self._with_conn:
                    return Pending(rid, wait(lambda: handler(params, conn), conn), None, False)
                return Pending(rid, wait(lambda: handler(params), conn), None, False)
        try:
            result = handler(params, conn) if method in self._with_conn else handler(params)
        except errors.SessionmemError as e:
            return self._reply_error(rid, e)
        except Exception as e:  # a bug: report it, keep serving
            self._on_internal_error(method, e)
            return self._reply_error(rid, errors.InternalError(f"internal error in {method}: {e!r}"))
        if type(result) is types.CoroutineType:
            return Pending(rid, result, None, mutates and self.durable)
        if mutates and self.durable:
            return Pending(rid, None, result)
        if rid is UNSET:
            return None
        return self._encode(p.Response(id=rid, result=result))

    # -- helpers ------------------------------------------------------------------------
    def _reply_error(self, rid: p.RequestId | UnsetType, e: errors.SessionmemError) -> bytes | None:
        """The error reply to a call, or None for a notification (which never gets one)."""
        return None if isinstance(rid, UnsetType) else self._error(rid, e)

    def _error(self, rid: p.RequestId, e: errors.SessionmemError) -> bytes:
        data = UNSET if e.data is None else e.data
        return self._encode(p.ErrorResponse(id=rid, error=p.ErrorObject(e.code, e.message, data)))

    def error_frame(self, rid: p.RequestId, e: errors.SessionmemError) -> bytes:
        return self._error(rid, e) + b"\n"

    def finish(self, pending: PendingReply, results: list[Any]) -> bytes | None:
        """Encode a PendingReply once its coroutines have finished. ``results`` holds,
        for each Pending in order, its value or the exception it raised."""
        out: list[bytes] = []
        it = iter(results)
        for part in pending.parts:
            if type(part) is bytes:
                out.append(part)
                continue
            assert isinstance(part, Pending)
            res = next(it)
            rid = part.id
            if isinstance(rid, UnsetType):
                continue
            if isinstance(res, errors.SessionmemError):
                out.append(self._error(rid, res))
            elif isinstance(res, BaseException):
                self._on_internal_error("deferred call", res)
                out.append(self._error(rid, errors.InternalError(f"internal error: {res!r}")))
            else:
                out.append(self._encode(p.Response(id=rid, result=res)))
        if not out:
            return None
        if pending.batch:
            return b"[" + b",".join(out) + b"]\n"
        return out[0] + b"\n"


def _reason(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "JSON nests too deeply"
    return str(e)
