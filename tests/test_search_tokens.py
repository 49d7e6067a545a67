"""Index terms and query compilation: every substring is findable, phrases stay inside runs."""

from __future__ import annotations

import pytest

from tingfeng.search.query import And, Not, Or, QueryError, Term, parse_query
from tingfeng.search.tokens import index_tokens, term_pattern, tsvector_literal


def test_cjk_runs_become_bigrams_plus_final_unigram() -> None:
    assert index_tokens("舆情监测") == ["舆情", "情监", "监测", "测"]
    assert index_tokens("网络 舆情") == ["网络", "络", "舆情", "情"]


def test_words_and_digits_stay_whole() -> None:
    assert index_tokens("iphone15手机 covid-19") == ["iphone15", "手机", "机", "covid", "19"]


def test_single_character_runs_are_indexed() -> None:
    assert index_tokens("a中b") == ["a", "中", "b"]


def test_two_char_term_is_one_exact_token() -> None:
    p = term_pattern("舆情")
    assert p is not None
    assert p.tokens == ("舆情",) and not p.prefix_last and not p.needs_check


def test_single_char_term_is_a_prefix_query() -> None:
    p = term_pattern("医")
    assert p is not None and p.tokens == ("医",) and p.prefix_last


def test_long_cjk_term_is_a_phrase_of_bigrams_without_check() -> None:
    p = term_pattern("卫生院投诉")
    assert p is not None
    assert p.tokens == ("卫生", "生院", "院投", "投诉") and not p.needs_check


def test_mixed_term_needs_a_substring_check_and_keeps_run_end() -> None:
    p = term_pattern("手机iphone")
    assert p is not None
    # "机" ends the CJK run in the text too, so the run-final unigram is part of the phrase.
    assert p.tokens == ("手机", "机", "iphone") and p.needs_check


def test_tsvector_literal_has_positions_and_gap_between_title_and_body() -> None:
    lit = tsvector_literal("标题", "正文")
    assert "'标题':1" in lit and "'题':2" in lit
    # body starts after a gap: position 4, not 3
    assert "'正文':4" in lit


@pytest.mark.parametrize(
    ("query", "tree"),
    [
        ("a b", And((Term("a"), Term("b")))),
        ("a OR b c", Or((Term("a"), And((Term("b"), Term("c")))))),
        ("a -b", And((Term("a"), Not(Term("b"))))),
        ('"hong kong" | 香港', Or((Term("hong kong", phrase=True), Term("香港")))),
        ("(a | b) NOT c", And((Or((Term("a"), Term("b"))), Not(Term("c"))))),
    ],
)
def test_parse_precedence(query: str, tree: object) -> None:
    assert parse_query(query) == tree


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("", "empty"),
        ('"unclosed', "position 1"),
        ("(a b", "not closed"),
        ("a )", "position 3"),
        ('""', "Empty phrase"),
    ],
)
def test_parse_errors_say_where(query: str, fragment: str) -> None:
    with pytest.raises(QueryError, match=fragment):
        parse_query(query)
