"""Keyword extraction: IDF tables, TF-IDF and TextRank per post, keywords of groups of posts."""

from __future__ import annotations

import gzip
import json
import math
import threading
import time
from pathlib import Path

import pytest

from tingfeng.analyze.keywords import (
    DEFAULT_IDF_PATH,
    IdfTable,
    Keyword,
    KeywordExtractor,
    build_default_idf,
    build_idf,
    strip_noise,
)
from tingfeng.analyze.normalize import normalize
from tingfeng.analyze.segment import Segmenter

WATER = normalize(
    "【停水通知】某县自来水公司通知：因主管道爆裂抢修，明天全县停水，请居民提前储水。"
    "自来水公司表示，停水将持续一天，期间安排送水车到各小区。"
)
FIRE = normalize("今天下午市中心一家商场发生火灾，浓烟滚滚，消防员赶到现场灭火，暂无人员伤亡。")
CRASH = normalize("高速公路发生连环追尾事故，造成多人受伤，交警正在现场处置，请司机绕行。")
SCHOOL = normalize("网传某小学食堂饭菜发霉，家长非常愤怒，教育局回应已成立调查组，食堂负责人停职。")


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter()


def _table(df: dict[str, int], docs: int = 10_000) -> IdfTable:
    """A controlled table: the given document frequencies, everything else rare."""
    return IdfTable.from_counts(docs, df)


# Common words a real table would have; "转发" and "大家" are above the 1% stopword line.
COMMON = {"公司": 80, "发生": 90, "现场": 60, "今天": 95, "转发": 900, "大家": 300, "表示": 70}


@pytest.fixture(scope="module")
def extractor(segmenter: Segmenter) -> KeywordExtractor:
    return KeywordExtractor(_table(COMMON), segmenter)


def _words(keywords: list[Keyword]) -> list[str]:
    return [keyword.word for keyword in keywords]


# --- IDF tables -------------------------------------------------------------------------------


def test_build_idf_counts_documents_and_drops_rare_words(segmenter: Segmenter) -> None:
    texts = [WATER, FIRE, CRASH, SCHOOL, normalize("商场今天打折"), normalize("今天商场人多")]
    table = build_idf(texts, segmenter, min_df=2)
    assert table.docs == 6
    # "商场" is in three documents, "今天" in three (FIRE, 打折, 人多); "停水" only in WATER.
    assert "商场" in table and "今天" in table
    assert "停水" not in table and "追尾" not in table
    assert table.get("商场") == pytest.approx(1 + math.log(7 / 4), abs=1e-4)
    # Unseen words are at least as specific as the rarest kept ones.
    assert table.get("停水") == table.default >= max(table.idf.values())


def test_build_idf_counts_a_copy_once_and_ignores_mentions(segmenter: Segmenter) -> None:
    texts = [
        normalize("@王小明 商场打折啦[哈哈] http://t.cn/abcdef"),
        normalize("@李大钊 商场打折啦[哈哈]"),  # the same own words once the mention is gone
        normalize("回复@王小明:商场真的打折"),
        normalize("转发微博"),  # nothing of its own: not a document
        "",
    ]
    table = build_idf(texts, segmenter, min_df=1)
    assert table.docs == 2
    assert not {"王小明", "李大钊", "哈哈", "abcdef", "http", "转发"} & set(table.idf)
    assert table.get("商场") == pytest.approx(1.0)  # in every document


def test_idf_table_round_trip(tmp_path: Path, segmenter: Segmenter) -> None:
    table = build_idf([WATER, FIRE, CRASH, SCHOOL] * 3, segmenter, min_df=1, dedup=False)
    path = tmp_path / "sub" / "idf.tsv.gz"
    table.save(path)
    loaded = IdfTable.load(path)
    assert loaded == table
    assert loaded.docs == 12 and len(loaded) == len(table) > 30
    # Plain gzip TSV with a header line; byte-for-byte reproducible.
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()
    assert lines[0].startswith("#idf\t") and json.loads(lines[0].split("\t", 1)[1])["docs"] == 12
    assert all(len(line.split("\t")) == 2 for line in lines[1:])
    first = path.read_bytes()
    table.save(path)
    table.save(tmp_path / "other-name.gz")
    assert path.read_bytes() == first == (tmp_path / "other-name.gz").read_bytes()


