"""SessionmemStore agrees with LangGraph's InMemoryStore, op by op, on thousands of
seeded random put/get/search/delete/list_namespaces operations (single calls and
mixed batches), on a real daemon, on both stores.

Two documented differences are normalised in the reference, not hidden: order
(search results and namespaces come in our key order, InMemoryStore's in insertion
order: the reference's full result is sorted our way, then offset/limit applied), and
InMemoryStore's empty namespaces (it keeps a namespace whose items were all deleted,
or that a get merely looked up, in list_namespaces; ours lists namespaces that hold
items: the reference is asked the same question over its non-empty namespaces)."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

import pytest

pytest.importorskip("langgraph.store.memory", reason="needs the extra sessionmem[langgraph]")

from langgraph.store.base import GetOp, ListNamespacesOp, MatchCondition, PutOp, SearchOp  # noqa: E402
from langgraph.store.memory import InMemoryStore  # noqa: E402

from conftest import Daemon  # noqa: E402
from sessionmem.integrations.langgraph import SessionmemStore  # noqa: E402
from sessionmem.integrations.langgraph import keys as k  # noqa: E402

pytestmark = pytest.mark.both_stores

LABELS = ["users", "u1", "u2", "a/b", "50%", "prefs", "x"]
KEYS = ["k1", "k2", "", "a/b", "%2F", "ü", "k10"]
TAGS = ["red", "blue", "green"]


def rand_ns(r: random.Random) -> tuple[str, ...]:
    return tuple(r.choice(LABELS) for _ in range(r.randint(1, 3)))


def rand_value(r: random.Random) -> dict[str, Any]:
    v: dict[str, Any] = {"n": r.randint(0, 9), "tag": r.choice(TAGS)}
    if r.random() < 0.5:
        v["nested"] = {"x": r.randint(0, 2), "list": [r.randint(0, 1)]}
    return v


def rand_filter(r: random.Random) -> dict[str, Any] | None:
    return r.choice([None, None, {"tag": r.choice(TAGS)}, {"n": {"$gt": r.randint(0, 9)}},
                     {"nested": {"x": r.randint(0, 2)}}, {"tag": r.choice(TAGS), "n": {"$lte": 5}},
                     {"n": {"$ne": 3}}])


def rand_op(r: random.Random) -> Any:
    roll = r.random()
    if roll < 0.40:
        return PutOp(rand_ns(r), r.choice(KEYS), rand_value(r))
    if roll < 0.52:
        return PutOp(rand_ns(r), r.choice(KEYS), None)  # delete
    if roll < 0.70:
        return GetOp(rand_ns(r), r.choice(KEYS))
    if roll < 0.87:
        prefix = rand_ns(r)[: r.randint(0, 2)]
        return SearchOp(prefix, rand_filter(r), r.choice([1, 3, 10, 1000]), r.choice([0, 0, 1, 4]))
    conds = []
    if r.random() < 0.5:
        conds.append(MatchCondition("prefix", tuple(r.choice([*LABELS, "*"]) for _ in range(r.randint(1, 2)))))
    if r.random() < 0.3:
        conds.append(MatchCondition("suffix", (r.choice([*LABELS, "*"]),)))
    return ListNamespacesOp(tuple(conds) or None, r.choice([None, 1, 2]), r.choice([2, 5, 100]), r.choice([0, 1, 3]))


def reference(mem: InMemoryStore, op: Any) -> Any:
    """InMemoryStore's answer to ``op``, normalised for the two documented differences."""
    if isinstance(op, SearchOp):
        full = mem.batch([op._replace(limit=10**9, offset=0)])[0]
        full.sort(key=lambda it: k.item_key(it.namespace, it.key))
        return full[op.offset: op.offset + op.limit]
    if isinstance(op, ListNamespacesOp):
        pruned = InMemoryStore()
        pruned._data.update({ns: items for ns, items in mem._data.items() if items})
        return pruned.batch([op])[0]
    return mem.batch([op])[0]


def shape(result: Any) -> Any:
    """What both stores must agree on (the timestamps are each store's own)."""
    if isinstance(result, list):
        return [shape(x) for x in result]
    if hasattr(result, "value") and hasattr(result, "key"):
        assert isinstance(result.created_at, datetime) and isinstance(result.updated_at, datetime)
        return (result.namespace, result.key, result.value)
    return result


