"""The message log: one buffer of encoded JSON, sliced for replies and snapshots."""

from __future__ import annotations

import msgspec

from sessionmem.protocol import Message
from sessionmemd.messages import MessageLog

msgs = msgspec.json.Decoder(list[Message]).decode

TRICKY = ["plain", "comma, inside", 'quote " and \\ backslash', "new\nline", "ünïcødé ✓ 🚀", "", "],[{", "\x00nul"]


def filled(n: int) -> MessageLog:
    log = MessageLog()
    for i in range(n):
        log.append("user" if i % 2 else "assistant", TRICKY[i % len(TRICKY)] + str(i), i)
    return log


def test_recent_and_all_are_valid_json_in_order() -> None:
    log = filled(50)
    everything = msgs(log.all())
    assert [m.timestamp for m in everything] == list(range(50))
    assert [m.content for m in everything][:8] == [t + str(i) for i, t in enumerate(TRICKY)]
    assert msgs(log.recent(3)) == everything[-3:]
    assert msgs(log.recent(50)) == everything == msgs(log.recent(10**9))
    assert log.recent(0) == b"[]" and MessageLog().recent(5) == b"[]" and MessageLog().all() == b"[]"
    assert len(log) == 50


def test_results_are_copies() -> None:
    log = filled(3)
    before = log.all()
    log.append("user", "later", 99)
    assert msgs(before)[-1].timestamp == 2  # an earlier result is not changed by later appends


def test_slice_excludes_later_appends_and_decodes_in_chunks() -> None:
    log = filled(12_345)
    s = log.since(45)
    log.append("tool", "after the slice", 1)
    decoded = [m for chunk, _ids, _data in s.chunks(size=1000) for m in chunk]
    assert len(s) == 12_300 and len(decoded) == 12_300
    assert [m.timestamp for m in decoded] == list(range(45, 12_345))
    assert decoded[-1].content.endswith("12344")
    assert [msgspec.json.decode(e) for e in s.encoded()[:2]] == [msgspec.structs.asdict(m) for m in decoded[:2]]
    assert len(log.since(len(log))) == 0 and list(log.since(len(log)).chunks()) == []


def test_encoded_bytes_are_exactly_the_wire_shape() -> None:
    log = MessageLog()
    log.append("user", "hi", 5)
    log.append("tool", "t", 6)
    assert log.all() == b'[{"role":"user","content":"hi","timestamp":5},{"role":"tool","content":"t","timestamp":6}]'


def test_ids_travel_with_their_messages_and_repeats_are_known() -> None:
    log = MessageLog()
    log.append("user", "a", 1, "id-a")
    log.append("user", "b", 2)
    log.append("user", "c", 3, "id-c")
    assert log.has_id("id-a") and log.has_id("id-c") and not log.has_id("b")
    chunks = list(log.since(1).chunks(size=1))
    assert [(m[0].content, ids) for m, ids, _data in chunks] == [("b", [None]), ("c", ["id-c"])]
