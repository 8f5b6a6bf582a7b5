"""SessionmemSessionService beyond ADK's contract suite (tests/test_adk_contract.py): the
record layout, exact round trips, stale handles, paging, the transact limit on delete,
the limits, and a real daemon throughout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

pytest.importorskip("google.adk", reason="needs the extra sessionmem[adk]")

from google.adk.errors import StaleSessionError  # noqa: E402
from google.adk.errors.already_exists_error import AlreadyExistsError  # noqa: E402
from google.adk.errors.session_not_found_error import SessionNotFoundError  # noqa: E402
from google.adk.events.event import Event  # noqa: E402
from google.adk.events.event_actions import EventActions  # noqa: E402
from google.adk.sessions.base_session_service import GetSessionConfig  # noqa: E402
from google.adk.sessions.session import Session  # noqa: E402
from google.genai import types  # noqa: E402

from conftest import Daemon  # noqa: E402
from sessionmem import errors  # noqa: E402
from sessionmem.integrations import adk_records as r  # noqa: E402
from sessionmem.integrations.adk import SessionmemSessionService  # noqa: E402

pytestmark = pytest.mark.both_stores


def service(d: Daemon) -> SessionmemSessionService:
    return SessionmemSessionService(project=d.root, socket=d.socket, autostart=False)


def keys(d: Daemon, app: str, prefix: str = "") -> dict[str, Any]:
    """The records of an app's sessionmem session, read with the plain client."""
    out: dict[str, Any] = {}
    with d.session(f"adk:{app}") as s:
        after = None
        while True:
            page = s.list_context(prefix, after=after, limit=10_000)
            out.update((e.key, e.value) for e in page.entries)
            if not page.more:
                return out
            after = page.entries[-1].key


def ev(**kw: Any) -> Event:
    return Event(invocation_id=kw.pop("invocation_id", "inv"), author=kw.pop("author", "user"), **kw)


def test_one_append_is_one_transact_of_the_pinned_records(daemon: Daemon) -> None:
    async def go() -> Session:
        async with service(daemon) as svc:
            s = await svc.create_session(app_name="shop", user_id="u1", session_id="s1",
                                         state={"k": 1, "app:a": 2, "user:u": 3, "temp:t": 4})
            await svc.append_event(s, ev(timestamp=1700000000.5, actions=EventActions(
                state_delta={"k": {"x": 1}, "app:a": None, "user:u": [1], "temp:t": 5})))
            return s

    s = asyncio.run(go())
    recs = keys(daemon, "shop")
    assert sorted(recs) == ["as/a", "e/u1/s1/000000000000", "s/u1/s1", "ss/u1/s1/k", "us/u1/u"]
    assert recs["s/u1/s1"] == {"id": "s1", "user": "u1", "createTime": recs["s/u1/s1"]["createTime"],
                               "lastUpdateTime": 1700000000.5, "next": 1}
    assert recs["ss/u1/s1/k"] == {"x": 1} and recs["as/a"] is None and recs["us/u1/u"] == [1]
    assert "temp:t" not in recs["e/u1/s1/000000000000"]["actions"]["state_delta"]
    assert s.state["temp:t"] == 5  # ADK's rule: temp state lives in the handle only


def test_events_round_trip_exactly_and_may_share_an_id(daemon: Daemon) -> None:
    content = types.Content(role="user", parts=[types.Part.from_bytes(data=b"\x00\xffimg", mime_type="image/png"),
                                                types.Part(text="héllo ✓")])
    first = ev(id="same", timestamp=1700000000.1234567, content=content)
    second = ev(id="same", author="agent", timestamp=0.1 + 0.2)

    async def go() -> tuple[Session, Session | None]:
        async with service(daemon) as svc:
            s = await svc.create_session(app_name="a", user_id="u", session_id="s")
            await svc.append_event(s, first)
            await svc.append_event(s, second)
            return s, await svc.get_session(app_name="a", user_id="u", session_id="s")

    s, got = asyncio.run(go())
    assert got is not None and got.events == [first, second] and got == s
    assert got.events[0].timestamp == 1700000000.1234567 and got.events[1].timestamp == 0.1 + 0.2
    assert got.events[0].content is not None and got.events[0].content.parts is not None
    assert got.events[0].content.parts[0].inline_data is not None
    assert got.events[0].content.parts[0].inline_data.data == b"\x00\xffimg"


