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
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
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
# One pass removes reply prefixes, URLs and mentions. Every alternative starts with a literal,
# so the regex engine skips ahead to candidate positions (3x faster than leading lookbehinds);
# the "not after an ASCII word character" checks are lookbehinds placed after the literal.
# Alternatives are tried in order: a reply prefix before the bare mention inside it, URLs
# before mentions (URLs may contain "@"). URL characters are ASCII only, so Chinese text right
# after a link survives; "http:" alone is how truncated links appear in scraped reposts.
# Mentions end at the first character that cannot be in a Weibo nickname; an "@" right after
# an ASCII letter or digit is an e-mail address and stays, unless it continues a run of
# mentions written without spaces ("@a@b"). "@ name" and "@@name" are mentions too: the space
# is removed later, and a mention must not appear only then (stripping is idempotent; checked
# on all 1.27 M CED reposts). Patterns are lower case: the input is normalize()d text.
_URL_CHARS = r"[A-Za-z0-9\-._~:/?#@!$&'*+,;=%]*"
_STRIP = re.compile(
    r"回复@\s*[\w\-]{1,30}\s*[:：]"
    rf"|https?:{_URL_CHARS}"
    rf"|www\.(?<![A-Za-z0-9.\-]www\.){_URL_CHARS}"
    rf"|t\.cn/(?<![A-Za-z0-9.\-]t\.cn/){_URL_CHARS}"
    r"|@(?<![A-Za-z0-9_%+\-]@)[@\s]*[\w\-]+(?:@[@\s]*[\w\-]+)*"
)
# Boilerplate is removed after whitespace, so "转发 微博" cannot survive a first pass and vanish
# in a second (stripping must be idempotent: content_hash of stripped text is stored).
_BOILERPLATE = re.compile(r"转发微博[。.!~]*|網頁鏈接|网页链接")


def strip_for_dedup(text: str) -> str:
    """The part of a `normalize()`d post that duplicates are judged on.

    >>> strip_for_dedup("说得对//@张三:转发微博//@李四:原文 http://t.cn/abc")
    '说得对'
    >>> strip_for_dedup("回复@王五:同意 @赵六 看看 https://example.com/a?b=1")
    '同意看看'
    """
    cut = text.find(_CHAIN)
    if cut >= 0:
        text = text[:cut]
    text = _STRIP.sub("", text)
    # Whitespace last: it delimits mentions and URLs.
    text = "".join(text.split())
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


# ------------------------------------------------------------------------- shingle codes
#
# Making one Python string per character shingle costs ~0.15 µs each (most of the time of a
# naive MinHash over a 100-character post). Instead, all shingles of a batch are hashed at once
# with numpy into 16-bit codes, and each code stands for a prebuilt 2-byte token object that
# rensa hashes again (~2.5x faster overall). Codes are a function of the shingle's characters
# only; two different shingles share a code with probability 1/65536, so two posts of n and m
# shingles gain about n*m/65536 spurious common shingles: a Jaccard error under 0.01 for posts
# up to ~1,000 characters.

_CODE_BITS = 16
# Odd 64-bit multipliers (from splitmix64 / xxhash) for the characters of a shingle and the mix.
_MULTIPLIERS = (
    0x9E3779B97F4A7C15,
    0xC2B2AE3D27D4EB4F,
    0x165667B19E3779F9,
    0x27D4EB2F165667C5,
    0x85EBCA77C2B2AE63,
    0xFF51AFD7ED558CCD,
    0xC4CEB9FE1A85EC53,
    0x94D049BB133111EB,
)
_MIX = np.uint64(0xBF58476D1CE4E5B9)
_token_table: np.ndarray | None = None


def _tokens_table() -> np.ndarray:
    """Object array: code -> its token (2 little-endian bytes), built on first use (~2 MB)."""
    global _token_table
    if _token_table is None:
        _token_table = np.array(
            [code.to_bytes(2, "little") for code in range(1 << _CODE_BITS)], dtype=object
        )
    return _token_table


