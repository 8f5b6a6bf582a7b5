"""The keys and records the LangGraph adapters keep in sessionmem sessions: pure
functions, no I/O (the savers in saver.py and store.py are thin shells around them).

Checkpointer (one session per thread):

* session ``lg:<thread_id>``; a thread id longer than fits in a session id (128
  characters) gets ``lg#<sha256 of it>`` and its id in the session's key ``thread``.
* ``c/<ns>/<checkpoint_id>`` → a checkpoint record (:func:`checkpoint_record`).
* ``w/<ns>/<checkpoint_id>/<task_id>/<idx>`` → one pending write.

``<ns>`` and the parts of a write key are escaped (``%`` → ``%25``, ``/`` → ``%2F``), so
``c/<ns>/`` is a prefix of that namespace's checkpoints only. The checkpoint id in a
``c/`` key is *not* escaped: it is the key's last part, so it cannot run into another
part, and kept raw it orders exactly as LangGraph's ids do (time-ordered UUIDv6): a
reverse listing of ``c/<ns>/`` is newest first, ``limit 1`` is "latest" and
``after c/<ns>/<id>`` is ``before``.

Store (one session, default ``lg-store``):

* ``i/<label>/<label>/…/<key>`` → ``{"value", "created_at", "updated_at"}``, every part
  escaped, so ``i/<label>/…/`` lists a namespace prefix (its sub-namespaces included).
* ``n/<label>/…/`` → the number of items in exactly that namespace: the index
  ``list_namespaces`` reads instead of every item (kept in the same ``transact`` as
  the items, with ``expect``).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

SESSION_PREFIX = "lg:"
HASHED_PREFIX = "lg#"
THREAD_KEY = "thread"  # in a hashed session: the thread id it holds
MAX_SESSION_ID = 128  # the daemon's limit on a session id (docs/protocol.md, Values)


def esc(part: str) -> str:
    """``part`` with ``%`` and ``/`` escaped: never holds a ``/``, and unescapes back."""
    return part.replace("%", "%25").replace("/", "%2F")


def unesc(part: str) -> str:
    return part.replace("%2F", "/").replace("%25", "%")


# -- checkpointer ----------------------------------------------------------------------
def thread_session(thread_id: str) -> str:
    """The session that holds a thread's checkpoints."""
    sid = SESSION_PREFIX + thread_id
    if len(sid) <= MAX_SESSION_ID:
        return sid
    return HASHED_PREFIX + hashlib.sha256(thread_id.encode("utf-8", "surrogatepass")).hexdigest()


def is_thread_session(session_id: str) -> bool:
    return session_id.startswith((SESSION_PREFIX, HASHED_PREFIX))


def thread_of(session_id: str) -> str | None:
    """The thread id a session name says (None for a hashed one: read THREAD_KEY)."""
    return session_id[len(SESSION_PREFIX):] if session_id.startswith(SESSION_PREFIX) else None


def ns_checkpoints(ns: str | None) -> str:
    """The prefix of one namespace's checkpoint keys (every namespace's for None)."""
    return "c/" if ns is None else f"c/{esc(ns)}/"


def checkpoint_key(ns: str, checkpoint_id: str) -> str:
    return f"c/{esc(ns)}/{checkpoint_id}"


def split_checkpoint_key(key: str) -> tuple[str, str]:
    """(namespace, checkpoint id) of a ``c/`` key."""
    _, ns, cid = key.split("/", 2)
    return unesc(ns), cid


def writes_prefix(ns: str, checkpoint_id: str, task_id: str | None = None) -> str:
    """The prefix of a checkpoint's pending writes (of one task, when given)."""
    p = f"w/{esc(ns)}/{esc(checkpoint_id)}/"
    return p if task_id is None else f"{p}{esc(task_id)}/"


def write_key(ns: str, checkpoint_id: str, task_id: str, idx: int) -> str:
    return f"{writes_prefix(ns, checkpoint_id, task_id)}{idx}"


def typed(t: tuple[str, bytes]) -> list[str]:
    """A serde ``dumps_typed`` pair as JSON: [type, base64 of the bytes]."""
    return [t[0], base64.b64encode(t[1]).decode("ascii")]


def untyped(v: list[str]) -> tuple[str, bytes]:
    return v[0], base64.b64decode(v[1])


def checkpoint_record(metadata: dict[str, Any], ns: str, checkpoint_id: str, parent_id: str | None,
                      checkpoint: tuple[str, bytes], metadata_typed: tuple[str, bytes],
                      updated: list[str]) -> dict[str, Any]:
    """A checkpoint as one context value. What a person watching reads comes first
    (``sessionmem watch`` shows a value's first 100 characters): the step, its source,
    the channels it updated; then the checkpoint and its metadata, exactly as the
    saver's serde made them (base64), so they round-trip whatever they hold."""
    return {
        "step": metadata.get("step"),
        "source": metadata.get("source"),
        "updated": updated,
        "ns": ns,
        "id": checkpoint_id,
        "parent": parent_id,
        "checkpoint": typed(checkpoint),
        "metadata": typed(metadata_typed),
    }


def write_record(task_id: str, task_path: str, channel: str, idx: int, value: tuple[str, bytes]) -> dict[str, Any]:
    return {"channel": channel, "task": task_id, "path": task_path, "idx": idx, "value": typed(value)}


def metadata_matches(metadata: dict[str, Any], filter: dict[str, Any] | None) -> bool:
    """``list``'s ``filter``: every key equal (as InMemorySaver compares)."""
    return not filter or all(metadata.get(k) == v for k, v in filter.items())


# -- store -----------------------------------------------------------------------------
def ns_path(namespace: tuple[str, ...]) -> str:
    """``<label>/<label>/…/``: the escaped labels, each followed by ``/``."""
    return "".join(esc(label) + "/" for label in namespace)


def item_key(namespace: tuple[str, ...], key: str) -> str:
    return "i/" + ns_path(namespace) + esc(key)


def items_prefix(namespace_prefix: tuple[str, ...]) -> str:
    return "i/" + ns_path(namespace_prefix)


def split_item_key(k: str) -> tuple[tuple[str, ...], str]:
    parts = k[2:].split("/")
    return tuple(unesc(x) for x in parts[:-1]), unesc(parts[-1])


def ns_key(namespace: tuple[str, ...]) -> str:
    return "n/" + ns_path(namespace)


def split_ns_key(k: str) -> tuple[str, ...]:
    return tuple(unesc(x) for x in k[2:].split("/")[:-1])


def literal_prefix(path: tuple[str, ...]) -> tuple[str, ...]:
    """The labels of a prefix match condition before its first wildcard: the part a
    listing can narrow by."""
    out = []
    for label in path:
        if label == "*":
            break
        out.append(label)
    return tuple(out)
