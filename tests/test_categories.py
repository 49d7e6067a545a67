"""Category stage: the default taxonomy, matching rules, editing, validation and robustness."""

from __future__ import annotations

import gzip
import json
import pickle
import threading
import time
from collections import Counter
from importlib import resources
from json.decoder import scanstring

import pytest

from tests.conftest import CED
from tingfeng.analyze.categories import (
    SNIPPET_CHARS,
    Category,
    CategoryMatch,
    CategoryMatcher,
    KeywordHit,
    Taxonomy,
    TaxonomyError,
)
from tingfeng.analyze.normalize import normalize

DEFAULT_SLUGS = (
    "officials-corruption",
    "livelihood-fees",
    "wealth-fairness",
    "public-safety",
    "environment",
    "education",
    "health",
    "ethics",
    "ethnicity-religion",
    "enterprises-celebrities",
)

# One realistic post per default category (written for these tests, in the style of Weibo).
EXAMPLES = {
    "officials-corruption": "网曝某县国土局局长利用职权收受开发商巨额贿赂，涉嫌受贿数百万元，县纪委已介入调查。",
    "livelihood-fees": "小区物业费又涨价了，每平米从1.2元涨到2.5元，业主们到物业公司投诉没人理，这种乱收费谁来管？",
    "wealth-fairness": "同样是大学毕业，有人靠拼爹进了国企，有人连工作都找不到。贫富差距越来越大，寒门难出贵子，这社会公平吗？",
    "public-safety": "突发！今天下午3点左右，城东一家化工厂发生爆炸，现场浓烟滚滚，已造成2人死亡、5人受伤，消防正在全力救援。",
    "environment": "河边那家造纸厂天天半夜偷排污水，整条河又黑又臭，鱼都死光了，环保局到底管不管？",
    "education": "孩子所在的小学要求每学期交800元补课费，不交就调座位，班主任还在家长群里点名，教育局管不管？",
    "health": "我爸在县医院做完手术后感染，医生说是正常现象，住院费花了十几万，医保只报了一点，这算不算医疗事故？",
    "ethics": "老人在路边摔倒，十几个人围观却没人敢扶，怕被讹。现在社会这么冷漠，道德底线去哪了？",
    "ethnicity-religion": "网传某地清真寺被拆，官方回应称系违建整改，与宗教政策无关，呼吁穆斯林群众不信谣不传谣。",
    "enterprises-celebrities": "某乳企被曝奶粉质量问题，董事长发道歉声明称将召回全部问题批次，消费者要求赔偿。",
}


@pytest.fixture(scope="module")
def default() -> Taxonomy:
    return Taxonomy.default()


@pytest.fixture(scope="module")
def matcher(default: Taxonomy) -> CategoryMatcher:
    return CategoryMatcher(default)


def labels(matcher: CategoryMatcher, text: str) -> list[str]:
    return [m.slug for m in matcher.classify(normalize(text))]


def small(**fields: object) -> Taxonomy:
    """A one-category taxonomy for testing one rule at a time."""
    category = {"slug": "test", "name_zh": "测试", "name_en": "Test", **fields}
    return Taxonomy.from_dict({"format": 1, "categories": [category]})


# --- the default taxonomy ----------------------------------------------------------------------


def test_default_taxonomy_has_the_ten_hot_areas(default: Taxonomy) -> None:
    assert default.slugs == DEFAULT_SLUGS
    names = {c.slug: c.name_zh for c in default.categories}
    assert names["officials-corruption"] == "官员与腐败"
    assert names["wealth-fairness"] == "贫富差距与社会公平"
    assert names["public-safety"] == "公共安全与事故灾害"
    for category in default.categories:
        assert len(category.keywords) >= 40, category.slug
        assert category.name_en and category.description
        # Some English keywords too, and at least one keyword strong enough to label alone.
        assert any(term.isascii() for term in category.keywords), category.slug
        assert max(category.keywords.values()) >= category.min_score, category.slug
    # Every exclusion touches a keyword of its category; nothing is dead weight.
    assert default.lint() == []


@pytest.mark.parametrize("slug", DEFAULT_SLUGS)
def test_each_default_category_labels_a_realistic_post(matcher: CategoryMatcher, slug: str) -> None:
    found = matcher.classify(normalize(EXAMPLES[slug]))
    # The intended category, and first: the post is mostly about it.
    assert found and found[0].slug == slug, [(m.slug, m.score) for m in found]
    assert len(found[0].evidence) >= 2