def test_ids_holding_slash_and_percent_do_not_collide(daemon: Daemon) -> None:
    pairs = [("a/b", "c"), ("a", "b/c"), ("a%2Fb", "c"), ("a", "b%2Fc"), ("a", "b")]

    async def go() -> list[Any]:
        async with service(daemon) as svc:
            for user, sid in pairs:
                s = await svc.create_session(app_name="a", user_id=user, session_id=sid, state={"who": f"{user}|{sid}"})
                await svc.append_event(s, ev(author=f"{user}|{sid}", actions=EventActions(
                    state_delta={"user:who": user})))
            got = [await svc.get_session(app_name="a", user_id=u, session_id=s) for u, s in pairs]
            listed = await svc.list_sessions(app_name="a", user_id="a")
            everyone = await svc.list_sessions(app_name="a")
            return [got, listed, everyone]

    got, listed, everyone = asyncio.run(go())
    for (user, sid), s in zip(pairs, got):
        assert s.user_id == user and s.id == sid and s.state["who"] == f"{user}|{sid}"
        assert [e.author for e in s.events] == [f"{user}|{sid}"] and s.state["user:who"] == user
    assert sorted(s.id for s in listed.sessions) == ["b", "b%2Fc", "b/c"]
    assert sorted((s.user_id, s.id) for s in everyone.sessions) == sorted(pairs)


def test_a_stale_handle_raises_adks_own_error_and_writes_nothing(daemon: Daemon) -> None:
    async def go() -> None:
        async with service(daemon) as svc:
            await svc.create_session(app_name="a", user_id="u", session_id="s")
            h1 = await svc.get_session(app_name="a", user_id="u", session_id="s")
            h2 = await svc.get_session(app_name="a", user_id="u", session_id="s")
            assert h1 is not None and h2 is not None
            await svc.append_event(h1, ev(timestamp=1.0, actions=EventActions(state_delta={"k": "h1"})))
            before = keys(daemon, "a")
            # h2 read the same meta; its timestamp is not newer, only the revision tells.
            with pytest.raises(StaleSessionError):
                await svc.append_event(h2, ev(timestamp=2.0, actions=EventActions(
                    state_delta={"k": "h2", "app:k": "h2"})))
            assert keys(daemon, "a") == before
            # Re-read, and the same append goes in.
            h2 = await svc.get_session(app_name="a", user_id="u", session_id="s")
            assert h2 is not None
            await svc.append_event(h2, ev(timestamp=2.0, actions=EventActions(state_delta={"k": "h2"})))
            got = await svc.get_session(app_name="a", user_id="u", session_id="s")
            assert got is not None and [e.timestamp for e in got.events] == [1.0, 2.0] and got.state["k"] == "h2"
            # A handle this service never read (no marker): ADK's SQLite rule.
            bare = Session(app_name="a", user_id="u", id="s", last_update_time=1.5)
            with pytest.raises(StaleSessionError):
                await svc.append_event(bare, ev(timestamp=3.0))
            bare = Session(app_name="a", user_id="u", id="s", last_update_time=2.0)
            await svc.append_event(bare, ev(timestamp=3.0))
            # A session that does not exist (or was deleted under a handle).
            with pytest.raises(SessionNotFoundError):
                await svc.append_event(Session(app_name="a", user_id="u", id="nope"), ev())
            await svc.delete_session(app_name="a", user_id="u", session_id="s")
            with pytest.raises(SessionNotFoundError):
                await svc.append_event(got, ev())
            with pytest.raises(SessionNotFoundError):
                await svc.append_event(Session(app_name="never-made", user_id="u", id="s"), ev())

    asyncio.run(go())


