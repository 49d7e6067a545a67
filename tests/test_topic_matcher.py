"""Topic matching: term semantics, NEAR, fields, exclusions, both pre-filter backends against
the reference evaluator (on real posts and on generated ones), highlighting, threads."""

from __future__ import annotations

import gzip
import json
import threading
from itertools import islice
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tingfeng.analyze.normalize import normalize
from tingfeng.topics import (
    And,
    Field,
    Filter,
    Near,
    Not,
    Or,
    QuerySyntaxError,
    Term,
    Topic,
    TopicDoc,
    TopicHit,
    TopicMatcher,
    evaluate,
    highlight_spans,
    parse_query,
    prefilter,
    required_literals,
    to_text,
    topic_matches,
)
from tingfeng.topics.prefilter import hyperscan_available

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CED = DATA / "rumor" / "ced" / "cascades.jsonl.gz"
CRISISLEX = DATA / "events" / "crisislex26.jsonl"
IDF = Path(__file__).resolve().parents[1] / "src" / "tingfeng" / "models" / "idf.tsv.gz"

BACKENDS = ["aho", *(["hyperscan"] if hyperscan_available() else [])]


def matches(query: str, text: str, **fields: object) -> bool:
    """The reference and both matchers agree, and this is their answer."""
    doc = TopicDoc(text, **fields)  # type: ignore[arg-type]
    expected = evaluate(query, doc)
    for backend in BACKENDS:
        got = TopicMatcher([Topic(1, query)], backend=backend).match(doc)
        assert bool(got) == expected, (backend, query, text)
    return expected


# --- Terms ------------------------------------------------------------------------------------


def test_chinese_terms_match_as_substrings_whatever_the_segmentation() -> None:
    assert matches("地震", "四川发生地震了")
    assert matches("震了", "四川发生地震了")
    assert matches("网络舆情", "關注網絡輿情")  # Simplified query, Traditional post
    assert matches("網絡輿情", "关注网络舆情")  # and the other way round
    assert not matches("地震", "余震不断")


def test_latin_terms_match_whole_words() -> None:
    assert matches("cat", "The Cat sat.")
    assert not matches("cat", "category")
    assert not matches("cat", "bobcat")
    assert matches("cat", "猫cat猫")  # CJK neighbours are not letters of the word
    assert matches("cat", "cat_food")  # the underscore is not a letter
    assert not matches("cat", "cats")
    assert matches("cat*", "cats and dogs")
    assert matches("cat*", "category")
    assert not matches("cat*", "bobcat")
    assert matches("abc", "ＡＢＣ")  # full-width letters fold
    assert matches("2024", "2024年")
    assert not matches("2024", "20245")
    assert matches("covid-19", "COVID-19 cases")
    assert not matches("covid-19", "covid-190")
    assert matches('"climate change"', "Climate   change is real")
    assert not matches('"climate change"', "climate changes")


def test_mixed_script_terms_check_only_latin_edges() -> None:
    assert matches("iPhone手机", "新iphone手机")
    assert not matches("iPhone手机", "xiphone手机")
    assert matches("iPhone手机", "iphone手机壳")  # the CJK edge needs no boundary
    assert matches("手机iPhone", "买手机iphone")
    assert not matches("手机iPhone", "手机iphones")
    assert matches("#话题#", "a#话题#b")  # edges that are not letters: plain substring


def test_boolean_logic() -> None:
    query = "(地震 OR 余震) AND (救援 OR 伤亡) NOT 演习"
    assert matches(query, "地震救援")
    assert matches(query, "余震造成伤亡")
    assert not matches(query, "地震救援演习")
    assert not matches(query, "地震")
    assert matches("a OR b AND NOT c", "a c")
    assert not matches("a OR b AND NOT c", "b c")


# --- NEAR -------------------------------------------------------------------------------------


