"""SessionmemSaver under a real LangGraph StateGraph: one process runs a thread up to
an interrupt, a second process (a real subprocess) resumes it and sees its state; the
checkpoints show live in the real ``sessionmem watch``; thread ids and namespaces of
any shape round-trip."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langgraph.graph", reason="needs the extra sessionmem[langgraph]")

from langgraph.checkpoint.base import empty_checkpoint  # noqa: E402
from langgraph.checkpoint.serde.types import ERROR  # noqa: E402

from conftest import CLI, Daemon  # noqa: E402
from lg_graph import build  # noqa: E402
from sessionmem.integrations.langgraph import SessionmemSaver  # noqa: E402

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.both_stores


def saver_for(daemon: Daemon) -> SessionmemSaver:
    return SessionmemSaver(project=daemon.root, socket=daemon.socket, autostart=False)


def second_process(daemon: Daemon, env: dict[str, str], thread: str) -> dict[str, Any]:
    r = subprocess.run([sys.executable, str(HERE / "lg_graph.py"), str(daemon.socket), str(daemon.root), thread],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_second_process_resumes_the_thread(daemon: Daemon, env: dict[str, str], mode: str) -> None:
    thread = f"resume-{mode}"
    config = {"configurable": {"thread_id": thread}}
    with saver_for(daemon) as saver:
        graph = build(saver)
        if mode == "sync":
            paused = graph.invoke({"steps": [], "n": 1}, config)
        else:
            paused = asyncio.run(graph.ainvoke({"steps": [], "n": 1}, config))
        me = f"first@{os.getpid()}"
        assert paused == {"steps": [me], "n": 2}
        assert graph.get_state(config).next == ("second",)

        other = second_process(daemon, env, thread)
        # It saw this process's state, stopped before "second", and ran it.
        assert other["seen"] == {"steps": [me], "n": 2} and other["next"] == ["second"]
        theirs = other["final"]["steps"][1]
        assert theirs.startswith("second@") and theirs != f"second@{os.getpid()}"
        assert other["final"] == {"steps": [me, theirs], "n": 20}

        # And this process sees what the other one did.
        after = graph.get_state(config)
        assert after.values == {"steps": [me, theirs], "n": 20} and after.next == ()
        assert other["history"] == len(list(graph.get_state_history(config))) >= 4
    with daemon.session() as s:
        assert f"lg:{thread}" in [i.sessionId for i in s.list_sessions()]


def read_until(proc: subprocess.Popen[str], pred: Any, timeout: float = 30) -> list[str]:
    """Lines of ``proc``'s stdout until one satisfies ``pred`` (all of them, in order),
    read by a thread (a select on the pipe would miss lines already buffered)."""
    assert proc.stdout is not None
    out = proc.stdout
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in out], daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=0.2).rstrip("\n"))
        except queue.Empty:
            continue
        if pred(seen[-1]):
            return seen
    raise AssertionError(f"no such line within {timeout}s; saw: {seen}")


def test_the_watch_shows_a_checkpoint_land(daemon: Daemon, env: dict[str, str]) -> None:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket), SESSIONMEM_PROJECT=str(daemon.root))
    watch = subprocess.Popen([*CLI, "watch"], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             bufsize=1)
    try:
        with daemon.session() as s:
            deadline = time.monotonic() + 15
            while s.get_stats().watchers < 1:
                assert time.monotonic() < deadline, "the watch did not subscribe"
                time.sleep(0.02)
        with saver_for(daemon) as saver:
            build(saver).invoke({"steps": [], "n": 1}, {"configurable": {"thread_id": "watched"}})
        lines = read_until(watch, lambda ln: '"source":"loop"' in ln)
    finally:
        watch.kill()
        watch.wait(10)
    cps = [ln for ln in lines if "setContext" in ln and 'session="lg:watched"' in ln and "  c//" in ln]
    # The input checkpoint (step -1), then the loop's after "first" (step 0): who
    # watches reads the step, its source and the channels it updated.
    assert len(cps) >= 2, lines
    assert '= {"step":-1,"source":"input","updated":["__start__"]' in cps[0]
    assert '= {"step":0,"source":"loop","updated":[' in cps[-1] and '"n","steps"]' in cps[-1]
    assert any("createSession" in ln and 'session="lg:watched"' in ln for ln in lines)


@pytest.mark.parametrize("thread", ["a/b%2Fc", "ü " * 3, "x" * 300])
def test_thread_ids_and_namespaces_of_any_shape(daemon: Daemon, thread: str) -> None:
    """Slashes and percent signs in ids, and a thread id too long for a session id
    (held in a session named by its hash), all round-trip, also through list(None)."""
    with saver_for(daemon) as saver:
        stored = {}
        for ns in ("", "child:1", "a/b", "a%2Fb"):
            parent = None
            for step in range(3):
                cp = empty_checkpoint()
                conf = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
                if parent:
                    conf["configurable"]["checkpoint_id"] = parent
                saver.put(conf, cp, {"source": "loop", "step": step}, {})
                saver.put_writes({"configurable": {"thread_id": thread, "checkpoint_ns": ns,
                                                   "checkpoint_id": cp["id"]}},
                                 [("ch", f"{ns}:{step}"), (ERROR, "boom")], "task/1%")
                parent = cp["id"]
                stored[(ns, step)] = cp["id"]
        for ns in ("", "child:1", "a/b", "a%2Fb"):
            latest = saver.get_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ns}})
            assert latest is not None and latest.checkpoint["id"] == stored[(ns, 2)]
            assert latest.config["configurable"] == {"thread_id": thread, "checkpoint_ns": ns,
                                                     "checkpoint_id": stored[(ns, 2)]}
            assert sorted(latest.pending_writes or []) == sorted([("task/1%", "ch", f"{ns}:2"),
                                                                 ("task/1%", ERROR, "boom")])
            listed = list(saver.list({"configurable": {"thread_id": thread, "checkpoint_ns": ns}}))
            assert [t.metadata["step"] for t in listed] == [2, 1, 0]
            assert listed[0].parent_config["configurable"]["checkpoint_id"] == stored[(ns, 1)]
        everything = [t for t in saver.list(None) if t.config["configurable"]["thread_id"] == thread]
        assert len(everything) == 12
        assert list(saver.list(None, filter={"step": 1}, limit=2))[0].metadata["step"] == 1
        saver.delete_thread(thread)
        assert saver.get_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}}) is None
        assert not [t for t in saver.list(None) if t.config["configurable"]["thread_id"] == thread]


def test_racing_writers_of_one_task_store_its_writes_once(daemon: Daemon) -> None:
    """Two processes' worth of clients put the same task's writes at once (a retried
    task): each write is stored once, the first writer's value kept."""
    from concurrent.futures import ThreadPoolExecutor

    savers = [saver_for(daemon) for _ in range(4)]
    try:
        cp = empty_checkpoint()
        conf = savers[0].put({"configurable": {"thread_id": "race", "checkpoint_ns": ""}}, cp,
                             {"source": "loop", "step": 0}, {})

        def put(i: int) -> None:
            savers[i].put_writes(conf, [(f"ch{j}", i) for j in range(20)], "the-task")

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(put, range(4)))
        tup = savers[0].get_tuple(conf)
        assert tup is not None and len(tup.pending_writes) == 20
        # One writer's transact landed whole: every write has that writer's value.
        assert len({w[2] for w in tup.pending_writes}) == 1
    finally:
        for s in savers:
            s.close()