def test_one_post_can_have_several_categories(matcher: CategoryMatcher) -> None:
    text = "昨晚一辆渣土车闯红灯撞上公交车，造成3人死亡，伤者已送往医院抢救，医生称仍有两人病危。"
    found = matcher.classify(normalize(text))
    assert {m.slug for m in found} == {"public-safety", "health"}
    assert [m.score for m in found] == sorted((m.score for m in found), reverse=True)


def test_traditional_and_full_width_posts_match_simplified_keywords(
    matcher: CategoryMatcher,
) -> None:
    assert labels(matcher, "網曝某縣國土局局長涉嫌貪汙受賄，縣紀委已介入調查") == [
        "officials-corruption"
    ]
    assert labels(matcher, "今天ＰＭ２．５爆表，霧霾太嚴重") == ["environment"]


@pytest.mark.parametrize(
    "text",
    [
        "今天去学校拿了个快递，顺便路过医院门口买了杯奶茶。",  # weak words alone
        "周末和闺蜜去吃火锅，大火收汁的时候差点糊锅，哈哈哈。",  # 大火 while cooking
        "在这座城市长大的孩子，都记得那家老字号的糖葫芦。",  # 市长 inside 城市长大
        "湘西土家族苗族自治州凤凰县古城，周末游客很多。",  # a place name, not an ethnic topic
        "下礼拜天一起去爬山吧，这部剧大火了。",  # 礼拜 as "week", 大火 as "popular"
        "集中学习了会议精神，大家都很受启发。",  # 中学 inside 集中学习
        "只知道观望的人更难成就大事。",  # 道观 inside 知道观望
        "这几天房间里的wi-fi信号弱得我都想杀人了",  # hyperbole
    ],
)
def test_everyday_posts_get_no_label(matcher: CategoryMatcher, text: str) -> None:
    assert matcher.classify(normalize(text)) == []


# --- matching rules ------------------------------------------------------------------------------


def test_weights_and_threshold() -> None:
    taxonomy = small(keywords={"贪污": 2, "学校": 1, "老师": 1, "孩子": 0.5})
    matcher = CategoryMatcher(taxonomy)
    # A strong word labels alone; a weak one needs company; repeating it adds nothing.
    assert [m.score for m in matcher.classify("他贪污了")] == [2.0]
    assert matcher.classify("学校") == []
    assert matcher.classify("学校学校学校") == []
    (match,) = matcher.classify("学校的老师说学校")
    assert match.score == 2.0
    assert match.evidence == (KeywordHit("学校", 2, 1.0), KeywordHit("老师", 1, 1.0))
    assert matcher.classify("学校的孩子") == []
    assert CategoryMatcher(taxonomy.update_category("test", min_score=1.5)).classify("学校的孩子")


def test_min_keywords_needs_distinct_keywords() -> None:
    matcher = CategoryMatcher(small(keywords={"贪污": 5, "官员": 1}, min_keywords=2))
    assert matcher.classify("贪污贪污") == []
    assert [m.slug for m in matcher.classify("官员贪污")] == ["test"]


def test_exclusion_removes_only_the_overlapping_occurrence() -> None:
    matcher = CategoryMatcher(small(keywords={"大火": 2}, exclude=["大火收汁", "火锅"]))
    assert matcher.classify("大火收汁即可") == []
    # The exclusion overlaps the keyword without containing it: 大火锅 is still cooking.
    assert matcher.classify("来一个大火锅") == []
    # A real hit elsewhere in the same post still counts.
    (match,) = matcher.classify("大火收汁的时候，对面楼突发大火")
    assert match.evidence == (KeywordHit("大火", 1, 2.0),)
    assert "突发大火" in match.snippet


def test_a_keyword_inside_a_longer_keyword_counts_once() -> None:
    matcher = CategoryMatcher(small(keywords={"校园暴力": 2, "暴力": 1.5, "贪污": 1, "受贿": 1}))
    (match,) = matcher.classify("又一起校园暴力")
    assert match.evidence == (KeywordHit("校园暴力", 1, 2.0),)
    # Adjacent or overlapping keywords, neither inside the other, both count.
    assert [m.score for m in matcher.classify("贪污受贿")] == [2.0]


