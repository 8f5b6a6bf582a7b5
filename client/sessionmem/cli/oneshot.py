"""One request, one reply, on a raw socket: the happy path of the one-shot commands
agents run from a shell (`call`, `id`, `task`/`ticket get|set|clear`, `ticket claim`,
`msg add|recent|all`, `files list`, `ctx get|all`).

Their cost is Python's start-up plus whatever they import. This path imports no msgspec,
no click, no pathlib, no typing (and no json but to show a list): it finds the socket (locate.py), checks who
serves it (peercred.py), checks the daemon's protocol version (``hello``), sends the
call and prints the result as the daemon wrote it (its replies are canonical:
``{"jsonrpc":"2.0","id":1,"result":...}``). Whatever it does not handle returns None
*before the call is sent* (no daemon answering: autostart; another protocol version; a
socket of another user; input it cannot encode), and the caller takes the full path,
which handles it all. Error replies are rendered here, from the reply, as the full
path renders them (report.py): a write is never sent twice.
"""

from __future__ import annotations

import _socket
import os
import sys
from _json import make_scanner, scanstring  # json's C parts: json itself would import re

from ..ids import new_message_id
from ..locate import PathError, locate
from ..peercred import peer_uid
from . import report

TYPE_CHECKING = False  # typing's own import costs a one-shot call ~3 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

PROTOCOL_VERSION = 3  # protocol.PROTOCOL_VERSION, without importing msgspec (a test keeps them equal)
ROLES = ("user", "assistant", "system", "tool")  # protocol.Role's, likewise
_HELLO = b'{"jsonrpc":"2.0","method":"hello","id":0}\n'
_RESULT = b'{"jsonrpc":"2.0","id":1,"result":'
_VERSION = b'"protocolVersion":%d,' % PROTOCOL_VERSION
TIMEOUT = 30.0
READ_SIZE = 1 << 16  # session.READ_SIZE: below the malloc mmap threshold, no syscall per buffer
# JSON string escapes: the quote, the backslash and the control characters.
_ESCAPES = {**{i: f"\\u{i:04x}" for i in range(32)}, 8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r",
            ord('"'): '\\"', ord("\\"): "\\\\"}


class Plan:
    """A command as one call: how to build its frame, and how its result is shown."""

    __slots__ = ("method", "params", "show", "claim", "user_params")

    def __init__(self, method: str, params: bytes | Callable[[], bytes] | None,
                 show: Callable[[bytes, bool], str | None], claim: str | None = None,
                 user_params: bool = False) -> None:
        self.method = method
        self.user_params = user_params  # `call`: the user's JSON, sent as it is
        self.params = params  # a callable when building them reads stdin: only once sending
        self.show = show  # (result JSON, --json) -> the line to print, or None
        self.claim = claim  # `ticket claim`: a conflict is told as a claim refused

    def frame(self) -> bytes:
        params = self.params() if callable(self.params) else self.params
        frame = b'{"jsonrpc":"2.0","method":"' + self.method.encode() + b'","id":1'
        if params is not None:
            frame += b',"params":' + params
        return frame + b"}\n"



def _finite(text: str) -> float:
    value = float(text)
    if value - value != 0:  # inf: the daemon's decoder refuses it too
        raise ValueError(f"number out of range: {text}")
    return value


def _constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


class _Strict:
    """What the C scanner reads off a decoder: json.JSONDecoder's strict settings, without
    importing json (which imports re)."""

    strict = True  # control characters in strings are an error: a frame stays one line
    object_hook = object_pairs_hook = None
    parse_float = staticmethod(_finite)
    parse_int = int
    parse_constant = staticmethod(_constant)
    memo: dict[str, str] = {}


_scan = make_scanner(_Strict())  # type: ignore[arg-type]  # typeshed: the context is any object with these attributes
_WS = " \t\n\r"


def params_error(text: str) -> str | None:
    """Why PARAMS_JSON cannot be sent (None when it is one JSON object or array): checked
    before anything is sent, since the frame is built around it as it is."""
    start = len(text) - len(text.lstrip(_WS))
    if text[start : start + 1] not in ("{", "["):
        return "PARAMS_JSON must be one JSON object or array"
    try:
        end = _scan(text, start)[1]
        if not text[end:].strip(_WS):
            return None
    except Exception:  # any failure: json's own decoder names it below
        pass
    import json  # the error path only: the C scanner needs json.decoder to say what and where

    try:
        end = json.JSONDecoder(parse_float=_finite, parse_constant=_constant).raw_decode(text, start)[1]
    except json.JSONDecodeError as e:
        return f"PARAMS_JSON is not JSON: {e.msg.removesuffix(' at')} at character {e.pos}"
    except RecursionError:
        return "PARAMS_JSON is not JSON: it nests too deeply"
    except ValueError as e:
        return f"PARAMS_JSON is not JSON: {e}"
    return f"PARAMS_JSON must be one JSON object or array: more follows it at character {end}"