def test_near_counts_characters_for_chinese() -> None:
    assert matches("地震 NEAR/0 救援", "地震救援")
    assert matches("地震 NEAR/2 救援", "地震后的救援")
    assert not matches("地震 NEAR/1 救援", "地震后的救援")
    assert matches("地震 NEAR/2 救援", "救援在地震")  # either order
    assert not matches("地震 ONEAR/2 救援", "救援在地震")
    assert matches("地震 ONEAR/2 救援", "地震后救援")
    # Overlapping matches are not two mentions.
    assert not matches("中国 NEAR/5 国人", "中国人")
    assert not matches("地震 NEAR/5 地震", "地震")
    assert matches("地震 NEAR/5 地震", "地震又地震")
    # One CJK operand is enough to count characters.
    assert matches("iphone NEAR/1 手机", "iphone 手机")


def test_near_counts_words_for_english() -> None:
    assert matches("police NEAR/0 protest*", "Protesters police")
    assert matches("protest* NEAR/2 police", "protesters met the police")
    assert not matches("protest* NEAR/2 police", "protesters clashed with the police")
    assert matches("protest* NEAR/3 police", "protesters clashed with the police")
    assert matches('"tear gas" ONEAR/1 crowd', "tear gas, the crowd")
    assert not matches('"tear gas" ONEAR/1 crowd', "the crowd, tear gas")
    # Punctuation and spaces are not words; a Chinese run counts as one.
    assert matches("flood NEAR/1 rescue", "flood!!! -- ... rescue")
    assert matches("flood NEAR/1 rescue", "flood 洪水救援 rescue")
    assert matches("(flood OR floods) NEAR/0 (rescue OR 救援)", "floods救援")
    assert matches("flood NEAR/1 rescue", "flood 洪水rescue")
    assert not matches("flood NEAR/0 rescue", "flood 洪水rescue")
    assert not matches("flood NEAR/1 rescue", "flood abc中文 rescue")  # two runs, two words
    assert matches("flood NEAR/2 rescue", "flood abc中文 rescue")
    assert matches("flood NEAR/0 rescue", "flood_rescue")


# --- Fields -----------------------------------------------------------------------------------


def test_fields() -> None:
    assert matches("title:地震 救援", "地震后救援", title="地震")
    assert not matches("title:地震 救援", "地震后救援", title="救援")
    assert matches("title:(a NEAR/1 b)", "x", title="a x b")
    assert matches("site:weibo.com x", "x", site="m.weibo.com")
    assert matches("site:weibo.com x", "x", site="https://WEIBO.com/u/1")
    assert not matches("site:weibo.com x", "x", site="notweibo.com")
    assert matches("source:7 x", "x", source_id=7)
    assert matches("source:人民网 x", "x", source="人民網")
    assert not matches("source:7 x", "x", source_id=8)
    assert matches('author:"li lei" x', "x", author="Li  Lei")
    assert not matches("author:li x", "x", author="Li Lei")
    assert matches("lang:zh x", "x", lang="zh-CN")
    assert not matches("lang:zh-tw x", "x", lang="zh-cn")
    assert matches("region:浙江 x", "x", regions=["330106"])
    assert matches("region:杭州 x", "x", regions=["330106000000"])
    assert not matches("region:330106 x", "x", regions=["330100"])
    assert matches("region:北京 x", "x", regions=["北京市朝阳区"])
    assert matches("category:public-safety x", "x", categories=["Public-Safety", "公共安全"])
    assert matches("category:公共安全 x", "x", categories=["public-safety", "公共安全"])
    assert matches("sentiment:negative x", "x", sentiment="负面")
    assert matches("level:II x", "x", level="major")
    assert matches("level:重大 x", "x", level="II")
    assert not matches("level:major x", "x", level="critical")
    assert matches("lang:en NOT spam", "hello", lang="en")


def test_exclusions_and_source_scoping() -> None:
    topics = [
        Topic(1, "地震", exclusions=("演习", "Drill")),
        Topic(2, "地震", source_ids=frozenset({3})),
        Topic(3, parse_query("地震 NOT 谣言")),
    ]
    docs = [
        TopicDoc("地震演习", source_id=3),
        TopicDoc("地震 drill", source_id=3),
        TopicDoc("地震 drills", source_id=4),
        TopicDoc("地震谣言", source_id=None),
    ]
    expected = [[2, 3], [2, 3], [1, 3], [1]]
    for backend in BACKENDS:
        got = TopicMatcher(topics, backend=backend).match_many(docs)
        assert [[h.topic_id for h in hits] for hits in got] == expected
    assert [[t.id for t in topics if topic_matches(t, doc)] for doc in docs] == expected