def test_ascii_keywords_match_whole_words_only() -> None:
    matcher = CategoryMatcher(small(keywords={"ban": 2, "pm2.5": 2, "px项目": 2}))
    assert matcher.classify("banana bandana") == []
    assert [m.slug for m in matcher.classify("全面ban掉")] == ["test"]
    assert [m.slug for m in matcher.classify("今天pm2.5爆表")] == ["test"]
    assert matcher.classify("xpm2.5") == []
    assert [m.slug for m in matcher.classify("反对px项目")] == ["test"]


def test_keywords_are_normalised_like_posts() -> None:
    matcher = CategoryMatcher(small(keywords={"貪污": 2, "PM2.5": 2}))
    assert [h.keyword for m in matcher.classify("贪污") for h in m.evidence] == ["貪污"]
    assert matcher.classify("pm2.5") and matcher.classify("ＰＭ２．５", normalized=False)


def test_snippet_is_short_and_around_the_first_hit() -> None:
    text = "开头" * 50 + "这家工厂偷排污水" + "结尾" * 50
    (match,) = CategoryMatcher(small(keywords={"偷排": 2})).classify(text)
    assert len(match.snippet) <= SNIPPET_CHARS
    assert "偷排污水" in match.snippet


def test_match_round_trips_through_json(matcher: CategoryMatcher) -> None:
    found = matcher.classify(normalize(EXAMPLES["health"]))
    stored = json.loads(json.dumps([m.to_dict() for m in found], ensure_ascii=False))
    assert [CategoryMatch.from_dict(d) for d in stored] == found
    assert set(stored[0]) == {"slug", "score", "evidence", "snippet"}
    assert set(stored[0]["evidence"][0]) == {"keyword", "count", "weight"}


def test_disabled_and_empty_categories_never_match() -> None:
    taxonomy = small(keywords={"贪污": 2}, enabled=False)
    assert CategoryMatcher(taxonomy).classify("贪污") == []
    assert CategoryMatcher(small()).classify("贪污") == []
    assert CategoryMatcher(Taxonomy()).classify("贪污") == []


# --- robustness ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "😀😂🔥🙏" * 50,
        "\x00\x01\x02贪污\x1b[31m受贿\x7f\x9f",
        "\ud800贪污\udfff受贿",  # lone surrogates, as broken UTF-16 sources produce
        "[围观][蜡烛][泪]",
        "a" * 1000,
        "\u200b\u200e\ufeff" * 100,
    ],
)
def test_odd_input_does_not_crash(matcher: CategoryMatcher, text: str) -> None:
    for match in matcher.classify(text):
        assert len(match.snippet) <= SNIPPET_CHARS
        assert not any(ord(c) < 0x20 for c in match.snippet)
        json.dumps(match.to_dict())


def test_control_characters_are_kept_out_of_snippets(matcher: CategoryMatcher) -> None:
    found = matcher.classify("某局长\x00涉嫌受贿\x07被双规")
    assert [m.slug for m in found] == ["officials-corruption"]
    assert "\x00" not in found[0].snippet and "\x07" not in found[0].snippet


def test_100_kb_post(matcher: CategoryMatcher) -> None:
    text = normalize("".join(EXAMPLES.values()) * 100)[:100_000]
    started = time.perf_counter()
    found = matcher.classify(text)
    assert time.perf_counter() - started < 2  # ~15 ms measured; generous for a busy CI
    assert {m.slug for m in found} == set(DEFAULT_SLUGS)
    assert all(len(m.evidence) <= 20 and len(m.snippet) <= SNIPPET_CHARS for m in found)


def test_threads_share_one_matcher(matcher: CategoryMatcher) -> None:
    texts = [normalize(t) for t in EXAMPLES.values()] * 50
    expected = [matcher.classify(t) for t in texts]
    results: list[list[list[CategoryMatch]]] = [[] for _ in range(8)]

    def work(slot: int) -> None:
        results[slot] = [matcher.classify(t) for t in texts]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result == expected for result in results)


def test_matcher_pickles_for_worker_processes(matcher: CategoryMatcher) -> None:
    copy = pickle.loads(pickle.dumps(matcher))
    assert copy.version == matcher.version
    text = normalize(EXAMPLES["education"])
    assert copy.classify(text) == matcher.classify(text)


# --- editing and validation ----------------------------------------------------------------------


