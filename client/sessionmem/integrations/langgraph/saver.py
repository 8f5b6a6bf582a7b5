"""``SessionmemSaver``: a LangGraph checkpointer whose checkpoints live in sessionmem.

One session per thread (``lg:<thread_id>``), keyed records in its context (keys.py):
every process of the project that opens the thread sees the same checkpoints, and
``sessionmem watch`` shows each one as it lands. The daemon orders writers; a put is
one ``setContext``, a ``put_writes`` one ``transact`` (its writes all or none),
``delete_thread`` one ``deleteSession``.

Reads are ``listContext`` pages, never a read of the whole session: "latest" is a
reverse listing with ``limit 1``, ``before`` is ``after``, and the pending writes of
a page of listed checkpoints come in one JSON-RPC batch. ``list``'s ``filter`` is
applied here, to the decoded metadata, a page at a time (the daemon does not look
into values). ``list`` without a thread walks ``listSessions``' ``lg:`` sessions.

The async methods run the blocking ones in a worker thread (``asyncio.to_thread``), as
the OpenAI Agents adapter does: one connection, one lock, the event loop never
blocks, and one saver serves any number of threads and event loops.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from ... import errors
from ...protocol import ContextEntry, ContextPage
from ...session import Session
from ...typed import SessionMethods
from . import keys as k
from .connection import Connection

PAGE = 100  # checkpoints per listContext page (each carries its whole checkpoint)
WRITES_PAGE = 1000  # pending writes per page (the daemon's default and a fair reply size)
PendingWrites = list[tuple[str, str, Any]]  # (module level: the class's ``list`` method shadows the builtin)
RETRIES = 20  # optimistic put_writes rounds before giving up (another writer kept winning)


class SessionmemSaver(Connection, BaseCheckpointSaver[str]):
    """A ``BaseCheckpointSaver`` (sync and async) over a project's sessionmemd.

    ``SessionmemSaver()`` finds the project from the working directory as every client
    does (``project``/``socket`` to name it; ``autostart`` a daemon when none answers),
    or pass an open ``client`` (a :class:`sessionmem.Session`) to share its connection.
    """

    def __init__(self, *, project: str | os.PathLike[str] | None = None,
                 socket: str | os.PathLike[str] | None = None, autostart: bool = True,
                 client: Session | None = None, serde: SerializerProtocol | None = None) -> None:
        BaseCheckpointSaver.__init__(self, serde=serde)
        Connection.__init__(self, project, socket, autostart, client)

    def _thread(self, thread_id: str) -> SessionMethods:
        return self.client.bound(k.thread_session(thread_id))

    def _ensure(self, thread_id: str) -> None:
        """Make the thread's session (another process may be making it too)."""
        try:
            self.client.create_session(k.thread_session(thread_id))
        except errors.SessionExists:
            pass

    # -- reads -----------------------------------------------------------------------------
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        s = self._thread(thread_id)
        cid = get_checkpoint_id(config)
        try:
            if cid:
                # The record (the least key with its key as prefix is itself) and its
                # writes, in one round trip.
                rec, writes = s.list_contexts([
                    {"prefix": k.checkpoint_key(ns, cid), "limit": 1},
                    {"prefix": k.writes_prefix(ns, cid), "limit": WRITES_PAGE}])
                if not rec.entries or rec.entries[0].key != k.checkpoint_key(ns, cid):
                    return None
                entry = rec.entries[0]
            else:
                page = s.list_context(k.ns_checkpoints(ns), limit=1, reverse=True)
                if not page.entries:
                    return None
                entry = page.entries[0]
                writes = s.list_context(k.writes_prefix(ns, entry.value["id"]), limit=WRITES_PAGE)
            pending = self._all_writes(s, k.writes_prefix(ns, entry.value["id"]), writes)
        except errors.NoSuchSession:
            return None
        return self._tuple(thread_id, entry, pending)

    def list(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
             before: RunnableConfig | None = None, limit: int | None = None) -> Iterator[CheckpointTuple]:
        """Newest first within a namespace (by checkpoint id); with no ``checkpoint_ns``
        in ``config``, namespace after namespace (in key order); with no ``config``,
        thread after thread, the most recently changed first."""
        if limit is not None and limit <= 0:
            return
        if config is not None:
            conf = config["configurable"]
            threads: Iterator[tuple[str, SessionMethods]] = iter(
                [(str(conf["thread_id"]), self._thread(str(conf["thread_id"])))])
            ns: str | None = conf.get("checkpoint_ns")
            only = get_checkpoint_id(config)
        else:
            threads, ns, only = self._all_threads(), None, None
        before_id = get_checkpoint_id(before) if before else None
        left = limit
        for thread_id, s in threads:
            try:
                for tup in self._list_thread(thread_id, s, ns, only, before_id, filter, left):
                    yield tup
                    if left is not None:
                        left -= 1
                        if left == 0:
                            return
            except errors.NoSuchSession:
                continue  # deleted meanwhile: nothing to list

    def _all_threads(self) -> Iterator[tuple[str, SessionMethods]]:
        for info in self.client.list_sessions():
            sid = info.sessionId
            if not k.is_thread_session(sid):
                continue
            thread_id = k.thread_of(sid)
            s = self.client.bound(sid)
            if thread_id is None:
                try:
                    thread_id = s.get_context(k.THREAD_KEY)
                except errors.NoSuchSession:
                    continue
                if not isinstance(thread_id, str):
                    continue
            yield thread_id, s

    def _list_thread(self, thread_id: str, s: SessionMethods, ns: str | None, only: str | None,
                     before_id: str | None, filter: dict[str, Any] | None,
                     limit: int | None) -> Iterator[CheckpointTuple]:
        prefix = k.ns_checkpoints(ns)
        if only is not None and ns is not None:
            prefix = k.checkpoint_key(ns, only)
        # Within one namespace ``before`` is where the listing starts; across all of
        # them it is checked per record.
        after = k.checkpoint_key(ns, before_id) if before_id and ns is not None else None
        while True:
            size = PAGE if filter or limit is None else min(PAGE, limit)
            page = s.list_context(prefix, after=after, limit=size, reverse=True)
            chosen: list[ContextEntry] = []
            for e in page.entries:
                rec = e.value
                if only is not None and rec["id"] != only:
                    continue
                if before_id is not None and rec["id"] >= before_id:
                    continue
                if filter and not k.metadata_matches(dict(self._metadata(rec)), filter):
                    continue
                chosen.append(e)
            if chosen:
                pages = s.list_contexts([{"prefix": k.writes_prefix(e.value["ns"], e.value["id"]),
                                          "limit": WRITES_PAGE} for e in chosen])
                for e, w in zip(chosen, pages):
                    yield self._tuple(thread_id, e, self._all_writes(
                        s, k.writes_prefix(e.value["ns"], e.value["id"]), w))
            if not page.more:
                return
            after = page.entries[-1].key

    def _all_writes(self, s: SessionMethods, prefix: str, first: ContextPage) -> PendingWrites:
        """A checkpoint's pending writes (``first``: their first page, read already), in
        ``writes_sort_key`` order, as LangGraph replays them."""
        entries, more = list(first.entries), first.more
        while more:
            page = s.list_context(prefix, after=entries[-1].key, limit=WRITES_PAGE)
            entries.extend(page.entries)
            more = page.more
        recs = sorted((e.value for e in entries), key=lambda r: (r["path"], r["task"], r["idx"]))
        return [(r["task"], r["channel"], self.serde.loads_typed(k.untyped(r["value"]))) for r in recs]

    def _metadata(self, rec: dict[str, Any]) -> CheckpointMetadata:
        md: CheckpointMetadata = self.serde.loads_typed(k.untyped(rec["metadata"]))
        return md

    def _tuple(self, thread_id: str, entry: ContextEntry, pending: PendingWrites) -> CheckpointTuple:
        rec = entry.value
        ns, cid, parent = rec["ns"], rec["id"], rec["parent"]
        return CheckpointTuple(
            config={"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}},
            checkpoint=self.serde.loads_typed(k.untyped(rec["checkpoint"])),
            metadata=self._metadata(rec),
            parent_config=({"configurable": {"thread_id": thread_id, "checkpoint_ns": ns,
                                             "checkpoint_id": parent}} if parent else None),
            pending_writes=pending,
        )

    # -- writes ----------------------------------------------------------------------------
    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        md = get_checkpoint_metadata(config, metadata)
        rec = k.checkpoint_record(dict(md), ns, checkpoint["id"], conf.get("checkpoint_id"),
                                  self.serde.dumps_typed(checkpoint), self.serde.dumps_typed(md),
                                  sorted(new_versions))
        key = k.checkpoint_key(ns, checkpoint["id"])
        s = self._thread(thread_id)
        try:
            self._put(s, thread_id, key, rec)
        except errors.NoSuchSession:
            self._ensure(thread_id)
            self._put(s, thread_id, key, rec)
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}}

    @staticmethod
    def _put(s: SessionMethods, thread_id: str, key: str, rec: dict[str, Any]) -> None:
        if k.thread_of(s.session_id or "") is not None:
            s.set_context(key, rec)
            return
        # A session named by the thread id's hash says which thread it holds, in the
        # same transaction as each checkpoint (setting it again changes nothing), so
        # no checkpoint is ever stored where list(None) could not name its thread.
        with s.transaction() as t:
            t.set_context(k.THREAD_KEY, thread_id)
            t.set_context(key, rec)

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str = "") -> None:
        """One ``transact``: the task's writes land together or not at all. A regular
        write already stored for (task, index) is kept (a retried task does not
        duplicate it); the special ones (error, interrupt, ...) replace theirs, as
        InMemorySaver does. Decided with ``expect``: a race with another writer of the
        same task is retried, never lost or doubled."""
        if not writes:
            return
        conf = config["configurable"]
        thread_id, ns, cid = str(conf["thread_id"]), conf.get("checkpoint_ns", ""), conf["checkpoint_id"]
        recs: dict[str, tuple[int, dict[str, Any]]] = {}
        for i, (channel, value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, i)
            recs[k.write_key(ns, cid, task_id, idx)] = (idx, k.write_record(
                task_id, task_path, channel, idx, self.serde.dumps_typed(value)))
        s = self._thread(thread_id)
        existing: set[str] | None = None  # first round: assume none of them is stored
        for _ in range(RETRIES):
            try:
                with s.transaction() as t:
                    for key, (idx, rec) in recs.items():
                        if idx < 0:
                            t.set_context(key, rec)
                        elif existing is None or key not in existing:
                            t.set_context(key, rec, expect=None)  # only if still absent
                return
            except errors.NoSuchSession:
                self._ensure(thread_id)
            except errors.Conflict:
                pass  # some are stored: read which, then write the others
            page = s.list_context(k.writes_prefix(ns, cid, task_id), limit=10_000)
            existing = {e.key for e in page.entries}
        raise errors.Conflict(f"put_writes: other writers of task {task_id!r} kept changing its writes")

    def delete_thread(self, thread_id: str) -> None:
        try:
            self.client.delete_session(k.thread_session(str(thread_id)))
        except errors.NoSuchSession:
            pass

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Every checkpoint and pending write of one thread, into another. A new target
        is a fork of the source's session, made by the daemon in one step
        (``createSession`` with ``forkFrom``: all of it or nothing); into a thread that
        already exists (or one named by its hash), the source's records are copied a
        page at a time, each page one ``transact``. An unknown source copies nothing."""
        src, dst = k.thread_session(str(source_thread_id)), k.thread_session(str(target_thread_id))
        if src == dst:
            return
        if k.thread_of(dst) is not None:
            try:
                self.client.create_session(dst, fork_from=src)
                return
            except errors.NoSuchSession:
                return  # no source: nothing to copy
            except errors.SessionExists:
                pass  # copy into it, below
        source, target = self.client.bound(src), self.client.bound(dst)
        after: str | None = None
        while True:
            try:
                page = source.list_context("", after=after, limit=WRITES_PAGE)
            except errors.NoSuchSession:
                return
            records = [e for e in page.entries if e.key != k.THREAD_KEY]
            if records:
                self._ensure(str(target_thread_id))
                with target.transaction() as t:
                    if k.thread_of(dst) is None:
                        t.set_context(k.THREAD_KEY, str(target_thread_id))
                    for e in records:
                        t.set_context(e.key, e.value)
            if not page.more:
                return
            after = page.entries[-1].key

    def get_next_version(self, current: str | None, channel: None) -> str:
        """Versions as InMemorySaver and the SQLite saver make them: a zero-padded
        counter (they order as strings) and a random tail."""
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"

    # -- async: the same, off the event loop ---------------------------------------------
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None, limit: int | None = None
                    ) -> AsyncIterator[CheckpointTuple]:
        it = self.list(config, filter=filter, before=before, limit=limit)
        while True:
            # A page's worth per trip to the worker thread, not one tuple per trip.
            chunk = await asyncio.to_thread(lambda: [*itertools.islice(it, PAGE)])
            for tup in chunk:
                yield tup
            if len(chunk) < PAGE:
                return

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)