def test_idf_table_cap_keeps_the_commonest_words() -> None:
    table = IdfTable.from_counts(100, {"甲乙": 50, "丙丁": 40, "戊己": 30, "庚辛": 3}, max_words=2)
    assert set(table.idf) == {"甲乙", "丙丁"}
    # The default comes from the rarest word kept, not from the dropped ones.
    assert table.default == table.get("丙丁") == table.get("庚辛")
    assert table.common_words(0.45) == {"甲乙"}


def test_load_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "x.tsv.gz"
    path.write_bytes(gzip.compress(b"word\t1.0\n"))
    with pytest.raises(ValueError, match="not an IDF table"):
        IdfTable.load(path)


def test_build_default_idf_reads_ced_format(tmp_path: Path, segmenter: Segmenter) -> None:
    source = tmp_path / "cascades.jsonl.gz"
    records = [
        {"text": "某县自來水公司宣布停水", "reposts": [{"text": "停水了@張三 "}, {"text": ""}]},
        {"text": "商场发生火灾", "reposts": [{"text": "回复@李四:火灾现场"}, {}]},
        {"text": "", "reposts": None},
    ]
    with gzip.open(source, "wt", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    out = tmp_path / "models" / "idf.tsv.gz"
    table = build_default_idf(out, source, segmenter, min_df=1)
    assert table.docs == 4
    assert IdfTable.load(out) == table
    # Traditional characters were normalised before counting; mentions are not words.
    assert "自来水" in table and "自來水" not in table
    assert "张三" not in table and "李四" not in table
    with pytest.raises(FileNotFoundError):
        build_default_idf(out, tmp_path / "missing.jsonl.gz", segmenter)


def test_shipped_table(segmenter: Segmenter) -> None:
    assert DEFAULT_IDF_PATH.stat().st_size <= 2_000_000
    table = IdfTable.load(DEFAULT_IDF_PATH)
    assert table.docs > 400_000 and 20_000 < len(table) <= 200_000
    assert table.min_df >= 3
    # Chatter is common in Weibo posts, event words are not.
    assert table.get("没有") < table.get("大家") < table.get("自来水") < table.default
    stop = table.common_words(0.01)
    assert {"没有", "知道", "大家"} <= stop and "停水" not in stop
    extractor = KeywordExtractor(table, segmenter)
    assert set(_words(extractor.tfidf(WATER, k=3))) >= {"停水", "自来水"}
    assert "火灾" in _words(extractor.tfidf(FIRE))
    assert "火灾" in _words(extractor.textrank(FIRE))
    assert "追尾" in _words(extractor.tfidf(CRASH, k=5))
    assert "食堂" in _words(extractor.textrank(SCHOOL, k=3))


# --- single posts -----------------------------------------------------------------------------


def test_tfidf_finds_the_obvious_keywords(extractor: KeywordExtractor) -> None:
    keywords = extractor.tfidf(WATER)
    assert len(keywords) == 8
    # The only rare words mentioned twice ("停水通知" is another word).
    assert set(_words(keywords)[:2]) == {"停水", "自来水"}
    assert all(isinstance(k, Keyword) and k.weight > 0 for k in keywords)
    weights = [k.weight for k in keywords]
    assert weights == sorted(weights, reverse=True)
    # "公司" is as frequent as "自来水" in the post but common in the table.
    assert _words(keywords).index("公司") > _words(keywords).index("自来水")
    assert _words(extractor.tfidf(WATER, k=3)) == _words(keywords)[:3]
    assert extractor.tfidf(WATER, k=0) == []


def test_tfidf_other_posts(extractor: KeywordExtractor) -> None:
    # One mention each: rare words before the table's common ones, time words left out.
    fire = _words(extractor.tfidf(FIRE, k=20))
    assert fire.index("火灾") < fire.index("现场") and fire.index("消防员") < fire.index("发生")
    assert "今天下午" not in fire
    assert {"追尾", "事故"} <= set(_words(extractor.tfidf(CRASH, k=5)))
    assert extractor.tfidf(SCHOOL)[0].word == "食堂"  # the only repeated word


def test_candidates_exclude_stopwords_numbers_mentions_and_noise(
    extractor: KeywordExtractor,
) -> None:
    text = normalize(
        "@张三丰 转发微博 大家 没有 觉得 12345 2023年 三个 的 了 [蜡烛] "
        "http://t.cn/zabcdef www.example.com 回复@李四:停水 the and water 5g"
    )
    words = extractor.candidates(text)
    banned = {
        "张三丰",  # mention
        "李四",  # reply prefix
        "转发",  # statistical stopword (in 9% of the table's documents)
        "大家",  # statistical stopword (3%)
        "没有",  # function word
        "觉得",
        "12345",  # numbers
        "2023",
        "三个",
        "蜡烛",  # Weibo emoticon code
        "zabcdef",  # URL pieces
        "example",
        "the",  # English stopwords
        "and",
        "5g",  # too short for a Latin token
    }
    assert not banned & set(words), banned & set(words)
    assert "停水" in words and "water" in words


def test_extra_stopwords(segmenter: Segmenter) -> None:
    extractor = KeywordExtractor(_table(COMMON), segmenter, extra_stopwords=["自來水"])
    assert "自来水" not in _words(extractor.tfidf(WATER))


def test_textrank_is_deterministic_and_sensible(
    extractor: KeywordExtractor, segmenter: Segmenter
) -> None:
    first = extractor.textrank(WATER)
    again = extractor.textrank(WATER)
    fresh = KeywordExtractor(_table(COMMON), segmenter).textrank(WATER)
    assert first == again == fresh
    assert first[0].weight == 1.0
    assert all(0.0 < k.weight <= 1.0 for k in first)
    assert {"停水", "自来水"} <= set(_words(first[:3]))
    assert len(extractor.textrank(WATER, k=3)) == 3
    # A word linked to everything is the centre of its graph.
    hub = normalize("火灾 消防员 火灾 浓烟 火灾 商场 火灾 伤亡 火灾 警察 火灾 群众")
    assert extractor.textrank(hub, window=2)[0].word == "火灾"


def test_textrank_small_graphs(extractor: KeywordExtractor) -> None:
    # One candidate: no edges, one word.
    assert extractor.textrank(normalize("火灾!")) == [Keyword("火灾", 1.0)]
    # No edges between different words at window 1 (treated as 2): order of appearance.
    assert _words(extractor.textrank(normalize("火灾 消防员"), window=1)) == ["火灾", "消防员"]


def test_textrank_large_graph_uses_sparse_path(extractor: KeywordExtractor) -> None:
    # Well over _DENSE_NODES distinct words: checks the bincount path agrees on the hub.
    words = [f"词{chr(0x4E00 + i)}{chr(0x4E00 + i * 7 % 500)}" for i in range(500)]
    text = " ".join(f"火灾 {word}" for word in words)
    assert extractor.textrank(text, k=1)[0].word == "火灾"


# --- groups -----------------------------------------------------------------------------------


def test_group_keywords_count_each_post_once(extractor: KeywordExtractor) -> None:
    fires = [
        FIRE,
        normalize("市中心商场火灾,消防员已经控制火势"),
        normalize("商场火灾现场浓烟很大,大家注意安全"),
    ]
    copies = [WATER] * 50 + [f"@网友{i} {WATER}" for i in range(20)]
    copies += [f"转发微博//@网友{i}:{WATER}" for i in range(20)]  # bare reposts of it
    for method in ("tfidf", "textrank"):
        # All 90 copies are one post once mentions, repost markers and punctuation are gone.
        alone = extractor.group_keywords([WATER], method=method)
        assert extractor.group_keywords(copies, method=method) == alone
        keywords = _words(extractor.group_keywords(copies + fires, k=5, method=method))
        assert keywords[0] in {"火灾", "商场"}, (method, keywords)
        # Repeating a word inside one post does not help either.
        long_post = normalize("停水" * 500 + "消防员")
        words = _words(extractor.group_keywords([*fires, long_post], k=3, method=method))
        assert "停水" not in words[:1], (method, words)


def test_group_keywords_tfidf_weights(extractor: KeywordExtractor) -> None:
    group = [FIRE, normalize("商场火灾"), normalize("火灾原因调查中"), CRASH]
    keywords = extractor.group_keywords(group, k=3)
    assert keywords[0].word == "火灾"
    # Share of posts (3 of 4) times IDF.
    assert keywords[0].weight == pytest.approx(0.75 * extractor.idf.get("火灾"))


def test_group_keywords_bad_input(extractor: KeywordExtractor) -> None:
    assert extractor.group_keywords([]) == []
    assert extractor.group_keywords(["", "   ", "😀", "转发微博"]) == []
    assert extractor.group_keywords([FIRE], k=0) == []
    with pytest.raises(ValueError, match="unknown keyword method"):
        extractor.group_keywords([FIRE], method="lda")  # type: ignore[arg-type]


# --- robustness -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "😀😀😀🔥",
        "[泪][泪][哈哈]",
        "!!!???。。。",
        "\x00\x01\x07控制\x1b字符\x7f",
        "\ud800停水\udfff",  # lone surrogates from broken UTF-16
        "12345 67890 3.14",
        "@张三 @李四 http://t.cn/abc",
    ],
)
def test_bad_inputs_never_crash(extractor: KeywordExtractor, text: str) -> None:
    for result in (extractor.tfidf(text), extractor.textrank(text)):
        assert isinstance(result, list)
        assert all(isinstance(k.word, str) and k.weight > 0 for k in result)
    assert isinstance(extractor.group_keywords([text, text], method="textrank"), list)