def test_hits_carry_the_matched_terms() -> None:
    matcher = TopicMatcher([Topic(9, "(地震 OR 余震 OR 海啸) 救援* NOT 演习 NOT NOT 伤亡")])
    [hit] = matcher.match(TopicDoc("地震、海啸后救援，有伤亡"))
    assert hit == TopicHit(9, ("地震", "海啸", "救援*", "伤亡"))


def test_posts_matching_nothing_allocate_nothing() -> None:
    # A new list per post that matches nothing (most of them) woke the garbage collector,
    # whose full passes cost more than the matching (the benchmark halved at random).
    docs = [TopicDoc(f"今天天气很好 {n}") for n in range(50)] + [TopicDoc("地震救援")]
    for backend in BACKENDS:
        got = TopicMatcher([Topic(1, "地震"), Topic(2, "海啸")], backend=backend).match_many(docs)
        assert all(hits is got[0] for hits in got[:50]) and got[0] == ()
        assert [h.topic_id for h in got[50]] == [1]


def test_matcher_rejects_bad_topics() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        TopicMatcher([Topic(1, "a"), Topic(2, "a AND")])
    assert "topic 2" in " ".join(getattr(info.value, "__notes__", []))
    with pytest.raises(ValueError, match="unique"):
        TopicMatcher([Topic(1, "a"), Topic(1, "b")])
    with pytest.raises(ValueError, match="backend"):
        TopicMatcher([Topic(1, "a")], backend="regex")  # type: ignore[arg-type]


def test_trees_given_directly_and_odd_documents() -> None:
    # A tree built in code may have no positive part: it is evaluated for every post.
    topics = [Topic(1, Not(Term("spam"))), Topic(2, Or((Term("a"), Not(Term("b")))))]
    docs = [TopicDoc("ham"), TopicDoc("spam b"), TopicDoc("a\x00b"), TopicDoc("")] * 2
    expected = [[t.id for t in topics if topic_matches(t, d)] for d in docs]
    assert expected[:4] == [[1, 2], [], [1, 2], [1, 2]]
    for backend in BACKENDS:
        matcher = TopicMatcher(topics, backend=backend)
        assert [[h.topic_id for h in hits] for hits in matcher.match_many(docs)] == expected
        assert [[h.topic_id for h in matcher.match(d)] for d in docs] == expected
    # A NUL inside a post cannot join two posts into one match.
    for backend in BACKENDS:
        matcher = TopicMatcher([Topic(1, '"a b"'), Topic(2, "ab")], backend=backend)
        docs = [TopicDoc("xa"), TopicDoc("b\x00a"), TopicDoc("b a b")] * 3
        assert [[h.topic_id for h in hits] for hits in matcher.match_many(docs)] == [
            [],
            [],
            [1],
        ] * 3
    with pytest.raises(ValueError, match="exclusion"):
        TopicMatcher([Topic(1, "a", exclusions=("\x00",))])


def test_batches_of_every_size_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    import tingfeng.topics.matcher as matcher_module

    docs = _real_posts(300, 60)
    topics = _real_topics(docs)
    expected = [[t.id for t in topics if topic_matches(t, doc)] for doc in docs]
    assert sum(map(len, expected)) > 20
    monkeypatch.setattr(matcher_module, "_BATCH", 7)  # many batches, some of them small
    for backend in BACKENDS:
        matcher = TopicMatcher(topics, backend=backend)
        got = matcher.match_many(docs)
        assert [[h.topic_id for h in hits] for hits in got] == expected
        assert [matcher.match(d) for d in docs[:50]] == got[:50]


