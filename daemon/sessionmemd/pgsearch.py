"""searchMessages on the PostgreSQL store: PostgreSQL's own full-text search (a
``tsvector`` column and a GIN index) for ``words``, ``phrase`` and ``prefix``, and a
trigram index (``pg_trgm``) for ``substring`` where the extension can be made.

Why these shapes:

* The vector is a *generated* column (``search``), computed by PostgreSQL from
  ``content`` at every insert, so no writer has to remember it (pgstore's inserts name
  their columns and stay as they are) and ranking reads it instead of parsing every
  match again.
* Content is ``bytea`` (text cannot hold NUL): ``sessionmem_search_text`` makes it text
  (NULs dropped), declared IMMUTABLE so it can feed an index and a generated column. It
  never fails: a row that is not UTF-8 (none of ours; a hand-edited one) becomes its
  escaped form, so such a row can still be written, and migration 3 of a table that
  holds one still runs.
* Tokens as SQLite's ``unicode61`` makes them: ASCII punctuation becomes a space before
  PostgreSQL's parser sees the text (it would otherwise keep ``a/b.py`` or
  ``x@y.com`` as one token); the ``simple`` configuration lower-cases and never stems.
  A query's words are split the same way here (:func:`tsquery`) and passed to
  ``to_tsquery`` as quoted lexemes, so user text is never tsquery syntax.
* Only a message's first ``INDEXED_CHARS`` characters are indexed: a tsvector holds at
  most 1 MB, and an insert that overflowed it would fail.
* Ranking is ``ts_rank`` normalised by the document's length (flag 1), PostgreSQL's
  nearest to bm25: more occurrences and shorter messages rank higher, as with bm25;
  the two are different formulas, so hits of equal word counts may order differently
  (docs/protocol.md says so). Ties go to the newest, as on SQLite.

Everything a daemon writes on this store is committed before it answers, and a search
snapshots first (methods.py), so a search finds every message; ``complete`` is false
only when a substring scan ran past its budget.
"""

from __future__ import annotations

import re
from typing import Any, Final

import psycopg

from .searchindex import SUBSTRING_BUDGET_S
from .searchpos import Positions
from .searchquery import MARK_CLOSE, MARK_OPEN, SNIPPET_TOKENS, Query, substring_snippet
from .storage import HitRow

INDEXED_CHARS: Final = 100_000

# The text a message's words are taken from, and its vector (one definition, used by
# the row trigger and by the builder of an existing table's vectors).
_FUNCTIONS: Final = rf"""
CREATE OR REPLACE FUNCTION sessionmem_search_text(b bytea) RETURNS text
  LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
  IF position('\x00'::bytea IN b) > 0 THEN
    b := coalesce((SELECT string_agg(substr(b, i, 1), ''::bytea ORDER BY i)
                   FROM generate_series(1, length(b)) AS i WHERE get_byte(b, i - 1) <> 0), ''::bytea);
  END IF;
  RETURN convert_from(b, 'UTF8');
EXCEPTION WHEN character_not_in_repertoire THEN
  RETURN encode(b, 'escape');  -- not UTF-8 (no writer of ours makes that): its ASCII stays searchable
END $$;
CREATE OR REPLACE FUNCTION sessionmem_search_vector(b bytea) RETURNS tsvector
  LANGUAGE sql IMMUTABLE STRICT AS $$
  SELECT to_tsvector('simple'::regconfig, regexp_replace(left(sessionmem_search_text(b), {INDEXED_CHARS}),
    '[\x01-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]+', ' ', 'g'))
$$;
CREATE OR REPLACE FUNCTION sessionmem_search_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.search := sessionmem_search_vector(NEW.content);
  RETURN NEW;
END $$;
"""
_ROW_TRIGGER: Final = """
DROP TRIGGER IF EXISTS sessionmem_messages_search ON sessionmem_messages;
CREATE TRIGGER sessionmem_messages_search BEFORE INSERT OR UPDATE OF content ON sessionmem_messages
  FOR EACH ROW EXECUTE FUNCTION sessionmem_search_row();
"""
# The search indexes: made by the migration on an empty table, else by pgsearchbuild.py
# once every row has its vector. The trigram index where pg_trgm can be made (Debian's
# postgresql ships it in postgresql-contrib; it is a trusted extension, so a database
# owner may create it); without it a substring search scans, bounded.
SEARCH_INDEX: Final = "CREATE INDEX {how} sessionmem_messages_search ON sessionmem_messages USING gin (search)"
TRGM_INDEX: Final = ("CREATE INDEX {how} sessionmem_messages_trgm ON sessionmem_messages "
                     "USING gin (sessionmem_search_text(content) gin_trgm_ops)")
