"""How an error reaches the user of the CLI: one line and an exit code."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's own import costs a one-shot call ~3 ms
if TYPE_CHECKING:
    from typing import Final

EXIT_NOT_RUNNING: Final = 3  # no daemon answers (and none was started)


class InputError(Exception):
    """Input the CLI cannot send (text that is not UTF-8, a file it cannot write): its
    message is the one line the user sees; exit 1, nothing sent."""


def stdin_text() -> str:
    """All of stdin as text: UTF-8, or InputError naming the first bad byte (read as bytes:
    a text stdin would pass them on as surrogates, which fail only once encoded)."""
    import sys

    data = sys.stdin.buffer.read()
    try:
        return data.decode()
    except UnicodeDecodeError as e:
        raise InputError(f"stdin is not UTF-8 text: byte {e.start} is {data[e.start:e.start + 1]!r}; "
                         f"nothing was sent") from None


# The wire's names as the CLI's user knows them: a daemon's message names the method and
# its params; the commands and options that sent them are what the user typed (`call`
# keeps the wire's names: those are what its user typed).
CLI_COMMANDS = {
    "getSessionId": "id", "getCurrentTask": "task get", "setCurrentTask": "task set", "getActiveTicket": "ticket get",
    "setActiveTicket": "ticket set", "addMessage": "msg add", "getRecentMessages": "msg recent",
    "getAllMessages": "msg all", "popMessage": "msg pop", "trimMessages": "msg trim", "trackOpenFile": "files track",
    "untrackFile": "files untrack", "getOpenFiles": "files list", "setContext": "ctx set", "getContext": "ctx get",
    "deleteContext": "ctx del", "getAllContext": "ctx all", "getStats": "stats", "listSessions": "sessions list",
    "createSession": "sessions new", "setCurrentSession": "sessions use", "deleteSession": "sessions delete",
    "exportSession": "export", "importSession": "import",
    "acquireLease": "lease acquire", "renewLease": "lease renew", "releaseLease": "lease release",
    "listLeases": "lease list",
}
CLI_PARAMS = {
    "session": "--session", "forkFrom": "--fork-from", "forkUpTo": "--up-to", "makeCurrent": "--use", "keep": "--keep",
    "count": "COUNT", "task": "TEXT", "ticketId": "TICKET_ID", "role": "ROLE", "content": "CONTENT",
    "timestamp": "--timestamp", "key": "KEY", "value": "VALUE", "expect": "--expect", "filePath": "PATH",
    "records": "FILE", "since": "--since",
    "name": "NAME", "owner": "--owner", "token": "--token", "ttlMs": "--ttl",
}


def cli_words(message: str) -> str:
    """``message`` with the wire's method and param names replaced by the CLI's."""
    import re  # an error's path only

    ids = "--id" if re.search(r"\b(createSession|importSession)\b", message) else "ID"
    message = message.replace("invalid params for ", "invalid arguments for ")
    message = re.sub(r"`?params\.(\w+)`?", lambda m: ids if m[1] == "sessionId" else CLI_PARAMS.get(m[1], m[0]), message)
    return re.sub(r"\b(" + "|".join(CLI_COMMANDS) + r")\b", lambda m: f"`sessionmem {CLI_COMMANDS[m[1]]}`", message)


def report(exc: BaseException, wire: bool = False) -> tuple[str, int] | None:
    """(one-line message, exit code) for the errors a user should see as such; None for
    the others (bugs: their traceback is what helps). ``wire``: the user called a wire
    method by name (`call`), and its names stay in the message."""
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
        return f"{exc.message if wire else cli_words(exc.message)} (code {exc.code})", 1
    if isinstance(exc, (PathError, InputError)):
        return str(exc), 1
    return None


def message_line(role: str, content: str, timestamp: int) -> str:
    """A message as the CLI shows it: ``[local time] role: content``, each further line of
    the content indented under the first, so the next message's role stands out."""
    import time

    head = f"[{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(timestamp / 1000))}] {role}: "
    return head + content.replace("\n", "\n" + " " * len(head))


def say(line: str) -> None:
    """A line on stdout, without importing click."""
    import sys

    sys.stdout.write(line + "\n")


def claimed(ticket: str, as_json: bool) -> str:
    return '{"claimed":%s}' % _json(ticket) if as_json else f"claimed {ticket}"


def claim_refused(current: object, revision: int | None, as_json: bool) -> int:
    """`ticket claim` found another ticket active (or its own, claimed by another agent
    first): say who holds it; exit 1."""
    import sys

    if as_json:
        say('{"claimed":null,"heldBy":%s,"revision":%s}' % (_json(current), _json(revision)))
    print(f"sessionmem: not claimed: the active ticket is already {current} (revision {revision})",
          file=sys.stderr)
    return 1


def lost(socket: str) -> int:
    import sys

    print(f"sessionmem: lost the daemon on {socket} before it replied; the change may or may not "
          f"have been made", file=sys.stderr)
    return EXIT_NOT_RUNNING


def error_reply(frame: bytes, as_json: bool, claim: str | None = None, params_given: bool = False) -> int:
    """Print an error reply (a frame of the daemon's) as the full path prints the error it
    raises; the exit code. ``params_given``: the params were the user's JSON, sent as they
    were, so a parse error is theirs."""
    import sys

    from .. import errors
    from ..api import decode_reply
    from ..protocol import UNSET

    reply = decode_reply(frame)
    if reply.error is UNSET:
        print(f"sessionmem: unexpected reply from the daemon: {frame[:200]!r}", file=sys.stderr)
        return 1
    exc = errors.from_wire(reply.error)
    if params_given and isinstance(exc, errors.ParseError):
        print(f"sessionmem: PARAMS_JSON is not JSON ({exc.message})", file=sys.stderr)
        return 2
    if claim is not None and isinstance(exc, errors.Conflict):
        return claim_refused(exc.current, exc.revision, as_json)
    message, code = report(exc, wire=params_given) or (str(exc), 1)
    print(f"sessionmem: {message}", file=sys.stderr)
    return code


def _json(value: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)
