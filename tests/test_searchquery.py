"""searchquery.py, pure: hostile text becomes quoted FTS5 terms or a -32602 reason,
and every expression it makes is one FTS5 parses (checked against a real FTS5 table)."""

from __future__ import annotations

import sqlite3

import pytest

from sessionmemd import searchquery as sq

HOSTILE = ['"', '""', "*", "NEAR(", "NEAR(a b", "AND", "a AND", "OR b", "NOT", "-x", "a -b", "col:term",
           "^start", "(", ")", "a)(b", "'", "x'y", "\\", "%", "_", "a\"b", "日本語 テキスト", "ümlaut café",
           "emoji 🎉 ok", "{a b}", "+", "a + b", "ab*c", "a:b:c"]


@pytest.fixture(scope="module")
def fts() -> sqlite3.Connection:
    c = sqlite3.connect(":memory:")
    c.execute("CREATE VIRTUAL TABLE t USING fts5(content, tokenize='unicode61 remove_diacritics 2')")
    c.executemany("INSERT INTO t(content) VALUES (?)", [(h,) for h in HOSTILE] + [("the AND gate and NEAR(",)])
    return c


@pytest.mark.parametrize("mode", ["words", "phrase", "prefix"])
@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_parses_or_is_refused_with_a_reason(fts: sqlite3.Connection, text: str, mode: str) -> None:
    try:
        q = sq.build(text, mode)
    except sq.QueryError as e:
        assert "word" in str(e)  # only text without a letter or digit is refused
        assert not any(ch.isalnum() for ch in text)
        return
    assert q.match is not None
    fts.execute("SELECT count(*) FROM t WHERE t MATCH ?", (q.match,)).fetchone()  # never a syntax error


def test_operators_are_words() -> None:
    assert sq.build("a AND NEAR(b", "words").match == '"a" AND "AND" AND "NEAR(b"'
    assert sq.build('say "hi"', "phrase").match == '"say ""hi"""'
    assert sq.build("fo ba", "prefix").match == '"fo"* AND "ba"*'


def test_operator_words_match_as_text(fts: sqlite3.Connection) -> None:
    q = sq.build("AND gate", "words")
    assert fts.execute("SELECT content FROM t WHERE t MATCH ?", (q.match,)).fetchall() == [("the AND gate and NEAR(",)]


def test_limits() -> None:
    with pytest.raises(sq.QueryError, match="at most 1000"):
        sq.build("x" * 10_000)
    with pytest.raises(sq.QueryError, match="at most 32"):
        sq.build(" ".join(["w"] * 33))
    with pytest.raises(sq.QueryError, match="1 to 100"):
        sq.build("x", limit=101)
    with pytest.raises(sq.QueryError, match="1 to 100"):
        sq.build("x", limit=0)
    with pytest.raises(sq.QueryError, match="mode"):
        sq.build("x", "regex")
    with pytest.raises(sq.QueryError, match="NUL"):
        sq.build("a\x00b")
    with pytest.raises(sq.QueryError, match="until"):
        sq.build("x", since=5, until=5)
    with pytest.raises(sq.QueryError, match="empty"):
        sq.build("  ", "substring")
    assert sq.build("x").limit == sq.DEFAULT_LIMIT


def test_cursor_round_trip_and_garbage() -> None:
    assert sq.decode_cursor(sq.encode_cursor(40)) == 40
    assert sq.build("x", cursor=sq.encode_cursor(20)).offset == 20
    for bad in ["", "zz", "!!!", sq.encode_cursor(sq.MAX_OFFSET + 1), "b3g"]:
        with pytest.raises(sq.QueryError, match="cursor"):
            sq.decode_cursor(bad)


def test_substring_pattern_escapes_like_wildcards() -> None:
    assert sq.like_pattern("50%_a\\b") == "%50\\%\\_a\\\\b%"
    c = sqlite3.connect(":memory:")
    c.execute("CREATE TABLE m(content TEXT)")
    c.executemany("INSERT INTO m VALUES (?)", [("rate 50% here",), ("rate 50x here",)])
    rows = c.execute("SELECT content FROM m WHERE content LIKE ? ESCAPE '\\'", (sq.like_pattern("50%"),)).fetchall()
    assert rows == [("rate 50% here",)]


def test_substring_snippet_marks_the_match() -> None:
    s = sq.substring_snippet("x" * 100 + "Needle" + "y" * 100, "needle", chars=5)
    assert s == "…xxxxx\x02Needle\x03yyyyy…"
    assert sq.substring_snippet("short needle", "needle") == "short \x02needle\x03"
