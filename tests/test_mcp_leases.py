"""The MCP tools of issue 18 through the official MCP client over stdio: leases, the tools
an agent lacked (release_ticket, delete_context, list_sessions), descriptions as the agent
reads them, and read-only tools annotated."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("mcp", reason="needs the extra sessionmem[mcp]")

from mcp import Client  # noqa: E402

from conftest import Daemon  # noqa: E402
from test_mcp import data, server, text  # noqa: E402

READ_ONLY = {"get_session", "recent_messages", "get_context", "wait_for_change", "list_sessions", "list_leases", "search_messages"}


def test_lease_and_ticket_tools_through_the_official_client(daemon: Daemon, env: dict[str, str]) -> None:
    async def go() -> None:
        async with Client(server(daemon, {**env, "SESSIONMEM_AGENT": "mcp-agent"})) as c:
            tools = {t.name: t for t in (await c.list_tools()).tools}
            for t in tools.values():
                assert t.description and not t.description.startswith((" ", "\n")), t.name
                assert "\n    " not in t.description, (t.name, t.description)  # no docstring indentation
                hint = t.annotations.read_only_hint if t.annotations is not None else None
                assert bool(hint) == (t.name in READ_ONLY), t.name

            got = data(await c.call_tool("acquire_lease", {"name": "file:a.py", "ttl_seconds": 60}))
            assert got["owner"] == "mcp-agent" and got["token"] > 0 and got["expiresAt"] > 0
            other = daemon.session()
            held = other.list_leases()
            assert [(x.name, x.owner, x.token) for x in held] == [("file:a.py", "mcp-agent", got["token"])]
            # Another owner's lease: the tool error names the holder.
            theirs = other.acquire_lease("deploy", ttl=60, owner="other-agent")
            refused: Any = await c.call_tool("acquire_lease", {"name": "deploy", "ttl_seconds": 30})
            assert refused.is_error and "other-agent" in text(refused)
            renewed = data(await c.call_tool("renew_lease", {"name": "file:a.py", "token": got["token"]}))
            assert renewed["token"] == got["token"] and renewed["expiresAt"] >= got["expiresAt"]
            listed = data(await c.call_tool("list_leases", {}))
            assert sorted(x["name"] for x in listed) == ["deploy", "file:a.py"]
            stale: Any = await c.call_tool("release_lease", {"name": "file:a.py", "token": got["token"] + 1})
            assert stale.is_error and "token" in text(stale)
            assert "released" in text(await c.call_tool("release_lease", {"name": "file:a.py", "token": got["token"]}))
            assert [x.name for x in other.list_leases()] == ["deploy"]
            theirs.release()

            await c.call_tool("claim_ticket", {"ticket_id": "T-1"})
            other.set_active_ticket("T-2")
            wrong: Any = await c.call_tool("release_ticket", {"ticket_id": "T-1"})
            assert wrong.is_error and "T-2" in text(wrong)
            other.set_active_ticket("T-1")
            assert "released T-1" in text(await c.call_tool("release_ticket", {"ticket_id": "T-1"}))
            assert other.get_active_ticket() is None

            other.set_context("k", 1)
            await c.call_tool("delete_context", {"key": "k"})
            assert other.get_context("k") is None
            sessions = data(await c.call_tool("list_sessions", {}))
            assert [x["sessionId"] for x in sessions] == [other.get_session_id()]
            other.close()
    asyncio.run(go())


def test_a_write_fenced_by_a_lease_that_was_taken_over_changes_nothing(daemon: Daemon, env: dict[str, str]) -> None:
    """An agent that stalled past its lease's expiry cannot write over the agent that took
    the claim after it: every writing tool takes `lease` (design §13's fencing)."""
    writes: list[tuple[str, dict[str, Any]]] = [
        ("set_task", {"task": "stale plan"}),
        ("add_message", {"content": "stale news"}),
        ("track_file", {"path": "a.py"}),
        ("untrack_file", {"path": "b.py"}),
        ("set_context", {"key": "k", "value": "stale"}),
        ("delete_context", {"key": "keep"}),
        ("claim_ticket", {"ticket_id": "T-9"}),
        ("release_ticket", {"ticket_id": "T-1"}),
    ]

    async def go() -> None:
        async with Client(server(daemon, {**env, "SESSIONMEM_AGENT": "slow-agent"})) as c:
            mine = data(await c.call_tool("acquire_lease", {"name": "plan", "ttl_seconds": 60}))
            fence = {"name": "plan", "token": mine["token"]}
            # Held: a fenced write goes through.
            assert "set" in text(await c.call_tool("set_context", {"key": "k", "value": "mine", "lease": fence}))
            other = daemon.session()
            other.track_open_file("b.py")
            other.set_context("keep", 1)
            other.set_active_ticket("T-1")
            # The lease ends (released here, as an expiry would) and another agent takes it.
            other.release_lease("plan", mine["token"])
            successor = other.acquire_lease("plan", ttl=60, owner="fast-agent")
            assert successor.token > mine["token"]
            before = (other.export_session(), other.get_stats().revision)
            for tool, args in writes:
                refused: Any = await c.call_tool(tool, {**args, "lease": fence})
                assert refused.is_error and "plan" in text(refused), (tool, text(refused))
            # ...and under the successor's token the same tool writes.
            fresh = {"name": "plan", "token": successor.token}
            await c.call_tool("set_task", {"task": "fresh plan", "lease": fresh})
            assert (other.export_session(), other.get_stats().revision) != before
            assert other.get_current_task() == "fresh plan" and other.get_context("k") == "mine"
            assert other.get_open_files() == ["b.py"] and other.get_active_ticket() == "T-1"
            assert other.get_context("keep") == 1
            other.close()
    asyncio.run(go())
