"""The PostgreSQL store's schema (pgstore.py): its version, the migrations that build
it, and ``migrate``, which brings a database up to it or refuses a newer one.

Schema (version 5; additive migrations, a newer version is refused): a version
table, ``sessionmem_projects`` (current session, reserved revision mark),
``sessionmem_sessions``, ``sessionmem_messages`` (a global identity column gives
the order; an index on (project, session, seq) loads a session tail-first),
``sessionmem_files`` (tracking order by seq), ``sessionmem_context`` and
``sessionmem_changes`` (the change log a clean stop leaves for the next start);
2 adds ``sessionmem_leases``; 3 the search indexes, 4 ``sessionmem_projects.deletions``
and its trigger (pgsearch.py); 5 ephemeral leases (their holder; expiry and ttl may
be NULL).
"""

from __future__ import annotations

from typing import Any

import psycopg

from . import pgsearch
from .storage import StoreError

SCHEMA_VERSION = 5

# Each migration takes the schema from its index to the next; only ever appended to,
# and each only adds (tables, columns with defaults, indexes).
_MIGRATIONS: list[str] = [
    """
    CREATE TABLE sessionmem_projects (
      project_key text PRIMARY KEY,
      current_session text,
      revisions_reserved bigint NOT NULL DEFAULT 0
    );
    CREATE TABLE sessionmem_sessions (
      project_key text NOT NULL,
      id text NOT NULL,
      start_time bigint NOT NULL,
      current_task bytea,
      active_ticket bytea,
      revision bigint NOT NULL DEFAULT 0,
      PRIMARY KEY (project_key, id)
    );
    CREATE TABLE sessionmem_messages (
      seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      project_key text NOT NULL,
      session_id text NOT NULL,
      role bytea NOT NULL,
      content bytea NOT NULL,
      ts bigint NOT NULL,
      message_id bytea,
      data text
    );
    CREATE INDEX sessionmem_messages_by_session ON sessionmem_messages (project_key, session_id, seq);
    CREATE TABLE sessionmem_files (
      seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      project_key text NOT NULL,
      session_id text NOT NULL,
      file_path bytea NOT NULL,
      UNIQUE (project_key, session_id, file_path)
    );
    CREATE TABLE sessionmem_context (
      seq bigint GENERATED ALWAYS AS IDENTITY,
      project_key text NOT NULL,
      session_id text NOT NULL,
      key bytea NOT NULL,
      value text NOT NULL,
      PRIMARY KEY (project_key, session_id, key)
    );
    CREATE TABLE sessionmem_changes (
      project_key text NOT NULL,
      revision bigint NOT NULL,
      session_id text NOT NULL,
      frame bytea NOT NULL,
      PRIMARY KEY (project_key, revision)
    );
    """,
    # 2: leases with a ttl (ephemeral ones were not written before 4).
    """
    CREATE TABLE sessionmem_leases (
      project_key text NOT NULL,
      name bytea NOT NULL,
      owner bytea NOT NULL,
      token bigint NOT NULL,
      expires_at bigint NOT NULL,
      ttl_ms bigint NOT NULL,
      session_id text NOT NULL,
      PRIMARY KEY (project_key, name)
    );
    """,
    # 3: searchMessages' full-text (and, where pg_trgm can be made, trigram) index.
    pgsearch.MIGRATION,
    # 4: a count of each project's message deletions, for search hits' indexes.
    pgsearch.DELETIONS_MIGRATION,
    # 5: ephemeral leases too (several daemons: every one must know them), with no expiry
    # or ttl and their holder, the backend (pid, start) of the store connection of the
    # daemon that granted them: gone from pg_stat_activity, the lease ends (pgstore.LEASES).
    # A daemon that knows only 4 or less refuses this schema, as it must (it would read
    # those NULLs as numbers).
    """
    ALTER TABLE sessionmem_leases ALTER COLUMN expires_at DROP NOT NULL,
      ALTER COLUMN ttl_ms DROP NOT NULL,
      ADD COLUMN holder_pid integer,
      ADD COLUMN holder_start timestamptz;
    """,
]
assert len(_MIGRATIONS) == SCHEMA_VERSION

# Serialises schema creation and migration between daemons starting at once.
_MIGRATE_LOCK = 0x5E55_1011


class NewerSchema(StoreError):
    """The database was migrated by a newer sessionmemd."""


def migrate(conn: psycopg.Connection[Any], where: str) -> None:
    """Create or bring the schema up to SCHEMA_VERSION; refuse a newer one."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS sessionmem_schema (version integer NOT NULL)")
        row = conn.execute("SELECT version FROM sessionmem_schema").fetchone()
        version = 0 if row is None else int(row[0])
        if version > SCHEMA_VERSION:
            raise NewerSchema(
                f"refusing to use {where}: its sessionmem schema is version {version}, newer than this "
                f"sessionmemd knows ({SCHEMA_VERSION}); upgrade sessionmem on this host. Nothing was changed.")
        for script in _MIGRATIONS[version:]:
            conn.execute(script.encode())
        if row is None:
            conn.execute("INSERT INTO sessionmem_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
        elif version < SCHEMA_VERSION:
            conn.execute("UPDATE sessionmem_schema SET version = %s", (SCHEMA_VERSION,))
