"""A held lease, as the clients hand it out (``Session.acquire_lease``,
``AsyncSession.acquire_lease``): its name, owner, fencing token and expiry, and a
context manager that renews it in the background (a thread for ``Session``, a task
for ``AsyncSession``, every third of its ttl) and releases it on exit.

A renewal that fails (the lease expired meanwhile and someone else took it, the daemon
went away) stops the renewals and is kept in ``error``: the holder must then stop
acting on the claim, and its fenced writes are refused anyway (``Session.fenced``).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from . import errors
from . import protocol as p

if TYPE_CHECKING:  # asyncio and threading are imported when used: the CLI starts fast
    import asyncio
    import threading
    from types import TracebackType

    from .typed import AsyncSessionMethods, SessionMethods


class _LeaseInfo:
    """The fields both kinds of handle share."""

    _info: p.Lease
    error: BaseException | None

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def owner(self) -> str:
        return self._info.owner

    @property
    def token(self) -> int:
        """The revision of the acquisition: a later holder's is larger (fencing)."""
        return self._info.token

    @property
    def expires_at(self) -> int | None:
        """Epoch ms when it ends without a renewal; None: when the connection closes."""
        return self._info.expiresAt

    @property
    def session_id(self) -> str:
        return self._info.sessionId

    @property
    def ttl(self) -> float | None:
        """Seconds, as last acquired or renewed; None: ephemeral."""
        return None if self._info.ttlMs is None else self._info.ttlMs / 1000

    @property
    def ref(self) -> p.LeaseRef:
        """The ``lease`` param that fences a call with this lease."""
        return p.LeaseRef(self._info.name, self._info.token)

    def _every(self) -> float | None:
        ttl = self.ttl
        return None if ttl is None else max(ttl / 3, 0.01)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, owner={self.owner!r}, token={self.token}, "
                f"expires_at={self.expires_at})")


class Lease(_LeaseInfo):
    """A lease held through a ``Session``; ``with`` renews it and releases it."""

    def __init__(self, client: SessionMethods, info: p.Lease) -> None:
        self._client = client
        self._info = info
        self.error = None
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def renew(self, ttl: float | None = None) -> None:
        self._info = self._client.renew_lease(self.name, self.token, ttl)

    def release(self) -> None:
        self._client.release_lease(self.name, self.token)

    def _renewing(self, stop: threading.Event, every: float) -> None:
        while not stop.wait(every):
            try:
                self.renew()
            except BaseException as e:  # kept for the holder; the thread ends
                self.error = e
                return

    def __enter__(self) -> Lease:
        every = self._every()
        if every is not None:
            import threading

            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._renewing, args=(self._stop, every), daemon=True,
                                            name=f"sessionmem-lease-{self.name}")
            self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None:
            self._thread.join()
        # Already lost (expired and taken over): nothing left to give back.
        with contextlib.suppress(errors.LeaseHeld):
            self.release()


class AsyncLease(_LeaseInfo):
    """A lease held through an ``AsyncSession``; ``async with`` renews and releases it."""

    def __init__(self, client: AsyncSessionMethods, info: p.Lease) -> None:
        self._client = client
        self._info = info
        self.error = None
        self._task: asyncio.Task[Any] | None = None

    async def renew(self, ttl: float | None = None) -> None:
        self._info = await self._client.renew_lease(self.name, self.token, ttl)

    async def release(self) -> None:
        await self._client.release_lease(self.name, self.token)

    async def _renewing(self, every: float) -> None:
        import asyncio

        while True:
            await asyncio.sleep(every)
            try:
                await self.renew()
            except Exception as e:  # kept for the holder; the task ends
                self.error = e
                return

    async def __aenter__(self) -> AsyncLease:
        every = self._every()
        if every is not None:
            import asyncio

            self._task = asyncio.create_task(self._renewing(every))
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._task is not None:
            import asyncio

            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(errors.LeaseHeld):
            await self.release()