def readme_snippet() -> str:
    text = (HERE.parent / "README.md").read_text()
    body = text[text.index("\n### LangGraph"):]
    return body.split("```python\n", 1)[1].split("\n```", 1)[0]


def test_the_readme_example_runs_and_a_second_run_continues(daemon: Daemon, env: dict[str, str]) -> None:
    e = dict(env, SESSIONMEM_PROJECT=str(daemon.root), SESSIONMEM_SOCKET=str(daemon.socket))
    outs = []
    for _ in range(2):  # two processes
        r = subprocess.run([sys.executable, "-c", readme_snippet()], env=e, cwd=daemon.root, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout.strip())
    assert outs == ["['step 0']", "['step 0', 'step 1']"]


def test_a_checkpoint_past_the_frame_limit_fails_clearly_and_stores_nothing(make_daemon: Any) -> None:
    from sessionmem.errors import FrameTooLargeError

    d = make_daemon("--max-frame", "65536")
    with saver_for(d) as saver:
        conf = {"configurable": {"thread_id": "big", "checkpoint_ns": ""}}
        small = saver.put(conf, empty_checkpoint(), {"source": "loop", "step": 0}, {})
        big = empty_checkpoint()
        big["channel_values"] = {"blob": "x" * 60_000}  # ~80 KB once base64
        with pytest.raises(FrameTooLargeError):
            saver.put(conf, big, {"source": "loop", "step": 1}, {})
        # The saver (and the daemon) keep working; nothing of the failed put is stored.
        saver.put_writes(small, [("ch", 1)], "t")
        tup = saver.get_tuple(conf)
        assert tup is not None and tup.checkpoint["id"] == small["configurable"]["checkpoint_id"]
        assert tup.pending_writes == [("t", "ch", 1)] and len(list(saver.list(conf))) == 1


