"""SessionmemSessionService against ADK's own SQLite session service, on the same work,
as ratios measured in the same run.

    python benchmarks/adk_bench.py                # 10,000 events (~1-2 minutes)
    python benchmarks/adk_bench.py --events 1000  # quick
    python benchmarks/adk_bench.py --json out.json

The work (both services, one after the other, each on a fresh store in a temporary
folder): create one session, append N events one by one as a runner does (each with a
small text content and a one-key state delta, alternating session and ``user:`` keys),
then read the session back whole, then its newest 10 events. Ours talks to a real
sessionmemd (default durability, `periodic`) over its socket; ADK's
``SqliteSessionService`` opens its SQLite file (WAL off, ADK's defaults) per call.
Ratios are ours ÷ ADK's (below 1: ours is faster).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions.base_session_service import BaseSessionService, GetSessionConfig
from google.adk.sessions.sqlite_session_service import SqliteSessionService
from google.genai import types

from sessionmem import Session
from sessionmem.integrations.adk import SessionmemSessionService


def start_daemon(tmp: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    sock = tmp / "d.sock"
    proc = subprocess.Popen([sys.executable, "-m", "sessionmemd", "--project", str(tmp), "--socket", str(sock),
                             "--db", str(tmp / "s.db"), "--log-level", "warning", *extra])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            Session(project=tmp, socket=sock, autostart=False).close()
            return proc, sock
        except Exception:
            time.sleep(0.02)
    raise RuntimeError("sessionmemd did not start")


def event(i: int) -> Event:
    key = f"user:k{i % 7}" if i % 2 else f"k{i % 7}"
    return Event(invocation_id=f"inv-{i // 4}", author="user" if i % 2 else "agent",
                 content=types.Content(role="user", parts=[types.Part(text=f"message {i} " + "x" * 80)]),
                 actions=EventActions(state_delta={key: i}))


async def work(svc: BaseSessionService, n: int) -> dict[str, float]:
    session = await svc.create_session(app_name="bench", user_id="u", session_id="s")
    t0 = time.perf_counter()
    for i in range(n):
        await svc.append_event(session, event(i))
    t1 = time.perf_counter()
    got = await svc.get_session(app_name="bench", user_id="u", session_id="s")
    t2 = time.perf_counter()
    recent = await svc.get_session(app_name="bench", user_id="u", session_id="s",
                                   config=GetSessionConfig(num_recent_events=10))
    t3 = time.perf_counter()
    assert got is not None and len(got.events) == n and got.events == session.events
    assert recent is not None and recent.events == session.events[-10:]
    assert got.state == {k: v for k, v in session.state.items() if not k.startswith("temp:")}
    return {"appendsPerSec": n / (t1 - t0), "appendS": t1 - t0, "readAllS": t2 - t1, "readRecent10Ms": (t3 - t2) * 1e3}


async def ours(tmp: Path, n: int) -> dict[str, float]:
    proc, sock = start_daemon(tmp)
    try:
        async with SessionmemSessionService(project=tmp, socket=sock, autostart=False) as svc:
            return await work(svc, n)
    finally:
        proc.terminate()
        proc.wait(30)


async def adk_sqlite(tmp: Path, n: int) -> dict[str, float]:
    return await work(SqliteSessionService(str(tmp / "adk.db")), n)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        base = asyncio.run(adk_sqlite(Path(d1), a.events))
        mine = asyncio.run(ours(Path(d2), a.events))
    ratios = {
        "appendTime": mine["appendS"] / base["appendS"],
        "readAllTime": mine["readAllS"] / base["readAllS"],
        "readRecent10Time": mine["readRecent10Ms"] / base["readRecent10Ms"],
    }
    out: dict[str, Any] = {"events": a.events, "sessionmem": mine, "adkSqlite": base, "ratioOursOverAdk": ratios}
    print(f"{a.events} events                      sessionmem     ADK SqliteSessionService   ratio")
    print(f"append, one by one            {mine['appendS']:8.2f} s    {base['appendS']:8.2f} s"
          f"                {ratios['appendTime']:.3f}")
    print(f"  appends/s                   {mine['appendsPerSec']:8.0f}      {base['appendsPerSec']:8.0f}")
    print(f"read back whole               {mine['readAllS']:8.3f} s    {base['readAllS']:8.3f} s"
          f"                {ratios['readAllTime']:.3f}")
    print(f"read newest 10                {mine['readRecent10Ms']:8.2f} ms   {base['readRecent10Ms']:8.2f} ms"
          f"               {ratios['readRecent10Time']:.3f}")
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
