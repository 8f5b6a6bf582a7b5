"""The conversation history as one contiguous buffer of encoded JSON.

Every message is kept exactly as it goes on the wire, ``{"role":..,"content":..,
"timestamp":..}`` followed by a comma, in one ``bytearray``, with the start offset of
each in an ``array('Q')``. That layout is what the daemon's speed and size rest on:

* ``getRecentMessages(n)`` and ``getAllMessages`` are one slice of the buffer,
  never a re-encoding (results are fresh ``bytes``: copies by construction);
* a message costs its JSON plus 8 bytes (and two list slots for its id and data),
  not a Python object graph: 1M messages of ~200 B fit in ~280 MB;
* a snapshot takes a :class:`MessageSlice` (a reference and offsets, no copy of
  the text): the writer thread decodes it in chunks while the loop appends on.

Sharing the buffer with the writer thread rests on one rule: bytes that a slice may
still read are never changed in place. Appends only add; trimming the oldest messages
only moves ``_head`` (the dead prefix is dropped by copying the live part into a new
buffer once it is half the log); a pop of a message that a slice may cover copies the
buffer first. Offsets are "virtual" (the buffer's byte 0 is offset ``_base``), so
dropping a prefix, forking a prefix or splicing older history in front never rewrites
a million offsets: arrays are sliced, not recomputed.

A write turn that fails to commit (several daemons on PostgreSQL: undo.py) puts the
log back as it was: :meth:`drop_last` undoes an append, :meth:`push` a pop, and
:meth:`untrim` a trim, which is why a log ``held`` for a turn trims without compacting
(the trimmed messages stay in the buffer until the turn is settled).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator

import msgspec

from sessionmem.protocol import Message

_encode = msgspec.json.Encoder().encode
_decode_list = msgspec.json.Decoder(list[Message]).decode
_EMPTY = b"[]"
_COMPACT_MIN = 4096  # dead messages before a compaction is considered


def full_form(plain: bytes, msg_id: str | None, data: bytes | None) -> bytes:
    """A message's JSON with its id and data (``full: true``): the plain form ends
    with ``}``, so they are spliced in before it."""
    if msg_id is None and data is None:
        return plain
    extra = b""
    if msg_id is not None:
        extra += b',"id":' + _encode(msg_id)
    if data is not None:
        extra += b',"data":' + data
    return plain[:-1] + extra + b"}"


class MessageLog:
    """Also keeps each message's client-given id (``addMessage {id}``) and its JSON
    ``data``: lists with an entry per message (None for most), and a set of the ids
    held, so a retried append is recognised whatever its age."""

    __slots__ = ("_buf", "_offs", "_ids", "_data", "_by_id", "_head", "_base", "_shared", "held")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._offs = array("Q")  # virtual start offsets; _offs[_head] is the first live one
        self._ids: list[str | None] = []
        self._data: list[bytes | None] = []
        self._by_id: set[str] = set()
        self._head = 0  # messages trimmed but not yet compacted away
        self._base = 0  # the virtual offset of _buf[0]
        self._shared = 0  # bytes of _buf a MessageSlice may still read
        self.held = False  # a turn may undo its trims: no compaction until it is settled

    def append(self, role: str, content: str, timestamp: int, msg_id: str | None = None,
               data: bytes | None = None) -> bytes:
        """Append one message; returns its JSON (for the change feed)."""
        buf = self._buf
        self._offs.append(self._base + len(buf))
        # Not encode_into(buf, -1): its resizes over-allocate, leaving a restored 1M-message
        # log in a 400 MB buffer for 245 MB of text; `+=` grows by 1/8 and is as fast.
        encoded = _encode(Message(role, content, timestamp))
        buf += encoded
        buf += b","
        self._ids.append(msg_id)
        self._data.append(data)
        if msg_id is not None:
            self._by_id.add(msg_id)
        return encoded

    def extend(self, rows: Iterable[tuple[str, str, int, str | None, bytes | None]]) -> None:
        """Append many ``(role, content, timestamp, id, data)`` (a session read from the
        database): :meth:`append` written out, its lookups hoisted out of the loop."""
        buf, offs, ids, datas, by_id = self._buf, self._offs, self._ids, self._data, self._by_id
        base, encode, message = self._base, _encode, Message
        for role, content, timestamp, msg_id, data in rows:
            offs.append(base + len(buf))
            buf += encode(message(role, content, timestamp))
            buf += b","
            ids.append(msg_id)
            datas.append(data)
            if msg_id is not None:
                by_id.add(msg_id)

    def has_id(self, msg_id: str) -> bool:
        return msg_id in self._by_id

    def __len__(self) -> int:
        return len(self._offs) - self._head

    def _pos(self, i: int) -> int:
        """The buffer position of live message ``i``."""
        return self._offs[self._head + i] - self._base

    # -- reading ------------------------------------------------------------------------
    def recent(self, count: int) -> bytes:
        """The last ``count`` messages as a JSON array, oldest first."""
        n = len(self)
        if count <= 0 or n == 0:
            return _EMPTY
        start = self._pos(0 if count >= n else n - count)
        return b"[" + self._buf[start:-1] + b"]"

    def all(self) -> bytes:
        return self.recent(len(self))

    def between(self, lo: int, hi: int, full: bool = False) -> bytes:
        """Messages ``lo`` to ``hi - 1`` as a JSON array, oldest first (paging back:
        getRecentMessages ``before``); one slice of the buffer unless ``full``."""
        lo, hi = max(0, lo), min(len(self), hi)
        if hi <= lo:
            return _EMPTY
        if full:
            return b"[" + b",".join(self.full(i) for i in range(lo, hi)) + b"]"
        end = self._pos(hi) if hi < len(self) else len(self._buf)
        return b"[" + self._buf[self._pos(lo) : end - 1] + b"]"

    def recent_full(self, count: int) -> bytes:
        """Like :meth:`recent`, each message with its id and data when it has them."""
        n = len(self)
        if count <= 0 or n == 0:
            return _EMPTY
        first = max(0, n - count)
        return b"[" + b",".join(self.full(i) for i in range(first, n)) + b"]"

    def plain(self, i: int) -> bytes:
        """Message ``i``'s plain JSON: ``{role, content, timestamp}``."""
        k = self._head + i
        end = self._offs[k + 1] - self._base if k + 1 < len(self._offs) else len(self._buf)
        return bytes(self._buf[self._pos(i) : end - 1])

    def full(self, i: int) -> bytes:
        k = self._head + i
        return full_form(self.plain(i), self._ids[k], self._data[k])

    def newest(self) -> bytes | None:
        """The newest message's plain JSON, or None when there is none."""
        n = len(self)
        return None if n == 0 else bytes(self._buf[self._pos(n - 1) : -1])

    def since(self, index: int) -> MessageSlice:
        """The messages from ``index`` on, as they are now (later appends excluded)."""
        k = self._head + index
        self._shared = len(self._buf)
        return MessageSlice(self._buf, self._offs[k:], self._base, len(self._buf),
                            self._ids[k:], self._data[k:])

    # -- removing -------------------------------------------------------------------------
    def pop(self) -> bytes | None:
        """Remove the newest message; returns its full JSON, or None when empty."""
        if not len(self):
            return None
        popped = self.full(len(self) - 1)
        self.drop_last()
        return popped

    def drop_last(self) -> None:
        """Remove the newest message (there is one), returning nothing."""
        pos = self._offs.pop() - self._base
        msg_id = self._ids.pop()
        self._data.pop()
        if msg_id is not None:
            self._by_id.discard(msg_id)
        if pos < self._shared:
            self._buf = self._buf[:pos]  # a new buffer: a slice may still read the old one
            self._shared = 0
        else:
            del self._buf[pos:]

    def newest_entry(self) -> tuple[bytes, str | None, bytes | None] | None:
        """The newest message as (plain JSON, id, data): what :meth:`push` puts back."""
        n = len(self)
        if not n:
            return None
        k = self._head + n - 1
        return self.plain(n - 1), self._ids[k], self._data[k]

    def push(self, plain: bytes, msg_id: str | None, data: bytes | None) -> None:
        """Append a message given as its plain JSON (a popped one, put back)."""
        self._offs.append(self._base + len(self._buf))
        self._buf += plain
        self._buf += b","
        self._ids.append(msg_id)
        self._data.append(data)
        if msg_id is not None:
            self._by_id.add(msg_id)

    def trim_front(self, count: int) -> int:
        """Drop the oldest ``count`` messages; returns how many were dropped."""
        count = min(count, len(self))
        if count <= 0:
            return 0
        for msg_id in self._ids[self._head : self._head + count]:
            if msg_id is not None:
                self._by_id.discard(msg_id)
        self._head += count
        self.compact_if_due()
        return count

    def untrim(self, count: int) -> None:
        """Bring back the ``count`` oldest messages trimmed last (the log was ``held``
        since, so they are still in the buffer)."""
        self._head -= count
        for msg_id in self._ids[self._head : self._head + count]:
            if msg_id is not None:
                self._by_id.add(msg_id)

    def compact_if_due(self) -> None:
        if not self.held and self._head >= _COMPACT_MIN and self._head * 2 >= len(self._offs):
            self._compact()

    def _compact(self) -> None:
        """Copy the live part into new objects (old slices keep the old ones)."""
        h = self._head
        if h == len(self._offs):
            self._buf, self._base = bytearray(), self._base + len(self._buf)
        else:
            start = self._pos(0)
            self._buf = self._buf[start:]
            self._base += start
        self._offs = self._offs[h:]
        self._ids = self._ids[h:]
        self._data = self._data[h:]
        self._head = 0
        self._shared = 0

    # -- whole logs -----------------------------------------------------------------------
    def prefix(self, count: int) -> MessageLog:
        """A new log holding a copy of the first ``count`` messages (a fork)."""
        count = max(0, min(count, len(self)))
        new = MessageLog()
        if count == 0:
            return new
        h = self._head
        end = self._pos(count) if count < len(self) else len(self._buf)
        new._buf = self._buf[self._pos(0) : end]
        new._offs = self._offs[h : h + count]
        new._base = self._offs[h]
        new._ids = self._ids[h : h + count]
        new._data = self._data[h : h + count]
        new._by_id = {i for i in new._ids if i is not None}
        return new

    def prepend(self, older: MessageLog) -> None:
        """Put ``older`` (history loaded after this log's tail) in front of this log.
        The older part is the big one: its offsets are copied as they are; only this
        log's (the tail and what was appended since) are shifted. ``older`` is consumed:
        this log takes over its buffers."""
        if not len(older):
            return
        older._compact()
        mine = len(self)
        shift = len(older._buf) + older._base - (self._pos(0) + self._base if mine else 0)
        tail_offs = array("Q", (o + shift for o in self._offs[self._head :])) if mine else array("Q")
        buf = older._buf
        buf += self._buf[self._pos(0) :] if mine else b""
        offs = older._offs
        offs.extend(tail_offs)
        self._buf, self._offs, self._base = buf, offs, older._base
        self._ids = older._ids + self._ids[self._head :]
        self._data = older._data + self._data[self._head :]
        self._by_id |= older._by_id
        self._head = 0
        self._shared = 0