def test_recent_and_after_timestamp_page_backwards(daemon: Daemon) -> None:
    n = 2_345  # past two pages of listContext

    async def go() -> None:
        async with service(daemon) as svc:
            s = await svc.create_session(app_name="a", user_id="u", session_id="s")
            for i in range(n):
                await svc.append_event(s, ev(timestamp=1000.0 + i))

            async def get(**cfg: Any) -> list[float]:
                got = await svc.get_session(app_name="a", user_id="u", session_id="s",
                                            config=GetSessionConfig(**cfg) if cfg else None)
                assert got is not None
                return [e.timestamp for e in got.events]

            everything = [1000.0 + i for i in range(n)]
            assert await get() == everything
            assert await get(num_recent_events=1) == everything[-1:]
            assert await get(num_recent_events=1_500) == everything[-1_500:]
            assert await get(num_recent_events=n + 10) == everything
            assert await get(num_recent_events=0) == []
            assert await get(after_timestamp=1000.0 + 100) == everything[100:]
            assert await get(after_timestamp=1000.0 + 100, num_recent_events=5) == everything[-5:]
            assert await get(after_timestamp=1e12) == []

    asyncio.run(go())


def test_delete_past_the_transact_limit_and_an_interrupted_one(daemon: Daemon) -> None:
    """A session of more records than one transact takes (10,000) is deleted in several;
    records a delete left behind (it stopped half way) are removed before the id is
    used again, never shown as the new session's."""
    extra = r.MAX_OPS + 500

    def stuff(user: str, sid: str, with_meta: bool) -> None:
        # Records written directly, as a long-lived session would have them.
        with daemon.session("adk:a") as s:
            for start in range(0, extra, r.MAX_OPS):
                with s.transaction() as t:
                    for i in range(start, min(extra, start + r.MAX_OPS)):
                        t.set_context(r.event_key(user, sid, i), {"author": "x", "invocation_id": "i", "id": str(i),
                                                                  "timestamp": float(i)})
            with s.transaction() as t:
                t.set_context(r.session_state_prefix(user, sid) + "k", "old")
                if with_meta:
                    t.set_context(r.meta_key(user, sid), {**r.new_meta(user, sid, 1.0), "next": extra})

    async def go() -> None:
        async with service(daemon) as svc:
            await svc.create_session(app_name="a", user_id="u", session_id="keep", state={"k": "kept"})
            await svc.create_session(app_name="a", user_id="u", session_id="big")
            stuff("u", "big", with_meta=True)
            got = await svc.get_session(app_name="a", user_id="u", session_id="big",
                                        config=GetSessionConfig(num_recent_events=3))
            assert got is not None and [e.id for e in got.events] == [str(extra - 3), str(extra - 2), str(extra - 1)]
            await svc.delete_session(app_name="a", user_id="u", session_id="big")
            assert await svc.get_session(app_name="a", user_id="u", session_id="big") is None
            left = keys(daemon, "a")
            assert sorted(left) == ["s/u/keep", "ss/u/keep/k"]
            # What an interrupted delete leaves: records without their meta.
            stuff("u", "again", with_meta=False)
            s = await svc.create_session(app_name="a", user_id="u", session_id="again")
            assert s.state == {} and s.events == []
            got = await svc.get_session(app_name="a", user_id="u", session_id="again")
            assert got is not None and got.events == [] and got.state == {}
            assert sorted(keys(daemon, "a")) == ["s/u/again", "s/u/keep", "ss/u/keep/k"]

    asyncio.run(go())


def test_create_is_race_safe_and_refuses_a_taken_id(daemon: Daemon) -> None:
    async def go() -> None:
        # Two services (two connections) making the app's session at once, and ten
        # creates of one id: exactly one wins.
        a, b = service(daemon), service(daemon)
        results = await asyncio.gather(
            *[(a if i % 2 else b).create_session(app_name="fresh", user_id="u", session_id="one") for i in range(10)],
            return_exceptions=True)
        assert sum(isinstance(x, Session) for x in results) == 1
        assert all(isinstance(x, (Session, AlreadyExistsError)) for x in results), results
        await a.close()
        await b.close()

    asyncio.run(go())