def test_more_writes_than_a_transact_takes_are_refused_whole(daemon: Daemon) -> None:
    from sessionmem.errors import InvalidParams

    with saver_for(daemon) as saver:
        conf = {"configurable": {"thread_id": "many", "checkpoint_ns": ""}}
        stored = saver.put(conf, empty_checkpoint(), {"source": "loop", "step": 0}, {})
        with pytest.raises(InvalidParams, match="at most 10000"):
            saver.put_writes(stored, [(f"c{i}", i) for i in range(10_001)], "huge")
        saver.put_writes(stored, [(f"c{i}", i) for i in range(10_000)], "most")
        tup = saver.get_tuple(conf)
        assert tup is not None and len(tup.pending_writes) == 10_000
        assert {w[0] for w in tup.pending_writes} == {"most"}
        assert [w[2] for w in tup.pending_writes] == list(range(10_000))  # in index order


def test_the_async_twins_on_one_event_loop(daemon: Daemon) -> None:
    from sessionmem.integrations.langgraph import SessionmemStore

    async def main() -> None:
        with saver_for(daemon) as saver, SessionmemStore(project=daemon.root, socket=daemon.socket,
                                                         autostart=False) as store:
            conf = {"configurable": {"thread_id": "async", "checkpoint_ns": ""}}
            cps = [empty_checkpoint() for _ in range(5)]
            # Many in flight at once on one saver: each lands.
            await asyncio.gather(*(saver.aput(conf, cp, {"source": "loop", "step": i}, {})
                                   for i, cp in enumerate(cps)))
            listed = [t async for t in saver.alist(conf, limit=3)]
            assert [t.checkpoint["id"] for t in listed] == sorted((c["id"] for c in cps), reverse=True)[:3]
            await saver.aput_writes(listed[0].config, [("ch", 1)], "t")
            got = await saver.aget_tuple(conf)
            assert got is not None and got.pending_writes == [("t", "ch", 1)]
            await store.aput(("docs",), "a", {"text": "hello"})
            item = await store.aget(("docs",), "a")
            assert item is not None and item.value == {"text": "hello"}
            assert [i.key for i in await store.asearch(("docs",))] == ["a"]
            assert await store.alist_namespaces() == [("docs",)]
            await saver.adelete_thread("async")
            assert await saver.aget_tuple(conf) is None

    asyncio.run(main())


def test_the_benchmark_runs(tmp_path: Path) -> None:
    """benchmarks/langgraph_bench.py's work, small: both savers do it and it checks
    what they read back (its figures are not checked: tests never assert speed)."""
    sys.path.insert(0, str(HERE.parent / "benchmarks"))
    import langgraph_bench

    figures = langgraph_bench.run(tmp_path, 30)
    assert figures["checkpoints"] == 30
    for who in ("sqliteSaver", "sessionmem_periodic", "sessionmem_always", "sessionmem_fsync"):
        assert figures[who]["totalS"] > 0


@pytest.mark.parametrize("long", [False, True])
def test_copy_thread_forks_or_merges(daemon: Daemon, long: bool) -> None:
    """Into a new thread: a fork of the source's session; into an existing one (or one
    named by its hash): the records copied, and the copy names its own thread."""
    pad = "p" * 200 if long else ""
    src, new, old = f"src{pad}", f"new{pad}", f"old{pad}"
    with saver_for(daemon) as saver:
        mine = empty_checkpoint()  # older than the source's: the copy's latest is the source's
        saver.put({"configurable": {"thread_id": old, "checkpoint_ns": ""}}, mine, {"source": "input", "step": -1}, {})
        ids = []
        parent = None
        for step in range(3):
            cp = empty_checkpoint()
            conf = {"configurable": {"thread_id": src, "checkpoint_ns": ""}}
            if parent:
                conf["configurable"]["checkpoint_id"] = parent
            stored = saver.put(conf, cp, {"source": "loop", "step": step}, {})
            saver.put_writes(stored, [("ch", step)], "t")
            parent = cp["id"]
            ids.append(cp["id"])
        saver.copy_thread(src, new)
        saver.copy_thread(src, old)
        saver.copy_thread("no-such-thread", "nothing")
        for thread, extra in ((new, []), (old, [mine["id"]])):
            listed = list(saver.list({"configurable": {"thread_id": thread, "checkpoint_ns": ""}}))
            assert [t.checkpoint["id"] for t in listed] == sorted(ids + extra, reverse=True)
            assert {t.config["configurable"]["thread_id"] for t in listed} == {thread}
            tup = saver.get_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}})
            assert tup is not None and tup.pending_writes == [("t", "ch", 2)]
        everywhere = {t.config["configurable"]["thread_id"] for t in saver.list(None)}
        assert everywhere == {src, new, old}
        # The source is untouched, and a later change to it does not show in the copy.
        saver.delete_thread(src)
        assert len(list(saver.list({"configurable": {"thread_id": new}}))) == 3
    with daemon.session() as s:
        assert "lg:nothing" not in [i.sessionId for i in s.list_sessions()]
