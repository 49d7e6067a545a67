"""Exact and near-duplicate detection of posts."""

from __future__ import annotations

import random
import re

import pytest

from tests.conftest import CED, ced_repost_texts
from tingfeng.analyze.duplicates import (
    NearDuplicateIndex,
    choose_bands,
    content_hash,
    shingle_jaccard,
    strip_for_dedup,
)
from tingfeng.analyze.normalize import normalize

# Distinct ~40-character Chinese posts (real-looking, unrelated to each other).
POSTS = [
    "今天下午宁波妇儿医院发生一起跳楼事件，具体情况有关部门正在调查，请大家不要传谣",
    "武汉大学老牌坊被拆除引发校友不满，学校回应称将在原址附近新建文化广场以作纪念",
    "江西婺源清华中学网传老师打死学生一事不实，系网友剪贴十一年前旧闻拼凑而成的谣言",
    "气象台发布暴雨橙色预警，预计未来三小时内本市大部分地区将出现五十毫米以上强降水",
    "市场监管局抽检发现三批次食品不合格，涉及两家超市和一家网店，已责令下架召回处理",
    "高铁新线今日正式开通运营，全程运行时间缩短至两小时，沿线居民出行将更加方便快捷",
    "某小区业主反映物业乱收停车费，街道办已介入协调，要求物业公开收费标准和账目明细",
    "教育部发布通知要求各地中小学减轻学生课业负担，严禁违规补课和布置过量家庭作业等",
]


def edit(text: str, count: int, seed: int) -> str:
    """`text` with `count` characters substituted at distinct random positions."""
    rng = random.Random(seed)
    chars = list(text)
    for position in rng.sample(range(len(chars)), count):
        chars[position] = "乙" if chars[position] != "乙" else "丙"
    return "".join(chars)


# --------------------------------------------------------------------------- strip / hash


def test_strip_weibo_repost_chain_boilerplate_and_short_link() -> None:
    assert strip_for_dedup("说得对//@张三:转发微博//@李四:原文 http://t.cn/abc") == "说得对"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("回复@王剑云68:现在大学搞行政的那帮人真可怕", "现在大学搞行政的那帮人真可怕"),
        ("回复@五更听风:转给更多人知道。//@五更听风:原文", "转给更多人知道。"),
        ("@四川省中医院左渝陵 @华西医院-心内科 为什么没有慈善医疗制度?", "为什么没有慈善医疗制度?"),
        ("转发微博", ""),
        ("转发微博。", ""),
        ("//@李四:只有转发链", ""),
        (
            "推荐@程与败 的帖子《教师打死学生》,大家也来看看吧~",
            "推荐的帖子《教师打死学生》,大家也来看看吧~",
        ),
        ("怎么还那么多警察啊 http:", "怎么还那么多警察啊"),
        ("详见 https://www.gov.cn/zhengce/2024-01/01/content_1.htm?from=wb#top 通知", "详见通知"),
        ("网址t.cn/zY1QWp0原文在此", "网址原文在此"),
        ("用www.example.net.cn测试网络", "用测试网络"),
        ("查看网页链接 了解更多", "查看了解更多"),
        ("联系 abc@example.com 咨询", "联系abc@example.com咨询"),  # e-mail stays
        ("@a@smile-1989@不知所云的vegetables 你好", "你好"),  # mentions without spaces
        ("你@ 京华时报 干啥? @@路人 看", "你干啥?看"),  # "@ name", "@@name"
        ("转发微博.@李家小刁儿,你们家招人", ",你们家招人"),
        ("空格 \t 换行\n都去掉", "空格换行都去掉"),
    ],
)
def test_strip_for_dedup(text: str, expected: str) -> None:
    assert strip_for_dedup(text) == expected


def test_strip_is_idempotent() -> None:
    texts = [
        "说得对//@张三:转发微博//@李四:原文 http://t.cn/abc",
        "转发 微博 哈哈",
        "回复@a:回复@b:嗯 @c  看 http://x.cn/1 t.cn/2 www.a.com",
        "@张三@李四 一起看",
        *POSTS,
    ]
    for text in texts:
        once = strip_for_dedup(text)
        assert strip_for_dedup(once) == once, text


