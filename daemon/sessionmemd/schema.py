"""The database's tables: the original tool's four, column for column (a database either
side wrote restores in the other), and our additions, made only additively.

Our additions (schema version 1 on):

* ``sessionmem_meta(key, value)``: ``current_session`` names the live session, so
  "the latest session" no longer depends on a seconds-resolution column.
* (version 2) an index on ``session_files(file_path)``: saving a file's change deletes
  its old row by path, which without it scanned the table once per path (20,000 new
  files took 24 s to save). Not on ``(session_id, ...)``: the original tool reads a
  session's files with no ORDER BY, and such an index would hand them to it sorted by
  path instead of in the order they were tracked.
* (version 3) ``session_messages.message_id`` and ``.data`` (nullable TEXT: a message's
  client-given id, its JSON data), ``sessionmem_changes`` (the change log a clean stop
  leaves for the next start), and meta ``revisions_reserved`` (see hostcore.py).
* (version 4) many sessions: an index on ``session_messages(session_id)`` (a session
  is loaded, its newest messages first, without scanning every other session's; it
  costs a second page write per committed message), and ``sessionmem_sessions
  (session_id, revision)``: the revision of each session's last change, for
  ``listSessions``' order.
* (any version) ``sessionmem_leases``: the ttl leases (leases.py). Made at every open
  when missing (:func:`ensure_leases`), without a version of its own: a table the
  original tool and older sessionmemd never read.
"""

from __future__ import annotations

import sqlite3

from .dbcheck import SCHEMA_VERSION

ORIGINAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY,
  start_time INTEGER NOT NULL,
  current_task TEXT,
  active_ticket TEXT,
  created_at INTEGER DEFAULT (strftime('%s', 'now'))
);
CREATE TABLE IF NOT EXISTS session_files (
  session_id TEXT NOT NULL,
  file_path TEXT NOT NULL,
  opened_at INTEGER DEFAULT (strftime('%s', 'now')),
  FOREIGN KEY (session_id) REFERENCES sessions(id)
);
CREATE TABLE IF NOT EXISTS session_messages (
  session_id TEXT NOT NULL,
  role TEXT NOT NULL,
  content TEXT NOT NULL,
  timestamp INTEGER DEFAULT (strftime('%s', 'now')),
  FOREIGN KEY (session_id) REFERENCES sessions(id)
);
CREATE TABLE IF NOT EXISTS session_context (
  session_id TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  FOREIGN KEY (session_id) REFERENCES sessions(id),
  PRIMARY KEY (session_id, key)
);
"""

# Idempotent, so one script upgrades a database of any older version (the original's is
# 0); the columns, which SQLite cannot add "if not exists", are added by _add_columns.
_ADDITIONS = """
CREATE TABLE IF NOT EXISTS sessionmem_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sessionmem_files_by_path ON session_files (file_path);
CREATE TABLE IF NOT EXISTS sessionmem_changes (
  revision INTEGER PRIMARY KEY, session_id TEXT NOT NULL, frame BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS sessionmem_messages_by_session ON session_messages (session_id);
CREATE TABLE IF NOT EXISTS sessionmem_sessions (
  session_id TEXT PRIMARY KEY, revision INTEGER NOT NULL
);
"""
_MESSAGE_COLUMNS = ("message_id", "data")  # nullable TEXT, ignored by the original tool


def create(c: sqlite3.Connection) -> None:
    """Every table, in a new, empty database."""
    c.executescript(ORIGINAL_SCHEMA)
    upgrade(c)


def upgrade(c: sqlite3.Connection) -> None:
    """Add what a database of any older version (the original's is 0) lacks."""
    for statement in _ADDITIONS.split(";"):
        if statement.strip():
            c.execute(statement)
    have = {r[1] for r in c.execute("PRAGMA table_info(session_messages)")}
    for col in _MESSAGE_COLUMNS:
        if col not in have:
            c.execute(f"ALTER TABLE session_messages ADD COLUMN {col} TEXT")
    c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


LEASES = """
CREATE TABLE IF NOT EXISTS sessionmem_leases (
  name TEXT PRIMARY KEY, owner TEXT NOT NULL, token INTEGER NOT NULL,
  expires_at INTEGER NOT NULL, ttl_ms INTEGER NOT NULL, session_id TEXT NOT NULL
)
"""


def ensure_leases(c: sqlite3.Connection) -> None:
    c.execute(LEASES)
