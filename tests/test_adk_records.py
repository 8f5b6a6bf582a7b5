"""The ADK service's record layout (adk_records.py): pure rules, checked on their own."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sessionmem.integrations import adk_records as r

ids = st.text(alphabet=st.sampled_from("ab/%2Fc5 é"), max_size=8)


@given(ids)
def test_escaping_round_trips_and_leaves_no_slash(part: str) -> None:
    assert "/" not in r.esc(part)
    assert r.unesc(r.esc(part)) == part


@given(ids, ids, ids, ids)
def test_two_sessions_never_share_a_key_or_reach_into_each_others_prefix(u1: str, s1: str, u2: str, s2: str) -> None:
    if (u1, s1) == (u2, s2):
        return
    assert r.meta_key(u1, s1) != r.meta_key(u2, s2)
    assert not r.events_prefix(u1, s1).startswith(r.events_prefix(u2, s2))
    assert not r.session_state_prefix(u1, s1).startswith(r.session_state_prefix(u2, s2))
    assert not r.meta_key(u1, s1).startswith(r.sessions_prefix(u2)) or u1 == u2
    assert r.grouped_session_state([(r.session_state_prefix(u1, s1) + "k/x", 1)]) == {(u1, s1): {"k/x": 1}}


def test_event_keys_sort_by_sequence_number() -> None:
    keys = [r.event_key("u", "s", n) for n in (0, 9, 10, 99, 100, 10**11)]
    assert keys == sorted(keys) and [r.event_seq(k) for k in keys] == [0, 9, 10, 99, 100, 10**11]


def test_an_append_expects_the_meta_it_read_and_moves_it_on() -> None:
    meta = r.new_meta("u", "s", 10.0)
    ops, after = r.append_ops("u", "s", meta, {"e": 1}, 12.5, {"a": 1}, {}, {"k": None})
    assert after == {**meta, "lastUpdateTime": 12.5, "next": 1}
    assert ops == [("set", "s/u/s", after, meta), ("set", "e/u/s/000000000000", {"e": 1}, None),
                   ("set", "as/a", 1, r.NO_EXPECT), ("set", "ss/u/s/k", None, r.NO_EXPECT)]
    assert r.decode_marker(r.encode_marker(after)) == after
    assert r.decode_marker("1712.5") is None and r.decode_marker(None) is None  # another service's marker


def test_chunks_respect_the_transact_limit() -> None:
    ops = [("delete", str(i), None, r.NO_EXPECT) for i in range(2 * r.MAX_OPS + 1)]
    assert [len(c) for c in r.chunks(ops)] == [r.MAX_OPS, r.MAX_OPS, 1]
