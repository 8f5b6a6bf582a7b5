"""Issue 16, the MCP server's part: `sessionmem mcp` launched over stdio by the official
MCP SDK's own client, against a real daemon. It follows the current session, its
wait_for_change returns every change of the session it watches, a failed wait leaves no
connection behind, and a socket it is given is the only one it talks to."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason="needs the extra sessionmem[mcp]")

from mcp import Client  # noqa: E402

from conftest import Daemon, run_cli, wait_for  # noqa: E402
from test_client_fixes import compact, connections, watchers  # noqa: E402
from test_mcp import data, server, text  # noqa: E402

TASK = "sessionmem://session/task"


def cli(d: Daemon, env: dict[str, str], *args: str) -> str:
    r = run_cli(["--socket", str(d.socket), *args], env)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


async def next_update(sub: Any, uri: str) -> None:
    """The next resource-updated notification for ``uri`` (none: the test fails)."""
    async with asyncio.timeout(30):
        async for event in sub:
            if str(event.uri) == uri:
                return


async def read(c: Any, uri: str) -> str:
    return str((await c.read_resource(uri)).contents[0].text)


# -- 8. the resources follow the current session --------------------------------------------


def test_resources_follow_every_kind_of_switch_made_by_another_client(daemon: Daemon, env: dict[str, str]) -> None:
    with daemon.session() as s:
        first = s.get_session_id()
        s.create_session("other")
    with daemon.session("other") as other:
        other.set_current_task("other's task")

    async def go() -> None:
        async with Client(server(daemon, env)) as c:
            assert data(await c.call_tool("get_session", {}))["sessionId"] == first
            await asyncio.to_thread(wait_for, lambda: watchers(daemon) == 1, 30, "the resource feed's watch")
            async with c.listen(resource_subscriptions=[TASK]) as sub:
                # createSession with makeCurrent, by the CLI: the switch is an update...
                cli(daemon, env, "sessions", "new", "--id", "fresh", "--use")
                await next_update(sub, TASK)
                assert await read(c, TASK) == ""
                # ...and the session followed is the new one: its changes are updates.
                cli(daemon, env, "task", "set", "fresh task")
                await next_update(sub, TASK)
                assert await read(c, TASK) == "fresh task"
                summary = await c.read_resource("sessionmem://session/session")
                assert '"sessionId": "fresh"' in summary.contents[0].text

                # setCurrentSession, by the blocking client.
                with daemon.session() as s:
                    s.set_current_session("other")
                await next_update(sub, TASK)
                assert await read(c, TASK) == "other's task"

                # importSession with makeCurrent: followed too.
                with daemon.session() as s:
                    s.import_session(s.export_session("fresh"), session_id="imported", make_current=True)
                await next_update(sub, TASK)
                assert await read(c, TASK) == "fresh task"
                with daemon.session("imported") as s:
                    s.set_current_task("imported, then changed")
                await next_update(sub, TASK)
                assert await read(c, TASK) == "imported, then changed"

                # clear without a session: a new current session; the old one is gone.
                cli(daemon, env, "clear")
                await next_update(sub, TASK)
                assert await read(c, TASK) == ""
                cli(daemon, env, "task", "set", "after clear")
                await next_update(sub, TASK)
                assert await read(c, TASK) == "after clear"

    asyncio.run(go())


# -- 9. wait_for_change: every change of the session it watches ------------------------------


def test_wait_for_change_returns_every_change_of_the_current_session_only(daemon: Daemon, env: dict[str, str]) -> None:
    with daemon.session() as s:
        s.create_session("elsewhere")

    async def go() -> None:
        async with Client(server(daemon, env)) as c:
            rev = data(await c.call_tool("get_session", {}))["revision"]
            cli(daemon, env, "--session", "elsewhere", "ticket", "set", "X")  # another session's
            cli(daemon, env, "task", "set", "one")
            cli(daemon, env, "--session", "elsewhere", "task", "set", "not ours")
            cli(daemon, env, "msg", "add", "user", "two")
            cli(daemon, env, "ctx", "set", "k", "3")
            got = data(await c.call_tool("wait_for_change", {"after_revision": rev, "timeout_seconds": 30}))
            assert not got["timedOut"]
            assert [ch["op"] for ch in got["changes"]] == ["setCurrentTask", "addMessage", "setContext"]
            assert [ch["revision"] for ch in got["changes"]] == [rev + 2, rev + 4, rev + 5]
            assert got["changes"][0]["task"] == "one" and got["changes"][1]["message"]["content"] == "two"
            assert got["revision"] == rev + 5

            # At most `limit`; the rest from the revision returned.
            part = data(await c.call_tool("wait_for_change", {"after_revision": rev, "limit": 2}))
            assert [ch["revision"] for ch in part["changes"]] == [rev + 2, rev + 4]
            assert part["revision"] == rev + 4
            rest = data(await c.call_tool("wait_for_change", {"after_revision": part["revision"], "limit": 2}))
            assert [ch["revision"] for ch in rest["changes"]] == [rev + 5]

            # A named session: its changes only.
            named = data(await c.call_tool("wait_for_change", {"after_revision": rev, "session": "elsewhere"}))
            assert [(ch["op"], ch["sessionId"]) for ch in named["changes"]] == [
                ("setActiveTicket", "elsewhere"), ("setCurrentTask", "elsewhere")]

            # Nothing of the current session after the last change: it waits, and times out.
            other = data(await c.call_tool("wait_for_change", {"after_revision": rev + 5, "timeout_seconds": 0.5}))
            assert other == {"timedOut": True, "revision": rev + 5}

    asyncio.run(go())


def test_wait_for_change_follows_a_switch_of_the_current_session(daemon: Daemon, env: dict[str, str]) -> None:
    with daemon.session() as s:
        old = s.get_session_id()

    async def go() -> None:
        async with Client(server(daemon, env)) as c:
            rev = data(await c.call_tool("get_session", {}))["revision"]
            cli(daemon, env, "sessions", "new", "--id", "fresh", "--use")
            cli(daemon, env, "--session", old, "task", "set", "in the old one, no longer current")
            cli(daemon, env, "task", "set", "in the fresh one")
            got = data(await c.call_tool("wait_for_change", {"after_revision": rev, "timeout_seconds": 30}))
            assert [(ch["op"], ch["sessionId"]) for ch in got["changes"]] == [
                ("createSession", "fresh"), ("setCurrentTask", "fresh")]
            assert got["changes"][0]["current"] == "fresh"  # the switch says which session is current now

            # A switch while it waits: returned, naming the session now current.
            waiting = asyncio.ensure_future(c.call_tool("wait_for_change", {"after_revision": rev + 3,
                                                                             "timeout_seconds": 60}))
            await asyncio.to_thread(cli, daemon, env, "sessions", "use", old)
            switched = data(await waiting)
            assert switched["changes"][0]["op"] == "setCurrentSession"
            assert switched["changes"][0]["current"] == old

    asyncio.run(go())


# -- 4. a failed wait_for_change leaves no connection behind ---------------------------------


def test_failing_waits_leave_no_connection_behind(make_daemon: Any, env: dict[str, str]) -> None:
    d: Daemon = make_daemon("--max-connections", "32")
    compact(d)  # `after_revision: 0` is now older than the daemon can replay

    async def go() -> None:
        async with Client(server(d, env)) as c:
            data(await c.call_tool("get_session", {}))
            # The server's own connections are all made: the resource feed watches.
            await asyncio.to_thread(wait_for, lambda: watchers(d) == 1, 30, "the resource feed's watch")
            before = await asyncio.to_thread(connections, d)
            for _ in range(300):
                r = await c.call_tool("wait_for_change", {"after_revision": 0, "timeout_seconds": 10})
                assert r.is_error and "code -32010" in text(r), text(r)
            # The CLI still answers, and the daemon holds no more connections than before.
            r = await asyncio.to_thread(run_cli, ["--socket", str(d.socket), "id"], env)
            assert r.returncode == 0, r.stderr
            await asyncio.to_thread(wait_for, lambda: connections(d) <= before, 30, "no leaked connection")
            assert await asyncio.to_thread(watchers, d) == 1  # the resource feed's watch only

    asyncio.run(go())


# -- 2. a socket it is given is the only one it talks to ---------------------------------------


def test_mcp_given_a_dead_socket_does_not_fall_back_to_the_local_daemon(daemon: Daemon, env: dict[str, str],
                                                                        tmp_path: Path) -> None:
    fwd = tmp_path / "forward.sock"  # the forwarding is down; the lock file names `daemon`
    params = server(daemon, env)
    params.env = {**(params.env or {}), "SESSIONMEM_SOCKET": str(fwd)}

    async def go() -> None:
        async with Client(params) as c:
            r = await c.call_tool("add_message", {"content": "meant for the remote daemon"})
            assert r.is_error and f"no sessionmemd answers on {fwd}" in text(r), text(r)
            r = await c.call_tool("get_session", {})
            assert r.is_error and f"no sessionmemd answers on {fwd}" in text(r), text(r)

    asyncio.run(go())
    with daemon.session() as s:
        assert s.get_all_messages() == []


# -- 24. the tools run the typed client: a named session, message ids -------------------------


def test_tools_on_a_named_session_through_the_typed_client(daemon: Daemon, env: dict[str, str]) -> None:
    with daemon.session() as s:
        s.create_session("named")

    async def go() -> None:
        async with Client(server(daemon, env)) as c:
            named = {"session": "named"}
            for tool, args in [("set_task", {"task": "named task"}), ("add_message", {"content": "hi"}),
                               ("track_file", {"path": "a.py"}), ("set_context", {"key": "k", "value": {"n": 1}}),
                               ("set_context", {"key": "k", "value": {"n": 2}, "use_expect": True,
                                                "expect": {"n": 1}}),
                               ("claim_ticket", {"ticket_id": "T-1"})]:
                r = await c.call_tool(tool, {**args, **named})
                assert not r.is_error, (tool, text(r))
            conflict = await c.call_tool("set_context", {"key": "k", "value": 3, "use_expect": True,
                                                         "expect": {"n": 1}, **named})
            assert conflict.is_error and '{"n": 2}' in text(conflict)
            got = data(await c.call_tool("get_session", named))
            assert (got["sessionId"], got["currentTask"], got["activeTicket"]) == ("named", "named task", "T-1")
            assert (got["openFiles"], got["contextKeys"], got["messagesCount"]) == (["a.py"], ["k"], 1)
            assert data(await c.call_tool("get_context", {"key": "k", **named})) == {"n": 2}
            assert [m["content"] for m in data(await c.call_tool("recent_messages", named))] == ["hi"]
            current = data(await c.call_tool("get_session", {}))
            assert current["sessionId"] != "named" and current["currentTask"] is None

    asyncio.run(go())
    with daemon.session("named") as s:
        (m,) = s.get_all_messages(full=True)
        assert isinstance(m.id, str) and len(m.id) == 32  # sent with a fresh id: a retry adds it once