NO_TRGM: Final = "sessionmem: no trigram index (%s); a substring search scans"

# Schema 3 (pgschema's _MIGRATIONS): quick on a table of any size, so a daemon's start
# never waits for it (benchmarks/pg_migrate_bench.py: the first version, a generated
# column and both indexes made in the migration, held a start 15 s per 200,000
# messages, the table locked throughout). A plain column, filled by a row trigger for
# every row written from now on; a table that already holds messages gets a row in
# ``sessionmem_search_build`` (the highest seq to fill), and pgsearchbuild.py fills the
# vectors in short transactions after the start, then builds the indexes concurrently.
# Until that row is gone searches say ``complete: false``.
MIGRATION: Final = _FUNCTIONS + """
ALTER TABLE sessionmem_messages ADD COLUMN search tsvector;
""" + _ROW_TRIGGER + f"""
CREATE TABLE sessionmem_search_build (upto bigint NOT NULL, done bigint NOT NULL);
INSERT INTO sessionmem_search_build (upto, done) SELECT max(seq), 0 FROM sessionmem_messages
  HAVING max(seq) IS NOT NULL;
DO $do$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM sessionmem_search_build) THEN
    {SEARCH_INDEX.format(how="")};
    BEGIN
      CREATE EXTENSION IF NOT EXISTS pg_trgm;
      {TRGM_INDEX.format(how="")};
    EXCEPTION WHEN OTHERS THEN
      RAISE NOTICE '{NO_TRGM.replace("%s", "%")}', SQLERRM;
    END;
  END IF;
END $do$;
"""

# Schema 4: a count of each project's deletions of messages, kept by the database for
# every deleter (a statement trigger: one update per DELETE or TRUNCATE statement, not per
# row), in the deleting transaction, so a reader's snapshot sees the count that goes with
# its rows. Search hits' checkpoints (searchpos.py) are right while it stays put. Cheap on
# a big table: a column with a constant default and a trigger, no rewrite. It takes no
# lock a writer did not hold already: a turn on a shared project takes the project's row
# before it writes anything (pgshared), and with one daemon per key nothing else
# updates that row (a separate counter row would be a second lock, taken in the middle
# of a turn: a deadlock with a turn that holds the project's row and deletes).
#
# A database that went through the first version of migration 3 (a generated column,
# indexes made at once) is brought to the shape above: the column made plain (its
# values kept; no rewrite) and filled by the row trigger from now on.
DELETIONS_MIGRATION: Final = _FUNCTIONS + """
ALTER TABLE sessionmem_messages ALTER COLUMN search DROP EXPRESSION IF EXISTS;
""" + _ROW_TRIGGER + """
CREATE TABLE IF NOT EXISTS sessionmem_search_build (upto bigint NOT NULL, done bigint NOT NULL);
ALTER TABLE sessionmem_projects ADD COLUMN deletions bigint NOT NULL DEFAULT 0;
CREATE FUNCTION sessionmem_count_deletions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    UPDATE sessionmem_projects SET deletions = deletions + 1;
  ELSE
    UPDATE sessionmem_projects SET deletions = deletions + 1
      WHERE project_key IN (SELECT DISTINCT project_key FROM gone);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER sessionmem_messages_deleted AFTER DELETE ON sessionmem_messages
  REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION sessionmem_count_deletions();
CREATE TRIGGER sessionmem_messages_truncated AFTER TRUNCATE ON sessionmem_messages
  FOR EACH STATEMENT EXECUTE FUNCTION sessionmem_count_deletions();
"""

