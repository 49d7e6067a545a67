"""People, organisations and places a post mentions: jieba's part-of-speech tags plus rules.

rjieba tags person names `nr` (and `nrfg`, `nrt`), places `ns`, organisations `nt`. It misses
most organisation names built from parts, so a rule joins them: a run of name-like tokens
(places, organisations, proper nouns) and modifiers ending in an organisation word
("杭州市 西湖区 人民政府", "浙江大学 医学院 附属 第二 医院", "腾讯 公司") is one
organisation. Tokens that are division names from the region table count as places whatever
jieba's tag (it tags 拉萨 `nrt`). Use the project's `Segmenter` so that the administrator's user
words (with their tags) apply. See docs/analysis-regions-entities.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, NamedTuple

import rjieba

from tingfeng.analyze.segment import Segmenter

__all__ = ["Entities", "Entity", "extract_entities"]

# Longer texts are cut here: tagging costs ~0.25 µs a character and an article's entities are
# in its first pages.
MAX_CHARS = 200_000

_PERSON_TAGS = frozenset({"nr", "nrfg", "nrt"})
_PLACE_TAGS = frozenset({"ns"})
_PROPER_TAGS = frozenset({"ns", "nt", "nz", "nr", "nrfg", "nrt", "j"})
# Tags of words that may sit inside an organisation name ("第一 人民 医院", "附属", "卫生 健康").
_MODIFIER_TAGS = frozenset({"n", "vn", "an", "a", "b", "ng", "l", "m"})
# Tags an organisation word itself may carry (not verbs: 办 in 举办, 开办).
_NOUN_TAGS = frozenset({"n", "nt", "nz", "ns", "nr", "nrt", "nrfg", "j", "l", "vn", "ng"})

# Words that end an organisation's name.
_ORG_SUFFIXES = (
    "人民政府",
    "政府",
    "委员会",
    "管委会",
    "居委会",
    "村委会",
    "常委会",
    "医院",
    "卫生院",
    "大学",
    "学院",
    "中学",
    "小学",
    "学校",
    "幼儿园",
    "公司",
    "集团",
    "银行",
    "派出所",
    "研究所",
    "事务所",
    "看守所",
    "法院",
    "检察院",
    "研究院",
    "科学院",
    "协会",
    "学会",
    "基金会",
    "联合会",
    "商会",
    "工会",
    "办事处",
    "办公室",
    "办公厅",
    "电视台",
    "电台",
    "报社",
    "日报",
    "晚报",
    "出版社",
    "中心",
    "合作社",
    "监狱",
    "海关",
    "部队",
    "支队",
    "大队",
    "总局",
    "分局",
    "党委",
    "纪委",
    "政协",
    "工厂",
    "酒店",
    "超市",
    "商场",
)
# Single characters that end organisation words of three or more characters (公安局, 卫健委,
# 财政厅, 外交部, 加油站); two-character words ending so are mostly not (结局, 内部, 网站).
_ORG_SUFFIX_CHARS = frozenset("局委厅院部所处办站队馆厂署")
_ORG_LAST_CHARS = frozenset(s[-1] for s in _ORG_SUFFIXES) | _ORG_SUFFIX_CHARS
# Words that start an organisation name without being a proper noun (国家 卫生 健康 委员会).
_ORG_START_WORDS = frozenset({"国家", "中央", "全国", "中共", "中国", "中华人民共和国", "省", "市"})
# Organisation words that name no particular organisation on their own.
_GENERIC_ORGS = frozenset(_ORG_SUFFIXES) | {"人民" + s for s in ("政府", "法院", "检察院", "医院")}
# A place-like token jieba tags as a common noun (it tags 鼓楼区 `n`).
_PLACE_ENDINGS = frozenset("省市区县镇乡村")
# jieba with HMM sometimes glues a function word to a name ("张三在").
_TRAILING_FUNCTION_CHARS = frozenset("在和与跟说是的了被把向对从给为也都就还又等")
_ANONYMOUS = frozenset({"某", "某某"})
# jieba's dictionary tags some common words `nr` (谢谢, 宝宝, 啊啊啊, 今天上午). What no
# personal name is: one character repeated, a word with an interjection or sentence particle,
# a time of day. (Other mis-tagged words, 明白 or 阳光, need a surname list: docs/decisions.md.)
_NOT_IN_NAMES = frozenset("啊呵嘿哦噢嗯呀吗呢啦嘛哇喔哟唉")
_TIME_STARTS = ("今天", "明天", "昨天", "前天", "后天", "今晚", "今早", "昨晚")
_TIME_ENDS = ("上午", "下午", "晚上", "中午", "早上", "凌晨", "傍晚")
_CANDIDATE_TAGS = _PERSON_TAGS | _PLACE_TAGS | _NOUN_TAGS
_MAX_BACK = 8

Tag = tuple[str, str]
_SURROGATES = re.compile("[\ud800-\udfff]")


class Entity(NamedTuple):
    """A name and how many times the post mentions it."""

    name: str
    count: int


@dataclass(slots=True)
class Entities:
    """Names found in one post, each list in order of first mention."""

    persons: list[Entity] = field(default_factory=list)
    organizations: list[Entity] = field(default_factory=list)
    places: list[Entity] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.persons or self.organizations or self.places)

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        """JSON-ready: {"persons": [{"name": ..., "count": ...}], "organizations": ..., ...}."""
        return {
            kind: [{"name": e.name, "count": e.count} for e in getattr(self, kind)]
            for kind in ("persons", "organizations", "places")
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entities:
        def read(kind: str) -> list[Entity]:
            return [Entity(str(e["name"]), int(e["count"])) for e in data.get(kind) or ()]

        return cls(read("persons"), read("organizations"), read("places"))


def extract_entities(
    text: str,
    segmenter_or_jieba: Segmenter | rjieba.Jieba | None = None,
    *,
    hmm: bool = True,
    max_chars: int = MAX_CHARS,
) -> Entities:
    """People, organisations and places in normalised `text`.

    Pass the process's `Segmenter` (its dictionary, user words included, is read at each call)
    or an `rjieba.Jieba`; None uses rjieba's built-in dictionary. `hmm` lets jieba join
    unknown names (李明, 马云) that the dictionary alone splits into characters.
    """
    if not text or not isinstance(text, str):
        return Entities()
    if len(text) > max_chars:
        text = text[:max_chars]
    tag = _tagger(segmenter_or_jieba)
    try:
        tokens = tag(text, hmm)
    except UnicodeEncodeError:  # lone surrogates cannot cross into Rust
        tokens = tag(_SURROGATES.sub("\ufffd", text), hmm)
    if not tokens:
        return Entities()

    standalone, named = _division_names()
    persons: dict[str, int] = {}
    organizations: dict[str, int] = {}
    places: dict[str, int] = {}
    consumed = _organisations(tokens, organizations)

    count = len(tokens)
    skip = -1
    for index, (word, pos) in enumerate(tokens):
        # Most tokens are verbs, particles, punctuation: one set lookup settles them.
        if pos not in _CANDIDATE_TAGS or index == skip or index in consumed:
            continue
        if (word in named and pos in _PROPER_TAGS) or (word in standalone and pos in _NOUN_TAGS):
            # jieba tags some divisions as people or common nouns (拉萨 nrt, 合肥 n).
            _add(places, word)
        elif pos in _PERSON_TAGS:
            if (
                len(word) == 1
                and index + 1 < count
                and tokens[index + 1][0] in _ANONYMOUS
                and index + 1 not in consumed
            ):
                # Anonymised names in reports: 李 某某, 王 某.
                word += tokens[index + 1][0]
                skip = index + 1
            elif len(word) >= 3 and word[-1] in _TRAILING_FUNCTION_CHARS:
                word = word[:-1]
            if _may_be_a_name(word):
                _add(persons, word)
        elif pos in _PLACE_TAGS:
            _add(places, word)

    return Entities(_listed(persons), _listed(organizations), _listed(places))


def _tagger(source: Segmenter | rjieba.Jieba | None) -> Callable[[str, bool], list[Tag]]:
    if isinstance(source, Segmenter):
        # Read at each call: the segmenter swaps in a new dictionary when words are added.
        return source.dictionary.tag
    if source is None:
        return rjieba.tag
    return source.tag


def _organisations(tokens: list[Tag], out: dict[str, int]) -> set[int]:
    """Add organisation names to `out`; return the indexes of the tokens they took."""
    spans: list[tuple[int, int]] = []
    for end, (word, pos) in enumerate(tokens):
        if pos != "nt" and (word[-1] not in _ORG_LAST_CHARS or not _is_org_word(word, pos)):
            continue
        start = _org_start(tokens, end)
        if start is None:
            # On its own: an organisation jieba knows (新华社), or a proper noun ending in an
            # organisation word (广州日报); not a bare common noun (教育局, 医院).
            if pos == "nt" or (pos in _PROPER_TAGS and _is_org_word(word, pos)):
                start = end
            else:
                continue
        # A run that reaches back into earlier ones takes them in (…委员会 办公室).
        while spans and spans[-1][1] >= start:
            start = min(start, spans.pop()[0])
        spans.append((start, end))

    consumed: set[int] = set()
    for start, end in spans:
        name = "".join(word for word, _ in tokens[start : end + 1])
        consumed.update(range(start, end + 1))
        if len(name) >= 2 and name not in _GENERIC_ORGS:
            _add(out, name)
    return consumed


def _org_start(tokens: list[Tag], end: int) -> int | None:
    """First token of the organisation name ending at `end`, or None if nothing names it.

    Walking left, modifiers may sit right before a bare organisation word (第一 人民 医院), not
    before a name jieba already knows (上海 记者 北京医院); once a name-like token is reached
    only name-like tokens extend it, so 记者 in "上海 记者 北京 医院" stops at 北京. A person
    name counts only as the nearest name before a bare organisation word (富士康 工厂, 张三
    律师 事务所), never further left (张三 在 杭州市 第一 人民 医院).
    """
    bare = tokens[end][1] not in _PROPER_TAGS
    start = None
    index = end - 1
    limit = max(-1, end - 1 - _MAX_BACK)
    while index > limit:
        word, pos = tokens[index]
        if pos in _PERSON_TAGS:
            if not bare or start is not None:
                break
            start = index
        elif not bare and pos == "nt" and _is_org_word(word, pos):
            break  # two organisations side by side (北京大学 清华大学)
        elif _is_name_like(word, pos):
            start = index
        elif not (bare and start is None and _is_modifier(word, pos)):
            break
        index -= 1
    return start


def _is_name_like(word: str, pos: str) -> bool:
    if len(word) < 2 and word not in _ORG_START_WORDS:
        return False
    return (
        pos in _PROPER_TAGS
        or word in _ORG_START_WORDS
        or _is_org_word(word, pos)
        or (pos == "n" and word[-1] in _PLACE_ENDINGS)
    )


def _is_modifier(word: str, pos: str) -> bool:
    if pos == "m":
        # Ordinals and numbers (第一 医院, 301 医院), not quantities like 一些.
        return word.startswith("第") or word.isdigit()
    return pos in _MODIFIER_TAGS


def _is_org_word(word: str, pos: str) -> bool:
    if pos not in _NOUN_TAGS or len(word) < 2:
        return False
    return word.endswith(_ORG_SUFFIXES) or (len(word) >= 3 and word[-1] in _ORG_SUFFIX_CHARS)


def _may_be_a_name(word: str) -> bool:
    return (
        len(set(word)) > 1
        and _NOT_IN_NAMES.isdisjoint(word)
        and not word.startswith(_TIME_STARTS)
        and not word.endswith(_TIME_ENDS)
    )


def _add(counts: dict[str, int], name: str) -> None:
    if len(name) >= 2:
        counts[name] = counts.get(name, 0) + 1


def _listed(counts: dict[str, int]) -> list[Entity]:
    return [Entity(name, count) for name, count in counts.items()]


@cache
def _division_names() -> tuple[frozenset[str], frozenset[str]]:
    """Division names that name a place on their own (合肥; not 公安, a county too), and all
    names and short forms (萧山); both empty if the region table is missing."""
    from tingfeng.analyze.regions import default_finder

    try:
        finder = default_finder()
    except FileNotFoundError:
        return frozenset(), frozenset()
    return finder.names(standalone_only=True), finder.names()
