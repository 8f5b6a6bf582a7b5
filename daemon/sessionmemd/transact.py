"""``transact``: several changes to one session, all or none. Sans-I/O, like host.py.

A transaction is decided before anything changes: its ops run first against a
:class:`DryRun`, a model of the few things their conditions can see (the task, the
ticket, the context keys they touch, the newest messages, how many there are), so an
``expect`` that fails at the third op fails the transaction with nothing applied. Only
then are the ops applied, one after another, each through the host's own method and
taking its own revision, in one loop turn: consecutive revisions, no other change
between them, and one batch, so one transaction on disk.

What may be an op: the changes to one session's parts (``OPS``); the transaction's
``session`` addresses it, and an op naming another session is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec
from msgspec import UNSET, Raw

from sessionmem import errors
from sessionmem import protocol as p

from .state import SessionState

MAX_OPS = 10_000  # ops in one transaction (each takes a revision and a notification)

OPS: dict[str, type[Any]] = {
    "setCurrentTask": p.SetCurrentTaskParams,
    "setActiveTicket": p.SetActiveTicketParams,
    "addMessage": p.AddMessageParams,
    "trackOpenFile": p.FilePathParams,
    "untrackFile": p.FilePathParams,
    "setContext": p.SetContextParams,
    "deleteContext": p.DeleteContextParams,
    "popMessage": p.PopMessageParams,
    "trimMessages": p.TrimMessagesParams,
}
_DECODERS = {name: msgspec.json.Decoder(params).decode for name, params in OPS.items()}
_encode = msgspec.json.Encoder().encode


class Op(NamedTuple):
    method: str
    params: Any  # the decoded params Struct of ``method``


def decode_ops(ops: list[p.TransactOp], check_value: Callable[[bytes, str], None]) -> list[Op]:
    """The ops' params decoded and checked (``check_value(json, field)`` for the JSON
    values they carry), or InvalidParams naming the op; nothing is applied yet."""
    if not ops:
        raise errors.InvalidParams("`params.ops` is empty: a transaction needs at least one op")
    if len(ops) > MAX_OPS:
        raise errors.InvalidParams(f"`params.ops` has {len(ops)} ops; at most {MAX_OPS} go in one transaction")
    out: list[Op] = []
    for i, op in enumerate(ops):
        where = f"params.ops[{i}]"
        decode = _DECODERS.get(op.method)
        if decode is None:
            raise errors.InvalidParams(
                f"`{where}.method`: {op.method!r} cannot be part of a transaction (it may be one of "
                f"{', '.join(OPS)})", {"index": i})
        try:
            params = decode(b"{}" if op.params is UNSET else bytes(op.params))  # type: ignore[arg-type]
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            raise errors.InvalidParams(f"invalid params for {op.method} at `{where}.params`: "
                                       f"{str(e).replace('`$', '`' + where + '.params')}", {"index": i}) from None
        if getattr(params, "session", UNSET) is not UNSET:
            raise errors.InvalidParams(f"`{where}.params.session`: the ops act on the transaction's "
                                       f"session; give `session` to transact instead", {"index": i})
        if getattr(params, "lease", UNSET) is not UNSET:
            raise errors.InvalidParams(f"`{where}.params.lease`: a transaction is fenced as a whole; "
                                       f"give `lease` to transact instead", {"index": i})
        for field in ("value", "data", "expect"):
            value = getattr(params, field, UNSET)
            if value is not UNSET:
                raw = bytes(value)  # a copy: a Raw would pin the whole request frame
                check_value(raw, f"{where}.params.{field}")
                setattr(params, field, Raw(raw))
        out.append(Op(op.method, params))
    return out


def needs_history(ops: list[Op], max_messages: int | None) -> bool:
    """Whether the session's whole history must be in memory first: to find a repeated
    message id, to pop past the loaded tail, to trim."""
    return max_messages is not None or any(
        o.method in ("popMessage", "trimMessages") or (o.method == "addMessage" and o.params.id is not UNSET)
        for o in ops)


_ABSENT = b"null"


class DryRun:
    """What the ops would make of the session, as far as their conditions look."""

    def __init__(self, s: SessionState, now: int, max_messages: int | None) -> None:
        self.s = s
        self.now = now
        self.max_messages = max_messages
        self.task = s.current_task
        self.ticket = s.active_ticket
        self.context: dict[str, bytes | None] = {}  # keys the ops changed: JSON, or None (deleted)
        self.added: list[bytes] = []  # plain JSON of the messages the ops added, oldest first
        self.ids: set[str] = set()
        self.popped = 0  # of the messages there before
        self.count = s.messages_count  # messages the session would hold

    def context_json(self, key: str) -> bytes | None:
        return self.context[key] if key in self.context else self.s.context_json(key)

    def newest(self) -> bytes | None:
        if self.count == 0:
            return None
        if self.added:
            return self.added[-1]
        return self.s.message_log().plain(self.s.loaded_messages - self.popped - 1)

    def run(self, op: Op, expect: Callable[[Any, Callable[[], bytes | None]], None]) -> None:
        """Apply ``op`` to the model; ``expect(value, current)`` raises Conflict."""
        a = op.params
        m = op.method
        if m == "setCurrentTask":
            expect(a.expect, lambda: _encode(self.task))
            self.task = a.task
        elif m == "setActiveTicket":
            expect(a.expect, lambda: _encode(self.ticket))
            self.ticket = a.ticketId
        elif m == "setContext":
            expect(a.expect, lambda: self.context_json(a.key))
            self.context[a.key] = bytes(a.value)
        elif m == "deleteContext":
            expect(a.expect, lambda: self.context_json(a.key))
            self.context[a.key] = None
        elif m == "popMessage":
            expect(a.expect, self.newest)
            if self.count:
                if self.added:
                    self.added.pop()
                else:
                    self.popped += 1
                self.count -= 1
        elif m == "trimMessages":
            self.count = min(self.count, a.keep)
            del self.added[: max(0, len(self.added) - self.count)]
        elif m == "addMessage":
            if a.id is not UNSET and (a.id in self.ids or self.s.message_log().has_id(a.id)):
                return  # a repeat: adds nothing, as outside a transaction
            if a.id is not UNSET:
                self.ids.add(a.id)
            ts = self.now if a.timestamp is UNSET or a.timestamp is None else a.timestamp
            self.added.append(_encode(p.Message(a.role, a.content, ts)))
            self.count += 1
            if self.max_messages is not None and self.count > self.max_messages:
                self.count = self.max_messages
                del self.added[: max(0, len(self.added) - self.count)]
        # trackOpenFile, untrackFile: no condition can fail


def failed_at(i: int, op: Op, e: errors.SessionmemError) -> errors.SessionmemError:
    """The op's own error (a Conflict stays a Conflict), naming the op, with its index."""
    data = dict(e.data) if isinstance(e.data, dict) else {} if e.data is None else {"data": e.data}
    data["index"] = i
    reason = e.message.removesuffix("; nothing was changed")
    out = type(e)(f"op {i} ({op.method}): {reason}; the transaction changed nothing", data)
    out.code = e.code
    return out