# What unicode61 calls a token: a run of letters and digits (underscore is a separator).
_TOKEN = re.compile(r"[^\W_]+")


def _lexeme(token: str) -> str:
    return "'" + token.replace("'", "''").replace("\\", "\\\\") + "'"


def tsquery(q: Query) -> str:
    """``to_tsquery``'s text for ``q`` (not substring): each word a phrase of its
    tokens (``<->``); ``words``/``prefix`` every word (``&``), ``prefix`` with the last
    token of each word a prefix (``:*``); ``phrase`` all tokens in a row."""
    words = [_TOKEN.findall(w) for w in q.text.split()]
    words = [w for w in words if w]
    if q.mode == "phrase":
        return " <-> ".join(_lexeme(t) for w in words for t in w)
    star = ":*" if q.mode == "prefix" else ""
    return " & ".join("(" + " <-> ".join([*map(_lexeme, w[:-1]), _lexeme(w[-1]) + star]) + ")" for w in words)


def token_snippet(content: str, q: Query, tokens: int = SNIPPET_TOKENS) -> str:
    """Up to ``tokens`` tokens of ``content`` around its first matching token, every
    matching token marked, cut ends shown as ``…`` (the shape of FTS5's snippet(); the
    fragment chosen may differ from SQLite's)."""
    want = {t.casefold() for w in q.text.split() for t in _TOKEN.findall(w)}
    prefix = q.mode == "prefix"

    def hit(token: str) -> bool:
        t = token.casefold()
        return t in want or prefix and any(t.startswith(p) for p in want)

    spans = [(m.start(), m.end()) for m in _TOKEN.finditer(content[:INDEXED_CHARS])]
    first = next((i for i, (a, b) in enumerate(spans) if hit(content[a:b])), 0)
    lo = max(0, min(first - tokens // 4, len(spans) - tokens))
    window = spans[lo:lo + tokens]
    if not window:
        return content[: 2 * tokens]
    out, at = [], window[0][0]
    for a, b in window:
        out.append(content[at:a])
        out.append(MARK_OPEN + content[a:b] + MARK_CLOSE if hit(content[a:b]) else content[a:b])
        at = b
    return ("…" if lo > 0 else "") + "".join(out) + ("…" if lo + tokens < len(spans) else "")


def _bounded(c: psycopg.Connection[Any], sql: str, args: tuple[object, ...]) -> tuple[list[Any], bool]:
    """The rows of a query that may scan the table, run for at most
    SUBSTRING_BUDGET_S: (rows, True), or ([], False) when it ran out."""
    try:
        with c.transaction():  # a savepoint: a cancelled scan leaves the read usable
            c.execute(f"SET LOCAL statement_timeout = {int(SUBSTRING_BUDGET_S * 1000)}")
            return c.execute(sql, args).fetchall(), True
    except psycopg.errors.QueryCanceled:
        return [], False


def search(c: psycopg.Connection[Any], key: str, q: Query,
           positions: Positions | None = None) -> tuple[list[HitRow], bool]:
    """The page of hits (``limit + 1`` rows), best first, with indexes (from the
    reader's checkpoints, ``positions``: searchpos.py); and whether it is complete.
    Inside the caller's (repeatable read) transaction."""
    where = ["m.project_key = %s"]
    args: list[object] = [key]
    if q.sessions is not None:
        where.append("m.session_id = ANY(%s)")
        args.append(list(q.sessions))
    if q.roles is not None:
        where.append("m.role = ANY(%s)")
        args.append([r.encode() for r in q.roles])
    if q.since is not None:
        where.append("m.ts >= %s")
        args.append(q.since)
    if q.until is not None:
        where.append("m.ts < %s")
        args.append(q.until)
    cols = "m.seq, m.session_id, m.role, m.ts, m.content, m.message_id"
    # While an existing table's vectors are being filled (pgsearchbuild.py) the rows
    # not filled yet are not found, and without the index a words search scans: bounded
    # as a substring scan is, and the answer says it may be incomplete.
    building = c.execute("SELECT EXISTS (SELECT 1 FROM sessionmem_search_build)").fetchone() == (True,)
    if q.match is not None:
        sql = (f"SELECT {cols}, ts_rank(m.search, tq, 1) AS score FROM sessionmem_messages m, "
               f"to_tsquery('simple', %s) AS tq WHERE m.search @@ tq AND {' AND '.join(where)} "
               f"ORDER BY score DESC, m.seq DESC LIMIT %s OFFSET %s")
        sql_args: tuple[object, ...] = (tsquery(q), *args, q.limit + 1, q.offset)
    else:
        sql = (f"SELECT {cols}, 0.0 FROM sessionmem_messages m WHERE "
               f"sessionmem_search_text(m.content) ILIKE %s AND {' AND '.join(where)} "
               f"ORDER BY m.seq DESC LIMIT %s OFFSET %s")
        sql_args = (q.like, *args, q.limit + 1, q.offset)
    if q.match is not None and not building:
        rows, complete = c.execute(sql, sql_args).fetchall(), True
    else:
        rows, complete = _bounded(c, sql, sql_args)
        complete = complete and q.match is None  # a substring scan reads the text, built or not
    index = (positions or Positions()).index(PgRows(c, key), [(str(r[1]), int(r[0])) for r in rows])
    hits: list[HitRow] = []
    for seq, sid, role, ts, content, mid, score in rows:
        text = bytes(content).decode(errors="replace")  # a hand-edited row may not be UTF-8
        snippet = token_snippet(text, q) if q.match is not None else substring_snippet(text, q.text)
        hits.append((sid, index[sid, seq], bytes(role).decode(errors="replace"), int(ts), snippet, float(score),
                     None if mid is None else bytes(mid).decode(errors="replace")))
    return hits, complete


class PgRows:
    """searchpos.Rows on the PostgreSQL store, for one project, inside the reader's
    (repeatable read) transaction. Every count is of a range between two of a session's
    checkpoints, named by plain conditions, so the planner bounds the scan on both ends
    whichever index it takes: (project, session, seq), or the primary key over the rows
    written between the two (both seen, ~0.5-7 ms for a page of 21). A row comparison
    with the page's values (``(project_key, session_id, seq) >= (k, h.sid, h.lo)``) was
    tried: it bounds only the start, and walked to the end of the session (~170 ms)."""

    def __init__(self, c: psycopg.Connection[Any], key: str) -> None:
        self._c = c
        self._key = key

    def deletions(self) -> int | None:
        row = self._c.execute("SELECT deletions FROM sessionmem_projects WHERE project_key = %s",
                              (self._key,)).fetchone()
        return None if row is None else int(row[0])

    def marks(self, sid: str, step: int, start: int | None) -> list[int]:
        after = "" if start is None else " AND seq >= %s"
        return [int(r[0]) for r in self._c.execute(
            "SELECT seq FROM (SELECT seq, row_number() OVER (ORDER BY seq) - 1 AS pos FROM sessionmem_messages "
            f"WHERE project_key = %s AND session_id = %s{after}) t "
            "WHERE pos %% %s = 0" + ("" if start is None else " AND pos > 0") + " ORDER BY seq",
            (self._key, sid, *(() if start is None else (start,)), step))]

    def counts(self, spans: list[tuple[str, int, int]]) -> list[int]:
        if not spans:
            return []
        # One round trip for the page: a count of at most a step per hit.
        rows = self._c.execute(
            "SELECT (SELECT count(*) FROM sessionmem_messages m WHERE m.project_key = %s AND m.session_id = h.sid "
            "AND m.seq >= h.lo AND m.seq < h.hi) "
            "FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) WITH ORDINALITY AS h(sid, lo, hi, i) ORDER BY h.i",
            (self._key, [s for s, _, _ in spans], [lo for _, lo, _ in spans], [hi for _, _, hi in spans])).fetchall()
        return [int(r[0]) for r in rows]
