"""Leases from the shell and from both typed clients (issue 18): `sessionmem lease`,
``Session.acquire_lease`` (a context manager renewing in a thread), ``AsyncSession``'s
(a task), and fencing with ``fenced(lease)`` and ``transaction(lease=...)``."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from sessionmem import AsyncSession, Lease, LeaseHeld

from conftest import Daemon, run_cli, wait_for


def _cli(daemon: Daemon, env: dict[str, str], *args: str) -> Any:
    return run_cli(["--socket", str(daemon.socket), *args], env, cwd=daemon.root)


def test_the_lease_commands(daemon: Daemon, env: dict[str, str]) -> None:
    env = {**env, "SESSIONMEM_AGENT": "shell-agent"}
    r = _cli(daemon, env, "lease", "acquire", "deploy")
    assert r.returncode == 2 and "--ttl" in r.stderr and "connection closes" in r.stderr, r
    r = _cli(daemon, env, "lease", "acquire", "deploy", "--ttl", "bogus")
    assert r.returncode == 2 and "30s" in r.stderr, r
    r = _cli(daemon, env, "--json", "lease", "acquire", "deploy", "--ttl", "5m")
    assert r.returncode == 0, r
    got = json.loads(r.stdout)
    assert got["owner"] == "shell-agent" and got["ttlMs"] == 300_000
    token = got["token"]
    r = _cli(daemon, env, "lease", "acquire", "deploy", "--ttl", "30s", "--owner", "someone-else")
    assert r.returncode == 1 and "held by shell-agent" in r.stderr and f"token {token}" in r.stderr, r
    assert "until" in r.stderr
    r = _cli(daemon, env, "--json", "lease", "acquire", "deploy", "--ttl", "30s", "--owner", "someone-else")
    assert r.returncode == 1 and json.loads(r.stdout)["owner"] == "shell-agent", r
    r = _cli(daemon, env, "lease", "renew", "deploy", "--token", str(token), "--ttl", "10m")
    assert r.returncode == 0 and "renewed deploy" in r.stdout, r
    r = _cli(daemon, env, "lease", "list")
    assert r.returncode == 0 and "deploy" in r.stdout and "shell-agent" in r.stdout, r
    r = _cli(daemon, env, "--json", "lease", "list")
    assert [x["name"] for x in json.loads(r.stdout)] == ["deploy"]
    r = _cli(daemon, env, "lease", "release", "deploy", "--token", str(token + 1))
    assert r.returncode == 1 and "held by shell-agent" in r.stderr, r
    r = _cli(daemon, env, "lease", "release", "deploy", "--token", str(token))
    assert r.returncode == 0 and "released deploy" in r.stdout, r
    r = _cli(daemon, env, "lease", "release", "deploy", "--token", str(token))
    assert r.returncode == 1 and "not held" in r.stderr, r
    # The default owner without $SESSIONMEM_AGENT: <hostname>:<pid>.
    env.pop("SESSIONMEM_AGENT")
    r = _cli(daemon, env, "--json", "lease", "acquire", "other", "--ttl", "1h")
    assert json.loads(r.stdout)["owner"].startswith(socket.gethostname() + ":"), r


def test_session_lease_renews_in_the_background_and_releases_on_exit(daemon: Daemon) -> None:
    with daemon.session() as s, daemon.session() as other:
        with s.acquire_lease("work", ttl=1.0, owner="a") as lease:
            assert isinstance(lease, Lease) and lease.owner == "a" and lease.token > 0
            first = lease.expires_at
            assert first is not None
            # Renewed by its thread, so it outlives its ttl.
            wait_for(lambda: other.list_leases()[0].expiresAt > first + 500, 10, "a renewal")
            with pytest.raises(LeaseHeld) as held:
                other.acquire_lease("work", ttl=1.0, owner="b")
            assert held.value.data["owner"] == "a"
            fenced = s.fenced(lease)
            fenced.set_context("k", 1)
            with s.transaction(lease=lease) as t:
                t.set_context("k", 2)
                t.add_message("user", "under the lease")
            assert lease.error is None
        assert other.list_leases() == []
        # The lease is gone: the fenced calls are refused, nothing changed.
        with pytest.raises(LeaseHeld):
            fenced.set_context("k", 3)
        with pytest.raises(LeaseHeld):
            fenced.add_messages([{"role": "user", "content": "x"}])
        with pytest.raises(LeaseHeld):
            with s.transaction(lease=lease) as t:
                t.set_context("k", 4)
        assert s.get_context("k") == 2
        assert [m.content for m in s.get_all_messages()] == ["under the lease"]
        assert fenced.get_context("k") == 2  # reads are not fenced


def test_an_ephemeral_session_lease_ends_with_its_session(daemon: Daemon) -> None:
    with daemon.session() as watcher:
        s = daemon.session()
        lease = s.acquire_lease("eph")
        assert lease.expires_at is None and lease.ttl is None
        assert [x.name for x in watcher.list_leases()] == ["eph"]
        s.close()
        wait_for(lambda: watcher.list_leases() == [], 10, "the ephemeral lease to end")


def test_async_lease(daemon: Daemon) -> None:
    async def main() -> None:
        async with AsyncSession(project=daemon.root, socket=daemon.socket, autostart=False) as s:
            lease = await s.acquire_lease("async-work", ttl=0.9, owner="aio")
            async with lease:
                first = lease.expires_at
                assert first is not None
                for _ in range(200):
                    if (await s.list_leases())[0].expiresAt > first + 400:
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("no renewal")
                await s.fenced(lease).set_current_task("fenced")
                async with s.transaction(lease=lease) as t:
                    t.track_open_file("a.py")
            assert await s.list_leases() == []
            with pytest.raises(LeaseHeld):
                await s.fenced(lease).set_current_task("stale")
            assert await s.get_current_task() == "fenced"
            assert await s.get_open_files() == ["a.py"]
    asyncio.run(main())


def test_the_claiming_work_snippet_runs(daemon: Daemon, env: dict[str, str]) -> None:
    from test_readme import python_blocks, run

    [code] = python_blocks("Claiming work")
    pr = run(code, daemon, env)
    _, err = pr.communicate(timeout=60)
    assert pr.returncode == 0, err
    with daemon.session() as s:
        assert s.get_context("parser") == {"status": "done"}
        assert s.list_leases() == []
        # Held by another: the snippet exits naming the holder.
        with s.acquire_lease("file:src/parser.py", ttl=60, owner="agent-b"):
            pr = run(code, daemon, env)
            _, err = pr.communicate(timeout=60)
            assert pr.returncode == 1 and "taken by agent-b until" in err, err