def _shingle_codes(keys: list[str], shingle: int) -> tuple[np.ndarray, list[int]]:
    """Codes of all shingles of the concatenated `keys`, and where each key starts.

    Key i's shingles are codes[start_i : start_i + len(key_i) - shingle + 1]; positions whose
    shingle crosses into the next key are computed but never used.
    """
    starts: list[int] = []
    position = 0
    for key in keys:
        starts.append(position)
        position += len(key)
    points = np.frombuffer("".join(keys).encode("utf-32-le"), dtype=np.uint32)
    count = len(points) - shingle + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint16), starts
    wide = points.astype(np.uint64)
    mixed = wide[:count] * np.uint64(_MULTIPLIERS[0])
    for offset in range(1, shingle):
        mixed ^= wide[offset : offset + count] * np.uint64(_MULTIPLIERS[offset % 8])
    mixed ^= mixed >> np.uint64(31)
    mixed *= _MIX
    mixed ^= mixed >> np.uint64(29)
    return (mixed >> np.uint64(64 - _CODE_BITS)).astype(np.uint16), starts


# A post ready for the index: its stored form (shingle codes as native uint16 bytes, or the
# text itself when shorter than one shingle) and its tokens for MinHash. A tuple, not a
# dataclass: one is made per post.
_Prepared = tuple[bytes | str, list[bytes]]


@dataclass(slots=True)
class _Generation:
    """One half of the window: an LSH index plus what is needed to verify and answer."""

    lsh: RMinHashLSH
    stored: list[bytes | str] = field(default_factory=list)  # key -> codes, for verification
    groups: list[int] = field(default_factory=list)  # key -> group id
    exact: dict[bytes | str, int] = field(default_factory=dict)  # codes -> key
    members: dict[int, int] = field(default_factory=dict)  # group id -> posts stored here


# Seed of the MinHash permutations: fixed, so that runs are reproducible.
_SEED = 20240601