def json_str(s: str) -> bytes:
    """``s`` as a JSON string (UnicodeEncodeError for a lone surrogate: the caller takes
    the full path, whose error names it)."""
    return b'"' + s.translate(_ESCAPES).encode("utf-8") + b'"'


def _raw(result: bytes, as_json: bool) -> str | None:
    return result.decode()


def _nothing(result: bytes, as_json: bool) -> str | None:
    return "null" if as_json else None


def _text(result: bytes, as_json: bool) -> str | None:
    """A string result printed as text (nothing for null), as the click path prints it."""
    if as_json:
        return result.decode()
    if result == b"null":
        return None
    if b"\\" in result:  # escapes: the rare case pays for a JSON parser
        import json

        return str(json.loads(result))
    return result[1:-1].decode()


def call_plan(method: str, params: str | None) -> Plan | None:
    """`call METHOD [PARAMS_JSON]`, its params checked already (params_error), or None."""
    if not (method.isidentifier() and method.isascii()):
        return None
    try:
        raw = None if params is None else params.encode()
    except UnicodeEncodeError:
        return None
    if raw is not None and (b"\n" in raw or b"\r" in raw):
        return None  # a frame is one line: this needs a JSON parser (the full path)
    return Plan(method, raw, _raw, user_params=True)


def plan(argv: list[str], session: str | None = None) -> Plan | None:
    """The plan of a one-shot command but `call` (call_plan: its own checks first; its words
    after the global options; ``session``: --session's), or None for anything else."""
    try:
        p = _plan(argv)
        if p is not None and session is not None:
            p.params = _with_session(p.params, json_str(session))
        return p
    except UnicodeEncodeError:
        return None


def _with_session(params: bytes | Callable[[], bytes] | None, session: bytes) -> bytes | Callable[[], bytes]:
    if params is None:
        return b'{"session":%s}' % session
    if callable(params):
        build = params
        return lambda: build()[:-1] + b',"session":%s}' % session
    return params[:-1] + b',"session":%s}' % session


def _parsed(result: bytes) -> list[Any]:
    import json  # ~5 ms (it imports re): only for a reply not in the daemon's own shape

    return json.loads(result)  # type: ignore[no-any-return]


def _strings(text: str) -> list[str] | None:
    """A JSON array of strings, read with the C string scanner alone; None if not one."""
    out: list[str] = []
    i = 1
    if text[:1] != "[":
        return None
    while text[i : i + 1] == '"':
        value, i = scanstring(text, i + 1)
        out.append(value)
        if text[i : i + 1] == ",":
            i += 1
    return out if text[i:] == "]" else None


def _message_list(text: str) -> list[tuple[str, str, int]] | None:
    """Messages as the daemon writes them, ``[{"role":..,"content":..,"timestamp":N},..]``,
    read with the C string scanner alone; None for any other shape."""
    out = []
    i = 1
    if text[:1] != "[":
        return None
    while text.startswith('{"role":"', i):
        role, i = scanstring(text, i + 9)
        if not text.startswith(',"content":"', i):
            return None
        content, i = scanstring(text, i + 12)
        if not text.startswith(',"timestamp":', i):
            return None
        end = text.find("}", i)
        ts = text[i + 13 : end]
        if end < 0 or not ts.isdigit():
            return None
        out.append((role, content, int(ts)))
        i = end + 1
        if text[i : i + 1] == ",":
            i += 1
    return out if text[i:] == "]" else None


def _messages(result: bytes, as_json: bool) -> str | None:
    if as_json:
        return result.decode()
    msgs = _message_list(result.decode())
    if msgs is None:
        msgs = [(m["role"], m["content"], m["timestamp"]) for m in _parsed(result)]
    return "\n".join(report.message_line(*m) for m in msgs) or None


def _lines(result: bytes, as_json: bool) -> str | None:
    if as_json:
        return result.decode()
    paths = _strings(result.decode())
    return "\n".join(_parsed(result) if paths is None else paths) or None


