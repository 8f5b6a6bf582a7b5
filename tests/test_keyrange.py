"""keyrange.SortedKeys: listContext's range scan, checked against the obvious model
(filter, sort, cut) on random keys, prefixes, bounds and edits."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from sessionmemd.keyrange import SortedKeys

# Few letters, so prefixes and bounds often coincide with keys; U+10FFFF is the
# largest code point (the prefix end must step past it), "" the smallest key.
_text = st.text(alphabet="ab\U0010ffffz", max_size=4)


def _model(keys: set[str], prefix: str, after: str | None, limit: int, reverse: bool) -> tuple[list[str], bool]:
    found = sorted((k for k in keys if k.startswith(prefix)), reverse=reverse)
    if after is not None:
        found = [k for k in found if (k < after if reverse else k > after)]
    return found[:limit], len(found) > limit


@settings(max_examples=400, deadline=None)
@given(keys=st.sets(_text, max_size=25), prefix=st.text(alphabet="ab\U0010ffff", max_size=2),
       after=st.none() | _text, limit=st.integers(1, 8), reverse=st.booleans())
def test_a_page_is_the_model_s_page(keys: set[str], prefix: str, after: str | None, limit: int,
                                    reverse: bool) -> None:
    assert SortedKeys(keys).page(prefix, after, limit, reverse) == _model(keys, prefix, after, limit, reverse)


def test_adds_and_removes_keep_the_order() -> None:
    rng = random.Random(7)
    keys: set[str] = set()
    sk = SortedKeys(keys)
    for _ in range(3000):
        k = "".join(rng.choice("abc") for _ in range(rng.randint(1, 4)))
        if k in keys and rng.random() < 0.5:
            keys.discard(k)
            sk.remove(k)
        elif k not in keys:
            keys.add(k)
            sk.add(k)
        prefix = rng.choice(["", "a", "ab", "c"])
        reverse = rng.random() < 0.5
        assert sk.page(prefix, None, 5, reverse) == _model(keys, prefix, None, 5, reverse)


def test_paging_with_after_visits_every_key_once_in_order() -> None:
    keys = {f"ckpt/{i:05d}" for i in range(0, 1000, 3)} | {"other", "ckpt", "ckpu"}
    sk = SortedKeys(keys)
    for reverse in (False, True):
        seen: list[str] = []
        after = None
        while True:
            page, more = sk.page("ckpt/", after, 7, reverse)
            seen += page
            if not more:
                break
            after = page[-1]
        assert seen == sorted((k for k in keys if k.startswith("ckpt/")), reverse=reverse)