class NearDuplicateIndex:
    """Groups near-duplicate posts among the most recent `window` indexed posts.

    A post joins the group of the most similar indexed post whose character-shingle Jaccard
    similarity is >= `threshold`. LSH (rensa) only proposes candidates; each is verified with
    the Jaccard similarity of the stored shingle sets, not a MinHash estimate, so recall and
    precision follow the threshold itself instead of the estimate's noise (±0.06 at 64
    permutations).

    Memory is bounded: two generations (current and previous) of at most `window // 2` posts
    each; when the current one is full the previous is dropped and a new one started, so recent
    posts are always compared and at most `window` posts are held (measured: ~1.8 KB each for
    ~100-character posts with 64 permutations and 16 bands, mostly rensa's band tables).

    Texts are stripped with `strip_for_dedup` unless `prestripped=True`; only the first
    `max_chars` characters of a stripped text are compared (bounds time and memory for long
    articles); texts shorter than `min_chars` are not indexed (exact hashing covers them).

    Not every post is stored: LSH buckets of a viral post would otherwise fill with thousands
    of its variants, and every later query would pay for all of them. A matched post is stored
    only if it adds a variant (similarity below `redundant` to what it matched in the current
    generation) and its group has fewer than `max_group_members` posts in the current
    generation; no post is stored where a query already returns `4 * max_candidates`
    candidates (a flood of similar but distinct posts, e.g. a spam template). At most
    `max_candidates` candidates (the most recent; a quarter of that in such a flood) are
    verified, and a match at least `redundant` similar ends the search. Worst case measured:
    ~15 µs per post for a viral post with 20,000 variants, ~60 µs in a spam-template flood.
    All methods are thread-safe.
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
        max_candidates: int = 32,
        redundant: float = 0.9,
        max_group_members: int = 8,
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
        self.max_candidates = max(4, max_candidates)
        self.redundant = redundant
        self.max_group_members = max(1, max_group_members)
        self.prestripped = prestripped
        self._crowded = 4 * self.max_candidates
        self._capacity = max(1, window // 2)
        self._tokens = _tokens_table()
        self._lock = threading.Lock()
        self._current = self._new_generation()
        self._previous: _Generation | None = None
        # (generation, is current) pairs in search order; rebuilt on rotation, read per post.
        self._search_order: tuple[tuple[_Generation, bool], ...] = ((self._current, True),)

    # ----------------------------------------------------------------------------- public API

    def __len__(self) -> int:
        """Number of posts held (never more than `window`)."""
        previous = len(self._previous.stored) if self._previous is not None else 0
        return len(self._current.stored) + previous

    def find(self, text: str) -> int | None:
        """Group id of the most similar indexed post with similarity >= threshold, else None."""
        prepared = self._prepare([text])[0]
        if prepared is None:
            return None
        with self._lock:
            match, _ = self._match(prepared)
        return match[0] if match is not None else None

    def add(self, text: str, group_id: int) -> bool:
        """Index `text` as a member of `group_id` without searching; False if not indexed."""
        return self._add_many([(group_id, text)]) == 1

    def find_or_add(self, post_id: int, text: str) -> int:
        """The group `text` joins: an existing group id, or `post_id` for new content."""
        return self.find_or_add_many([(post_id, text)])[0]

    def find_or_add_many(self, items: Iterable[tuple[int, str]]) -> list[int]:
        """For each (post_id, text) the group it joins (its own post_id when new).

        Items are matched in order against the index and against the earlier items of the same
        batch, so two near-duplicates in one batch share a group.
        """
        items = list(items)
        prepared = self._prepare([text for _, text in items])
        result: list[int] = []
        with self._lock:
            for (post_id, _), post in zip(items, prepared, strict=True):
                if post is None:
                    result.append(post_id)
                    continue
                exact = self._exact(post[0])
                if exact is not None:
                    group, in_current = exact
                    if not in_current:
                        # Refresh: keep a recent copy so the group survives the next rotation.
                        self._insert(post, group)
                    result.append(group)
                    continue
                minhash = self._minhash(post)
                match, crowded = self._match(post, minhash)
                if match is None:
                    if not crowded:
                        self._insert(post, post_id, minhash)
                    result.append(post_id)
                    continue
                group, similarity, in_current = match
                if not crowded and not (in_current and similarity >= self.redundant):
                    self._insert(post, group, minhash)
                result.append(group)
        return result

    def warm(self, items: Iterable[tuple[int, str]], batch: int = 1000) -> int:
        """Rebuild from stored posts after a restart: (group_id, text) pairs, oldest first.

        Returns how many were indexed; only the most recent fit in the window.
        """
        count = 0
        chunk: list[tuple[int, str]] = []
        for item in items:
            chunk.append(item)
            if len(chunk) >= batch:
                count += self._add_many(chunk)
                chunk = []
        return count + self._add_many(chunk)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._current = self._new_generation()
            self._previous = None
            self._search_order = ((self._current, True),)

    # ------------------------------------------------------------------------------- internals

    def _new_generation(self) -> _Generation:
        return _Generation(lsh=RMinHashLSH(self.threshold, self.num_perm, self.bands))

    def _prepare(self, texts: list[str]) -> list[_Prepared | None]:
        """Stored form and tokens of each text; None for texts too short to index."""
        keys: list[str | None] = []
        for text in texts:
            key = text if self.prestripped else strip_for_dedup(text)
            if len(key) > self.max_chars:
                key = key[: self.max_chars]
            keys.append(key if len(key) >= self.min_chars else None)
        shingle = self.shingle
        long_keys = [key for key in keys if key is not None and len(key) >= shingle]
        codes, starts = _shingle_codes(long_keys, shingle)
        tokens_all: list[bytes] = self._tokens[codes].tolist() if len(codes) else []
        codes_bytes = codes.tobytes()
        prepared: list[_Prepared | None] = []
        position = 0
        for key in keys:
            if key is None:
                prepared.append(None)
            elif len(key) < shingle:
                # Too short for one shingle: the whole text is the only token.
                prepared.append((key, [key.encode("utf-8")]))
            else:
                start = starts[position]
                end = start + len(key) - shingle + 1
                position += 1
                prepared.append((codes_bytes[2 * start : 2 * end], tokens_all[start:end]))
        return prepared

    @staticmethod
    def _code_set(stored: bytes | str) -> set[int] | set[str]:
        """The shingle set of a stored post (codes as ints; plain ints keep this cheap)."""
        if isinstance(stored, str):
            return {stored}
        return set(memoryview(stored).cast("H"))

    def _minhash(self, post: _Prepared) -> RMinHash:
        minhash = RMinHash(self.num_perm, _SEED)
        minhash.update(post[1])
        return minhash

    def _exact(self, stored: bytes | str) -> tuple[int, bool] | None:
        for generation, in_current in self._search_order:
            index = generation.exact.get(stored)
            if index is not None:
                return generation.groups[index], in_current
        return None

    def _match(
        self, post: _Prepared, minhash: RMinHash | None = None
    ) -> tuple[tuple[int, float, bool] | None, bool]:
        """Best verified match as (group, similarity, found in current generation), or None;
        and whether the neighbourhood is crowded (too many candidates to store more posts)."""
        exact = self._exact(post[0])
        if exact is not None:
            return (exact[0], 1.0, exact[1]), False
        if minhash is None:
            minhash = self._minhash(post)
        found = [
            (generation, in_current, generation.lsh.query(minhash))
            for generation, in_current in self._search_order
        ]
        total = sum(len(candidates) for _, _, candidates in found)
        if not total:
            return None, False
        crowded = total >= self._crowded
        # A flood of similar but distinct posts (spam templates) makes every query return many
        # candidates; verifying fewer there bounds the cost per post (~50 µs worst case).
        limit = self.max_candidates // 4 if crowded else self.max_candidates
        best: tuple[int, float, bool] | None = None
        query = self._code_set(post[0])
        for generation, in_current, candidates in found:
            if len(candidates) > limit:
                # Keys grow with time: the most recent candidates are the likeliest to be alive
                # members of an active group. In a flood any few will do (sorting is the cost).
                candidates = candidates[:limit] if crowded else heapq.nlargest(limit, candidates)
            for index in candidates:
                group = generation.groups[index]
                if best is not None and group == best[0]:
                    # Another member of the group already matched: it cannot change the answer.
                    continue
                other = self._code_set(generation.stored[index])
                inter = len(query & other)  # type: ignore[operator]
                similarity = inter / (len(query) + len(other) - inter)
                if similarity >= self.threshold and (best is None or similarity > best[1]):
                    best = (group, similarity, in_current)
                    if similarity >= self.redundant:
                        # Near-identical: no other candidate would change the answer.
                        return best, crowded
        return best, crowded

    def _add_many(self, items: list[tuple[int, str]]) -> int:
        prepared = self._prepare([text for _, text in items])
        count = 0
        with self._lock:
            for (group_id, _), post in zip(items, prepared, strict=True):
                if post is None or post[0] in self._current.exact:
                    continue
                count += self._insert(post, group_id)
        return count

    def _insert(self, post: _Prepared, group_id: int, minhash: RMinHash | None = None) -> bool:
        """Store `post` in the current generation unless its group has enough posts there."""
        generation = self._current
        members = generation.members.get(group_id, 0)
        if members >= self.max_group_members:
            return False
        generation.members[group_id] = members + 1
        index = len(generation.stored)
        generation.lsh.insert(index, minhash if minhash is not None else self._minhash(post))
        generation.stored.append(post[0])
        generation.groups.append(group_id)
        generation.exact.setdefault(post[0], index)
        if len(generation.stored) >= self._capacity:
            # Rotate: the previous generation (the oldest half of the window) is dropped whole.
            self._previous = generation
            self._current = self._new_generation()
            self._search_order = ((self._current, True), (generation, False))
        return True
