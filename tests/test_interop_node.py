"""Both-way compatibility with the original implementation, run for real under Node.

Needs node and the original's dependencies (better-sqlite3@12, fs-extra), which
.ci/run installs into ~/.cache/sessionmem-node-interop (or $SESSIONMEM_NODE_MODULES),
and ../shared/seed/session.js beside the checkout. Skips cleanly without them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import Daemon

SEED = Path(__file__).resolve().parents[2] / "shared" / "seed" / "session.js"
MODULES = Path(os.environ.get("SESSIONMEM_NODE_MODULES", Path.home() / ".cache" / "sessionmem-node-interop" / "node_modules"))

pytestmark = pytest.mark.skipif(
    not (shutil.which("node") and SEED.exists() and (MODULES / "better-sqlite3").is_dir()),
    reason="needs node, ../shared/seed/session.js and better-sqlite3 (see .ci/run)",
)

WRITE = """
import { SessionMemory } from "./session.js";
const m = new SessionMemory(process.argv[2]);
await m.init();
await m.setCurrentTask("node task");
await m.setActiveTicket("N-1");
await m.addMessage({ role: "user", content: "from node 1", timestamp: 1000 });
await m.addMessage({ role: "assistant", content: "from node 2\\nline two", timestamp: 2000 });
await m.addMessage({ role: "tool", content: "from node 3 ✓", timestamp: 3000 });
await m.trackOpenFile("x.ts");
await m.trackOpenFile("a.ts");
await m.setContext("obj", { a: [1, "b", null], t: true });
await m.setContext("n", 5);
await m.setContext("s", "text");
await m.snapshot();
console.log(JSON.stringify({ id: m.getSessionId(), start: (await m.getStats()).startTime }));
m.close();
"""

READ = """
import { SessionMemory } from "./session.js";
const m = new SessionMemory(process.argv[2]);
await m.init();
console.log(JSON.stringify({
  id: m.getSessionId(),
  stats: await m.getStats(),
  task: await m.getCurrentTask() ?? null,
  ticket: await m.getActiveTicket() ?? null,
  messages: await m.getAllMessages(),
  files: await m.getOpenFiles(),
  context: await m.getAllContext(),
}));
m.close();
"""


APPEND = """
import { SessionMemory } from "./session.js";
const m = new SessionMemory(process.argv[2]);
await m.init();
await m.addMessage({ role: "user", content: "appended by node", timestamp: 9000 });
await m.snapshot();
console.log(JSON.stringify({ id: m.getSessionId(), messages: await m.getAllMessages() }));
m.close();
"""


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    d = tmp_path / "original"
    d.mkdir()
    shutil.copy(SEED, d / "session.js")  # run the original as it is, from a scratch folder
    (d / "node_modules").symlink_to(MODULES)
    (d / "package.json").write_text('{"type": "module"}')
    (d / "write.mjs").write_text(WRITE)
    (d / "read.mjs").write_text(READ)
    (d / "append.mjs").write_text(APPEND)
    return d


def node(node_dir: Path, script: str, project: Path) -> dict:
    r = subprocess.run(["node", script, str(project)], cwd=node_dir, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_original_database_restores_here(make_daemon, node_dir: Path) -> None:
    d: Daemon = make_daemon(start=False)
    wrote = node(node_dir, "write.mjs", d.root)
    d.start()
    with d.session() as s:
        assert s.get_session_id() == wrote["id"]
        assert s.get_stats().startTime == wrote["start"]
        assert s.get_current_task() == "node task" and s.get_active_ticket() == "N-1"
        assert [(m.role, m.content, m.timestamp) for m in s.get_all_messages()] == [
            ("user", "from node 1", 1000), ("assistant", "from node 2\nline two", 2000), ("tool", "from node 3 ✓", 3000)]
        assert s.get_open_files() == ["x.ts", "a.ts"]
        assert s.get_all_context() == {"obj": {"a": [1, "b", None], "t": True}, "n": 5, "s": "text"}


def test_database_written_here_restores_in_the_original(make_daemon, node_dir: Path) -> None:
    d: Daemon = make_daemon()
    with d.session() as s:
        sid = s.get_session_id()
        s.set_current_task("python task")
        s.set_active_ticket("P-2")
        for i in range(5):
            s.add_message(["user", "assistant"][i % 2], f"py {i}", timestamp=10_000 + i)
        s.track_open_file("b.py")
        s.track_open_file("a.py")
        s.set_context("cfg", {"depth": [1, {"x": None}]})
        s.set_context("flag", False)
        start = s.get_stats().startTime
    assert d.stop() == 0
    got = node(node_dir, "read.mjs", d.root)
    assert got["id"] == sid and got["stats"]["startTime"] == start
    assert got["task"] == "python task" and got["ticket"] == "P-2"
    assert [(m["role"], m["content"], m["timestamp"]) for m in got["messages"]] == [
        (["user", "assistant"][i % 2], f"py {i}", 10_000 + i) for i in range(5)]
    assert got["files"] == ["b.py", "a.py"]
    assert got["context"] == {"cfg": {"depth": [1, {"x": None}]}, "flag": False}
    assert got["stats"]["messagesCount"] == 5


def test_round_trip_original_then_here_then_original(make_daemon, node_dir: Path) -> None:
    d: Daemon = make_daemon(start=False)
    node(node_dir, "write.mjs", d.root)
    d.start()
    with d.session() as s:
        s.add_message("user", "added by sessionmem", timestamp=4000)
        s.untrack_file("x.ts")
    assert d.stop() == 0
    got = node(node_dir, "read.mjs", d.root)
    assert [m["content"] for m in got["messages"]][-1] == "added by sessionmem"
    assert len(got["messages"]) == 4 and got["files"] == ["a.ts"]


def test_several_sessions_with_data_the_original_opens_the_current_one(make_daemon, node_dir: Path) -> None:
    d: Daemon = make_daemon()
    with d.session() as s:
        first = s.get_session_id()
        s.set_current_task("first task")
        s.add_message("user", "first 1", timestamp=1, data={"kind": "message", "n": [1, None]})
        s.add_message("assistant", "first 2", timestamp=2)
        for name in ("later", "latest"):  # created after the first: a later created_at
            s.create_session(name)
            with d.session(session_id=name) as x:
                x.add_message("user", f"in {name}", timestamp=5, data=[name])
                x.set_context("k", name)
        s.create_session("newest", make_current=True)
        s.set_current_session(first)  # the oldest is current again
    assert d.stop() == 0
    got = node(node_dir, "read.mjs", d.root)
    assert got["id"] == first and got["task"] == "first task"
    assert [(m["role"], m["content"], m["timestamp"]) for m in got["messages"]] == [
        ("user", "first 1", 1), ("assistant", "first 2", 2)]
    appended = node(node_dir, "append.mjs", d.root)  # the original rewrites its session's rows
    assert appended["id"] == first and len(appended["messages"]) == 3
    d.start()
    with d.session() as s:
        assert s.get_session_id() == first
        assert [m.content for m in s.get_all_messages()] == ["first 1", "first 2", "appended by node"]
        assert {i.sessionId for i in s.list_sessions()} == {first, "later", "latest", "newest"}
        with d.session(session_id="later") as x:  # the sessions the original did not touch keep their data
            [m] = x.get_all_messages(full=True)
            assert (m.content, m.data) == ("in later", ["later"]) and x.get_context("k") == "later"


def test_the_originals_writes_keep_the_search_index_right(make_daemon, node_dir: Path) -> None:
    """The original rewrites the session (deletes its rows, inserts them again) on the
    index's triggers: the next start finds its rows, at their positions, without a
    rebuild."""
    d: Daemon = make_daemon()
    with d.session() as s:
        s.add_message("user", "written by sessionmem first", timestamp=1)
        s.add_message("assistant", "second from sessionmem", timestamp=2)
    assert d.stop() == 0
    node(node_dir, "append.mjs", d.root)  # the original's snapshot: a full rewrite
    d.start()
    c = d.conn()
    r = c.result("searchMessages", {"query": "appended node"})
    assert r["complete"] and [(h["index"], h["role"]) for h in r["hits"]] == [(2, "user")]
    r = c.result("searchMessages", {"query": "sessionmem"})
    assert sorted(h["index"] for h in r["hits"]) == [0, 1]
    c.close()
    assert "inconsistent" not in d.read_log()