def test_content_hash_equal_for_reposts_differing_only_in_chain_and_url() -> None:
    a = normalize("这个消息是假的，大家别信！//@张三:转发微博 http://t.cn/abc")
    b = normalize("这个消息是假的，大家别信！ //@王五:真的吗?//@李四:原文 https://t.cn/XYZ")
    c = normalize("@赵六 这个消息是假的，大家别信！")
    assert content_hash(a) == content_hash(b) == content_hash(c)
    assert re.fullmatch(r"[0-9a-f]{32}", content_hash(a))
    assert content_hash(a) != content_hash(normalize("这个消息是真的，大家可以信！"))


def test_content_hash_of_stripped_text_is_the_same() -> None:
    text = "说得对//@张三:原文 http://t.cn/abc"
    assert content_hash(strip_for_dedup(text), stripped=True) == content_hash(text)


@pytest.mark.skipif(not CED.exists(), reason="shared CED data set not present")
def test_strip_idempotent_on_real_reposts() -> None:
    texts = ced_repost_texts(20_000)
    for text in texts:
        once = strip_for_dedup(normalize(text))
        assert strip_for_dedup(once) == once, text
        assert "回复@" not in once and "http" not in once and " " not in once


# ------------------------------------------------------------------------------ near-dups


def index(**overrides: object) -> NearDuplicateIndex:
    options: dict[str, object] = {"threshold": 0.7, "num_perm": 64, "window": 1000, "min_chars": 8}
    options.update(overrides)
    return NearDuplicateIndex(**options)  # type: ignore[arg-type]


def test_choose_bands() -> None:
    assert choose_bands(0.7, 64) == 16  # 16 bands of 4 rows: P(candidate | J=0.7) = 0.988
    assert choose_bands(0.5, 64) == 32
    assert choose_bands(0.9, 64) == 8


def test_small_edits_join_the_original_group() -> None:
    idx = index()
    assert idx.find_or_add(1, POSTS[0]) == 1
    near = edit(POSTS[0], 1, seed=1)  # one character of 40
    assert shingle_jaccard(near, POSTS[0]) >= 0.7
    assert idx.find_or_add(2, near) == 1
    assert idx.find(edit(POSTS[0], 2, seed=2)) == 1


def test_unrelated_posts_do_not_join() -> None:
    idx = index()
    groups = idx.find_or_add_many(list(enumerate(POSTS, start=100)))
    assert groups == list(range(100, 100 + len(POSTS)))
    assert idx.find("完全不相干的一段文字内容，讨论的是今天晚饭吃什么比较好") is None


def test_candidates_are_verified_against_the_threshold() -> None:
    original = POSTS[1]
    far = edit(original, 6, seed=3)  # six of 39 characters: Jaccard well below 0.7
    similarity = shingle_jaccard(original, far)
    assert 0.3 < similarity < 0.6
    # 64 bands of one row: every post sharing a MinHash value is a candidate, so only the
    # verification can keep the far copy out.
    strict = index(threshold=0.7, bands=64)
    strict.add(original, 7)
    assert strict.find(far) is None
    loose = index(threshold=0.3)
    loose.add(original, 7)
    assert loose.find(far) == 7


def test_most_similar_group_wins() -> None:
    idx = index(threshold=0.5)
    idx.add(edit(POSTS[2], 5, seed=4), 1)  # farther from the query
    idx.add(edit(POSTS[2], 1, seed=5), 2)  # closer
    assert idx.find(POSTS[2]) == 2


def test_batch_items_match_each_other() -> None:
    idx = index()
    batch = [
        (10, POSTS[3]),
        (11, POSTS[4]),
        (12, edit(POSTS[3], 1, seed=6)),  # near copy of item 10, same batch
        (13, POSTS[3]),  # exact copy of item 10
        (14, "太短了"),
    ]
    assert idx.find_or_add_many(batch) == [10, 11, 10, 10, 14]


def test_reposts_with_different_chains_are_one_group() -> None:
    idx = index()
    base = "今天下午宁波妇儿医院发生一起跳楼事件，具体情况有关部门正在调查"
    groups = idx.find_or_add_many(
        [
            (1, normalize(f"{base}//@张三:转发微博")),
            (2, normalize(f"{base} http://t.cn/abc //@李四:太惨了")),
            (3, normalize(f"回复@王五:{base}")),
        ]
    )
    assert groups == [1, 1, 1]