def test_field_only_topics_are_always_considered() -> None:
    topics = [Topic(1, "lang:en NOT spam"), Topic(2, "site:gov.cn OR author:x"), Topic(3, "x")]
    docs = [
        TopicDoc("hello", lang="en"),
        TopicDoc("spam", lang="en"),
        TopicDoc("y", site="a.gov.cn"),
    ]
    for backend in BACKENDS:
        got = TopicMatcher(topics, backend=backend).match_many(docs)
        assert [[h.topic_id for h in hits] for hits in got] == [[1], [], [2]]


# --- Real posts -------------------------------------------------------------------------------


def _real_posts(n_zh: int, n_en: int) -> list[TopicDoc]:
    texts: list[str] = []
    with gzip.open(CED, "rt", encoding="utf-8") as handle:
        for line in islice(handle, 60):
            cascade = json.loads(line)
            texts.append(cascade["text"])
            texts.extend(r["text"] for r in cascade["reposts"][:40] if r["text"])
    docs = [TopicDoc(t, site="weibo.com", lang="zh", source_id=1) for t in texts[:n_zh]]
    with CRISISLEX.open(encoding="utf-8") as handle:
        for line in islice(handle, 0, None, 20):
            docs.append(TopicDoc(json.loads(line)["text"], site="twitter.com", lang="en"))
            if len(docs) >= n_zh + n_en:
                break
    return docs


def _real_topics(docs: list[TopicDoc]) -> list[Topic]:
    """Topics from words that really occur in these posts (IDF table order), many shapes."""
    with gzip.open(IDF, "rt", encoding="utf-8") as handle:
        next(handle)
        words = [line.split("\t")[0] for line in islice(handle, 300, 6000)]
    corpus = " ".join(normalize(d.text) for d in docs)
    zh = [w for w in words if len(w) >= 2 and not w.isascii() and w in corpus][:150]
    en = ["earthquake", "flood*", "rescue", "police", "storm", "fire", "help", "people", "kill*"]
    shapes = [
        "({0} OR {1} OR {2}) AND ({3} OR {4}) NOT {5}",
        "{0} NEAR/5 {1}",
        "{0} OR {1}",
        "{0} ({1} OR {2}) -{3}",
        "({0} OR {1}) ONEAR/10 {2}",
        "{0} site:weibo.com",
        '"{0}{1}" OR {2}',
    ]
    topics = []
    for i in range(90):
        pool = en if i % 6 == 5 else zh
        shape = shapes[i % len(shapes)]
        values = [pool[(i * 7 + k * 13) % len(pool)] for k in range(6)]
        topics.append(Topic(i, shape.format(*values)))
    topics.append(Topic(1000, "lang:en (help NEAR/3 people)", exclusions=("rt",)))
    return topics


def test_backends_agree_with_the_reference_on_real_posts() -> None:
    docs = _real_posts(1500, 400)
    topics = _real_topics(docs)
    expected = [[t.id for t in topics if topic_matches(t, doc)] for doc in docs]
    assert sum(map(len, expected)) > 200  # the topics really fire
    results = []
    for backend in BACKENDS:
        got = TopicMatcher(topics, backend=backend).match_many(docs)
        assert [[h.topic_id for h in hits] for hits in got] == expected
        results.append(got)
    assert all(r == results[0] for r in results)
    # The CNF is sound: every match contains one literal of every clause.
    for doc, ids in zip(docs, expected, strict=True):
        text = normalize(doc.text)
        for topic in topics:
            if topic.id in ids:
                for clause in required_literals(topic.parsed()) or []:
                    assert any(lit in text for lit in clause)


# --- Generated queries and documents ----------------------------------------------------------

_VOCAB = ["地震", "余震", "地震局", "救援", "cat", "cats", "category", "dog", "iphone手机", "手机"]
_VOCAB += ["police", "protest", "a b", "#tag"]
_GLUE = ["", " ", "  ", ",", "，", "x", "中", "-", "_", "é"]


@st.composite
def literal_terms(draw: st.DrawFn) -> Term:
    word = draw(st.sampled_from(_VOCAB))
    wildcard = draw(st.booleans()) and " " not in word and "#" not in word
    return Term(word[: draw(st.integers(2, len(word)))] if wildcard else word, wildcard)


