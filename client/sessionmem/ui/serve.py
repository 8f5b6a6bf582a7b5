"""Run the page: bind 127.0.0.1, connect to the daemon, print the URL, serve until stopped."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable

import uvicorn
from sse_starlette.sse import SendTimeoutError

from ..aio import AsyncSession
from .app import build


class _QuietTimeouts(logging.Filter):
    """A browser's stream ended because it stopped reading (the send timeout) is how
    the stream stays bounded, not an error of the app: not logged with a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, SendTimeoutError)


def listen(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1 only (port 0: one the system picks)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


async def serve(project: str | None, socket_path: str | None, autostart: bool, pinned: str | None, port: int,
                announce: Callable[[str], None]) -> None:
    sock = listen(port)
    try:
        token = secrets.token_urlsafe(24)
        real_port = sock.getsockname()[1]
        # SESSIONMEM_UI_SEND_TIMEOUT: how long a browser's stream may wait for it to read
        # before it is ended (the tests shorten it).
        send_timeout = float(os.environ.get("SESSIONMEM_UI_SEND_TIMEOUT", "10"))
        async with AsyncSession(project, socket_path, autostart=autostart) as client:
            app = build(client, token, real_port, pinned, send_timeout)
            config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                    timeout_graceful_shutdown=2, loop="none")
            server = uvicorn.Server(config)  # (its Config set up the uvicorn loggers)
            logging.getLogger("uvicorn.error").addFilter(_QuietTimeouts())
            announce(f"http://127.0.0.1:{real_port}/?token={token}")
            await server.serve(sockets=[sock])
    finally:
        sock.close()


def run(project: str | None, socket_path: str | None, autostart: bool, pinned: str | None, port: int,
        announce: Callable[[str], None]) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(project, socket_path, autostart, pinned, port, announce))