def test_agrees_with_in_memory_store_op_by_op(daemon: Daemon) -> None:
    r = random.Random(19)
    mem = InMemoryStore()
    ops_run = {"put": 0, "delete": 0, "get": 0, "search": 0, "list_namespaces": 0, "batches": 0}
    nonempty = {"get": 0, "search": 0, "list_namespaces": 0}
    with SessionmemStore(project=daemon.root, socket=daemon.socket, autostart=False) as ours:
        for step in range(3000):
            if r.random() < 0.1:
                # A batch: its reads see the store as before it, the last put per item wins.
                batch = [rand_op(r) for _ in range(r.randint(2, 6))]
                if r.random() < 0.5:  # a put then a read of the same item, in one batch
                    p = PutOp(rand_ns(r), r.choice(KEYS), rand_value(r))
                    batch += [p, GetOp(p.namespace, p.key)]
                before = [reference(mem, op) if not isinstance(op, PutOp) else None for op in batch]
                got = ours.batch(batch)
                mem.batch([op for op in batch if isinstance(op, PutOp)])
                assert shape(got) == shape(before), (step, batch)
                ops_run["batches"] += 1
                continue
            op = rand_op(r)
            expected = reference(mem, op)
            got = ours.batch([op])[0]
            assert shape(got) == shape(expected), (step, op)
            name = ("delete" if op.value is None else "put") if isinstance(op, PutOp) else {
                GetOp: "get", SearchOp: "search", ListNamespacesOp: "list_namespaces"}[type(op)]
            ops_run[name] += 1
            if name in nonempty and expected:
                nonempty[name] += 1
    # The run exercised every kind of op, and the reads found things.
    assert min(ops_run.values()) > 50, ops_run
    assert min(nonempty.values()) > 50, nonempty


def test_public_methods_and_the_namespace_index(daemon: Daemon) -> None:
    with SessionmemStore(project=daemon.root, socket=daemon.socket, autostart=False) as store:
        assert store.get(("users",), "nobody") is None  # before the session exists
        assert store.search(("users",)) == [] and store.list_namespaces() == []
        store.put(("users", "u1"), "prefs", {"theme": "dark"})
        store.put(("users", "u2"), "prefs", {"theme": "light"})
        store.put(("users", "u2"), "other", {"theme": "light"})
        item = store.get(("users", "u1"), "prefs")
        assert item is not None and item.value == {"theme": "dark"} and item.namespace == ("users", "u1")
        assert [i.key for i in store.search(("users",), filter={"theme": "light"})] == ["other", "prefs"]
        assert store.list_namespaces(prefix=("users",)) == [("users", "u1"), ("users", "u2")]
        assert store.list_namespaces(max_depth=1) == [("users",)]
        store.delete(("users", "u2"), "prefs")
        store.delete(("users", "u2"), "other")
        store.delete(("users", "u2"), "never-there")
        assert store.list_namespaces() == [("users", "u1")]
        with daemon.session("lg-store") as s:
            # The index: one count per namespace that holds items, kept with them.
            assert {e.key: e.value for e in s.list_context("n/").entries} == {"n/users/u1/": 1}
    with pytest.raises(Exception, match="period"):
        SessionmemStore(project=daemon.root, socket=daemon.socket, autostart=False).batch(
            [GetOp(("a.b",), "k")])


def test_a_batch_past_one_transaction_lands_whole(daemon: Daemon) -> None:
    """More puts than one transact takes (4,000 per transaction): applied in several,
    every item stored and counted."""
    with SessionmemStore(project=daemon.root, socket=daemon.socket, autostart=False) as store:
        store.batch([PutOp(("bulk",), f"k{i:05d}", {"i": i}) for i in range(4_001)])
        assert [i.value["i"] for i in store.search(("bulk",), offset=3_998, limit=10)] == [3_998, 3_999, 4_000]
        with daemon.session("lg-store") as s:
            assert s.get_context("n/bulk/") == 4_001
        store.batch([PutOp(("bulk",), f"k{i:05d}", None) for i in range(4_001)])
        assert store.list_namespaces() == []
