"""`sessionmem mcp` launched over stdio by the official MCP SDK's own client, against a
real daemon: tools, resources, errors, and resource updates fed by the change feed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason="needs the extra sessionmem[mcp]")

from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402

from conftest import Daemon, run_cli, wait_for  # noqa: E402


def server(d: Daemon, env: dict[str, str], *extra: str) -> StdioServerParameters:
    # The agent's config: `sessionmem mcp`, run in the project (found from the cwd).
    return StdioServerParameters(command=sys.executable, args=["-m", "sessionmem", *extra, "mcp"],
                                 cwd=str(d.root), env={**env, "SESSIONMEM_SOCKET": str(d.socket)})


def text(result: Any) -> str:
    return "\n".join(c.text for c in result.content)


def data(result: Any) -> Any:
    """A tool's result as the agent gets it, structured (the SDK wraps a non-object
    result as {"result": ...})."""
    assert not result.is_error, text(result)
    sc = result.structured_content
    if sc is None:  # an Any result: its JSON as text
        return json.loads(text(result))
    return sc["result"] if set(sc) == {"result"} else sc


def test_tools_and_resources_through_the_official_client(daemon: Daemon, env) -> None:
    async def go() -> None:
        async with Client(server(daemon, env)) as c:
            tools = {t.name: t for t in (await c.list_tools()).tools}
            assert set(tools) == {"get_session", "set_task", "add_message", "recent_messages", "track_file",
                                  "untrack_file", "get_context", "set_context", "claim_ticket", "wait_for_change",
                                  "release_ticket", "delete_context", "list_sessions", "acquire_lease",
                                  "renew_lease", "release_lease", "list_leases",
                                  "search_messages"}
            assert tools["search_messages"].annotations.read_only_hint is True
            for t in tools.values():  # every tool and param says what it is for
                assert t.description and len(t.description) > 30, t.name
                for name, schema in t.input_schema.get("properties", {}).items():
                    assert schema.get("description"), (t.name, name)
            assert tools["recent_messages"].input_schema["properties"]["count"]["minimum"] == 0

            def ok(result: Any) -> str:
                assert not result.is_error, text(result)
                return text(result)

            ok(await c.call_tool("set_task", {"task": "Fix the parser"}))
            ok(await c.call_tool("add_message", {"content": "parser: found the bug ✓"}))
            ok(await c.call_tool("add_message", {"content": "thanks", "role": "user"}))
            ok(await c.call_tool("track_file", {"path": "src/parser.py"}))
            ok(await c.call_tool("track_file", {"path": "src/lexer.py"}))
            ok(await c.call_tool("untrack_file", {"path": "src/lexer.py"}))
            ok(await c.call_tool("set_context", {"key": "plan", "value": {"steps": ["a", "b"]}}))
            assert data(await c.call_tool("get_context", {"key": "plan"})) == {"steps": ["a", "b"]}
            conflict = await c.call_tool("set_context", {"key": "plan", "value": 1, "use_expect": True, "expect": "old"})
            assert conflict.is_error and '{"steps": ["a", "b"]}' in text(conflict)
            ok(await c.call_tool("claim_ticket", {"ticket_id": "T-7"}))
            msgs = data(await c.call_tool("recent_messages", {"count": 2}))
            assert [(m["role"], m["content"]) for m in msgs] == [("assistant", "parser: found the bug ✓"), ("user", "thanks")]
            hits = data(await c.call_tool("search_messages", {"query": "BUG parser"}))
            assert [(h["index"], h["role"]) for h in hits] == [(0, "assistant")] and "[bug]" in hits[0]["snippet"]
            bad_query = await c.call_tool("search_messages", {"query": "***"})
            assert bad_query.is_error and "word" in text(bad_query)
            summary = data(await c.call_tool("get_session", {}))
            assert summary["currentTask"] == "Fix the parser" and summary["activeTicket"] == "T-7"
            assert summary["openFiles"] == ["src/parser.py"] and summary["contextKeys"] == ["plan"]
            assert summary["messagesCount"] == 2 and summary["revision"] > 0
            # What the agent wrote is what every other tool sees.
            r = run_cli(["--socket", str(daemon.socket), "ticket", "get"], env)
            assert r.stdout.strip() == "T-7"

            resources = {str(r.uri) for r in (await c.list_resources()).resources}
            assert resources == {f"sessionmem://session/{p}" for p in
                                 ("session", "task", "ticket", "messages", "files", "context")}
            task = await c.read_resource("sessionmem://session/task")
            assert task.contents[0].text == "Fix the parser"
            files = await c.read_resource("sessionmem://session/files")
            assert json.loads(files.contents[0].text) == ["src/parser.py"]

    asyncio.run(go())


def test_claim_held_by_another_client_is_a_tool_error_naming_the_holder(daemon: Daemon, env) -> None:
    with daemon.session() as s:
        s.claim_ticket("T-3")

    async def go() -> None:
        async with Client(server(daemon, env)) as c:
            r = await c.call_tool("claim_ticket", {"ticket_id": "T-7"})
            assert r.is_error and 'the active ticket is already "T-3"' in text(r)
            assert not (await c.call_tool("get_session", {})).is_error  # still serving

    asyncio.run(go())


def test_wait_for_change_returns_a_change_made_by_the_cli(daemon: Daemon, env) -> None:
    async def go() -> None:
        async with Client(server(daemon, env)) as c:
            rev = data(await c.call_tool("get_session", {}))["revision"]
            timed = data(await c.call_tool("wait_for_change", {"after_revision": rev, "timeout_seconds": 0.3}))
            assert timed == {"timedOut": True, "revision": rev}
            threading.Timer(0.5, lambda: run_cli(["--socket", str(daemon.socket), "task", "set", "from the CLI"], env)).start()
            got = data(await c.call_tool("wait_for_change", {"after_revision": rev, "timeout_seconds": 30}))
            assert not got["timedOut"] and got["changes"][0]["op"] == "setCurrentTask"
            assert got["changes"][0]["task"] == "from the CLI" and got["revision"] == rev + 1

    asyncio.run(go())


def test_resource_updates_are_fed_by_the_change_feed(daemon: Daemon, env) -> None:
    async def go() -> None:
        async with Client(server(daemon, env)) as c:
            await c.call_tool("get_session", {})
            with daemon.session() as s:  # the server is up and its resource feed watches
                wait_for(lambda: s.get_stats().watchers == 1, what="the resource feed's watch")
            uri = "sessionmem://session/ticket"
            with daemon.session() as s:
                s.create_session("elsewhere")
            async with c.listen(resource_subscriptions=[uri]) as sub:
                # A change of another session is no update of the current session's parts.
                run_cli(["--socket", str(daemon.socket), "--session", "elsewhere", "ticket", "set", "X"], env)
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(1.0):
                        async for _event in sub:
                            break
                threading.Timer(0.3, lambda: run_cli(["--socket", str(daemon.socket), "ticket", "set", "T-9"], env)).start()
                async with asyncio.timeout(20):
                    async for event in sub:
                        assert str(event.uri) == uri
                        break
            assert (await c.read_resource(uri)).contents[0].text == "T-9"

    asyncio.run(go())


def test_daemon_down_and_bad_params_are_tool_errors_not_crashes(daemon: Daemon, env) -> None:
    async def go() -> None:
        async with Client(server(daemon, env, "--no-autostart")) as c:
            bad = await c.call_tool("recent_messages", {"count": -1})
            assert bad.is_error
            assert daemon.stop() == 0
            down = await c.call_tool("get_session", {})
            assert down.is_error and "no sessionmemd answers" in text(down), text(down)
            daemon.start()
            up = await c.call_tool("get_session", {})  # reconnects by itself
            assert not up.is_error, text(up)

    asyncio.run(go())


def test_a_missing_extra_says_which_to_install(tmp_path: Path, env) -> None:
    blocker = tmp_path / "blocker"
    (blocker / "mcp").mkdir(parents=True)
    (blocker / "mcp" / "__init__.py").write_text("raise ImportError('not installed')\n")
    e = dict(env, PYTHONPATH=f"{blocker}{os.pathsep}{env.get('PYTHONPATH', '')}")
    r = subprocess.run([sys.executable, "-m", "sessionmem", "mcp"], capture_output=True, text=True, env=e,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert r.stderr.strip() == "sessionmem: `sessionmem mcp` needs the MCP SDK: pip install 'sessionmem[mcp]'"
