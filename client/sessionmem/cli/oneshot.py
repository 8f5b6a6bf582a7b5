"""One request, one reply, on a raw socket: the happy path of `sessionmem call`.

Agents run `sessionmem call ...` in loops; its cost is Python's start-up plus whatever
it imports. This path imports no msgspec, no click, no pathlib, no typing: it finds the
socket (locate.py), checks who serves it (peercred.py), sends ``hello`` and the call in
one write, and prints the result's JSON as the daemon wrote it (the daemon's replies are
canonical: ``{"jsonrpc":"2.0","id":1,"result":...}``). Anything else (no daemon
answering, autostart, another protocol version, an error reply, a reply of another
shape) returns None, and the caller takes the full path (call.py), which handles it all.
"""

from __future__ import annotations

import _socket
import os

from ..locate import PathError, locate
from ..peercred import peer_uid

PROTOCOL_VERSION = 3  # protocol.PROTOCOL_VERSION, without importing msgspec (a test keeps them equal)
_HELLO = b'{"jsonrpc":"2.0","method":"hello","id":0}\n'
_RESULT = b'{"jsonrpc":"2.0","id":1,"result":'
_VERSION = b'"protocolVersion":%d,' % PROTOCOL_VERSION
TIMEOUT = 30.0


def request(method: str, params: str | None) -> bytes | None:
    """The call's frame, or None when it cannot be built without a JSON encoder."""
    if not method.isidentifier() or not method.isascii():
        return None
    frame = b'{"jsonrpc":"2.0","method":"' + method.encode() + b'","id":1'
    if params is not None:
        raw = params.encode()
        if b"\n" in raw or b"\r" in raw:  # a frame is one line; json.dumps would be needed
            return None
        frame += b',"params":' + raw
    return frame + b"}\n"


def call(project: str | None, socket: str | None, method: str, params: str | None) -> bytes | None:
    """The result's JSON, or None: take the full path."""
    frame = request(method, params)
    if frame is None:
        return None
    try:
        path = locate(project, socket, create_runtime=False)[2]
    except PathError:
        return None
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.settimeout(TIMEOUT)
        s.connect(path)
        if peer_uid(s) not in (None, os.getuid()):
            return None  # the full path refuses it, saying why
        s.sendall(_HELLO + frame)
        data = b""
        while data.count(b"\n") < 2:
            chunk = s.recv(1 << 16)
            if not chunk:
                return None
            data += chunk
    except OSError:
        return None
    finally:
        s.close()
    hello, reply, rest = data.split(b"\n", 2)
    if _VERSION not in hello or rest or not reply.startswith(_RESULT) or not reply.endswith(b"}"):
        return None
    return reply[len(_RESULT):-1]
