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