_FILTERS = st.sampled_from(
    [
        Filter("site", "weibo.com"),
        Filter("lang", "zh"),
        Filter("source", "1"),
        Filter("source", "人民网"),
        Filter("author", "li lei"),
        Filter("region", "330000"),
        Filter("region", "330106"),
        Filter("category", "health"),
        Filter("sentiment", "negative"),
        Filter("level", "major"),
    ]
)


def _near_operand() -> st.SearchStrategy[Term | Or]:
    return st.one_of(
        literal_terms(),
        st.lists(literal_terms(), min_size=2, max_size=3, unique=True).map(lambda t: Or(tuple(t))),
    )


def _trees(text_only: bool) -> st.SearchStrategy:
    leaves = [literal_terms()]
    if not text_only:
        leaves.append(_FILTERS)
    near = st.builds(Near, _near_operand(), _near_operand(), st.integers(0, 6), st.booleans())
    base = st.one_of(*leaves, near)

    def extend(children: st.SearchStrategy) -> st.SearchStrategy:
        options = [
            st.lists(children, min_size=2, max_size=3).map(lambda c: And(tuple(c))),
            st.lists(children, min_size=2, max_size=3).map(lambda c: Or(tuple(c))),
            children.map(Not),
        ]
        return st.one_of(*options)

    return st.recursive(base, extend, max_leaves=6)


@st.composite
def queries(draw: st.DrawFn) -> str:
    """Canonical query text of a generated tree that parses (positive, no nested fields)."""
    tree = draw(_trees(text_only=False))
    if draw(st.integers(0, 4)) == 0:
        tree = And((Field("title", draw(_trees(text_only=True))), tree))
    text = to_text(tree)
    try:
        parse_query(text)
    except QuerySyntaxError:
        return draw(st.sampled_from(_VOCAB))
    return text


@st.composite
def texts(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.tuples(st.sampled_from(_VOCAB), st.sampled_from(_GLUE)), max_size=8))
    text = "".join(w + g for w, g in parts)
    if draw(st.booleans()):
        text = text.upper() if draw(st.booleans()) else text.replace("余震", "餘震")
    return text


docs_strategy = st.builds(
    TopicDoc,
    texts(),
    title=texts(),
    site=st.sampled_from(["", "weibo.com", "m.weibo.com", "news.qq.com"]),
    source=st.sampled_from(["", "人民網", "other"]),
    source_id=st.sampled_from([None, 1, 2]),
    author=st.sampled_from(["", "Li Lei", "li"]),
    lang=st.sampled_from([None, "zh", "zh-CN", "en"]),
    regions=st.sampled_from([frozenset(), frozenset({"330106"}), frozenset({"110101"})]),
    categories=st.sampled_from([frozenset(), frozenset({"health", "卫生健康"})]),
    sentiment=st.sampled_from([None, "负面", "positive"]),
    level=st.sampled_from([None, "II", "general"]),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(queries(), min_size=1, max_size=5),
    st.lists(st.sampled_from(["", "演习", "cat"]), max_size=2),
    st.lists(docs_strategy, min_size=1, max_size=10),
)
def test_matchers_equal_the_reference(
    query_list: list[str], exclusions: list[str], docs: list[TopicDoc]
) -> None:
    topics = [
        Topic(i, q, exclusions=tuple(x for x in exclusions if x), source_ids=None if i % 3 else {1})
        for i, q in enumerate(query_list)
    ]
    expected = [[t.id for t in topics if topic_matches(t, doc)] for doc in docs]
    outputs = []
    for backend in BACKENDS:
        got = TopicMatcher(topics, backend=backend).match_many(docs)
        assert [[h.topic_id for h in hits] for hits in got] == expected, backend
        outputs.append(got)
    assert all(o == outputs[0] for o in outputs)
    # The literals a hit reports are really in the post (for highlighting).
    for doc, hits in zip(docs, outputs[0], strict=True):
        prepared = doc.prepare()
        for hit in hits:
            for term in hit.terms:
                literal = term[:-1] if term.endswith("*") else term
                assert literal in prepared.text or literal in prepared.title


