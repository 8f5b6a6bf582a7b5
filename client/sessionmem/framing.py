"""Framing: one JSON text per line, both ways (design §4). Sans-I/O: bytes in, frames out."""

from __future__ import annotations

from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()


def encode_frame(obj: Any) -> bytes:
    """One NDJSON frame. msgspec never emits a raw newline inside JSON text."""
    return _encoder.encode(obj) + b"\n"


class FrameTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"frame exceeds the {limit}-byte limit")
        self.limit = limit


class LineFramer:
    """Splits a byte stream into newline-terminated frames.

    A partial frame longer than ``max_frame`` raises FrameTooLarge as soon as it
    is seen, so an endless line is never buffered whole. Partial chunks are kept
    in a list and joined once, so a big frame arriving in many reads costs O(n).
    """

    __slots__ = ("_parts", "_size", "max_frame")

    def __init__(self, max_frame: int) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self.max_frame = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        if b"\n" not in data:
            self._parts.append(data)
            self._size += len(data)
            if self._size > self.max_frame:
                raise FrameTooLarge(self.max_frame)
            return []
        if self._parts:
            self._parts.append(data)
            data = b"".join(self._parts)
        lines = data.split(b"\n")
        rest = lines.pop()  # the unterminated remainder, b"" when data ended in \n
        self._parts = [rest] if rest else []
        self._size = len(rest)
        if len(data) > self.max_frame:
            for line in lines:
                if len(line) > self.max_frame:
                    raise FrameTooLarge(self.max_frame)
        if self._size > self.max_frame:
            raise FrameTooLarge(self.max_frame)
        return lines

    @property
    def pending(self) -> int:
        return self._size
