"""Keywords of a post and of a group of posts: TF-IDF and TextRank over segmented text.

Candidates are content words chosen by part of speech (rjieba's jieba tags), at least two
characters long for Chinese and three for Latin words, not numbers and not stopwords. Stopwords
are mostly found statistically: a word in more than `max_doc_ratio` of the documents behind the
IDF table ("转发", "觉得", "大家") says nothing about one post. A short list of function words the
tagger calls verbs or nouns, and the usual English function words, complete the set.

The shipped IDF table (`models/idf.tsv.gz`) is built by `build_default_idf` from the CED Weibo
posts. Input text is expected `normalize()`d (Simplified, NFKC, lower case); @mentions, URLs,
repost-chain markers and Weibo emoticon codes ("[泪]") are removed before segmentation.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import compress
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import rjieba

from tingfeng.analyze.normalize import normalize
from tingfeng.analyze.segment import Segmenter

__all__ = [
    "DEFAULT_CED_PATH",
    "DEFAULT_IDF_PATH",
    "IdfTable",
    "Keyword",
    "KeywordExtractor",
    "build_default_idf",
    "build_idf",
    "iter_ced_texts",
    "load_default_idf",
    "strip_noise",
]

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve()
DEFAULT_IDF_PATH = _HERE.parent.parent / "models" / "idf.tsv.gz"
# Where bench/ looks too: the shared data folder beside the checkout (.parent never fails, so
# an installed package imports fine and only building from it needs `source`).
DEFAULT_CED_PATH = (
    _HERE.parent.parent.parent.parent.parent / "shared/data/rumor/ced/cascades.jsonl.gz"
)

# --- Cleaning ---------------------------------------------------------------------------------

_CHAIN = "//@"
_URL_CHARS = r"[A-Za-z0-9\-._~:/?#@!$&'*+,;=%]*"
# Removed before segmentation so that user names, link fragments and emoticon names never
# become keywords. Mention and URL rules follow duplicates.strip_for_dedup (kept separate
# because that function also removes all whitespace, which would glue English words together).
# "[泪]", "[蜡烛]", "[围观]": Weibo emoticon codes, the most frequent "nouns" in CED reposts.
# Bracket codes are short and without spaces; "【标题】" headlines use other brackets.
_NOISE = re.compile(
    r"回复@\s*[\w\-]{1,30}\s*[:：]"
    rf"|https?:{_URL_CHARS}"
    rf"|www\.(?<![A-Za-z0-9.\-]www\.){_URL_CHARS}"
    rf"|t\.cn/(?<![A-Za-z0-9.\-]t\.cn/){_URL_CHARS}"
    r"|@(?<![A-Za-z0-9_%+\-]@)[@\s]*[\w\-]+(?:@[@\s]*[\w\-]+)*"
    r"|\[[^\[\]\s]{1,8}\]"
    r"|转发微博|网页链接|原文地址"
)


def strip_noise(text: str, *, own_words: bool = False) -> str:
    """`text` without mentions, URLs, emoticon codes and repost boilerplate (space-separated).

    `own_words`: keep only the part before a "//@" repost chain (the reposter's own words),
    for counting where the chain would repeat other posts.

    >>> " ".join(strip_noise("停水了[泪] @张三 看看 http://t.cn/abc").split())
    '停水了 看看'
    """
    if own_words:
        cut = text.find(_CHAIN)
        if cut >= 0:
            text = text[:cut]
    # A space, not "": the pieces on either side are separate words.
    return _NOISE.sub(" ", text)


_NOT_WORD = re.compile(r"[\W_]+")


def _dedup_key(text: str) -> str:
    """`text` without spaces and punctuation: copies differing only there count once."""
    return _NOT_WORD.sub("", text)


# --- IDF table --------------------------------------------------------------------------------


def _idf(docs: int, df: int) -> float:
    # Smoothed as in scikit-learn: positive for every df, finite for df = 0.
    return math.log((docs + 1) / (df + 1)) + 1.0


@dataclass
class IdfTable:
    """Inverse document frequencies: `idf[word]`, with `default` for words not in the table.

    `default` is the IDF of the rarest words kept: a word missing from the table was seen in
    fewer documents than those, so it is at least as specific (new names, user words).
    """

    docs: int
    idf: dict[str, float]
    default: float
    min_df: int = 1

    def __len__(self) -> int:
        return len(self.idf)

    def __contains__(self, word: object) -> bool:
        return word in self.idf

    def get(self, word: str) -> float:
        """IDF of `word`, or `default`."""
        return self.idf.get(word, self.default)

    def idf_for_ratio(self, ratio: float) -> float:
        """IDF of a word found in `ratio` of the documents (0 < ratio <= 1)."""
        return math.log((self.docs + 1) / (ratio * self.docs + 1)) + 1.0

    def common_words(self, max_doc_ratio: float) -> frozenset[str]:
        """Words found in more than `max_doc_ratio` of the documents: statistical stopwords."""
        limit = self.idf_for_ratio(max_doc_ratio)
        return frozenset(word for word, value in self.idf.items() if value < limit)

    @classmethod
    def from_counts(
        cls, docs: int, df: dict[str, int], *, min_df: int = 1, max_words: int | None = None
    ) -> IdfTable:
        """Table from document frequencies: words in >= `min_df` documents, the commonest
        `max_words` of them (ties by word, so the result does not depend on dict order)."""
        kept = sorted(
            ((word, count) for word, count in df.items() if count >= min_df),
            key=lambda item: (-item[1], item[0]),
        )
        if max_words is not None:
            kept = kept[:max_words]
        floor = kept[-1][1] if kept else min_df
        return cls(
            docs=docs,
            idf={word: round(_idf(docs, count), 4) for word, count in kept},
            default=round(_idf(docs, floor), 4),
            min_df=max(min_df, floor),
        )

    def save(self, path: Path) -> None:
        """Write a gzip TSV: a `#`-header with the counts, then `word<TAB>idf`, commonest first.

        Byte-for-byte reproducible: fixed order, nothing else in the file.
        """
        header = {"docs": self.docs, "default": self.default, "min_df": self.min_df}
        lines = ["#idf\t" + json.dumps(header, sort_keys=True)]
        lines += [
            f"{word}\t{value:.4f}"
            for word, value in sorted(self.idf.items(), key=lambda item: (item[1], item[0]))
        ]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        # No file name or time stamp in the gzip header: the bytes depend on the table only.
        with (
            open(tmp, "wb") as raw,
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as out,
        ):
            out.write(data)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> IdfTable:
        """Read a table written by `save`."""
        with gzip.open(Path(path), "rt", encoding="utf-8", newline="\n") as handle:
            first = handle.readline()
            if not first.startswith("#idf\t"):
                raise ValueError(f"{path}: not an IDF table (missing '#idf' header)")
            header = json.loads(first.split("\t", 1)[1])
            idf: dict[str, float] = {}
            for line in handle:
                word, _, value = line.rstrip("\n").rpartition("\t")
                if word:
                    idf[word] = float(value)
        return cls(
            docs=int(header["docs"]),
            idf=idf,
            default=float(header["default"]),
            min_df=int(header.get("min_df", 1)),
        )


def build_idf(
    texts: Iterable[str],
    segmenter: Segmenter,
    *,
    min_df: int = 3,
    max_words: int | None = 150_000,
    dedup: bool = True,
) -> IdfTable:
    """Document frequencies over `texts` (one document each, `normalize()`d).

    Each text is reduced to its own words (`strip_noise(..., own_words=True)`); with `dedup`,
    identical reduced texts count once, so copy-paste reposts do not make their words look
    common. Empty texts are skipped. Words in fewer than `min_df` documents are dropped (typos,
    one-off names); `max_words` keeps the commonest words only (~5 bytes a word gzipped).
    """
    df: dict[str, int] = {}
    seen: set[int] = set()
    docs = 0
    words = segmenter.words
    for text in texts:
        own = strip_noise(text, own_words=True)
        key = _dedup_key(own)
        if not key:
            continue
        if dedup:
            # Hashes, not texts, keep memory flat. A 64-bit collision (odds ~1e-8 over CED)
            # would only merge two documents.
            digest = hash(key)
            if digest in seen:
                continue
            seen.add(digest)
        docs += 1
        for word in set(words(own)):
            # Tabs and newlines would break the file format; the segmenter never yields
            # whitespace but a user word could contain a control character.
            if word.isprintable():
                df[word] = df.get(word, 0) + 1
    return IdfTable.from_counts(docs, df, min_df=min_df, max_words=max_words)


def iter_ced_texts(path: Path = DEFAULT_CED_PATH) -> Iterator[str]:
    """Every non-empty text (source posts and reposts) of the CED cascades file, normalised."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            texts = [record.get("text") or ""]
            texts += [(repost or {}).get("text") or "" for repost in record.get("reposts") or []]
            for text in texts:
                if text:
                    yield normalize(text)


def build_default_idf(
    out_path: Path = DEFAULT_IDF_PATH,
    source: Path = DEFAULT_CED_PATH,
    segmenter: Segmenter | None = None,
    *,
    min_df: int = 3,
    max_words: int = 150_000,
) -> IdfTable:
    """Build the shipped IDF table from all CED Weibo texts and write it to `out_path`.

    Uses the built-in dictionary only (no user words) unless a `segmenter` is given, so the
    shipped file does not depend on an installation's settings. Takes 20-45 s (one core).
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"CED cascades file not found: {source}")
    started = time.perf_counter()
    table = build_idf(
        iter_ced_texts(source), segmenter or Segmenter(), min_df=min_df, max_words=max_words
    )
    table.save(Path(out_path))
    log.info(
        "IDF table: %d words from %d documents in %.1f s -> %s (%d bytes)",
        len(table),
        table.docs,
        time.perf_counter() - started,
        out_path,
        Path(out_path).stat().st_size,
    )
    return table


_default_table: IdfTable | None = None


def load_default_idf() -> IdfTable:
    """The shipped IDF table, loaded once per process (~0.1 s)."""
    global _default_table
    if _default_table is None:
        _default_table = IdfTable.load(DEFAULT_IDF_PATH)
    return _default_table


# --- Candidates -------------------------------------------------------------------------------

# jieba tags of content words: nouns (person, place, organisation, other proper), verbal and
# adjectival nouns, verbs, adjectives, English. Also l (习用语), i (成语) and j (简称): the
# dictionary files real terms there ("自来水" l, "春熙路" i, "央视" j). "" is a user word
# added without a tag: the administrator added it because it matters.
CONTENT_TAGS = frozenset(
    {"n", "nr", "nrt", "nrfg", "ns", "nt", "nz", "vn", "v", "a", "an", "l", "i", "j", "eng", ""}
)


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Function words the tagger files as content words and that are not common enough in Weibo
# posts to be caught by the document-frequency rule everywhere (news text, other platforms);
# the last line: time expressions the dictionary tags as person names (nr).
FUNCTION_WORDS = _word_set(
    """
    没有 可以 就是 还是 不是 不会 不能 应该 可能 觉得 知道 表示 进行 出来 起来 一下 这个 那个
    什么 怎么 这样 那样 时候 东西 有人 没人 看到 看看 说道 认为 成为 发现 通过 需要 开始 出现
    是不是 有没有 怎么办 为什么 没什么 差不多 有点 有些 之后 之前 以后 以前 目前 现在
    今天上午 今天下午 昨天早上
    """
)

# Common English function words (a subset of the Glasgow list that scikit-learn also ships);
# inlined so that keyword extraction does not import scikit-learn.
ENGLISH_STOPWORDS = _word_set(
    """
    a about above after again against all also am an and any are aren't as at be because been
    before being below between both but by can cannot could did do does doing down during each
    etc even ever every few for from further get got had has have having he her here hers
    herself him himself his how however i if in into is it its itself just least less like
    made make many may me might more most much must my myself neither never no nor not now of
    off often on once one only or other our ours ourselves out over own per rather really said
    same say says see seen she should since so some still such than that the their theirs them
    themselves then there these they thing things this those though through thus to too under
    until up upon us very via was way we well were what when where whether which while who whom
    whose why will with within without would yet you your yours yourself yourselves http https
    www com cn net org html htm amp nbsp
    """
)


def _is_candidate_word(word: str) -> bool:
    """Shape rules: >= 2 characters (>= 3 for Latin-only), not a number, not English stopword."""
    if word.isascii():
        return (
            len(word) >= 3
            and any(char.isalpha() for char in word)
            and word.lower() not in ENGLISH_STOPWORDS
            and word.replace("-", "").replace("_", "").replace(".", "").isalnum()
        )
    if len(word) < 2:
        return False
    # "２０１２年" is NFKC'd to ASCII digits before we get here; "十二" and "三个" are tagged m
    # and never reach this point. Digits mixed into Chinese ("3号线") still count as a word.
    if word.isnumeric():
        return False
    # At least one letter or ideograph: emoji runs and symbols are not keywords.
    return any(char.isalpha() for char in word)


class Keyword(NamedTuple):
    """A keyword and its weight (comparable within one result only)."""

    word: str
    weight: float


Method = Literal["tfidf", "textrank"]

_CACHE_LIMIT = 200_000
# Graphs up to this many words are ranked with a dense matrix (800 KB at 320).
_DENSE_NODES = 320


class _WeightCache(dict[str, float]):
    """token -> IDF if a candidate, else 0.0; filled on first sight of each token."""

    def __init__(self, jieba: rjieba.Jieba | None, score: Callable[..., float]) -> None:
        super().__init__()
        self.jieba = jieba
        self._score = score

    def __missing__(self, token: str) -> float:
        if len(self) >= _CACHE_LIMIT:
            # Crude bound on memory (~30 MB): new names and typos never stop coming.
            self.clear()
        weight = self[token] = self._score(self.jieba, token)
        return weight


class KeywordExtractor:
    """TF-IDF and TextRank keywords of posts and groups of posts.

    Thread-safe: the only shared state is a per-word cache of candidate weights, whose dict
    operations are atomic.
    """

    def __init__(
        self,
        idf: IdfTable,
        segmenter: Segmenter,
        *,
        max_doc_ratio: float = 0.01,
        extra_stopwords: Iterable[str] = (),
    ) -> None:
        self.idf = idf
        self.segmenter = segmenter
        self.stopwords = (
            idf.common_words(max_doc_ratio)
            | FUNCTION_WORDS
            | frozenset(normalize(w) for w in extra_stopwords)
        )
        # Maps each token seen to its IDF if it is a candidate, else 0.0. A token's tag depends
        # only on the dictionary (HMM is off), so one lookup per token replaces tagging the
        # text: rjieba's `tag` costs ~1.6x `cut`. The cache starts afresh when the segmenter
        # swaps in a new dictionary (user words change tags).
        self._cache = _WeightCache(None, self._score)

    # -- tokens --

    def _score(self, jieba: rjieba.Jieba | None, token: str) -> float:
        """IDF of `token` if it is a candidate, else 0.0 (cache miss path)."""
        if token in self.stopwords or not _is_candidate_word(token):
            return 0.0
        if jieba is None:
            return self.idf.get(token)
        # A dictionary word tagged on its own comes back whole (no split scores higher than
        # the word on its own span), with the tag it has in any context.
        tagged = jieba.tag(token, False)
        tag = tagged[0][1] if len(tagged) == 1 else ""
        return self.idf.get(token) if tag in CONTENT_TAGS else 0.0

    def _candidates(self, text: str) -> tuple[list[str], dict[str, float]]:
        """Candidate words of `text` in order (repeats kept) and their IDF."""
        text = strip_noise(text)
        if not text:
            return [], {}
        # Segmenter keeps its rjieba dictionary here and swaps it when user words change.
        jieba = getattr(self.segmenter, "dictionary", None)
        cache = self._cache
        if cache.jieba is not jieba:
            cache = self._cache = _WeightCache(jieba, self._score)
        if jieba is None:
            # Some other segmenter: no tags, so shape and stopword rules only.
            tokens = self.segmenter.words(text)
        else:
            try:
                tokens = jieba.cut(text, False)
            except UnicodeEncodeError:
                # Lone surrogates (broken UTF-16 from a scraper) cannot cross into Rust.
                tokens = jieba.cut(text.encode("utf-8", "replace").decode("utf-8"), False)
        # All C loops (map, compress, zip): per-token Python code would cost more than the
        # segmentation itself. Non-candidates weigh 0.0, which compress drops.
        weights = list(map(cache.__getitem__, tokens))
        words = list(compress(tokens, weights))
        return words, dict(zip(words, compress(weights, weights), strict=True))

    def candidates(self, text: str) -> list[str]:
        """Candidate keywords of `text` in order of appearance (repeats kept)."""
        return self._candidates(text)[0]

    # -- single posts --

    def tfidf(self, text: str, k: int = 8) -> list[Keyword]:
        """The `k` words of `text` with the highest term frequency x IDF.

        Weights are tf (share of the post's candidate words) times IDF.
        """
        words, idf = self._candidates(text)
        if not words or k <= 0:
            return []
        scale = 1.0 / len(words)
        scores = {word: count * idf[word] * scale for word, count in Counter(words).items()}
        return _top(scores, k)

    def textrank(self, text: str, k: int = 8, window: int = 5) -> list[Keyword]:
        """The `k` most central words of the co-occurrence graph of `text` (TextRank).

        Two candidates are linked when they are fewer than `window` candidates apart; edge
        weights count co-occurrences. Scores are scaled so that the top word has weight 1.
        """
        words = self.candidates(text)
        if not words or k <= 0:
            return []
        index = {word: pos for pos, word in enumerate(dict.fromkeys(words))}
        ids = np.fromiter(map(index.__getitem__, words), dtype=np.int64, count=len(words))
        pairs, counts = np.unique(_pair_keys(ids, window), return_counts=True)
        return _rank(list(index), pairs, counts.astype(np.float64), k)

    # -- groups --

    def group_keywords(
        self, texts: Sequence[str], k: int = 10, method: Method = "tfidf", window: int = 5
    ) -> list[Keyword]:
        """Keywords of a group of posts (an event).

        Posts are reduced to their own words (a repost chain repeats other posts) and
        de-duplicated, and each word counts once per post: a long post or many copies of one
        repost cannot outweigh what many different posts say. tfidf weighs a word by the share
        of posts containing it times IDF; textrank ranks the graph of words co-occurring in
        the posts (each pair once per post).
        """
        if method not in ("tfidf", "textrank"):
            raise ValueError(f"unknown keyword method: {method!r}")
        posts: list[list[str]] = []
        idf: dict[str, float] = {}
        seen: set[str] = set()
        for text in texts:
            if not text:
                continue
            own = strip_noise(text, own_words=True)
            key = _dedup_key(own)
            if not key:
                # A bare repost: the chain is all there is to count (copies fall to dedup).
                own = strip_noise(text)
                key = _dedup_key(own)
            if not key or key in seen:
                continue
            seen.add(key)
            words, weights = self._candidates(own)
            if words:
                posts.append(words)
                idf.update(weights)
        if not posts or k <= 0:
            return []
        if method == "tfidf":
            df: Counter[str] = Counter()
            for words in posts:
                df.update(dict.fromkeys(words, 1))
            scale = 1.0 / len(posts)
            return _top({word: count * idf[word] * scale for word, count in df.items()}, k)
        index: dict[str, int] = {}
        per_post = []
        for words in posts:
            ids = np.fromiter(
                (index.setdefault(word, len(index)) for word in words),
                dtype=np.int64,
                count=len(words),
            )
            # unique per post: a pair counts once however often one post repeats it.
            per_post.append(np.unique(_pair_keys(ids, window)))
        pairs, counts = np.unique(np.concatenate(per_post), return_counts=True)
        return _rank(list(index), pairs, counts.astype(np.float64), k)


def _top(scores: dict[str, float], k: int) -> list[Keyword]:
    """The `k` best-scored words; ties go to the word seen first (dicts keep that order and
    sorted() stays stable with reverse=True), so results are deterministic."""
    ranked = sorted(scores, key=scores.__getitem__, reverse=True)[:k]
    return [Keyword(word, scores[word]) for word in ranked]


def _pair_keys(ids: np.ndarray, window: int) -> np.ndarray:
    """`low << 32 | high` for each pair of different words fewer than `window` places apart."""
    keys = [np.empty(0, dtype=np.int64)]
    for offset in range(1, min(max(window, 2), len(ids))):
        first, second = ids[:-offset], ids[offset:]
        keep = first != second
        low = np.minimum(first, second)[keep]
        high = np.maximum(first, second)[keep]
        keys.append((low << 32) | high)
    return np.concatenate(keys)


def _rank(
    nodes: list[str],
    pairs: np.ndarray,
    weights: np.ndarray,
    k: int,
    damping: float = 0.85,
    tol: float = 1e-6,
    max_iter: int = 200,
) -> list[Keyword]:
    """Weighted PageRank by power iteration over undirected edges `pairs` (`_pair_keys`).

    Scores follow TextRank: s_i = (1 - d) + d * sum_j w_ij / out_j * s_j, starting from 1.
    Ties go to the node that appeared first.
    """
    n = len(nodes)
    scores = np.ones(n)
    if len(pairs):
        low, high = pairs >> 32, pairs & 0xFFFFFFFF
        # Each undirected edge both ways.
        src = np.concatenate([low, high])
        dst = np.concatenate([high, low])
        both = np.concatenate([weights, weights])
        out = np.bincount(src, weights=both, minlength=n)
        share = damping * both / out[src]
        base = 1.0 - damping
        if n <= _DENSE_NODES:
            # A post's graph has tens of nodes: one small matrix-vector product per step is
            # several times faster than the per-edge bincount used for big graphs.
            matrix = np.zeros((n, n))
            matrix[dst, src] = share  # pairs are unique, so no entry is written twice

            def step(current: np.ndarray) -> np.ndarray:
                return base + matrix @ current

        else:

            def step(current: np.ndarray) -> np.ndarray:
                return base + np.bincount(dst, weights=current[src] * share, minlength=n)

        for iteration in range(1, max_iter + 1):
            new = step(scores)
            # Convergence checked every 4th step: the check costs as much as a step.
            done = iteration % 4 == 0 and float(np.abs(new - scores).max()) < tol
            scores = new
            if done:
                break
    # Isolated words end at 1 - d; with no edges at all every word ties at 1 and the order of
    # appearance decides. Rounding before sorting keeps last-bit float noise from breaking ties
    # differently on different machines.
    rounded = np.round(scores / scores.max(), 9)
    order = sorted(range(n), key=lambda i: -rounded[i])[:k]
    return [Keyword(nodes[i], float(rounded[i])) for i in order]


def _main() -> None:  # pragma: no cover - manual use: python -m tingfeng.analyze.keywords
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    table = build_default_idf()
    size = DEFAULT_IDF_PATH.stat().st_size
    print(
        f"{len(table)} words, {table.docs} documents, {size} bytes, "
        f"{time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":  # pragma: no cover
    _main()
