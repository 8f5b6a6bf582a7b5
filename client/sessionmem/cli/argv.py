"""The command line before any command sees it: the global options, wherever they were
written, and arguments that cannot be sent. For both paths (entry.py's, which imports
nothing else before it knows its way; app.py's click group), so it imports nothing."""

from __future__ import annotations

FLAGS = {"--json": "as_json", "--no-autostart": "no_autostart"}
VALUED = {"--project": "project", "--socket": "socket", "--session": "session"}


def hoist(argv: list[str]) -> list[str]:
    """``argv`` with the global options (FLAGS, VALUED, each with its value) moved before
    the subcommand, in their order: `sessionmem watch --json` and `sessionmem task get
    --session planner` are `sessionmem --json watch` and `sessionmem --session planner task
    get`. Nothing after ``--`` moves (`msg add user -- --json` adds the text "--json")."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, _ = arg.partition("=")
        if arg == "--":
            rest += argv[i:]
            break
        if arg in FLAGS or (name in VALUED and eq):
            front.append(arg)
        elif name in VALUED and i + 1 < len(argv):
            front += argv[i : i + 2]
            i += 1
        else:
            rest.append(arg)  # a value missing too: left where it is, for click to name
        i += 1
    return front + rest


def not_utf8(argv: list[str], environ: dict[str, str] | None = None) -> str | None:
    """Why an argument (or a SESSIONMEM_* variable) cannot be sent: everything the daemon
    takes is JSON text, UTF-8; Python hands us bytes that are not as lone surrogates,
    which would fail only once encoded (a traceback, or half of `files track A B` done).
    The file name of `export -o` is ours alone to open: any bytes do. None when all are."""
    named = [(f"argument {i + 1}", a) for i, a in enumerate(argv)
             if not (i and argv[i - 1] in ("-o", "--output") or a.startswith("--output="))]
    named += [(k, v) for k, v in (environ or {}).items() if k.startswith("SESSIONMEM_")]
    for name, text in named:
        if text.isascii():
            continue
        try:
            text.encode()
        except UnicodeEncodeError:
            return f"{name} is not UTF-8 text: {text.encode(errors='surrogateescape')!r}; nothing was sent"
    return None
