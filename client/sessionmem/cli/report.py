"""How an error reaches the user of the CLI: one line and an exit code."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's own import costs a one-shot call ~3 ms
if TYPE_CHECKING:
    from typing import Final

EXIT_NOT_RUNNING: Final = 3  # no daemon answers (and none was started)


def report(exc: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit code) for the errors a user should see as such; None for
    the others (bugs: their traceback is what helps)."""
    from .. import errors
    from ..locate import PathError

    if isinstance(exc, errors.DaemonStartError):
        return exc.message, 1
    if isinstance(exc, errors.ConnectionFailed):
        return exc.message, EXIT_NOT_RUNNING
    if isinstance(exc, errors.Conflict):
        import json

        return (f"{exc.message}: the value now is {json.dumps(exc.current)} (revision "
                f"{exc.revision}) (code {exc.code})"), 1
    if isinstance(exc, errors.SessionmemError):
        return f"{exc.message} (code {exc.code})", 1
    if isinstance(exc, PathError):
        return str(exc), 1
    return None
