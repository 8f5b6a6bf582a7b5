"""`sessionmem search QUERY`: find messages by their content (searchMessages)."""

from __future__ import annotations

import datetime as dt

import click

from .. import protocol as p
from .base import Ctx, pass_ctx

# The daemon marks each match in a snippet between these (docs/protocol.md).
MARK_OPEN, MARK_CLOSE = "\x02", "\x03"


def marked(snippet: str) -> str:
    """A snippet for a terminal: matches in [brackets], on one line."""
    return " ".join(snippet.replace(MARK_OPEN, "[").replace(MARK_CLOSE, "]").split())


def line(hit: p.SearchHit) -> str:
    when = dt.datetime.fromtimestamp(hit.timestamp / 1000).strftime("%Y-%m-%d %H:%M:%S") if hit.timestamp else "-"
    return f"{hit.sessionId}  #{hit.index}  {hit.role}  {when}  {marked(hit.snippet)}"


@click.command("search")
@click.argument("query")
@click.option("--all-sessions", is_flag=True, help="Search every session, not only the current one.")
@click.option("--role", "roles", multiple=True, metavar="R", help="Only messages of role R (repeatable).")
@click.option("--mode", type=click.Choice(["words", "phrase", "prefix", "substring"]), default="words",
              show_default=True, help="words: every word, any order; phrase: in this order; prefix: words "
              "starting so; substring: anywhere in the text.")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True, help="Hits to show.")
@click.option("--cursor", metavar="C", help="Go on after an earlier page (its nextCursor, from --json).")
@pass_ctx
def search(c: Ctx, query: str, all_sessions: bool, roles: tuple[str, ...], mode: str, limit: int,
           cursor: str | None) -> None:
    """Messages whose text matches QUERY, best first: session, index, role, time and the
    text around the match (in [brackets])."""
    r = c.session().search_messages(query, all_sessions=all_sessions, mode=mode, roles=roles or None,
                                    limit=limit, cursor=cursor)
    lines = [line(h) for h in r.hits] or ["no message matches"]
    if not r.complete:
        lines.append("(incomplete: the search index is still being built, or a substring scan ran out of "
                     "time; some messages may be missing)")
    if r.nextCursor is not None:
        lines.append(f"(more: --cursor {r.nextCursor})")
    c.out(r, "\n".join(lines))


COMMANDS: list[click.Command] = [search]