def test_editing_returns_new_taxonomies_and_round_trips(default: Taxonomy, tmp_path) -> None:
    edited = (
        default.add_category(
            Category(
                slug="transport", name_zh="交通出行", name_en="Transport", keywords={"地铁": 1}
            )
        )
        .add_keywords("transport", {"限行": 2, "堵车": 1})
        .add_keywords("transport", ["公交"], weight=0.5)
        .remove_keywords("transport", ["地铁"])
        .add_exclusions("transport", ["公交车站牌"])
        .update_category("transport", min_score=1.5, description="Traffic and commuting")
        .remove_category("ethics")
    )
    assert "ethics" in default.slugs and "transport" not in default.slugs  # unchanged
    transport = edited.category("transport")
    assert transport.keywords == {"限行": 2, "堵车": 1, "公交": 0.5}
    assert transport.exclude == ("公交车站牌",)
    assert transport.min_score == 1.5
    assert "ethics" not in edited.slugs

    assert Taxonomy.from_json(edited.to_json()) == edited
    path = tmp_path / "taxonomy.json"
    edited.save(path)
    assert Taxonomy.load(path) == edited
    assert [m.slug for m in CategoryMatcher(Taxonomy.load(path)).classify("今天限行")] == [
        "transport"
    ]
    # Removing an exclusion, and re-adding a keyword in another spelling, replace in place.
    again = edited.remove_exclusions("transport", ["公交车站牌"]).add_keywords(
        "transport", {"限行": 1}
    )
    assert again.category("transport").exclude == ()
    assert again.category("transport").keywords["限行"] == 1


def test_packaged_file_is_what_save_writes(default: Taxonomy, tmp_path) -> None:
    path = tmp_path / "t.json"
    default.save(path)
    assert Taxonomy.load(path) == default
    assert "贪污" in path.read_text(encoding="utf-8")  # Chinese written as is


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"slug": "education"}, ["'education'", "used by two categories"]),
        ({"slug": "Public Safety"}, ["slug", "lower-case"]),
        ({"keywords": {"  ": 1}}, ["'officials-corruption'", "keywords", "empty"]),
        ({"keywords": {"贪污": -1}}, ["'officials-corruption'", "keywords", "'贪污'", "> 0"]),
        ({"keywords": {"贪污": 0}}, ["weight of keyword '贪污'"]),
        ({"keywords": {"贪污": 11}}, ["weight of keyword '贪污'", "≤ 10"]),
        ({"keywords": {"贪污": "2"}}, ["weight of keyword '贪污'", "'2'"]),
        ({"keywords": {"贪污": True}}, ["weight of keyword '贪污'"]),
        ({"keywords": {"贪污": float("nan")}}, ["weight of keyword '贪污'"]),
        ({"keywords": {"貪污": 1, "贪污": 2}}, ["'貪污'", "'贪污'", "same after normalisation"]),
        ({"keywords": {"贪" * 40: 1}}, ["at most 32"]),
        ({"keywords": {"贪\x00污": 1}}, ["control character"]),
        ({"exclude": ["贪污"]}, ["exclusion '贪污'", "equals keyword"]),
        ({"exclude": [""]}, ["exclude", "empty"]),
        ({"min_score": 0}, ["min_score", "greater than 0"]),
        ({"min_score": "2"}, ["min_score", "'2'"]),
        ({"min_keywords": 0}, ["min_keywords"]),
        ({"enabled": "yes"}, ["enabled", "'yes'"]),
        ({"name_zh": ""}, ["name_zh"]),
        ({"colour": "red"}, ["unknown field 'colour'", "allowed:", "keywords"]),
    ],
)
def test_bad_edits_say_which_category_which_field_what_to_fix(
    default: Taxonomy, change: dict[str, object], words: list[str]
) -> None:
    with pytest.raises(TaxonomyError) as caught:
        default.update_category("officials-corruption", **change)
    message = str(caught.value)
    for word in words:
        assert word in message, message