def test_short_texts_are_not_indexed() -> None:
    idx = index(min_chars=8)
    assert idx.find_or_add_many([(1, "转发微博"), (2, "真的吗真的吗"), (3, "真的吗真的吗")]) == [
        1,
        2,
        3,
    ]
    assert len(idx) == 0
    assert idx.find("真的吗真的吗") is None
    assert idx.add("太短", 5) is False


def test_window_bounds_memory_and_forgets_old_posts() -> None:
    window = 40
    idx = index(window=window)
    rng = random.Random(7)
    first = "".join(rng.choice("甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉") for _ in range(40))
    idx.find_or_add(0, first)
    assert idx.find(first) == 0
    sizes = []
    for post_id in range(1, 200):
        text = "".join(
            rng.choice("天地玄黄宇宙洪荒日月盈昃辰宿列张寒来暑往秋收冬藏") for _ in range(40)
        )
        idx.find_or_add(post_id, text)
        sizes.append(len(idx))
    assert max(sizes) <= window
    assert min(sizes[window:]) >= window // 2  # recent posts are always kept
    # The first post has rotated out: its copy now starts a new group.
    assert idx.find(first) is None
    assert idx.find_or_add(500, first) == 500


def test_recent_posts_survive_a_rotation() -> None:
    idx = index(window=20)
    for post_id in range(9):
        idx.find_or_add(post_id, f"第{post_id}条互不相同的测试微博内容，编号{post_id * 7919}")
    idx.find_or_add(100, POSTS[5])  # the 10th post fills the current half: rotation
    assert idx.find(edit(POSTS[5], 1, seed=8)) == 100


def test_exact_repost_refreshes_an_old_group() -> None:
    idx = index(window=20)
    idx.find_or_add(1, POSTS[6])
    filler = [(10 + n, f"填充用的不同内容第{n}条，编号{n * 104729}号") for n in range(12)]
    idx.find_or_add_many(filler)  # POSTS[6] is now in the previous generation
    assert idx.find_or_add(2, POSTS[6]) == 1  # joins, and is copied into the current half
    idx.find_or_add_many([(50 + n, f"更多填充内容第{n}条，编号{n * 7877}号") for n in range(9)])
    assert idx.find(POSTS[6]) == 1  # still known although its first copy was dropped


def test_variants_of_a_viral_post_join_one_group_without_filling_the_index() -> None:
    idx = index(window=10_000, max_group_members=8)
    base = POSTS[0]
    variants = [(n, f"{base}第{n}次转发") for n in range(300)]
    groups = idx.find_or_add_many(variants)
    assert set(groups) == {0}
    assert len(idx) <= 8  # one group keeps at most 8 posts per generation


def test_warm_rebuilds_groups() -> None:
    idx = index()
    indexed = idx.warm([(41, POSTS[7]), (42, POSTS[0]), (41, edit(POSTS[7], 1, seed=9))])
    assert indexed == 3
    assert idx.find(edit(POSTS[7], 1, seed=10)) == 41
    assert idx.find_or_add(99, POSTS[0]) == 42


def test_prestripped_input_is_compared_as_given() -> None:
    idx = index(prestripped=True)
    text = "说得对说得对说得对//@张三:原文原文原文"
    idx.add(text, 1)
    assert idx.find(text) == 1
    assert idx.find("说得对说得对说得对") is None  # no stripping happened


def test_long_texts_compare_their_first_max_chars() -> None:
    idx = index(max_chars=50)
    head = "".join(POSTS)[:60]
    idx.add(head + "后面是完全不同的第一种结尾" * 5, 1)
    assert idx.find(head + "后面接上另外一种毫不相干的内容" * 5) == 1


def test_clear() -> None:
    idx = index()
    idx.add(POSTS[0], 1)
    idx.clear()
    assert len(idx) == 0
    assert idx.find(POSTS[0]) is None


def test_recall_on_near_copies() -> None:
    # 2% of characters edited (Jaccard ~0.85): nearly every copy must be found.
    rng = random.Random(11)
    alphabet = [chr(code) for code in range(0x4E00, 0x4E00 + 3000)]
    originals = ["".join(rng.choice(alphabet) for _ in range(100)) for _ in range(300)]
    idx = index(window=10_000)
    assert idx.find_or_add_many(list(enumerate(originals))) == list(range(300))
    copies = [(1000 + n, edit(text, 2, seed=n)) for n, text in enumerate(originals)]
    groups = idx.find_or_add_many(copies)
    found = sum(group == n for n, group in enumerate(groups))
    assert found >= 297