def _plan(argv: list[str]) -> Plan | None:
    n = len(argv)
    if n == 0 or any(a.startswith("-") and a != "-" for a in argv[1:]):
        return None  # options (and --help) are click's
    cmd = argv[0]
    if cmd == "id" and n == 1:
        return Plan("getSessionId", None, _text)
    if cmd in ("task", "ticket") and n >= 2:
        method, field = ("CurrentTask", "task") if cmd == "task" else ("ActiveTicket", "ticketId")
        sub = argv[1]
        if sub == "get" and n == 2:
            return Plan("get" + method, None, _text)
        if sub == "set" and n == 3:
            return Plan("set" + method, b'{"%s":%s}' % (field.encode(), json_str(argv[2])), _nothing)
        if sub == "clear" and n == 2:
            return Plan("set" + method, b'{"%s":null}' % field.encode(), _nothing)
        if cmd == "ticket" and sub == "claim" and n == 3:
            ticket = argv[2]
            return Plan("setActiveTicket", b'{"ticketId":%s,"expect":null}' % json_str(ticket),
                        lambda result, as_json: report.claimed(ticket, as_json), claim=ticket)
        return None
    if cmd == "msg" and n == 4 and argv[1] == "add" and argv[2] in ROLES:
        role, content = argv[2].encode(), argv[3]

        def message() -> bytes:
            text = report.stdin_text() if content == "-" else content
            return b'{"role":"%s","content":%s,"id":"%s"}' % (role, json_str(text), new_message_id().encode())

        return Plan("addMessage", message if content == "-" else message(), _nothing)
    if cmd == "msg" and n in (2, 3) and argv[1] == "recent" and (n == 2 or argv[2].isdigit()):
        return Plan("getRecentMessages", b'{"count":%d}' % int(argv[2] if n == 3 else 10), _messages)
    if argv == ["msg", "all"]:
        return Plan("getAllMessages", None, _messages)
    if argv == ["files", "list"]:
        return Plan("getOpenFiles", None, _lines)
    if argv == ["ctx", "all"]:
        return Plan("getAllContext", None, _raw)
    if cmd == "ctx" and n == 3 and argv[1] == "get":
        return Plan("getContext", b'{"key":%s}' % json_str(argv[2]), _raw)
    return None


def run(project: str | None, socket: str | None, p: Plan, as_json: bool) -> int | None:
    """Send the plan; the exit code, or None (nothing was sent): take the full path."""
    try:
        path = locate(project, socket, create_runtime=False)[2]
    except PathError:
        return None
    sent = False
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.settimeout(TIMEOUT)
        s.connect(path)
        if peer_uid(s) not in (None, os.getuid()):
            return None  # the full path refuses it, saying why
        s.sendall(_HELLO)
        hello = _line(s, b"")
        if hello is None or _VERSION not in hello[0]:
            return None  # another protocol: the full path says to restart the daemon
        if not _same_store(hello[0]):
            return None  # maybe another store: the full path compares them, and refuses
        sent = True  # from here on (stdin may be read): no fallback, a write is never sent twice
        try:
            frame = p.frame()
        except report.InputError as e:
            print(f"sessionmem: {e}", file=sys.stderr)
            return 1
        try:
            s.sendall(frame)
        except OSError:
            pass  # the daemon refused it (a frame over its limit) and closed: its parting reply says why
        got = _line(s, hello[1])
    except OSError:
        if not sent:
            return None
        got = None
    finally:
        s.close()
    if got is None:
        return report.lost(path)  # sent, and the daemon went away: a write is never sent twice
    reply = got[0]
    if reply.startswith(_RESULT) and reply.endswith(b"}"):
        line = p.show(reply[len(_RESULT):-1], as_json)
        if line is not None:
            _write(line.encode() + b"\n")
        return 0
    return report.error_reply(reply, as_json, p.claim, params_given=p.user_params)


def _same_store(hello: bytes) -> bool:
    """True when the client is told no store, or the daemon's hello names exactly the one
    ``$SESSIONMEM_STORE`` (and ``$SESSIONMEM_PROJECT_KEY``) names. Anything else (a URL
    with a password, which the daemon shows masked; another store) goes the full way:
    storename.check_store compares them without passwords, and refuses a mismatch."""
    told = os.environ.get("SESSIONMEM_STORE")
    if not told:
        return True
    key = os.environ.get("SESSIONMEM_PROJECT_KEY")
    try:  # "store":"<value>" matches only a key of that name: in a string, a quote is escaped
        return b'"store":' + json_str(told) in hello and (
            not key or told == "sqlite" or b'"projectKey":' + json_str(key) in hello)
    except UnicodeEncodeError:
        return False


def _line(s: _socket.socket, buf: bytes) -> tuple[bytes, bytes] | None:
    """The next reply line and what was read after it; None when the daemon closed.
    Linear in the reply's size: each chunk is searched once, and the parts are joined once
    (framing.LineFramer's way, which this path cannot import: it needs msgspec)."""
    end = buf.find(b"\n")
    parts = [buf]
    while end < 0:
        chunk = s.recv(READ_SIZE)
        if not chunk:
            return None
        end = chunk.find(b"\n")
        parts.append(chunk)
    last = parts.pop()
    return b"".join([*parts, last[:end]]), last[end + 1 :]


def _write(data: bytes) -> None:
    """All of ``data`` to stdout: one write() may take only part of a large reply."""
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]
