"""SessionmemSessionService across real processes: two writers appending to one ADK
session (each re-reading its session on a stale error and retrying, as an ADK runner
would), and the events landing live in the real ``sessionmem watch``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("google.adk", reason="needs the extra sessionmem[adk]")

from google.adk.events.event import Event  # noqa: E402
from google.adk.events.event_actions import EventActions  # noqa: E402

from conftest import CLI, Daemon, wait_for  # noqa: E402
from sessionmem.integrations.adk import SessionmemSessionService  # noqa: E402

pytestmark = pytest.mark.both_stores

WRITER = textwrap.dedent("""
    import asyncio, sys, time
    from pathlib import Path
    from google.adk.errors import StaleSessionError
    from google.adk.events.event import Event
    from google.adk.events.event_actions import EventActions
    from sessionmem.integrations.adk import SessionmemSessionService

    root, sock, name, go, count = sys.argv[1:6]

    async def main() -> None:
        svc = SessionmemSessionService(project=root, socket=sock, autostart=False)
        await svc.get_session(app_name="race", user_id="u", session_id="s")  # connected, warm
        Path(go + "." + name).touch()  # ready
        while not Path(go).exists():  # both writers start together
            time.sleep(0.001)
        stale = 0
        for i in range(int(count)):
            tag = f"{name}-{i}"
            while True:
                session = await svc.get_session(app_name="race", user_id="u", session_id="s")
                delta = {"last": tag, "app:last": tag, "user:last": tag, f"{name}_count": i + 1}
                try:
                    await svc.append_event(session, Event(invocation_id=tag, author=name,
                                                          actions=EventActions(state_delta=delta)))
                    break
                except StaleSessionError:
                    stale += 1  # another writer went first: re-read, try again
        await svc.close()
        print(stale)

    asyncio.run(main())
""")


def service(d: Daemon) -> SessionmemSessionService:
    return SessionmemSessionService(project=d.root, socket=d.socket, autostart=False)


def test_two_processes_append_50_events_each_to_one_session(daemon: Daemon, env: dict[str, str],
                                                            tmp_path: Path) -> None:
    async def create() -> None:
        async with service(daemon) as svc:
            await svc.create_session(app_name="race", user_id="u", session_id="s")

    asyncio.run(create())
    go = tmp_path / "go"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(daemon.root), str(daemon.socket), name, str(go), "50"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name in ("p1", "p2")]
    wait_for(lambda: all(Path(f"{go}.{name}").exists() or w.poll() is not None
                         for name, w in zip(("p1", "p2"), writers)), 60, "both writers ready")
    go.touch()
    outs = [w.communicate(timeout=300) for w in writers]
    for w, (_out, err) in zip(writers, outs):
        assert w.returncode == 0, err
    stale = [int(out.strip()) for out, _ in outs]

    async def read() -> Any:
        async with service(daemon) as svc:
            return await svc.get_session(app_name="race", user_id="u", session_id="s"), \
                await svc.get_user_state(app_name="race", user_id="u")

    session, user_state = asyncio.run(read())
    events = session.events
    assert len(events) == 100, (len(events), stale)
    for name in ("p1", "p2"):
        # Each writer's events are all there, once, in its own order.
        assert [e.invocation_id for e in events if e.author == name] == [f"{name}-{i}" for i in range(50)]
    # Every stored event holds its whole delta, and replaying the deltas in the stored
    # order gives the state the service shows: no append's delta was split or lost.
    replay: dict[str, Any] = {}
    for e in events:
        assert set(e.actions.state_delta) == {"last", "app:last", "user:last", f"{e.author}_count"}
        replay.update(e.actions.state_delta)
    assert session.state == replay
    last = events[-1].invocation_id
    assert session.state["last"] == session.state["app:last"] == session.state["user:last"] == last
    assert user_state == {"last": last}
    assert session.state["p1_count"] == session.state["p2_count"] == 50
    print(f"stale retries: {stale}")


def test_adk_events_land_live_in_sessionmem_watch(daemon: Daemon, env: dict[str, str]) -> None:
    e = dict(env, SESSIONMEM_SOCKET=str(daemon.socket))
    watcher = subprocess.Popen([*CLI, "--json", "watch"], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        with daemon.session() as s:
            wait_for(lambda: s.get_stats().watchers == 1, what="the watch to subscribe")

        async def write() -> None:
            async with service(daemon) as svc:
                session = await svc.create_session(app_name="live", user_id="ann", session_id="chat")
                await svc.append_event(session, Event(invocation_id="inv-1", author="planner",
                                                      actions=EventActions(state_delta={"step": 1})))

        asyncio.run(write())
        assert watcher.stdout is not None
        seen: list[dict[str, Any]] = []
        while not any(c.get("key") == "e/ann/chat/000000000000" for c in seen):
            line = watcher.stdout.readline()
            assert line, watcher.stderr.read() if watcher.stderr else ""
            seen.append(json.loads(line))
        event = next(c for c in seen if c.get("key") == "e/ann/chat/000000000000")
        assert event["sessionId"] == "adk:live" and event["op"] == "setContext"
        assert event["value"]["author"] == "planner" and event["value"]["actions"]["state_delta"] == {"step": 1}
        # The append was one transact: its records landed together, one `at`, consecutive revisions.
        while len([c for c in seen if c["revision"] >= event["revision"] - 1]) < 3:
            seen.append(json.loads(watcher.stdout.readline()))
        append = [c for c in seen if c.get("at") == event["at"] and c.get("key", "").startswith(("s/", "e/", "ss/"))
                  and c["revision"] >= event["revision"] - 1]
        assert sorted(c["key"] for c in append) == ["e/ann/chat/000000000000", "s/ann/chat", "ss/ann/chat/step"]
        revisions = sorted(c["revision"] for c in append)
        assert revisions == list(range(revisions[0], revisions[0] + 3))
    finally:
        watcher.kill()
        watcher.wait(10)
