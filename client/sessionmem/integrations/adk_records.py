"""The record layout of the ADK session service, as pure rules (no I/O, no ADK import).

All of one ADK app lives in ONE sessionmem session, ``adk:<app_name>``, because every ADK
write (the event, the session's state delta, the ``app:`` and ``user:`` deltas) must be
one ``transact``, and a transact acts on one session. Its context holds keyed records:

    s/<user>/<session>             the session's meta: {id, user, createTime, lastUpdateTime, next}
    e/<user>/<session>/<seq:012d>  one event, whole, as ADK serialises it (JSON mode)
    ss/<user>/<session>/<key>      the session's state, one key per record
    as/<key>                       app state (``app:`` keys, without the prefix)
    us/<user>/<key>                user state (``user:`` keys, without the prefix)

``<user>`` and ``<session>`` are percent-encoded (``%`` and ``/`` only), so an id that
holds ``/`` can neither collide with another nor reach into another's prefix; the state
key is the last segment and is kept as it is (readable in ``sessionmem watch``).

The event key is a sequence number from the meta's ``next``, never the event id: two
different events may share an id. The meta changes on every append (``next`` moves), so
"the meta this handle was read with" is an exact revision of the ADK session: an append
sends it as ``expect`` on the meta record, and a concurrent writer makes it fail whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

APP_PREFIX, USER_PREFIX = "app:", "user:"  # google.adk.sessions.state.State
MAX_OPS = 10_000  # transact's limit (docs/protocol.md, "Transactions")
MAX_PAGE = 10_000  # listContext's largest `limit`
SEQ_DIGITS = 12  # event keys sort by sequence number up to 10^12 events per session
MAX_SESSION_ID = 128  # sessionmem session ids are 1-128 characters
APP_SESSION_PREFIX = "adk:"

Meta = dict[str, Any]
Op = tuple[str, str, Any, Any]  # (method: "set" | "delete", key, value, expect or NO_EXPECT)
NO_EXPECT = object()


def esc(part: str) -> str:
    """Percent-encode the two characters that could break a key apart: ``%`` and ``/``."""
    return part.replace("%", "%25").replace("/", "%2F")


def unesc(part: str) -> str:
    # One pass: every "%" of an escaped part starts an escape this module made.
    return unquote(part)


def app_session_id(app_name: str) -> str:
    """The sessionmem session that holds every record of ``app_name``."""
    sid = APP_SESSION_PREFIX + app_name
    if not app_name or len(sid) > MAX_SESSION_ID:
        raise ValueError(
            f"ADK app name must be 1-{MAX_SESSION_ID - len(APP_SESSION_PREFIX)} characters "
            f"(it names the sessionmem session {APP_SESSION_PREFIX}<app_name>), got {len(app_name)}")
    return sid


def meta_key(user_id: str, session_id: str) -> str:
    return f"s/{esc(user_id)}/{esc(session_id)}"


def sessions_prefix(user_id: str | None) -> str:
    """Every meta record of one user (``None``: of every user)."""
    return "s/" if user_id is None else f"s/{esc(user_id)}/"


def events_prefix(user_id: str, session_id: str) -> str:
    return f"e/{esc(user_id)}/{esc(session_id)}/"


def event_key(user_id: str, session_id: str, seq: int) -> str:
    return f"{events_prefix(user_id, session_id)}{seq:0{SEQ_DIGITS}d}"


def event_seq(key: str) -> int:
    return int(key.rsplit("/", 1)[1])


def session_state_prefix(user_id: str | None, session_id: str | None = None) -> str:
    """One session's state records; with ``session_id`` None, every session of ``user_id``
    (None: of every user)."""
    if user_id is None:
        return "ss/"
    if session_id is None:
        return f"ss/{esc(user_id)}/"
    return f"ss/{esc(user_id)}/{esc(session_id)}/"


APP_STATE_PREFIX = "as/"


def user_state_prefix(user_id: str | None) -> str:
    return "us/" if user_id is None else f"us/{esc(user_id)}/"


def new_meta(user_id: str, session_id: str, now: float) -> Meta:
    return {"id": session_id, "user": user_id, "createTime": now, "lastUpdateTime": now, "next": 0}


def advanced(meta: Meta, timestamp: float) -> Meta:
    """The meta after one more event: ADK's SQLite service sets the session's update
    time to the event's timestamp (even an earlier one), and so do we."""
    return {**meta, "lastUpdateTime": timestamp, "next": int(meta["next"]) + 1}


