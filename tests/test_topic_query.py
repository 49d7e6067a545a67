"""The topic query language: parsing, precedence, fields, errors, limits, canonical text."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tingfeng.topics import (
    And,
    Field,
    Filter,
    Near,
    Not,
    Or,
    QuerySyntaxError,
    Term,
    parse_query,
    required_literals,
    to_text,
)
from tingfeng.topics.syntax import LEVELS, SENTIMENTS

a, b, c, d, e, f = (Term(x) for x in "abcdef")


# --- Operators and precedence -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "tree"),
    [
        ("a OR b AND NOT c", Or((a, And((b, Not(c)))))),
        ("a b", And((a, b))),
        ("a AND b OR c", Or((And((a, b)), c))),
        ("(a OR b) c", And((Or((a, b)), c))),
        ("a | b c", Or((a, And((b, c))))),
        ("a|b", Or((a, b))),
        ("+a -b", And((a, Not(b)))),
        ("a -(b OR c)", And((a, Not(Or((b, c)))))),
        ('a -"b c"', And((a, Not(Term("b c"))))),
        ("(A OR B OR C) AND (D OR E) NOT F", And((Or((a, b, c)), Or((d, e)), Not(f)))),
        ("a AND (b AND c)", And((a, b, c))),
        ("NOT NOT a", Not(Not(a))),
        ("a NOT b NEAR/3 c", And((a, Not(Near(b, c, 3))))),
        ("（a OR b） c", And((Or((a, b)), c))),
        ("a ｜ b", Or((a, b))),
    ],
)
def test_precedence_and_shorthands(query: str, tree: object) -> None:
    assert parse_query(query) == tree


def test_terms_are_normalised_like_documents() -> None:
    assert parse_query("網絡輿情") == Term("网络舆情")
    assert parse_query("ＡＢＣ１２３") == Term("abc123")
    assert parse_query('"Climate   Change"') == Term("climate change")
    assert parse_query("“中文 引号”") == Term("中文 引号")
    assert parse_query("Protest*") == Term("protest", wildcard=True)
    # Lower-case operator words are ordinary words.
    assert parse_query("cats and dogs") == And((Term("cats"), Term("and"), Term("dogs")))
    assert parse_query("NOTE ANDROID") == And((Term("note"), Term("android")))


def test_phrases_may_hold_operators_colons_and_escaped_quotes() -> None:
    assert parse_query('"a OR b"') == Term("a or b")
    assert parse_query('"http://a.com/x" 地震') == And((Term("http://a.com/x"), Term("地震")))
    assert parse_query('"re:地震"') == Term("re:地震")
    assert parse_query(r'"say \"hi\""') == Term('say "hi"')
    # An unquoted URL is a term too: "http" followed by "//" is not a field.
    assert parse_query("http://a.com") == Term("http://a.com")
    assert parse_query("12:30") == Term("12:30")


def test_near_and_onear() -> None:
    assert parse_query("a NEAR/5 b") == Near(a, b, 5)
    assert parse_query("a ONEAR/0 b") == Near(a, b, 0, ordered=True)
    assert parse_query('(地震 OR 余震) NEAR/10 "救援 队"') == Near(
        Or((Term("地震"), Term("余震"))), Term("救援 队"), 10
    )
    assert parse_query("a NEAR/1000 b").distance == 1000
    assert parse_query("title:(a NEAR/2 b)") == Field("title", Near(a, b, 2))
    assert parse_query("x NOT a NEAR/2 b") == And((Term("x"), Not(Near(a, b, 2))))


# --- Fields -----------------------------------------------------------------------------------


def test_title_field_scopes_a_term_phrase_or_group() -> None:
    assert parse_query("title:地震") == Field("title", Term("地震"))
    assert parse_query('title:"a b"') == Field("title", Term("a b"))
    assert parse_query("title:(地震 OR 余震)") == Field("title", Or((Term("地震"), Term("余震"))))
    assert parse_query("Title:x") == Field("title", Term("x"))
    assert parse_query("title：x") == Field("title", Term("x"))


def test_metadata_fields_are_canonical() -> None:
    assert parse_query("site:weibo.com") == Filter("site", "weibo.com")
    assert parse_query("site:https://M.Weibo.com:443/u/1") == Filter("site", "m.weibo.com")
    assert parse_query("site:*.gov.cn") == Filter("site", "gov.cn")
    assert parse_query("source:00042") == Filter("source", "42")
    assert parse_query("source:人民网") == Filter("source", "人民网")
    assert parse_query('author:"John SMITH"') == Filter("author", "john smith")
    assert parse_query("lang:EN") == Filter("lang", "en")
    assert parse_query("lang:zh_CN") == Filter("lang", "zh-cn")
    assert parse_query("lang:中文") == Filter("lang", "zh")
    assert parse_query("category:Public-Safety") == Filter("category", "public-safety")
    assert parse_query("category:公共安全") == Filter("category", "公共安全")
    assert parse_query("site:(weibo.com OR qq.com)") == Or(
        (Filter("site", "weibo.com"), Filter("site", "qq.com"))
    )
    assert parse_query("lang:zh NOT site:(a.com b.com)") == And(
        (Filter("lang", "zh"), Not(And((Filter("site", "a.com"), Filter("site", "b.com")))))
    )


@pytest.mark.parametrize("value", sorted(SENTIMENTS))
def test_sentiment_values(value: str) -> None:
    assert parse_query(f"sentiment:{value}") == Filter("sentiment", SENTIMENTS[value])


@pytest.mark.parametrize("value", [*sorted(LEVELS), "IV", "III", "II", "I"])
def test_level_values(value: str) -> None:
    expected = LEVELS[value.lower()]
    assert parse_query(f"level:{value}") == Filter("level", expected)
    assert {LEVELS[x] for x in ("一般", "较大", "重大", "特大")} == {
        "general",
        "serious",
        "major",
        "critical",
    }


def test_region_names_resolve_to_division_codes() -> None:
    assert parse_query("region:杭州") == Filter("region", "330100")
    assert parse_query("region:浙江省") == Filter("region", "330000")
    assert parse_query("region:330106") == Filter("region", "330106")
    with pytest.raises(QuerySyntaxError) as info:
        parse_query("地震 region:鼓楼区")  # four districts share the name
    assert info.value.position == 10
    assert "鼓楼区" in str(info.value)


# --- Errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "position", "words"),
    [
        ("", 0, "empty"),
        ("   ", 0, "empty"),
        ("地震 AND", 6, 'expected a term, a phrase or "(" after AND, found end of query'),
        ("AND a", 0, "found AND"),
        ("a OR OR b", 5, "after OR, found OR"),
        ("(a OR b", 7, 'expected ")" to close "(" at character 0'),
        ("a OR b)", 6, 'unbalanced ")"'),
        ("()", 1, 'found ")"'),
        ('a "b c', 2, "unclosed quote"),
        ("a ” b", 2, "closing quote"),
        ("foo:bar", 0, 'unknown field "foo:"'),
        ("x re:地震", 2, "title:, site:"),
        ("a NEAR b", 2, "NEAR needs a distance"),
        ("a NEAR/ b", 7, "expected a number"),
        ("a ONEAR/x b", 8, "expected a number"),
        ("a NEAR/1001 b", 7, "between 0 and 1000"),
        ("(a b) NEAR/3 c", 0, "NEAR joins two terms"),
        ("a NEAR/3 NOT b", 9, "after NEAR/3"),
        ("a NEAR/3 site:x.com", 9, "after NEAR/3"),
        ("a NEAR/3 b NEAR/3 c", 11, "cannot be chained"),
        ("NOT a", 0, "nothing that must be present"),
        ("-a -b", 0, "nothing that must be present"),
        ("a OR NOT b", 0, "nothing that must be present"),
        ("title:(site:a.com)", 7, "cannot be used inside title:"),
        ("site:(a.com NEAR/2 b.com)", 12, "cannot be used inside site:"),
        ("title: x", 6, "value right after"),
        ("- a", 0, 'right after "-"'),
        ("ab*cd", 2, "only allowed at the end"),
        ("a*", 0, "at least 2 characters"),
        ("x sentiment:happy", 12, "positive, neutral or negative"),
        ("x level:5", 8, "general, serious, major or critical"),
        ("x lang:english", 7, "language code"),
        ("x\x01y", 1, "control character"),
    ],
)
def test_errors_name_the_position(query: str, position: int, words: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_query(query)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.position == position
    assert words in str(error)
    assert str(error).startswith(f"at character {position}: ")
    assert error.expected


def test_limits() -> None:
    parse_query("a" * 4000)
    with pytest.raises(QuerySyntaxError, match="at most 4,000") as info:
        parse_query("a" * 4001)
    assert info.value.position == 4000

    parse_query(" OR ".join(f"w{i}" for i in range(300)))
    with pytest.raises(QuerySyntaxError, match="at most 300") as info:
        parse_query(" OR ".join(f"w{i}" for i in range(301)))
    assert info.value.position == len(" OR ".join(f"w{i}" for i in range(300))) + 4

    parse_query("(" * 32 + "a" + ")" * 32)
    with pytest.raises(QuerySyntaxError, match="nested too deeply") as info:
        parse_query("(" * 33 + "a" + ")" * 33)
    assert info.value.position == 32
    with pytest.raises(QuerySyntaxError, match="nested too deeply"):
        parse_query("a " + "NOT " * 40 + "b")


# --- Canonical text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ("a OR b AND NOT c", "a OR b AND NOT c"),
        ("(a OR b) c -d", "(a OR b) AND c AND NOT d"),
        ("title:(地震 OR 余震) site:weibo.com", "title:(地震 OR 余震) AND site:weibo.com"),
        ('"climate change" NEAR/5 protest*', '"climate change" NEAR/5 protest*'),
        ("(a OR b) ONEAR/2 c", "(a OR b) ONEAR/2 c"),
        (
            "region:杭州 sentiment:负面 level:IV x",
            "region:330100 AND sentiment:negative AND level:general AND x",
        ),
        ('"a*" "(x)" "-1" "title:x" "AND"', '"a*" AND "(x)" AND "-1" AND "title:x" AND and'),
        ('author:"a b" x', 'author:"a b" AND x'),
        (r'"他说\“好\”" x', r'"他说\“好\”" AND x'),
        ("NOT (a OR b) x", "NOT (a OR b) AND x"),
    ],
)
def test_to_text(query: str, text: str) -> None:
    tree = parse_query(query)
    assert to_text(tree) == text
    assert parse_query(text) == tree


_WORDS = ["地震", "余震", "網絡", "cat", "Cat", "dogs", "iPhone手机", "covid-19", "a.b", "+1"]
_WORDS += ["ＡＢＣ", "http://x.y", "12:30", "c++", "#话题#", "x\\y"]


@st.composite
def query_texts(draw: st.DrawFn, depth: int = 0) -> str:
    """Query strings in every surface form: shorthands, implicit AND, fields, odd spacing."""
    kind = draw(st.integers(0, 9 if depth < 3 else 3))
    space = draw(st.sampled_from([" ", "  ", "\u3000", "\t"]))
    if kind <= 1:
        word = draw(st.sampled_from(_WORDS))
        if word[0] in "+-" or (":" in word and not word.startswith("http")):
            return '"' + word + '"'
        return word + ("*" if draw(st.booleans()) and word.isalpha() and len(word) > 2 else "")
    if kind == 2:
        words = draw(
            st.lists(st.sampled_from([*_WORDS, '说"好"', "说“好”"]), min_size=1, max_size=3)
        )
        opener, closer = draw(st.sampled_from([('"', '"'), ("“", "”"), ("＂", "＂")]))
        escaped = ("".join("\\" + c if c in '\\"“”＂' else c for c in w) for w in words)
        return opener + " ".join(escaped) + closer
    if kind == 3:
        return draw(
            st.sampled_from(
                [
                    "site:weibo.com",
                    "lang:en",
                    "sentiment:负面",
                    "level:III",
                    "source:7",
                    'author:"Li Lei"',
                    "category:health",
                    "site:(qq.com OR sina.com.cn)",
                ]
            )
        )
    left = draw(query_texts(depth + 1))
    right = draw(query_texts(depth + 1))
    if kind == 4:
        return f"{left}{space}{draw(st.sampled_from(['AND', 'OR', '|']))}{space}{right}"
    if kind == 5:
        return f"{left}{space}{right}"
    if kind == 6:
        return f"({left}){space}-({right})"
    if kind == 7:
        return f"（{left}{space}NOT{space}{right}）"
    if kind == 8:
        ops = draw(st.lists(st.sampled_from(_WORDS[:6]), min_size=1, max_size=3))
        group = "(" + " OR ".join(ops) + ")" if len(ops) > 1 else ops[0]
        keyword = draw(st.sampled_from(["NEAR", "ONEAR"]))
        return f"{group} {keyword}/{draw(st.integers(0, 1000))} {draw(st.sampled_from(_WORDS[:6]))}"
    return f"title:({left})"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query_texts())
def test_round_trip(query: str) -> None:
    try:
        tree = parse_query(query)
    except QuerySyntaxError as error:
        # Only the rules on purpose: nothing positive, nested fields, NEAR operand shapes.
        assert any(
            words in error.detail
            for words in ("nothing that must be present", "cannot be used inside", "NEAR joins")
        ), (query, error)
        return
    text = to_text(tree)
    assert parse_query(text) == tree
    assert to_text(parse_query(text)) == text


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab 地震()"“”|*:+-/\\NEAROT5ti\x00')), max_size=30))
def test_any_text_parses_or_fails_cleanly(query: str) -> None:
    try:
        tree = parse_query(query)
    except QuerySyntaxError as error:
        assert 0 <= error.position <= len(query)
        assert str(error).startswith(f"at character {error.position}: ")
        return
    assert parse_query(to_text(tree)) == tree


# --- Required literals ------------------------------------------------------------------------


def test_required_literals() -> None:
    cnf = required_literals(parse_query("(A OR B OR C) AND (D OR E) NOT F"))
    assert cnf is not None
    assert set(cnf) == {frozenset("abc"), frozenset("de")}
    assert required_literals(parse_query("a OR (b c)")) == [
        frozenset({"a", "b"}),
        frozenset({"a", "c"}),
    ]
    assert required_literals(parse_query("protest* NEAR/3 police")) is not None
    assert set(required_literals(parse_query("protest* NEAR/3 police")) or []) == {
        frozenset({"protest"}),
        frozenset({"police"}),
    }
    assert required_literals(parse_query("title:地震 site:x.com")) == [frozenset({"地震"})]
    assert required_literals(parse_query("lang:zh NOT 广告")) is None
    assert required_literals(parse_query("a OR site:x.com")) is None
    # A wide OR of ANDs is weakened, never dropped: still one literal per operand at least.
    wide = " OR ".join(f"(x{i} y{i})" for i in range(10))
    clauses = required_literals(parse_query(wide))
    assert clauses
    assert all(len(clause) == 10 for clause in clauses)