@settings(max_examples=100, deadline=None)
@given(st.lists(queries(), min_size=1, max_size=1), docs_strategy)
def test_required_literals_are_sound(query_list: list[str], doc: TopicDoc) -> None:
    tree = parse_query(query_list[0])
    prepared = doc.prepare()
    if evaluate(tree, prepared):
        for clause in required_literals(tree) or []:
            # Title literals count: the contract is that the text includes the title.
            assert any(lit in prepared.text or lit in prepared.title for lit in clause)


# --- Highlighting -----------------------------------------------------------------------------


def test_highlight_spans_point_into_the_original_text() -> None:
    text = "台灣發生地震，ＣＡＴ在救援  Protesters  rally"
    spans = highlight_spans(text, ["地震", "cat", "protest*"])
    assert [text[s:e] for s, e in spans] == ["地震", "ＣＡＴ", "Protesters"]
    assert highlight_spans("category cat", ["cat"]) == [(9, 12)]
    assert highlight_spans("地震局地震", ["地震", "地震局"]) == [(0, 5)]
    assert highlight_spans("", ["x"]) == []


@settings(max_examples=200, deadline=None)
@given(texts(), st.lists(st.sampled_from(_VOCAB), min_size=1, max_size=3))
def test_highlight_spans_cover_the_terms(text: str, terms: list[str]) -> None:
    spans = highlight_spans(text, terms)
    for start, end in spans:
        assert 0 <= start < end <= len(text)
        assert any(normalize(t) in normalize(text[start:end]) for t in terms)
    found = any(evaluate(f'"{t}"', TopicDoc(text)) for t in terms)
    assert bool(spans) == found


# --- Threads ----------------------------------------------------------------------------------


def test_matching_is_thread_safe() -> None:
    docs = _real_posts(600, 100)
    topics = _real_topics(docs)
    for backend in BACKENDS:
        matcher = TopicMatcher(topics, backend=backend)
        expected = matcher.match_many(docs)
        results: dict[int, list[list[TopicHit]]] = {}
        errors: list[BaseException] = []

        def work(
            k: int,
            matcher: TopicMatcher = matcher,
            results: dict[int, list[list[TopicHit]]] = results,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                singles = [matcher.match(d) for d in docs[k % 2 :: 2]]
                results[k] = singles + matcher.match_many(docs)
            except BaseException as error:  # surfaced below
                errors.append(error)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        for k in range(4):
            assert results[k] == expected[k % 2 :: 2] + expected


def test_two_character_table_finds_what_the_byte_scanner_finds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Many two-character literals (as at thousands of Chinese topics) go to a lookup table;
    # it must report exactly the (post, literal) pairs a substring search finds, for every
    # backend, with posts that are empty, hold a NUL, emoji or the literals at their edges.
    texts = [normalize(d.text) for d in _real_posts(1500, 200)]
    texts += ["", "地震", "\x00地震\x00", "😀地震😀", "ab", "a", "地", "震地"]
    corpus = "".join(texts)
    pairs = sorted({corpus[i : i + 2] for i in range(0, len(corpus) - 1, 7)} - {""})
    pairs = [p for p in pairs if "\x00" not in p][:1500]
    patterns = [*pairs, "地震局", "earthquake", "救援", "rescue"]
    monkeypatch.setattr(prefilter, "PAIR_TABLE_MIN", 1000)
    assert sum(len(p) == 2 for p in patterns) >= prefilter.PAIR_TABLE_MIN
    expected = [sorted({k for k, p in enumerate(patterns) if p in t}) for t in texts]
    for backend in BACKENDS:
        scanner = prefilter.make_scanner(patterns, backend)
        assert type(scanner).__name__ == "_PairScanner"
        segments, ids = scanner.scan(texts)
        got: list[list[int]] = [[] for _ in texts]
        for segment, pid in zip(segments.tolist(), ids.tolist(), strict=True):
            got[segment].append(pid)
        assert got == expected
        assert [sorted(scanner.scan_one(t)) for t in texts] == expected
