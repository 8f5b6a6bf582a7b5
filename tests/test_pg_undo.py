"""A write turn that PostgreSQL refuses at COMMIT, after its calls ran in the daemon's
memory (undo.py, turns.py): every call of it gets -32004 naming the store, no read ever
shows what it did (not even one sent while the COMMIT is on its way), no watcher hears
of it, and the daemon goes on writing at once, handing out the same revisions again.
Real processes, a real server: the refusal is a deferred constraint trigger on the
change table, which PostgreSQL runs at COMMIT, when every statement of the turn ran."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon
from test_pg_shared import changes

pytest.importorskip("psycopg", reason="the extra sessionmem[postgres] is not installed")

# Refuses, at COMMIT and after a pause (so that a read can come while it is on its way),
# any turn whose changes mention "poison".
POISON = """
CREATE FUNCTION poison_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF position('poison' in convert_from(NEW.frame, 'UTF8')) > 0 THEN
    PERFORM pg_sleep(0.6);
    RAISE EXCEPTION 'poisoned turn';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER poison AFTER INSERT ON sessionmem_changes
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION poison_check();
"""


def test_a_turn_refused_at_commit_is_undone_and_never_seen(
        make_daemon: Any, pg_url: str, pg_cluster: Any, tmp_path: Path) -> None:
    d: Daemon = make_daemon("--store", pg_url, "--project-key", "undo", root=tmp_path / "proj")
    c = d.conn()
    c.result("setContext", {"key": "k", "value": 1})
    c.result("addMessage", {"role": "user", "content": "kept", "id": "m1"})
    c.result("trackOpenFile", {"filePath": "a.py"})
    watcher = d.conn()
    start = watcher.result("watch")["revision"]
    db = pg_url.split("/")[3].split("?")[0]
    pg_cluster.psql(POISON, database=db)

    # One turn: a batch of changes of several kinds, the last one poisoned.
    writer = d.conn()
    writer.send([
        {"jsonrpc": "2.0", "id": 1, "method": "setContext", "params": {"key": "k", "value": 2}},
        {"jsonrpc": "2.0", "id": 2, "method": "popMessage"},
        {"jsonrpc": "2.0", "id": 3, "method": "untrackFile", "params": {"filePath": "a.py"}},
        {"jsonrpc": "2.0", "id": 4, "method": "createSession", "params": {"sessionId": "new", "makeCurrent": True}},
        {"jsonrpc": "2.0", "id": 5, "method": "addMessage",
         "params": {"role": "user", "content": "poison", "id": "m1"}},  # a retry of m1: no change
        {"jsonrpc": "2.0", "id": 6, "method": "addMessage", "params": {"role": "user", "content": "poison!"}},
    ])
    # Reads sent while the COMMIT is on its way (the trigger pauses it) wait for it, and
    # then see what the store holds, never the turn's changes.
    seen: dict[str, Any] = {}

    def read() -> None:
        r = d.conn()
        time.sleep(0.2)
        seen["k"] = r.result("getContext", {"key": "k"})
        seen["messages"] = [m["content"] for m in r.result("getAllMessages")]
        seen["files"] = r.result("getOpenFiles")
        seen["current"] = r.result("getSessionId")
    reader = threading.Thread(target=read)
    reader.start()
    replies = {r["id"]: r for r in writer.recv()}
    reader.join(10)
    for i in range(1, 7):
        err = replies[i].get("error")
        assert err is not None and err["code"] == -32004, replies[i]
        assert "refused the write" in err["message"] and "poisoned turn" in err["message"], err
        assert "disk" not in err["message"] and err["data"]["store"].endswith("#undo")
    assert seen == {"k": 1, "messages": ["kept"], "files": ["a.py"], "current": seen["current"]}
    assert seen["current"] != "new"

    # Memory is what the store holds; the daemon writes on at once (no reconnect needed),
    # the next change taking the revision the refused turn had.
    pg_cluster.psql("DROP TRIGGER poison ON sessionmem_changes", database=db)
    assert c.result("getContext", {"key": "k"}) == 1
    assert [s["sessionId"] for s in c.result("listSessions")].count("new") == 0
    c.result("setContext", {"key": "k", "value": 3})
    assert c.result("addMessage", {"role": "user", "content": "again", "id": "m1"}) is None  # still a retry
    got = changes(watcher, start + 1)
    assert [(ch["revision"], ch["op"], ch.get("value")) for ch in got] == [(start + 1, "setContext", 3)]
    stored = pg_cluster.psql("SELECT convert_from(key, 'UTF8') || '=' || value FROM sessionmem_context "
                             "WHERE project_key = 'undo'", database=db)
    assert stored == "k=3"
    # A daemon started now reads the same from the store.
    d.stop()
    d.start()
    c2 = d.conn()
    assert c2.result("getContext", {"key": "k"}) == 3
    assert [m["content"] for m in c2.result("getAllMessages")] == ["kept"]
    assert c2.result("getOpenFiles") == ["a.py"]
    assert "refused a turn" in d.read_log()


def test_a_read_waits_for_a_slow_commit_at_most_two_seconds(
        make_daemon: Any, pg_url: str, pg_cluster: Any, tmp_path: Path) -> None:
    d: Daemon = make_daemon("--store", pg_url, "--project-key", "slow", root=tmp_path / "proj")
    c = d.conn()
    c.result("setContext", {"key": "k", "value": 1})
    db = pg_url.split("/")[3].split("?")[0]
    pg_cluster.psql(POISON.replace("PERFORM pg_sleep(0.6);\n    RAISE EXCEPTION 'poisoned turn';",
                                   "PERFORM pg_sleep(6);"), database=db)
    writer = d.conn()
    writer.send({"jsonrpc": "2.0", "id": 1, "method": "setContext", "params": {"key": "k", "value": "poison"}})
    time.sleep(0.3)
    r = d.conn()
    t = time.monotonic()
    err = r.call("getContext", {"key": "k"})["error"]
    waited = time.monotonic() - t
    assert err["code"] == -32004 and "has not answered for 2 s" in err["message"], err
    assert 1.5 < waited < 5, waited  # the commit takes 6 s: the read was not kept that long
    assert writer.recv() == {"jsonrpc": "2.0", "id": 1, "result": None}  # committed, slowly
    assert r.result("getContext", {"key": "k"}) == "poison"


def test_a_write_waiting_for_a_sessions_whole_history_in_a_turn(
        make_daemon: Any, pg_url: str, tmp_path: Path) -> None:
    """A session longer than the tail a load reads first, not in memory: an append with
    an id (checked against the whole history) loads the rest within its turn, which may
    still be undone (the splice is taken out again then); it used to wait for the turn
    it was part of, forever."""
    d: Daemon = make_daemon("--store", pg_url, "--project-key", "splice", root=tmp_path / "proj")
    c = d.conn()
    c.result("createSession", {"sessionId": "big"})
    n = 1_500  # more than the tail (storage.TAIL = 1000)
    c.send([{"jsonrpc": "2.0", "id": i, "method": "addMessage",
             "params": {"session": "big", "role": "user", "content": f"m{i}", "id": f"id{i}"}} for i in range(n)])
    assert all("result" in r for r in c.recv())
    d.stop()
    d.start()
    c = d.conn()
    assert c.result("addMessage", {"session": "big", "role": "user", "content": "again", "id": "id3"}) is None
    assert c.result("addMessage", {"session": "big", "role": "user", "content": "new", "id": "new"}) is None
    contents = [m["content"] for m in c.result("getAllMessages", {"session": "big"})]
    assert contents == [f"m{i}" for i in range(n)] + ["new"]


def test_a_watch_during_a_commit_is_answered_first_and_hears_the_turn_once_committed(
        make_daemon: Any, pg_url: str, pg_cluster: Any, tmp_path: Path) -> None:
    d: Daemon = make_daemon("--store", pg_url, "--project-key", "watch", root=tmp_path / "proj")
    c = d.conn()
    c.result("setContext", {"key": "k", "value": 1})
    since = c.result("sync")["revision"]
    db = pg_url.split("/")[3].split("?")[0]
    pg_cluster.psql(POISON.replace("PERFORM pg_sleep(0.6);\n    RAISE EXCEPTION 'poisoned turn';",
                                   "PERFORM pg_sleep(1.0);"), database=db)
    c.send({"jsonrpc": "2.0", "id": 1, "method": "setContext", "params": {"key": "k", "value": "poison"}})
    time.sleep(0.3)  # the COMMIT is on its way
    watchers = []
    for params in ({"since": since - 1}, {}):  # from before, and from now
        w = d.conn()
        assert w.result("watch", params)["revision"] == since  # at once, and not the turn's own
        watchers.append(w)
    for w in watchers:  # the turn's notification only once committed, after the reply
        got = changes(w, since + 1)
        assert [(ch["revision"], ch["value"]) for ch in got if ch["revision"] > since] == [(since + 1, "poison")]
    assert c.recv() == {"jsonrpc": "2.0", "id": 1, "result": None}