def test_surrogates_keep_the_rest_of_the_text(extractor: KeywordExtractor) -> None:
    assert "停水" in _words(extractor.tfidf("\ud800停水停水\udfff"))


def test_huge_text(extractor: KeywordExtractor) -> None:
    text = (WATER + FIRE + CRASH + SCHOOL) * 350  # ~100 KB
    assert len(text.encode("utf-8")) > 100_000
    started = time.perf_counter()
    tfidf = extractor.tfidf(text)
    textrank = extractor.textrank(text)
    assert time.perf_counter() - started < 10
    assert "停水" in _words(tfidf) and len(textrank) == 8


def test_english_text(extractor: KeywordExtractor) -> None:
    text = normalize(
        "The city water company announced a water outage: water supply stops tomorrow "
        "while the main pipe is repaired."
    )
    words = _words(extractor.tfidf(text, k=10))
    assert words[0] == "water"
    assert {"outage", "pipe"} <= set(words)
    assert not {"the", "is", "while", "a"} & set(words)


def test_user_words_apply_after_dictionary_change() -> None:
    segmenter = Segmenter()
    extractor = KeywordExtractor(_table(COMMON), segmenter)
    text = normalize("听风舆情平台今天上线,听风舆情很好用")
    assert "听风舆情" not in extractor.candidates(text)
    segmenter.add_word("听风舆情")
    assert _words(extractor.tfidf(text))[0] == "听风舆情"


def test_segmenter_without_rjieba(extractor: KeywordExtractor) -> None:
    class Spaces:
        def words(self, text: str) -> list[str]:
            return text.split()

    plain = KeywordExtractor(_table(COMMON), Spaces())  # type: ignore[arg-type]
    assert _words(plain.tfidf("火灾 火灾 商场 12345 的 大家 fire")) == ["火灾", "商场", "fire"]


def test_strip_noise() -> None:
    assert strip_noise("说得对//@张三:转发微博//@李四:原文", own_words=True) == "说得对"
    assert strip_noise("说得对//@张三:原文").split() == ["说得对//", ":原文"]
    assert "a@b.com" in strip_noise("mail a@b.com")


def test_threads_share_an_extractor_while_words_are_added() -> None:
    segmenter = Segmenter()
    extractor = KeywordExtractor(_table(COMMON), segmenter)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(200):
                assert extractor.tfidf(WATER)
                extractor.group_keywords([FIRE, CRASH], method="textrank")
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for number in range(5):
        segmenter.add_word(f"测试新词{number}")
    for thread in threads:
        thread.join()
    assert not errors
