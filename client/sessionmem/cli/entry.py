"""The `sessionmem` console script's entry point.

`sessionmem call METHOD [PARAMS_JSON]` is what scripts and agents run in loops, so it
gets a path that skips click (whose import alone costs about as much as starting
Python): global options and `call` are parsed here, and everything else (including any
form this parser does not recognise, and --help) goes to the click CLI (app.py). This
module imports nothing beyond the standard library's cheapest parts until it knows
which path it takes.
"""

from __future__ import annotations

import os
import sys

from .argv import FLAGS, VALUED, hoist, not_utf8

TYPE_CHECKING = False  # typing's own import costs a one-shot call ~3 ms
if TYPE_CHECKING:
    from typing import Any


def parse_globals(argv: list[str]) -> tuple[dict[str, Any], list[str]] | None:
    """The global options (and their environment defaults), wherever they were written
    (argv.hoist), and the other words; None for any form this parser does not know
    (click's, then)."""
    opts: dict[str, Any] = {"project": os.environ.get("SESSIONMEM_PROJECT") or None,
                            "socket": os.environ.get("SESSIONMEM_SOCKET") or None,
                            "session": os.environ.get("SESSIONMEM_SESSION") or None,
                            "as_json": False, "no_autostart": False}
    argv = hoist(argv)
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        name, eq, value = argv[i].partition("=")
        if name in FLAGS and not eq:
            opts[FLAGS[name]] = True
        elif name in VALUED:
            if not eq:
                i += 1
                if i >= len(argv):
                    return None
                value = argv[i]
            opts[VALUED[name]] = value
        else:
            return None
        i += 1
    return opts, argv[i:]


def parse_call(argv: list[str]) -> dict[str, Any] | None:
    """The options of a plain `call` invocation, or None."""
    parsed = parse_globals(argv)
    if parsed is None:
        return None
    opts, rest = parsed
    if not (2 <= len(rest) <= 3) or rest[0] != "call" or any(a.startswith("-") for a in rest[1:]):
        return None
    opts["method"] = rest[1]
    opts["params"] = rest[2] if len(rest) == 3 else None
    return opts


def main() -> None:
    argv = sys.argv[1:]
    why = not_utf8(argv, dict(os.environ))
    if why is not None:
        sys.stderr.write(f"sessionmem: {why}\n")
        sys.exit(1)
    call = parse_call(argv)
    if call is not None:
        from .call import run_call

        sys.exit(run_call(call["project"], call["socket"], call["no_autostart"], call["method"], call["params"]))
    parsed = parse_globals(argv)
    if parsed is not None and parsed[1]:
        from . import oneshot

        opts, rest = parsed
        p = oneshot.plan(rest, opts["session"])
        code = None if p is None else oneshot.run(opts["project"], opts["socket"], p, opts["as_json"])
        if code is not None:
            sys.exit(code)
    from .app import main as cli

    cli()
