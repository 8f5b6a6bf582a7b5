"""The conversation history as one contiguous buffer of encoded JSON.

Every message is kept exactly as it goes on the wire, ``{"role":..,"content":..,
"timestamp":..}`` followed by a comma, in one append-only ``bytearray``, with the
start offset of each in an ``array('Q')``. That layout is what the daemon's speed
and size rest on:

* ``getRecentMessages(n)`` and ``getAllMessages`` are one slice of the buffer,
  never a re-encoding (results are fresh ``bytes``: copies by construction);
* a message costs its JSON plus 8 bytes, not a Python object graph: 1M messages
  of ~200 B fit in ~270 MB, where a list of ``bytes`` would take ~40% more;
* a snapshot takes a :class:`MessageSlice` (a reference and offsets, no copy of
  the text): the writer thread decodes it in chunks while the loop appends on.

Append-only is what makes that sharing safe: bytes once written never change,
and ``clear``/``restore`` give the session a new log instead of emptying this one.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

import msgspec

from sessionmem.protocol import Message

_encode = msgspec.json.Encoder().encode
_decode_list = msgspec.json.Decoder(list[Message]).decode
_EMPTY = b"[]"


class MessageLog:
    """Also keeps each message's client-given id (``addMessage {id}``): a list with an
    entry per message (None for most, 8 bytes each) for writing them out, and an index
    by id, so a retried append is recognised whatever its age."""

    __slots__ = ("_buf", "_offs", "_ids", "_by_id")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._offs = array("Q")
        self._ids: list[str | None] = []
        self._by_id: dict[str, int] = {}

    def append(self, role: str, content: str, timestamp: int, msg_id: str | None = None) -> bytes:
        """Append one message; returns its JSON (for the change feed)."""
        buf = self._buf
        self._offs.append(len(buf))
        # Not encode_into(buf, -1): its resizes over-allocate, leaving a restored 1M-message
        # log in a 400 MB buffer for 245 MB of text; `+=` grows by 1/8 and is as fast.
        encoded = _encode(Message(role, content, timestamp))
        buf += encoded
        buf += b","
        self._ids.append(msg_id)
        if msg_id is not None:
            self._by_id[msg_id] = len(self._ids) - 1
        return encoded

    def has_id(self, msg_id: str) -> bool:
        return msg_id in self._by_id

    def __len__(self) -> int:
        return len(self._offs)

    def recent(self, count: int) -> bytes:
        """The last ``count`` messages as a JSON array, oldest first."""
        n = len(self._offs)
        if count <= 0 or n == 0:
            return _EMPTY
        start = 0 if count >= n else self._offs[n - count]
        return b"[" + self._buf[start:-1] + b"]"

    def all(self) -> bytes:
        return self.recent(len(self._offs))

    def since(self, index: int) -> MessageSlice:
        """The messages from ``index`` on, as they are now (later appends excluded)."""
        return MessageSlice(self._buf, self._offs[index:], len(self._buf), self._ids[index:])


class MessageSlice:
    """Messages handed to the writer thread: the live buffer, their start offsets,
    the end of the last one, and their ids. Reading copies; the loop may append
    meanwhile."""

    __slots__ = ("_buf", "_offs", "_end", "_ids")

    def __init__(self, buf: bytearray, offs: array[int], end: int, ids: list[str | None]) -> None:
        self._buf = buf
        self._offs = offs
        self._end = end
        self._ids = ids

    def __len__(self) -> int:
        return len(self._offs)

    def chunks(self, size: int = 256) -> Iterator[tuple[list[Message], list[str | None]]]:
        """Decoded messages, ``size`` at a time: decoding holds the GIL, so a chunk is
        kept well under a millisecond and the event loop gets a turn between chunks;
        and a chunk's text (~64 KB) stays under malloc's mmap threshold, since mapping
        and unmapping take a process-wide lock that the loop's thread then waits on."""
        offs = self._offs
        for i in range(0, len(offs), size):
            start = offs[i]
            end = offs[i + size] if i + size < len(offs) else self._end
            yield _decode_list(b"[" + self._buf[start : end - 1] + b"]"), self._ids[i : i + size]

    def encoded(self) -> list[bytes]:
        """Each message's JSON (for the unsaved-changes dump and for tests)."""
        offs = self._offs
        if not offs:
            return []
        ends = [*offs[1:], self._end]
        return [bytes(self._buf[a : b - 1]) for a, b in zip(offs, ends, strict=True)]
