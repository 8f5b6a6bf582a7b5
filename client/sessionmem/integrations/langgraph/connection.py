"""The sessionmem client the LangGraph adapters hold: made on first use (so building
a saver or a store costs no connection), shared by their threads, closed with them
unless the caller passed it in (then it is the caller's to close)."""

from __future__ import annotations

import os
import threading
from typing import Self

from ...session import Session


class Connection:
    def __init__(self, project: str | os.PathLike[str] | None, socket: str | os.PathLike[str] | None,
                 autostart: bool, client: Session | None) -> None:
        self._project, self._socket, self._autostart = project, socket, autostart
        self._client = client
        self._own = client is None
        self._lock = threading.Lock()

    @property
    def client(self) -> Session:
        with self._lock:
            if self._client is None:
                self._client = Session(project=self._project, socket=self._socket, autostart=self._autostart)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._own and self._client is not None:
                self._client.close()
            self._client = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
