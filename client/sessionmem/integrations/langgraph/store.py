"""``SessionmemStore``: LangGraph's long-term memory store (``BaseStore``) in one
sessionmem session (default ``lg-store``), as keyed records (keys.py): an item is
``i/<label>/…/<key>`` → ``{"value", "created_at", "updated_at"}``, and ``n/<label>/…/``
counts the items of each namespace, so ``list_namespaces`` reads that index, never
every item.

A batch is applied as InMemoryStore applies one: its reads (get, search,
list_namespaces) see the store as it was before the batch, then its puts and deletes
(the last op per item wins) land in one ``transact``, decided with ``expect`` on every
item and count they change: a race with another process is retried, so the counts
never drift. ``search`` lists the namespace prefix a page at a time and applies
``filter``, ``offset`` and ``limit`` in that order. No vector index: ``query`` is
ignored (as InMemoryStore without ``index`` ignores it). Values must be JSON. Order:
search results and namespaces come in key order (the labels and key, escaped, joined
by ``/``, by code point), where InMemoryStore gives insertion order and PostgresStore
``updated_at``: the contract leaves it to the store.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

from ... import errors
from ...session import Session
from ...typed import SessionMethods
from . import keys as k
from .connection import Connection
from .match import compare_values, does_match

try:
    from langgraph.store.base import validate_op_namespace
except ImportError:  # pragma: no cover - an older langgraph-checkpoint: BaseStore's own methods check
    def validate_op_namespace(op: Op) -> None:
        return None

PAGE = 1000  # records per listContext page
CHUNK = 4000  # puts per transact (each may take two ops; the daemon takes 10,000)
RETRIES = 20


class SessionmemStore(Connection, BaseStore):
    """A ``BaseStore`` over a project's sessionmemd (``project``/``socket``/``autostart``
    as for every client, or an open ``client``); ``session_id`` names the session."""

    def __init__(self, *, session_id: str = "lg-store", project: str | os.PathLike[str] | None = None,
                 socket: str | os.PathLike[str] | None = None, autostart: bool = True,
                 client: Session | None = None) -> None:
        self.session_id = session_id
        Connection.__init__(self, project, socket, autostart, client)


    @property
    def _s(self) -> SessionMethods:
        return self.client.bound(self.session_id)

    # -- the batch -----------------------------------------------------------------------
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        for op in ops:
            validate_op_namespace(op)
        results: list[Result] = [None] * len(ops)
        gets: list[tuple[int, GetOp]] = []
        puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
        for i, op in enumerate(ops):
            if isinstance(op, GetOp):
                gets.append((i, op))
            elif isinstance(op, SearchOp):
                results[i] = self._search(op)
            elif isinstance(op, ListNamespacesOp):
                results[i] = self._list_namespaces(op)
            elif isinstance(op, PutOp):
                puts[(op.namespace, op.key)] = op
            else:
                raise ValueError(f"Unknown operation type: {type(op)}")
        if gets:
            items = self._read([k.item_key(op.namespace, op.key) for _, op in gets])
            for (i, op), rec in zip(gets, items):
                results[i] = None if rec is None else _item(op.namespace, op.key, rec)
        put_list = list(puts.values())
        for start in range(0, len(put_list), CHUNK):
            self._apply(put_list[start:start + CHUNK])
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await asyncio.to_thread(self.batch, list(ops))

    # -- reads -----------------------------------------------------------------------------
    def _read(self, keys: list[str]) -> list[Any]:
        """The values of ``keys`` (None when absent), in one round trip: a key's own
        listing starts with the key itself when it is there."""
        try:
            pages = self._s.list_contexts([{"prefix": key, "limit": 1} for key in keys])
        except errors.NoSuchSession:
            return [None] * len(keys)
        return [p.entries[0].value if p.entries and p.entries[0].key == key else None
                for key, p in zip(keys, pages)]

    def _pages(self, prefix: str) -> Iterable[Any]:
        """Every (key, value) under ``prefix``, in key order, a page at a time."""
        after: str | None = None
        while True:
            try:
                page = self._s.list_context(prefix, after=after, limit=PAGE)
            except errors.NoSuchSession:
                return
            yield from page.entries
            if not page.more:
                return
            after = page.entries[-1].key

    def _search(self, op: SearchOp) -> list[SearchItem]:
        out: list[SearchItem] = []
        skip = op.offset
        if op.limit <= 0:
            return out
        for e in self._pages(k.items_prefix(op.namespace_prefix)):
            rec = e.value
            value = rec["value"]
            if op.filter and not all(compare_values(value.get(f), fv) for f, fv in op.filter.items()):
                continue
            if skip > 0:
                skip -= 1
                continue
            ns, key = k.split_item_key(e.key)
            out.append(SearchItem(namespace=ns, key=key, value=value, created_at=_dt(rec["created_at"]),
                                  updated_at=_dt(rec["updated_at"])))
            if len(out) >= op.limit:
                break
        return out

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        conditions = op.match_conditions or ()
        # A prefix condition's labels before its first wildcard narrow the listing.
        narrow: tuple[str, ...] = ()
        for c in conditions:
            if c.match_type == "prefix":
                lit = k.literal_prefix(tuple(c.path))
                if len(lit) > len(narrow):
                    narrow = lit
        found: set[tuple[str, ...]] = set()
        for e in self._pages(k.ns_key(narrow)):
            ns = k.split_ns_key(e.key)
            if all(does_match(c, ns) for c in conditions):
                found.add(ns if op.max_depth is None else ns[:op.max_depth])
        return sorted(found)[op.offset:op.offset + op.limit]

    # -- writes ----------------------------------------------------------------------------
    def _apply(self, puts: list[PutOp]) -> None:
        if not puts:
            return
        item_keys = [k.item_key(op.namespace, op.key) for op in puts]
        spaces = list(dict.fromkeys(op.namespace for op in puts))
        now = datetime.now(timezone.utc).isoformat()
        for _ in range(RETRIES):
            current = self._read(item_keys + [k.ns_key(ns) for ns in spaces])
            old_items, old_counts = current[:len(puts)], dict(zip(spaces, current[len(puts):]))
            counts = {ns: (c or 0) for ns, c in old_counts.items()}
            try:
                with self._s.transaction() as t:
                    for op, key, old in zip(puts, item_keys, old_items):
                        if op.value is None:
                            if old is not None:
                                t.delete_context(key, expect=old)
                                counts[op.namespace] -= 1
                            continue
                        t.set_context(key, {"value": dict(op.value), "created_at": now, "updated_at": now},
                                      expect=old)
                        if old is None:
                            counts[op.namespace] += 1
                    for ns in spaces:
                        before, after = old_counts[ns], counts[ns]
                        if after == (before or 0):
                            continue
                        if after == 0:
                            t.delete_context(k.ns_key(ns), expect=before)
                        else:
                            t.set_context(k.ns_key(ns), after, expect=before)
                return
            except errors.NoSuchSession:
                try:
                    self.client.create_session(self.session_id)
                except errors.SessionExists:
                    pass
            except errors.Conflict:
                pass  # another process changed one of them: read again
        raise errors.Conflict("SessionmemStore: other writers kept changing the same items")


def _dt(s: str) -> datetime:
    return datetime.fromisoformat(s)


def _item(namespace: tuple[str, ...], key: str, rec: dict[str, Any]) -> Item:
    return Item(value=rec["value"], key=key, namespace=namespace, created_at=_dt(rec["created_at"]),
                updated_at=_dt(rec["updated_at"]))