def state_ops(user_id: str, session_id: str, app: Mapping[str, Any], user: Mapping[str, Any],
              session: Mapping[str, Any]) -> list[Op]:
    """One unconditional set per state key: a dict value replaces the stored one whole
    (not deep-merged), and ``None`` is stored as null, not dropped (ADK's contract)."""
    ops: list[Op] = [("set", APP_STATE_PREFIX + k, v, NO_EXPECT) for k, v in app.items()]
    ops += [("set", user_state_prefix(user_id) + k, v, NO_EXPECT) for k, v in user.items()]
    ops += [("set", session_state_prefix(user_id, session_id) + k, v, NO_EXPECT) for k, v in session.items()]
    return ops


def append_ops(user_id: str, session_id: str, meta: Meta, event: Any, timestamp: float,
               app: Mapping[str, Any], user: Mapping[str, Any], session: Mapping[str, Any]) -> tuple[list[Op], Meta]:
    """The ops of one append, for ONE transact: the meta moved on with ``expect`` = the
    meta the writer read (first, so its Conflict is the one reported), the event under
    the next sequence number (``expect: null``: never overwrites), the state records."""
    after = advanced(meta, timestamp)
    ops: list[Op] = [
        ("set", meta_key(user_id, session_id), after, meta),
        ("set", event_key(user_id, session_id, int(meta["next"])), event, None),
    ]
    return ops + state_ops(user_id, session_id, app, user, session), after


def chunks(ops: list[Op], size: int = MAX_OPS) -> list[list[Op]]:
    return [ops[i:i + size] for i in range(0, len(ops), size)] or [[]]


def state_of(entries: Iterable[tuple[str, Any]], prefix: str) -> dict[str, Any]:
    """{key: value} of the state records under ``prefix``."""
    return {key[len(prefix):]: value for key, value in entries}


def grouped_session_state(entries: Iterable[tuple[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Session state records (``ss/<user>/<session>/<key>``) grouped by (user, session)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key, value in entries:
        _, user, session, name = key.split("/", 3)
        out.setdefault((unesc(user), unesc(session)), {})[name] = value
    return out


def grouped_user_state(entries: Iterable[tuple[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in entries:
        _, user, name = key.split("/", 2)
        out.setdefault(unesc(user), {})[name] = value
    return out


def merged_state(app: Mapping[str, Any], user: Mapping[str, Any], session: Mapping[str, Any]) -> dict[str, Any]:
    """The state an ADK Session shows: its own keys, then ``app:`` and ``user:`` ones."""
    state = dict(session)
    state.update({APP_PREFIX + k: v for k, v in app.items()})
    state.update({USER_PREFIX + k: v for k, v in user.items()})
    return state


def normalized_id(session_id: str | None) -> str | None:
    """ADK's in-memory and SQLite services strip a session id (a blank one is none)."""
    return session_id.strip() if session_id else session_id


def encode_marker(meta: Meta) -> str:
    """What a Session handle carries (ADK's ``_storage_update_marker``): the meta it was
    read with, tagged so a marker another service set is never mistaken for ours."""
    return "sessionmem:" + json.dumps(meta, separators=(",", ":"))


def decode_marker(marker: str | None) -> Meta | None:
    if not marker or not marker.startswith("sessionmem:"):
        return None
    try:
        meta = json.loads(marker[len("sessionmem:"):])
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("next"), int) else None
