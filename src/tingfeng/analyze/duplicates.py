"""Exact and near-duplicate detection for posts.

Both compare the *stripped* text of a post (`strip_for_dedup`): the author's own words without
Weibo repost chains, reply prefixes, URLs, @mentions and whitespace. Exact duplicates share a
`content_hash`; near-duplicates are found by `NearDuplicateIndex`, MinHash LSH (rensa) over
character shingles with every candidate verified by its exact shingle Jaccard similarity.
"""

from __future__ import annotations

import hashlib
import heapq
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from rensa import RMinHash, RMinHashLSH

__all__ = [
    "NearDuplicateIndex",
    "choose_bands",
    "content_hash",
    "shingle_jaccard",
    "strip_for_dedup",
]

# Everything from the first "//@" on is the chain of earlier reposters' comments.
_CHAIN = "//@"
# One pass removes reply prefixes, URLs, mentions and whitespace. Alternatives are tried in this
# order at each position: a reply prefix before the bare mention inside it, URLs before mentions
# (URLs may contain "@"). URL characters are ASCII only, so Chinese text right after a link
# survives. "http:" alone is how truncated links appear in scraped reposts. Mentions end at the
# first character that cannot be in a Weibo nickname; an "@" right after an ASCII word
# character is an e-mail address and stays.
_URL_CHARS = r"[A-Za-z0-9\-._~:/?#@!$&'*+,;=%]*"
_STRIP = re.compile(
    r"回复@[\w\-]{1,30}[:：]"
    rf"|https?:{_URL_CHARS}"
    rf"|(?<![A-Za-z0-9.\-])(?:www\.|t\.cn/){_URL_CHARS}"
    r"|(?<![A-Za-z0-9._%+\-])@[\w\-]+"
    r"|\s+",
    re.IGNORECASE,
)
# Boilerplate is removed after whitespace, so "转发 微博" cannot survive a first pass and vanish
# in a second (stripping must be idempotent: content_hash of stripped text is stored).
_BOILERPLATE = re.compile(r"转发微博[。.!~]*|網頁鏈接|网页链接")


def strip_for_dedup(text: str) -> str:
    """The part of a (normalised) post that duplicates are judged on.

    >>> strip_for_dedup("说得对//@张三:转发微博//@李四:原文 http://t.cn/abc")
    '说得对'
    >>> strip_for_dedup("回复@王五:同意 @赵六 看看 https://example.com/a?b=1")
    '同意看看'
    """
    cut = text.find(_CHAIN)
    if cut >= 0:
        text = text[:cut]
    text = _STRIP.sub("", text)
    if "转发微博" in text or "链接" in text or "鏈接" in text:
        text = _BOILERPLATE.sub("", text)
    return text


def content_hash(text: str, *, stripped: bool = False) -> str:
    """32 hex digits (blake2b-128) of the stripped text; reposts of the same words share it.

    Pass `stripped=True` when `text` already is `strip_for_dedup` output (saves a regex pass;
    the result is the same because stripping is idempotent). Note that texts stripping to ""
    (pure reposts, "转发微博") all share one hash.
    """
    if not stripped:
        text = strip_for_dedup(text)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def shingle_jaccard(a: str, b: str, shingle: int = 3) -> float:
    """Exact Jaccard similarity of the character shingle sets of `a` and `b`."""
    set_a, set_b = _shingle_set(a, shingle), _shingle_set(b, shingle)
    if not set_a and not set_b:
        return 1.0
    inter = len(set_a & set_b)
    return inter / (len(set_a) + len(set_b) - inter)


def _shingle_set(text: str, shingle: int) -> set[str]:
    if len(text) <= shingle:
        return {text} if text else set()
    return {text[i : i + shingle] for i in range(len(text) - shingle + 1)}


def choose_bands(threshold: float, num_perm: int, target: float = 0.98) -> int:
    """Fewest LSH bands (rows = num_perm / bands) that make a pair at `threshold` a candidate
    with probability >= `target`. Fewer bands mean fewer false candidates and less memory."""
    for bands in range(1, num_perm + 1):
        if num_perm % bands:
            continue
        rows = num_perm // bands
        if 1.0 - (1.0 - threshold**rows) ** bands >= target:
            return bands
    return num_perm