def test_limits_are_clear_errors_and_the_daemon_keeps_serving(make_daemon: Any) -> None:
    d = make_daemon("--max-frame", str(256 * 1024), "--max-depth", "16")

    async def go() -> None:
        async with service(d) as svc:
            with pytest.raises(ValueError, match="1-124 characters"):
                await svc.create_session(app_name="x" * 125, user_id="u")
            s = await svc.create_session(app_name="x" * 124, user_id="u", session_id="s")
            with pytest.raises(ValueError, match="max-frame"):
                await svc.append_event(s, ev(content=types.Content(role="user", parts=[types.Part(text="y" * 300_000)])))
            deep: Any = 1
            for _ in range(20):
                deep = {"d": deep}
            with pytest.raises(errors.InvalidParams, match="depth|deep|nest"):
                await svc.append_event(s, ev(actions=EventActions(state_delta={"k": deep})))
            with pytest.raises(ValueError, match="at most 10000 records"):
                await svc.create_session(app_name="a", user_id="u", state={f"k{i}": i for i in range(r.MAX_OPS)})
            # Nothing of those went in, and the same service still works.
            await svc.append_event(s, ev(timestamp=5.0))
            got = await svc.get_session(app_name="x" * 124, user_id="u", session_id="s")
            assert got is not None and [e.timestamp for e in got.events] == [5.0] and got.state == {}

    asyncio.run(go())


def test_one_service_on_several_event_loops(daemon: Daemon) -> None:
    svc = service(daemon)

    async def write() -> None:
        s = await svc.create_session(app_name="a", user_id="u", session_id="s")
        await svc.append_event(s, ev(timestamp=time.time()))

    async def read() -> int:
        got = await svc.get_session(app_name="a", user_id="u", session_id="s")
        assert got is not None
        await svc.close()
        return len(got.events)

    asyncio.run(write())
    assert asyncio.run(read()) == 1


def test_the_readme_snippet_runs(daemon: Daemon, env: dict[str, str]) -> None:
    import subprocess
    import sys
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    body = text[text.index("\n### Google ADK"):]
    code = body.split("```python\n", 1)[1].split("\n```", 1)[0]
    e = dict(env, SESSIONMEM_PROJECT=str(daemon.root), SESSIONMEM_SOCKET=str(daemon.socket))
    done = subprocess.run([sys.executable, "-c", code], env=e, cwd=daemon.root, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1 {'step': 1, 'user:lang': 'en'}"


def test_adks_runner_keeps_its_turns_here(daemon: Daemon) -> None:
    """ADK's own Runner, with an agent that needs no model, on this service: the user's
    message and the agent's reply are stored, temp: state stays out, state carries over."""
    from collections.abc import AsyncGenerator

    from google.adk.agents import BaseAgent
    from google.adk.agents.invocation_context import InvocationContext
    from google.adk.runners import Runner

    class Counter(BaseAgent):
        async def _run_async_impl(self, ctx: InvocationContext) -> AsyncGenerator[Event, None]:
            n = int(ctx.session.state.get("turns", 0)) + 1
            yield Event(author=self.name, invocation_id=ctx.invocation_id,
                        content=types.Content(role="model", parts=[types.Part(text=f"turn {n}")]),
                        actions=EventActions(state_delta={"turns": n, "temp:scratch": n, "user:seen": n}))

    async def go() -> Session | None:
        async with service(daemon) as svc:
            runner = Runner(agent=Counter(name="counter"), app_name="runner-app", session_service=svc)
            s = await svc.create_session(app_name="runner-app", user_id="u")
            for i in range(3):
                msg = types.Content(role="user", parts=[types.Part(text=f"hi {i}")])
                replies = [e async for e in runner.run_async(user_id="u", session_id=s.id, new_message=msg)]
                assert [p.text for e in replies if e.content and e.content.parts for p in e.content.parts] == \
                    [f"turn {i + 1}"]
            return await svc.get_session(app_name="runner-app", user_id="u", session_id=s.id)

    got = asyncio.run(go())
    assert got is not None
    texts = [p.text for e in got.events if e.content and e.content.parts for p in e.content.parts]
    assert texts == ["hi 0", "turn 1", "hi 1", "turn 2", "hi 2", "turn 3"]
    assert got.state == {"turns": 3, "user:seen": 3}
    assert not any(k.startswith("ss/") and k.endswith("temp:scratch") for k in keys(daemon, "runner-app"))
