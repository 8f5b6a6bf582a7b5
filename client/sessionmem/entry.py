"""The `sessionmem` console script's entry point.

`sessionmem call METHOD [PARAMS_JSON]` is what scripts and agents run in loops,
so it gets a path that skips click (whose import alone costs about as much as
starting Python): global options and `call` are parsed here, and everything else
(including any form this parser does not recognise, and --help) goes to the
click CLI in cli.py. Both paths report errors through :func:`report`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

EXIT_NOT_RUNNING = 3
_FLAGS = {"--json": "as_json", "--no-autostart": "no_autostart"}
_VALUED = {"--project": "project", "--socket": "socket"}


def report(exc: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit code) for the errors a user should see as such."""
    from . import errors
    from .paths import PathError

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


def parse_call(argv: list[str]) -> dict[str, Any] | None:
    """The options of a plain `call` invocation, or None to let click handle argv."""
    opts: dict[str, Any] = {"project": os.environ.get("SESSIONMEM_PROJECT") or None,
                            "socket": os.environ.get("SESSIONMEM_SOCKET") or None,
                            "as_json": False, "no_autostart": False}
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        name, eq, value = argv[i].partition("=")
        if name in _FLAGS and not eq:
            opts[_FLAGS[name]] = True
        elif name in _VALUED:
            if not eq:
                i += 1
                if i >= len(argv):
                    return None
                value = argv[i]
            opts[_VALUED[name]] = value
        else:
            return None
        i += 1
    rest = argv[i:]
    if not (2 <= len(rest) <= 3) or rest[0] != "call" or any(a.startswith("-") for a in rest[1:2]):
        return None
    if len(rest) == 3 and rest[2] in ("-h", "--help"):
        return None
    opts["method"] = rest[1]
    opts["params"] = rest[2] if len(rest) == 3 else None
    return opts


def run_call(o: dict[str, Any]) -> int:
    import msgspec

    from .session import Session

    params = None
    if o["params"]:
        try:
            params = msgspec.json.decode(o["params"])
        except msgspec.DecodeError as e:
            print(f"sessionmem: PARAMS_JSON is not JSON: {e}", file=sys.stderr)
            return 2
    try:
        with Session(o["project"], o["socket"], autostart=not o["no_autostart"]) as s:
            result = s.call(o["method"], params)
    except Exception as e:
        r = report(e)
        if r is None:
            raise
        print(f"sessionmem: {r[0]}", file=sys.stderr)
        return r[1]
    sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    return 0


def main() -> None:
    opts = parse_call(sys.argv[1:])
    if opts is not None:
        sys.exit(run_call(opts))
    from .cli import main as cli

    cli()