@dataclass(slots=True)
class _Generation:
    """One half of the window: an LSH index plus what is needed to verify and answer."""

    lsh: RMinHashLSH
    texts: list[str] = field(default_factory=list)  # key -> stripped text (for verification)
    groups: list[int] = field(default_factory=list)  # key -> group id
    exact: dict[str, int] = field(default_factory=dict)  # stripped text -> key


# Seed of the MinHash permutations: fixed, so that runs are reproducible.
_SEED = 20240601


class NearDuplicateIndex:
    """Groups near-duplicate posts among the most recent `window` indexed posts.

    A post joins the group of the most similar indexed post whose character-shingle Jaccard
    similarity is >= `threshold`; LSH only proposes candidates, each is verified exactly on the
    stored text (no estimation noise: recall and precision follow the threshold itself).

    Memory is bounded: two generations (current and previous) of at most `window // 2` posts
    each; when the current one is full the previous is dropped and a new one started, so recent
    posts are always compared and at most `window` posts are held (~1.2 KB each with 64
    permutations and 16 bands, plus the stripped text).

    Texts are stripped with `strip_for_dedup` unless `prestripped=True`; only the first
    `max_chars` characters of a stripped text are compared (bounds time and memory for long
    articles), and texts shorter than `min_chars` are not indexed (exact hashing covers them).
    A text whose best match is at least `redundant` similar to a post of the current generation
    is not stored again: it adds nothing to later matching, and this keeps LSH buckets of viral
    posts from growing without bound. All methods are thread-safe.
    """

    def __init__(
        self,
        threshold: float = 0.7,
        num_perm: int = 64,
        window: int = 200_000,
        min_chars: int = 8,
        shingle: int = 3,
        *,
        bands: int | None = None,
        max_chars: int = 2000,
        max_candidates: int = 64,
        redundant: float = 0.9,
        prestripped: bool = False,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        if num_perm < 1 or shingle < 1 or window < 1 or max_chars < 1:
            raise ValueError("num_perm, shingle, window and max_chars must be positive")
        self.bands = bands if bands is not None else choose_bands(threshold, num_perm)
        if num_perm % self.bands:
            raise ValueError("bands must divide num_perm")
        self.threshold = threshold
        self.num_perm = num_perm
        self.window = window
        self.min_chars = max(1, min_chars)
        self.shingle = shingle
        self.max_chars = max_chars
        self.max_candidates = max_candidates
        self.redundant = redundant
        self.prestripped = prestripped
        self._capacity = max(1, window // 2)
        # Slice objects for every shingle position: map(text.__getitem__, slices) makes the
        # shingles in C, about 30% faster than a comprehension.
        self._slices = [slice(i, i + shingle) for i in range(max_chars)]
        self._lock = threading.Lock()
        self._current = self._new_generation()
        self._previous: _Generation | None = None

    # ----------------------------------------------------------------------------- public API

    def __len__(self) -> int:
        """Number of posts held (never more than `window`)."""
        previous = len(self._previous.texts) if self._previous is not None else 0
        return len(self._current.texts) + previous

    def find(self, text: str) -> int | None:
        """Group id of the most similar indexed post with similarity >= threshold, else None."""
        key = self._key(text)
        if key is None:
            return None
        with self._lock:
            match = self._match(key, None)
        return match[0] if match is not None else None

    def add(self, text: str, group_id: int) -> bool:
        """Index `text` as a member of `group_id` without searching; False if not indexed."""
        key = self._key(text)
        if key is None:
            return False
        with self._lock:
            if key in self._current.exact:
                return False
            self._insert(key, self._minhash(key), group_id)
        return True

    def find_or_add(self, post_id: int, text: str) -> int:
        """The group `text` joins: an existing group id, or `post_id` for new content."""
        return self.find_or_add_many([(post_id, text)])[0]

    def find_or_add_many(self, items: Iterable[tuple[int, str]]) -> list[int]:
        """For each (post_id, text) the group it joins (its own post_id when new).

        Items are matched in order against the index and against the earlier items of the same
        batch, so two near-duplicates in one batch share a group.
        """
        keyed = [(post_id, self._key(text)) for post_id, text in items]
        result: list[int] = []
        with self._lock:
            for post_id, key in keyed:
                if key is None:
                    result.append(post_id)
                    continue
                minhash: RMinHash | None = None
                exact = self._exact(key)
                if exact is not None:
                    group, in_current = exact
                    if not in_current:
                        # Refresh: keep a recent copy so the group survives the next rotation.
                        self._insert(key, self._minhash(key), group)
                    result.append(group)
                    continue
                minhash = self._minhash(key)
                match = self._match(key, minhash)
                if match is None:
                    self._insert(key, minhash, post_id)
                    result.append(post_id)
                    continue
                group, similarity, in_current = match
                if not (in_current and similarity >= self.redundant):
                    self._insert(key, minhash, group)
                result.append(group)
        return result

    def warm(self, items: Iterable[tuple[int, str]]) -> int:
        """Rebuild from stored posts after a restart: (group_id, text) pairs, oldest first.

        Returns how many were indexed; only the most recent fit in the window.
        """
        count = 0
        for group_id, text in items:
            count += self.add(text, group_id)
        return count

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._current = self._new_generation()
            self._previous = None

    # ------------------------------------------------------------------------------- internals

    def _new_generation(self) -> _Generation:
        return _Generation(lsh=RMinHashLSH(self.threshold, self.num_perm, self.bands))

    def _generations(self) -> Iterator[tuple[_Generation, bool]]:
        yield self._current, True
        if self._previous is not None:
            yield self._previous, False

    def _key(self, text: str) -> str | None:
        """The compared form of `text`, or None when it is too short to index."""
        key = text if self.prestripped else strip_for_dedup(text)
        if len(key) > self.max_chars:
            key = key[: self.max_chars]
        return key if len(key) >= self.min_chars else None

    def _shingles(self, key: str) -> Iterable[str]:
        if len(key) <= self.shingle:
            return (key,)
        return map(key.__getitem__, self._slices[: len(key) - self.shingle + 1])

    def _minhash(self, key: str) -> RMinHash:
        minhash = RMinHash(self.num_perm, _SEED)
        minhash.update(self._shingles(key))
        return minhash

    def _exact(self, key: str) -> tuple[int, bool] | None:
        for generation, in_current in self._generations():
            index = generation.exact.get(key)
            if index is not None:
                return generation.groups[index], in_current
        return None

    def _match(self, key: str, minhash: RMinHash | None) -> tuple[int, float, bool] | None:
        """(group, similarity, found in current generation) of the best verified match."""
        exact = self._exact(key)
        if exact is not None:
            return exact[0], 1.0, exact[1]
        if minhash is None:
            minhash = self._minhash(key)
        best: tuple[int, float, bool] | None = None
        query: set[str] | None = None
        for generation, in_current in self._generations():
            candidates = generation.lsh.query(minhash)
            if not candidates:
                continue
            if len(candidates) > self.max_candidates:
                # Keys grow with time: the most recent candidates are the likeliest to be alive
                # members of an active group.
                candidates = heapq.nlargest(self.max_candidates, candidates)
            if query is None:
                query = set(self._shingles(key))
            for index in candidates:
                other = set(self._shingles(generation.texts[index]))
                inter = len(query & other)
                similarity = inter / (len(query) + len(other) - inter)
                if similarity >= self.threshold and (best is None or similarity > best[1]):
                    best = (generation.groups[index], similarity, in_current)
        return best

    def _insert(self, key: str, minhash: RMinHash, group_id: int) -> None:
        generation = self._current
        index = len(generation.texts)
        generation.lsh.insert(index, minhash)
        generation.texts.append(key)
        generation.groups.append(group_id)
        generation.exact.setdefault(key, index)
        if len(generation.texts) >= self._capacity:
            # Rotate: the previous generation (the oldest half of the window) is dropped whole.
            self._previous = generation
            self._current = self._new_generation()
