"""`sessionmem call METHOD [PARAMS_JSON]`: the one implementation, for the console
script's fast path (entry.py) and for the click command alike."""

from __future__ import annotations

import sys

from . import oneshot
from .report import report


def run_call(project: str | None, socket: str | None, no_autostart: bool, method: str, params: str | None) -> int:
    """Print the result's JSON; returns the exit code. PARAMS_JSON goes as it is (the
    global --session does not apply: put "session" in it), so it must be one JSON object
    or array: checked here, before anything is sent (exit 2 if not)."""
    if params is not None and (why := oneshot.params_error(params)) is not None:
        print(f"sessionmem: {why}", file=sys.stderr)
        return 2
    plan = oneshot.call_plan(method, params)
    code = None if plan is None else oneshot.run(project, socket, plan, as_json=True)
    return _full(project, socket, no_autostart, method, params) if code is None else code


def _full(project: str | None, socket: str | None, no_autostart: bool, method: str, params: str | None) -> int:
    """Everything the fast path leaves: autostart, the lock file's socket, errors."""
    import msgspec

    from ..session import Session

    args = None
    if params is not None:
        try:  # checked already (run_call): what fails here is what only msgspec refuses
            args = msgspec.json.decode(params)
        except msgspec.DecodeError as e:
            print(f"sessionmem: PARAMS_JSON is not JSON: {e}", file=sys.stderr)
            return 2
    try:
        with Session(project, socket, autostart=not no_autostart) as s:
            result = s.call(method, args)
    except Exception as e:
        r = report(e, wire=True)
        if r is None:
            raise
        print(f"sessionmem: {r[0]}", file=sys.stderr)
        return r[1]
    sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    return 0