def test_bad_files_and_unknown_names(default: Taxonomy) -> None:
    with pytest.raises(TaxonomyError, match="not valid JSON"):
        Taxonomy.from_json("{")
    with pytest.raises(TaxonomyError, match="duplicate key '学校'"):
        Taxonomy.from_json(
            '{"categories": [{"slug": "a", "name_zh": "甲", "name_en": "A",'
            ' "keywords": {"学校": 1, "学校": 2}}]}'
        )
    with pytest.raises(TaxonomyError) as caught:
        Taxonomy.from_dict(
            {"categories": [{"slug": "a", "name_zh": "甲"}, {"slug": "b", "name_zh": "乙"}]}
        )
    assert caught.value.problems == [
        "category 'a' (#1): required field 'name_en' is missing",
        "category 'b' (#2): required field 'name_en' is missing",
    ]
    with pytest.raises(TaxonomyError, match="field 'format'"):
        Taxonomy.from_dict({"format": 2, "categories": []})
    with pytest.raises(TaxonomyError, match="no category 'nope'; known: officials-corruption"):
        default.add_keywords("nope", ["x"])
    with pytest.raises(TaxonomyError, match="has no keyword '不存在'"):
        default.remove_keywords("education", ["不存在"])
    with pytest.raises(TaxonomyError, match="has no exclusion"):
        default.remove_exclusions("education", ["不存在"])
    with pytest.raises(TypeError):
        default.add_keywords("education", "学校")  # one string, not a list of keywords


def test_lint_warns_about_exclusions_that_do_nothing() -> None:
    taxonomy = small(keywords={"大火": 2, "火灾": 2}, exclude=["火锅", "蛋糕"])
    assert taxonomy.lint() == [
        "category 'test': exclusion '蛋糕' overlaps no keyword, so it has no effect"
    ]
    assert small(keywords={"贪污": 1}).lint() == [
        "category 'test': all keywords together weigh less than min_score 2, so it can never match"
    ]


def test_version_changes_with_what_changes_labels(default: Taxonomy) -> None:
    version = default.version
    assert len(version) == 16 and Taxonomy.default().version == version
    changed = [
        default.add_keywords("education", {"网课": 1}),
        default.add_keywords("education", {"学校": 0.5}),
        default.update_category("education", min_score=2.5),
        default.update_category("education", min_keywords=2),
        default.update_category("education", enabled=False),
        default.add_exclusions("education", ["学校门口"]),
        default.update_category("education", slug="schools"),
    ]
    versions = {t.version for t in changed}
    assert version not in versions and len(versions) == len(changed)
    # A disabled category labels nothing, exactly like a removed one.
    assert default.remove_category("education").version == changed[4].version
    # Display text and spelling variants of the same keyword do not change labels.
    assert default.update_category("education", name_en="Schools", description="").version == (
        version
    )
    retyped = default.remove_keywords("education", ["学校"]).add_keywords("education", {"學校": 1})
    assert retyped.version == version
    assert CategoryMatcher(default).version == version


# --- real posts ----------------------------------------------------------------------------------


def ced_original_texts(n: int) -> list[str]:
    """The texts of the first `n` CED source posts (not their reposts)."""
    texts: list[str] = []
    with gzip.open(CED, "rt", encoding="utf-8") as handle:
        for line in handle:
            # "text" comes before the (long) repost list: decoding only that string is twice as
            # fast as parsing the whole line.
            start = line.find('"text": "')
            if start < 0:
                texts.append(json.loads(line)["text"])
            else:
                texts.append(scanstring(line, start + len('"text": "'))[0])
            if len(texts) >= n:
                break
    return texts


def test_smoke_on_2000_real_weibo_posts(matcher: CategoryMatcher) -> None:
    posts = [normalize(t) for t in ced_original_texts(2000)]
    assert len(posts) == 2000
    started = time.process_time()
    results = [matcher.classify(p) for p in posts]
    per_post = (time.process_time() - started) / len(posts)
    labelled = sum(1 for r in results if r)
    counts = Counter(m.slug for r in results for m in r)
    print(f"\n{labelled} of 2000 labelled; {per_post * 1e6:.1f} µs/post;", dict(counts))
    # CED is a rumour data set: safety, health and scandal posts are over-represented, yet
    # most posts still should not be labelled.
    assert 0.01 * len(posts) < labelled < 0.6 * len(posts)
    assert set(counts) == set(DEFAULT_SLUGS)
    assert max(counts.values()) < 0.25 * len(posts)
    assert per_post < 500e-6  # ~15 µs measured; generous for a loaded CI machine


def test_packaged_file_is_in_the_canonical_layout(default: Taxonomy) -> None:
    # Exported and packaged taxonomies then diff cleanly.
    packaged = resources.files("tingfeng.analyze").joinpath("taxonomy.json").read_text("utf-8")
    assert packaged == default.to_json()
