"""The OpenAI Agents SDK's Session protocol over a real daemon, driven by the SDK's own
Runner and its scripted test model (offline: no API key, no network)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

agents = pytest.importorskip("agents", reason="needs the extra sessionmem[openai-agents]")

from agents import Agent, Runner, SQLiteSession, function_tool, set_tracing_disabled  # noqa: E402
from agents.memory import SessionSettings  # noqa: E402
from agents.testing import ScriptedModel, assistant_message, function_call  # noqa: E402
from openai.types.responses import ResponseReasoningItem  # noqa: E402
from openai.types.responses.response_reasoning_item import Summary  # noqa: E402

from conftest import Daemon, run_cli  # noqa: E402
from sessionmem.integrations.openai_agents import SessionmemSession  # noqa: E402

set_tracing_disabled(True)


@function_tool
def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def script(model: ScriptedModel, turn: int) -> None:
    """One turn: reasoning and a tool call, then the answer."""
    model.enqueue([
        ResponseReasoningItem(id=f"rs_{turn}", type="reasoning",
                              summary=[Summary(text=f"look up city {turn}", type="summary_text")]),
        function_call("weather", {"city": f"City {turn} ✓"}, call_id=f"call_{turn}"),
    ])
    model.enqueue([assistant_message(f"It is sunny in City {turn} ✓.", item_id=f"msg_{turn}")])


async def run_turns(session: Any, turns: range) -> ScriptedModel:
    model = ScriptedModel()
    agent = Agent(name="helper", model=model, tools=[weather])
    for t in turns:
        script(model, t)
        result = await Runner.run(agent, f"Weather in city {t}?", session=session)
        assert result.final_output == f"It is sunny in City {t} ✓."
    model.assert_complete()
    return model


def sm(d: Daemon, sid: str = "agent-1", **kw: Any) -> SessionmemSession:
    return SessionmemSession(sid, project=d.root, socket=d.socket, autostart=False, **kw)


def test_runner_turns_with_tools_round_trip_every_item_exactly(daemon: Daemon, env) -> None:
    async def go() -> tuple[list[Any], list[Any], Any]:
        ours, reference = sm(daemon), SQLiteSession("reference")
        model = await run_turns(ours, range(3))
        await run_turns(reference, range(3))
        return await ours.get_items(), await reference.get_items(), model

    items, expected, model = asyncio.run(go())
    # Exactly what the SDK's own SQLiteSession stores for the same run, item for item.
    assert items == expected and len(items) == 15
    assert {i.get("type", "message") for i in items} == {"message", "reasoning", "function_call", "function_call_output"}
    # The third turn's model call saw the first two turns' history.
    assert len(model.calls[-1].input) > 10
    # Another process reads the same session.
    code = ("import asyncio, json, sys; from sessionmem.integrations.openai_agents import SessionmemSession; "
            f"s = SessionmemSession('agent-1', project={str(daemon.root)!r}, socket={str(daemon.socket)!r}, autostart=False); "
            "print(json.dumps(asyncio.run(s.get_items())))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == json.loads(json.dumps(expected))
    # And every other tool sees a readable conversation.
    r = run_cli(["--socket", str(daemon.socket), "--session", "agent-1", "msg", "recent", "5"], env)
    lines = [line.split("] ", 1)[1] for line in r.stdout.splitlines()]
    assert lines == ["user: Weather in city 2?", "assistant: (reasoning) look up city 2",
                     'assistant: weather({"city":"City 2 ✓"})', "tool: sunny in City 2 ✓",
                     "assistant: It is sunny in City 2 ✓."], r.stdout + r.stderr


def test_the_session_protocol_as_the_sdk_tests_it(daemon: Daemon) -> None:
    async def go() -> None:
        s = sm(daemon, "proto")
        assert await s.get_items() == [] and await s.pop_item() is None  # not even made yet
        items = [{"role": "user", "content": f"Message {i}"} if i % 2 == 0 else
                 {"role": "assistant", "content": f"Response {i}"} for i in range(6)]
        await s.add_items(items)
        await s.add_items([])
        assert await s.get_items() == items
        assert await s.get_items(limit=2) == items[-2:]
        assert await s.get_items(limit=10) == items
        assert await s.get_items(limit=0) == []
        assert await s.get_items(limit=-1) == items  # SQLiteSession's (SQLite's) semantics
        assert await s.pop_item() == items[-1]
        assert await s.get_items() == items[:-1]
        await s.clear_session()
        assert await s.get_items() == [] and await s.pop_item() is None
        await s.add_items([{"role": "user", "content": "after clear"}])
        assert await s.get_items() == [{"role": "user", "content": "after clear"}]
        # session_settings.limit is the default; an explicit limit wins.
        limited = sm(daemon, "limited", session_settings=SessionSettings(limit=3))
        await limited.add_items([{"role": "user", "content": f"Message {i}"} for i in range(5)])
        assert [i["content"] for i in await limited.get_items()] == ["Message 2", "Message 3", "Message 4"]
        assert [i["content"] for i in await limited.get_items(limit=1)] == ["Message 4"]
        # A different session is untouched by pops and clears of this one.
        await limited.pop_item()
        assert await s.get_items() == [{"role": "user", "content": "after clear"}]
        # Unicode, quotes and SQL in content travel as they are.
        tricky = {"role": "user", "content": "ünïcødé ✓ 🚀 '; DROP TABLE sessions; -- \"\n\x00"}
        await s.add_items([tricky])
        assert (await s.get_items(limit=1)) == [tricky]
        s.close()
        limited.close()

    asyncio.run(go())


def test_one_session_object_from_several_threads_each_with_its_own_loop(daemon: Daemon) -> None:
    s = sm(daemon, "threads")

    def add(i: int) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(s.add_items([{"role": "user", "content": f"Message {i}"}]))
        finally:
            loop.close()

    with ThreadPoolExecutor(max_workers=5) as ex:
        list(ex.map(add, range(20)))
    got = asyncio.run(s.get_items())
    assert sorted(i["content"] for i in got) == sorted(f"Message {i}" for i in range(20))


def test_calls_do_not_block_the_event_loop(daemon: Daemon) -> None:
    s = sm(daemon, "loop")
    asyncio.run(s.add_items([{"role": "user", "content": "x"}]))  # connected and made

    async def go() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        t = asyncio.create_task(ticker())
        daemon.send_signal(19)  # SIGSTOP: the daemon answers nothing until SIGCONT
        threading.Timer(1.0, lambda: daemon.send_signal(18)).start()
        items = await s.get_items()
        t.cancel()
        assert items == [{"role": "user", "content": "x"}]
        return ticks

    # A blocked loop would tick once or twice in that second; a turning one ~100 times
    # (at least 5 even on a machine whose cores are all busy).
    assert asyncio.run(go()) >= 5


def test_two_processes_on_one_session_interleave_turns_and_lose_none(daemon: Daemon, env, tmp_path: Path) -> None:
    prog = tmp_path / "agent_proc.py"
    prog.write_text(
        "import asyncio, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_openai_agents import run_turns, sm_at\n"
        "k = int(sys.argv[1])\n"
        f"asyncio.run(run_turns(sm_at({str(daemon.root)!r}, {str(daemon.socket)!r}), range(k * 100, k * 100 + 8)))\n")
    procs = [subprocess.Popen([sys.executable, str(prog), str(k)], env=env, stderr=subprocess.PIPE, text=True)
             for k in (1, 2)]
    for p in procs:
        assert p.wait(120) == 0, p.stderr.read() if p.stderr else ""
    items = asyncio.run(sm(daemon, "shared").get_items())
    assert len(items) == 2 * 8 * 5  # none lost

    def turn_of(item: dict[str, Any]) -> int:
        text = json.dumps(item)
        return next(t for t in [*range(100, 108), *range(200, 208)] if f"City {t} " in text or f"city {t}?" in text
                    or f"_{t}\"" in text)

    # Each process's items are all there, in the order its own runs made them ...
    for k in (1, 2):
        mine = [i for i in items if turn_of(i) // 100 == k]
        assert [turn_of(i) for i in mine] == [t for t in range(k * 100, k * 100 + 8) for _ in range(5)]
    # ... and what one add_items holds lands together: a call is followed by its output.
    for n, item in enumerate(items):
        if item.get("type") == "function_call":
            assert items[n + 1] == {"call_id": item["call_id"], "output": f"sunny in City {turn_of(item)} ✓",
                                    "type": "function_call_output"}


def sm_at(root: str, socket: str) -> SessionmemSession:
    """For the subprocesses of the test above."""
    return SessionmemSession("shared", project=root, socket=socket, autostart=False)


def test_a_missing_extra_says_which_to_install(tmp_path: Path, env) -> None:
    blocker = tmp_path / "blocker"
    (blocker / "agents").mkdir(parents=True)
    (blocker / "agents" / "__init__.py").write_text("raise ImportError('not installed')\n")
    e = dict(env, PYTHONPATH=f"{blocker}{os.pathsep}{env.get('PYTHONPATH', '')}")
    r = subprocess.run([sys.executable, "-c", "import sessionmem.integrations.openai_agents"],
                       capture_output=True, text=True, env=e, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        "ImportError: sessionmem.integrations.openai_agents needs the OpenAI Agents SDK: "
        "pip install 'sessionmem[openai-agents]'")
