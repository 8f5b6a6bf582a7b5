"""The floor: the least a uvloop + msgspec JSON-RPC server over a Unix socket can do.

It decodes each request into the same envelope Struct sessionmemd uses and replies
``null``: no state, no dispatch, no persistence. What sessionmemd costs on top of
this is what the benchmarks report as a ratio.

    python benchmarks/floor_server.py SOCKET
"""

from __future__ import annotations

import asyncio
import os
import sys

import msgspec
import uvloop

from sessionmem import protocol as p


class Echo(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.decode = msgspec.json.Decoder(p.Request).decode
        self.encode = msgspec.json.Encoder().encode

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport

    def data_received(self, data: bytes) -> None:
        lines = (self.buf + data).split(b"\n")
        self.buf = lines.pop()
        out = []
        for line in lines:
            if line[:1] == b"[":
                reqs = msgspec.json.decode(line, type=list[p.Request])
                out.append(b"[" + b",".join(self.encode(p.Response(id=r.id, result=None)) for r in reqs) + b"]\n")
            else:
                req = self.decode(line)
                out.append(self.encode(p.Response(id=req.id, result=None)) + b"\n")
        self.t.write(b"".join(out))  # type: ignore[attr-defined]


async def main(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)
    server = await asyncio.get_running_loop().create_unix_server(Echo, path, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1]))
