"""Typed exceptions. The daemon raises these too, so a code means one thing everywhere."""

from __future__ import annotations

from typing import Any

from . import protocol as p


class SessionmemError(Exception):
    """Base of every sessionmem error; ``code`` is the JSON-RPC error code."""

    code: int = p.INTERNAL_ERROR

    def __init__(self, message: str, data: Any = None, *, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.data = data

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, message={self.message!r})"


class ParseError(SessionmemError):
    code = p.PARSE_ERROR


class InvalidRequest(SessionmemError):
    code = p.INVALID_REQUEST


class MethodNotFound(SessionmemError):
    code = p.METHOD_NOT_FOUND


class InvalidParams(SessionmemError):
    code = p.INVALID_PARAMS


class InternalError(SessionmemError):
    code = p.INTERNAL_ERROR


class FrameTooLargeError(SessionmemError):
    code = p.FRAME_TOO_LARGE


class TooManyConnections(SessionmemError):
    code = p.TOO_MANY_CONNECTIONS


class ShuttingDown(SessionmemError):
    code = p.SHUTTING_DOWN


class PersistFailed(SessionmemError):
    code = p.PERSIST_FAILED


class OutputOverflow(SessionmemError):
    code = p.OUTPUT_OVERFLOW


class Conflict(SessionmemError):
    """``expect`` did not match: nothing changed. ``current`` is the value now (decoded
    JSON), ``revision`` the database's revision when it was read."""

    code = p.CONFLICT

    @property
    def current(self) -> Any:
        return self.data.get("current") if isinstance(self.data, dict) else None

    @property
    def revision(self) -> int | None:
        return self.data.get("revision") if isinstance(self.data, dict) else None


class Compacted(SessionmemError):
    """watch ``since`` is older than the daemon can replay: re-read what you need and
    watch again. ``oldest`` is the oldest revision it can replay from."""

    code = p.COMPACTED

    @property
    def oldest(self) -> int | None:
        return self.data.get("oldest") if isinstance(self.data, dict) else None


class NoSuchSession(SessionmemError):
    """The ``session`` (or ``sessionId``, ``forkFrom``) names no session in the database."""

    code = p.NO_SUCH_SESSION


class SessionExists(SessionmemError):
    """createSession/importSession with an id already in use: nothing was created."""

    code = p.SESSION_EXISTS


class SessionIsCurrent(SessionmemError):
    """deleteSession of the current session: make another one current first."""

    code = p.SESSION_IS_CURRENT


# Client-side failures that never travel on the wire.
class LeaseHeld(SessionmemError):
    """A lease is held by another owner, or not (any longer) with the token given:
    nothing changed. ``data``: the holder now, ``{owner, expiresAt, token}`` (null
    fields when nobody holds it)."""

    code = p.LEASE_HELD


class ConnectionFailed(SessionmemError):
    """No daemon answers (and autostart is off or failed)."""

    code = -1


class ConnectionLost(ConnectionFailed):
    """The daemon went away in the middle of a call (a restart, a crash): the call may
    or may not have been applied. Calls safe to repeat are retried once, by themselves."""


class DaemonStartError(ConnectionFailed):
    """An autostarted daemon exited before serving; ``message`` holds its own error."""


class VersionMismatch(SessionmemError):
    """The daemon speaks another protocol version; `sessionmem daemon restart` fixes it."""

    code = -2


class StoreMismatch(SessionmemError):
    """``$SESSIONMEM_STORE`` names another store than the daemon reached serves: the
    client refuses to use it (storename.check_store) rather than write to the wrong one."""

    code = -3


_BY_CODE: dict[int, type[SessionmemError]] = {
    cls.code: cls
    for cls in (
        ParseError,
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        InternalError,
        FrameTooLargeError,
        TooManyConnections,
        ShuttingDown,
        PersistFailed,
        OutputOverflow,
        Conflict,
        Compacted,
        NoSuchSession,
        SessionExists,
        SessionIsCurrent,
        LeaseHeld,
    )
}


def from_wire(err: p.ErrorObject) -> SessionmemError:
    cls = _BY_CODE.get(err.code, SessionmemError)
    data = None if err.data is p.UNSET else err.data
    return cls(err.message, data, code=err.code)


# sessionmemd's exit codes (sysexits.h where one fits); autostart reads them.
EXIT_OK = 0
EXIT_FAILURE = 1  # e.g. the final snapshot could not be written (see the log)
EXIT_USAGE = 2
EXIT_BAD_DATABASE = 65  # EX_DATAERR: corrupt, foreign or newer database; left untouched
EXIT_IO = 74  # EX_IOERR: the database could not be read for another reason (I/O, locks)
EXIT_NO_PERMISSION = 77  # EX_NOPERM: the database or its folder is not writable (not damaged)
EXIT_ALREADY_RUNNING = 75  # EX_TEMPFAIL: another daemon owns this database or socket
EXIT_CONFIG = 78  # EX_CONFIG: unsafe runtime folder, socket path too long, ...
