"""A session as export records and back (``exportSession``/``importSession``). Pure.

The records are the lines of the JSONL format in docs/protocol.md: a ``session``
header (format version, identity, task, ticket, and how many records of each kind
follow), then one ``message`` record per message in order, with its id and data,
then ``file`` and ``context`` records. Messages are spliced from the bytes the log
already holds, so exporting a long history costs a copy, not a re-encoding.

Import is all or nothing: every record is decoded and checked before anything is
built, and an error names the record (the CLI turns its index into a line number).
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from msgspec import UNSET, Raw

from sessionmem import errors
from sessionmem import protocol as p

from .messages import MessageLog
from .state import SessionState

_encode = msgspec.json.Encoder().encode
_decode_record = msgspec.json.Decoder(p.Record).decode  # type: ignore[arg-type]


class _Tagged(msgspec.Struct):
    type: str


_decode_tag = msgspec.json.Decoder(_Tagged).decode
_TYPES = ("session", "message", "file", "context")


def export_records(s: SessionState) -> Raw:
    """The whole session (its history complete) as a JSON array of records."""
    log = s.message_log()
    header = p.SessionRecord(
        format=p.EXPORT_FORMAT, sessionId=s.session_id, startTime=s.start_time,
        currentTask=s.current_task, activeTicket=s.active_ticket,
        messages=len(log), files=s.files_count, contextKeys=s.context_count,
    )
    parts = [_encode(header)]
    parts += [b'{"type":"message",' + log.full(i)[1:] for i in range(len(log))]
    parts += [_encode(p.FileRecord(path=f)) for f in s.open_files()]
    parts += [b'{"type":"context","key":' + _encode(k) + b',"value":' + v + b"}"
              for k, v in s.context_items()]
    return Raw(b"[" + b",".join(parts) + b"]")


def _bad(i: int, why: str) -> errors.InvalidParams:
    return errors.InvalidParams(f"records[{i}]: {why}; nothing was imported", {"record": i})


def _decode(i: int, raw: Raw) -> p.Record:
    try:
        return _decode_record(raw)  # type: ignore[no-any-return]
    except (msgspec.DecodeError, RecursionError) as e:
        try:
            kind = _decode_tag(raw).type
        except (msgspec.DecodeError, RecursionError):
            kind = None
        if kind is not None and kind not in _TYPES:
            raise _bad(i, f"unknown record type {kind!r} (known: {', '.join(_TYPES)})") from None
        raise _bad(i, str(e).replace("`$", "`record")) from None


def import_state(records: list[Raw], sid: str | None, check_value: Callable[[bytes, str], None]) -> SessionState:
    """Build a session from records; raise InvalidParams naming the first bad one.
    ``sid`` overrides the header's id; ``check_value(json, field)`` checks data and
    context values as the daemon checks them on their own methods."""
    if not records:
        raise errors.InvalidParams("records: empty; the first record must be a session header; "
                                   "nothing was imported")
    header = _decode(0, records[0])
    if not isinstance(header, p.SessionRecord):
        raise _bad(0, "the first record must be the session header ({\"type\": \"session\", ...})")
    if header.format > p.EXPORT_FORMAT or header.format < 1:
        raise _bad(0, f"format {header.format} is not one this daemon reads (it reads format "
                      f"{p.EXPORT_FORMAT}); upgrade sessionmem")
    log = MessageLog()
    files: dict[str, None] = {}
    context: dict[str, bytes] = {}
    for i in range(1, len(records)):
        r = _decode(i, records[i])
        if isinstance(r, p.MessageRecord):
            data = None
            if r.data is not UNSET:
                data = bytes(r.data)  # type: ignore[arg-type]
                _checked(i, check_value, data, "data")
            msg_id = None if r.id is UNSET else r.id
            if msg_id is not None and log.has_id(msg_id):  # type: ignore[arg-type]
                raise _bad(i, f"message id {msg_id!r} appears twice")
            log.append(r.role, r.content, r.timestamp, msg_id, data)  # type: ignore[arg-type]
        elif isinstance(r, p.FileRecord):
            if r.path in files:
                raise _bad(i, f"file {r.path!r} appears twice")
            files[r.path] = None
        elif isinstance(r, p.ContextRecord):
            if r.key in context:
                raise _bad(i, f"context key {r.key!r} appears twice")
            value = bytes(r.value)
            _checked(i, check_value, value, "value")
            context[r.key] = value
        else:
            raise _bad(i, "a second session header (one export holds one session)")
    for kind, said, got in (("messages", header.messages, len(log)), ("files", header.files, len(files)),
                            ("context keys", header.contextKeys, len(context))):
        if said != got:
            why = "the export is incomplete (cut short?)" if got < said else "they disagree"
            raise errors.InvalidParams(
                f"records: the header says {said} {kind}, the records hold {got}: {why}; "
                f"nothing was imported", {"record": len(records) - 1})
    return SessionState.built(sid or header.sessionId, header.startTime, header.currentTask,
                              header.activeTicket, log, list(files), context)


def _checked(i: int, check: Callable[[bytes, str], None], value: bytes, name: str) -> None:
    try:
        check(value, f"records[{i}].{name}")
    except errors.InvalidParams as e:
        raise errors.InvalidParams(f"{e.message}; nothing was imported", {"record": i}) from None
