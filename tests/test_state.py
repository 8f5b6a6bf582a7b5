"""The session in memory: the original's behaviour, its fixes, and change tracking."""

from __future__ import annotations

import msgspec

from sessionmem.protocol import Message
from sessionmemd.messages import MessageLog
from sessionmemd.batch import Restored
from sessionmemd.state import SessionState

msgs = msgspec.json.Decoder(list[Message]).decode
obj = msgspec.json.decode


def fresh() -> SessionState:
    s = SessionState("sid", 1000)
    s.drain()  # the new-session row
    return s


def test_messages_keep_insertion_order_and_explicit_timestamps() -> None:
    s = fresh()
    s.add_message("user", "b", 200)
    s.add_message("assistant", "a", 100)  # older timestamp, added later
    assert msgs(s.all_messages()) == [Message("user", "b", 200), Message("assistant", "a", 100)]


def test_recent_messages() -> None:
    s = fresh()
    assert obj(s.recent_messages(3)) == []
    for i in range(5):
        s.add_message("user", str(i), i)
    assert [m.content for m in msgs(s.recent_messages(2))] == ["3", "4"]
    assert obj(s.recent_messages(0)) == []  # the original returned everything here
    assert len(msgs(s.recent_messages(99))) == 5


def test_files_no_duplicates_and_order_first_tracked() -> None:
    s = fresh()
    for f in ["a", "b", "a", "c"]:
        s.track_file(f)
    assert s.open_files() == ["a", "b", "c"]
    s.untrack_file("b")
    s.untrack_file("zzz")
    assert s.open_files() == ["a", "c"]
    got = s.open_files()
    got.append("x")
    assert s.open_files() == ["a", "c"]  # results are copies


def test_context_values_of_every_json_type() -> None:
    s = fresh()
    values = {"s": "x", "i": 1, "f": 1.5, "t": True, "n": None, "l": [1, [2]], "o": {"a": {"b": []}}}
    for k, v in values.items():
        s.set_context(k, msgspec.json.encode(v))
    assert obj(s.all_context()) == values
    assert obj(s.get_context("o")) == {"a": {"b": []}}
    assert s.get_context("missing") is None
    s.set_context("s", b'"y"')
    assert obj(s.get_context("s")) == "y"
    s.delete_context("s")
    assert "s" not in obj(s.all_context())


def test_null_unsets_task_and_ticket() -> None:
    s = fresh()
    s.set_current_task("t")
    s.set_active_ticket("T-1")
    s.set_current_task(None)
    s.set_active_ticket(None)
    assert s.current_task is None and s.active_ticket is None


def test_drain_holds_only_what_changed() -> None:
    s = fresh()
    assert s.drain() is None  # nothing changed, nothing to write
    s.add_message("user", "m", 1)
    s.track_file("a")
    s.set_context("k", b"1")
    ch = s.drain()
    assert ch is not None
    assert [obj(m) for m in ch.messages.encoded()] == [{"role": "user", "content": "m", "timestamp": 1}]
    assert ch.files == [("a", True)] and ch.context == [("k", "1")]
    assert not ch.session_row
    s.add_message("user", "n", 2)
    ch2 = s.drain()
    assert ch2 is not None and len(ch2.messages) == 1 and ch2.files == [] and ch2.context == []


def test_no_op_calls_record_nothing() -> None:
    s = fresh()
    s.track_file("a")
    s.drain()
    s.track_file("a")
    s.untrack_file("nope")
    s.delete_context("nope")
    s.set_current_task(None)
    assert s.pending_changes == 0 and s.drain() is None


def test_file_changes_come_in_tracking_order() -> None:
    s = fresh()
    s.track_file("a")
    s.track_file("b")
    s.drain()
    s.untrack_file("a")
    s.track_file("c")
    s.track_file("a")  # re-tracked: now last
    ch = s.drain()
    assert ch is not None and ch.files == [("c", True), ("a", True)]
    assert s.open_files() == ["b", "c", "a"]


def test_wipe_empties_the_session_and_keeps_its_id() -> None:
    s = fresh()
    s.add_message("user", "m", 1)
    s.track_file("f")
    s.set_context("k", b"1")
    s.set_current_task("t")
    s.drain()
    s.add_message("user", "unsaved", 2)
    s.wipe()
    assert (s.session_id, s.start_time, s.messages_count, s.files_count, s.context_count) == ("sid", 1000, 0, 0, 0)
    assert s.current_task is None
    s.add_message("user", "after", 3)
    ch = s.drain()
    assert ch is not None and ch.wiped and ch.session_row
    assert [obj(m)["content"] for m in ch.messages.encoded()] == ["after"]  # the rows go, then these come


def test_pop_and_trim_count_the_saved_rows_they_remove() -> None:
    s = fresh()
    for i in range(5):
        s.add_message("user", f"m{i}", i)
    s.drain()  # m0..m4 saved
    s.add_message("user", "m5", 5)
    assert obj(s.pop_message())["content"] == "m5"  # unsaved: never written
    assert obj(s.pop_message())["content"] == "m4"  # saved: its row goes
    assert s.trim_messages(2) == 2  # m0, m1 go; m2, m3 kept
    s.add_message("user", "m6", 6)
    ch = s.drain()
    assert ch is not None and (ch.trim_front, ch.pop_back) == (2, 1)
    assert [obj(m)["content"] for m in ch.messages.encoded()] == ["m6"]
    assert [m.content for m in msgs(s.all_messages())] == ["m2", "m3", "m6"]
    assert s.trim_messages(5) == 0 and s.drain() is None  # nothing to trim: no change


def test_older_history_goes_in_front_of_the_tail_and_what_was_added_meanwhile() -> None:
    tail = MessageLog()
    tail.append("user", "t0", 10)
    r = Restored("sid", 1, None, None, tail, [], {}, older=2, older_cursor=3)
    s = SessionState.from_restored(r)
    assert not s.complete and s.messages_count == 3
    s.add_message("user", "new", 11)
    older = MessageLog()
    older.append("user", "o0", 1, "id-o0")
    older.append("user", "o1", 2)
    s.add_older(older)
    assert s.complete and [m.content for m in msgs(s.all_messages())] == ["o0", "o1", "t0", "new"]
    assert s.add_message("user", "dup", 12, "id-o0") is None  # ids of the older part are known
    ch = s.drain()
    assert ch is not None and [obj(m)["content"] for m in ch.messages.encoded()] == ["new"]


def test_restored_state_has_nothing_to_write() -> None:
    log = MessageLog()
    log.append("user", "x", 1)
    r = Restored("sid", 1, "t", None, log, ["f"], {"k": b"2"})
    s = SessionState.from_restored(r)
    assert s.drain() is None
    assert s.open_files() == ["f"] and obj(s.get_context("k")) == 2 and s.messages_count == 1
