"""Message ids: the one place a fresh one is made (both clients, the MCP server, the
CLI's fast path, which may import nothing heavier than ``os``)."""

from __future__ import annotations

import os


def new_message_id() -> str:
    """A fresh id for addMessage, so a retried append is added once. Not uuid4: the
    uuid module costs a one-shot CLI call a few milliseconds of imports."""
    return os.urandom(16).hex()