class MessageSlice:
    """Messages handed to the writer thread: the live buffer, their start offsets,
    the end of the last one, their ids and data. Reading copies; the loop may append
    meanwhile."""

    __slots__ = ("_buf", "_offs", "_base", "_end", "_ids", "_data")

    def __init__(self, buf: bytearray, offs: array[int], base: int, end: int,
                 ids: list[str | None], data: list[bytes | None]) -> None:
        self._buf = buf
        self._offs = offs
        self._base = base
        self._end = end
        self._ids = ids
        self._data = data

    def __len__(self) -> int:
        return len(self._offs)

    def chunks(self, size: int = 256) -> Iterator[tuple[list[Message], list[str | None], list[bytes | None]]]:
        """Decoded messages, ``size`` at a time: decoding holds the GIL, so a chunk is
        kept well under a millisecond and the event loop gets a turn between chunks;
        and a chunk's text (~64 KB) stays under malloc's mmap threshold, since mapping
        and unmapping take a process-wide lock that the loop's thread then waits on."""
        offs, base = self._offs, self._base
        for i in range(0, len(offs), size):
            start = offs[i] - base
            end = offs[i + size] - base if i + size < len(offs) else self._end
            yield (_decode_list(b"[" + self._buf[start : end - 1] + b"]"),
                   self._ids[i : i + size], self._data[i : i + size])

    def encoded(self) -> list[bytes]:
        """Each message's full JSON, with id and data (for the unsaved-changes dump)."""
        offs, base = self._offs, self._base
        if not offs:
            return []
        ends = [*(o - base for o in offs[1:]), self._end]
        return [full_form(bytes(self._buf[a - base : b - 1]), i, d)
                for a, b, i, d in zip(offs, ends, self._ids, self._data, strict=True)]
