"""The last resort when the disk refuses the final snapshot: say exactly what is not
saved, and keep it as JSON on another file system (the runtime folder, usually tmpfs).

Written so that nothing in it can fail on an odd batch: whatever cannot be written is
still counted in the log line, which comes first.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from .batch import Batch, Changes

log = logging.getLogger("sessionmemd")


def _batch_doc(b: Batch) -> dict[str, Any]:
    return {
        "deletedSessions": b.deleted,
        "currentSession": b.current,
        "sessions": [_session_doc(c) for c in b.sessions if len(c)],
    }


def _session_doc(b: Changes) -> dict[str, Any]:
    return {
        "sessionId": b.session_id,
        "wiped": b.wiped,
        "oldestMessagesRemoved": b.trim_front,
        "newestMessagesRemoved": b.pop_back,
        "currentTask": b.current_task,
        "activeTicket": b.active_ticket,
        "messages": [json.loads(m) for m in b.messages.encoded()],
        "files": [{"path": f, "tracked": t} for f, t in b.files],
        "context": [{"key": k, "value": None if v is None else json.loads(v), "deleted": v is None}
                    for k, v in b.context],
    }


def dump_unsaved(batches: list[Batch], error: str | None, db: Path, socket: Path) -> Path | None:
    """Log what is lost and write it beside ``socket`` as ``<key>.unsaved-<time>.json``.
    Returns the file written, or None when even that failed (the log says so)."""
    log.error(
        "final snapshot failed (%s): NOT SAVED to %s: %d message(s), %d file change(s), "
        "%d context change(s)%s",
        error, db, sum(b.messages for b in batches),
        sum(len(c.files) for b in batches for c in b.sessions),
        sum(len(c.context) for b in batches for c in b.sessions),
        ", session rows" if any(c.session_row for b in batches for c in b.sessions) else "",
    )
    dump = socket.with_name(f"{socket.stem}.unsaved-{time.strftime('%Y%m%dT%H%M%S')}.json")
    try:
        # Batches with no rows only carried revision marks: nothing a person can restore.
        doc = {"db": str(db), "error": error, "batches": [_batch_doc(b) for b in batches if len(b)]}
        fd = os.open(dump, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
    except Exception as e:  # noqa: BLE001 -- the shutdown must go on whatever happens here
        log.error("could not write the unsaved changes to %s either: %s", dump, e)
        return None
    log.error("the unsaved changes were written to %s", dump)
    return dump
