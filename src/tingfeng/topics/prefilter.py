"""What a document must contain for a query to match, and the multi-pattern scan that finds it.

A query implies a CNF over "atoms" (a literal in the text or title, or a metadata condition):
every matching document satisfies at least one atom of each clause. The matcher takes the
clauses least likely to hold (`atom_rate`) as a topic's gate, scans each batch of documents
once for every gate literal (Hyperscan in literal mode, or pyahocorasick), and evaluates only
the topics whose gate clauses all hold (matcher.py).
"""

from __future__ import annotations

import math
import threading
from array import array
from collections.abc import Iterable, Sequence
from functools import cache
from itertools import product
from typing import NamedTuple, Protocol

import numpy as np

from tingfeng.topics.syntax import And, Field, Filter, Near, Node, Not, Or, Term

try:  # Hyperscan is x86-64 Linux only; pyahocorasick is the portable fallback.
    import hyperscan
except ImportError:  # pragma: no cover - depends on the platform
    hyperscan = None

import ahocorasick

__all__ = [
    "Atom",
    "Scanner",
    "atom_cnf",
    "atom_rate",
    "hyperscan_available",
    "make_scanner",
    "required_literals",
]

# Distributing an OR over its operands' CNFs multiplies clause counts; past this many clauses
# a weaker (still implied) constraint is kept instead: one clause per operand, joined.
_MAX_CLAUSES = 64

# Two-character literals go to a lookup table (`_PairScanner`) from this many on. The table
# costs the same for every character of text, the byte scanner a Python call per match; the
# byte scanner alone is faster up to about 1,000 topics (1,400 such literals, one match in 80
# bytes) and slower from a few thousand (10,000 topics: 13,600 such literals, one in 20). The
# table has one bit per pair of the characters they use (1.2 MB at 10,000 topics: 3,141
# characters); past 8,192 characters (8 MB) they stay with the byte scanner.
PAIR_TABLE_MIN = 5_000
_PAIR_TABLE_MAX_CHARS = 8_192

# Separates documents in one scan buffer. Queries cannot contain control characters, so no
# pattern can match across it.
_SEPARATOR = "\x00"


class Atom(NamedTuple):
    """`kind` "text" or "title": a literal (`text`, prefix when `wildcard`) in that text;
    otherwise a metadata field name and its canonical value."""

    kind: str
    text: str
    wildcard: bool = False

    @property
    def is_literal(self) -> bool:
        return self.kind in ("text", "title")


Clause = frozenset[Atom]


def _simplify(clauses: Iterable[Clause]) -> list[Clause]:
    """Deduplicated, without clauses implied by smaller ones (absorption), in a fixed order."""
    unique = sorted(set(clauses), key=lambda c: (len(c), sorted(c)))
    kept: list[Clause] = []
    for clause in unique:
        if not any(other <= clause for other in kept):
            kept.append(clause)
    return kept


def atom_cnf(node: Node, scope: str = "text") -> list[Clause]:
    """Clauses every matching document satisfies; [] when the query implies nothing positive.

    Sound, not necessarily complete: NOT contributes nothing, and large ORs are weakened.
    """
    if isinstance(node, Term):
        return [frozenset((Atom(scope, node.text, node.wildcard),))]
    if isinstance(node, Filter):
        return [frozenset((Atom(node.name, node.value),))]
    if isinstance(node, Field):
        return atom_cnf(node.child, node.name)
    if isinstance(node, Near):
        return _simplify(atom_cnf(node.left, scope) + atom_cnf(node.right, scope))
    if isinstance(node, Not):
        # NOT NOT x is x; any other NOT only removes matches.
        return atom_cnf(node.child.child, scope) if isinstance(node.child, Not) else []
    if isinstance(node, And):
        return _simplify(c for child in node.children for c in atom_cnf(child, scope))
    if isinstance(node, Or):
        parts = [atom_cnf(child, scope) for child in node.children]
        if any(not part for part in parts):
            return []
        clauses = parts[0]
        for part in parts[1:]:
            if len(clauses) * len(part) > _MAX_CLAUSES:
                # Dropping clauses weakens a CNF, so this stays implied by the OR.
                clauses, part = [min(clauses, key=len)], [min(part, key=len)]
            clauses = _simplify(a | b for a, b in product(clauses, part))
        return clauses
    raise TypeError(f"not a query node: {node!r}")


def required_literals(node: Node) -> list[frozenset[str]] | None:
    """A CNF over positive literals: every matching document's normalised text contains at
    least one literal of each set (a wildcard's prefix; title literals count, since the text
    includes the title). None when the query implies no such constraint (field filters only).
    """
    clauses = [
        frozenset(atom.text for atom in clause)
        for clause in atom_cnf(node)
        if all(atom.is_literal for atom in clause)
    ]
    simplified = _simplify(clauses)  # type: ignore[arg-type]
    return [frozenset(c) for c in simplified] or None


# --- How often an atom holds ------------------------------------------------------------------

# Share of posts a metadata condition is guessed to hold for (no statistics at build time):
# used only to prefer literal triggers, which are usually far more selective.
_FILTER_RATES = {
    "site": 0.2,
    "source": 0.1,
    "author": 0.01,
    "lang": 0.5,
    "region": 0.1,
    "category": 0.1,
    "sentiment": 0.4,
    "level": 0.3,
}


@cache
def _idf() -> tuple[dict[str, float], float]:
    try:
        from tingfeng.analyze.keywords import load_default_idf

        table = load_default_idf()
        return table.idf, table.default
    except Exception:  # no table: fall back to guesses from the length alone
        return {}, 12.0


def atom_rate(atom: Atom) -> float:
    """Rough share of posts in which `atom` holds, from the shipped IDF table.

    A literal occurs only where each of its substrings occurs, so a literal missing from the
    table is at most as common as its rarest known substring.
    """
    if not atom.is_literal:
        return _FILTER_RATES.get(atom.kind, 0.2)
    idf, default = _idf()
    text = atom.text
    value = idf.get(text)
    if value is None:
        known = [
            idf[text[i:j]]
            for i in range(len(text))
            for j in range(i + 2, min(len(text), i + 8) + 1)
            if text[i:j] in idf
        ]
        # No known piece: as rare as the rarest words (new names, phrases of rare words).
        value = max(known) if known else default
        if len(text) == 1:
            value = min(value, 5.0)
    rate = min(1.0, math.exp(1.0 - value))
    return min(1.0, rate * 3) if atom.wildcard else rate


# --- Scanners ---------------------------------------------------------------------------------


class Scanner(Protocol):
    def scan(self, segments: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Which patterns occur in which segments: (segment indexes, pattern ids), one pair
        per segment and pattern found, sorted by segment then pattern."""
        ...

    def scan_one(self, text: str) -> frozenset[int]:
        """The ids of the patterns that occur in one text."""
        ...


def hyperscan_available() -> bool:
    return hyperscan is not None


def unique_ints(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer array (sort-based: faster here than np.unique,
    which hashes first in NumPy 2)."""
    if len(values) < 2:
        return values
    ordered = np.sort(values)
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


_NO_PAIRS = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
_ONE = np.uint64(1)


def _joined_text(segments: Sequence[str]) -> str:
    """The segments as one text, separated by NUL."""
    text = _SEPARATOR.join(segments)
    if text.count(_SEPARATOR) != len(segments) - 1:
        # A segment holds a NUL itself. No pattern contains a control character, so
        # replacing it cannot change what matches.
        text = _SEPARATOR.join(s.replace(_SEPARATOR, "\x01") for s in segments)
    return text


def _starts(units: np.ndarray) -> np.ndarray:
    """Each segment's start offset in a joined buffer (bytes or code points)."""
    separators = np.flatnonzero(units == 0)
    return np.concatenate((np.zeros(1, dtype=np.int64), separators + 1))


def _utf8(text: str) -> tuple[bytes, np.ndarray]:
    """A joined text as UTF-8 and each segment's start offset in it."""
    data = text.encode("utf-8")
    return data, _starts(np.frombuffer(data, dtype=np.uint8))


def _pairs(
    segments: Sequence[np.ndarray], ids: Sequence[np.ndarray], patterns: int
) -> tuple[np.ndarray, np.ndarray]:
    """Unique (segment, pattern) pairs, sorted, from matches given as parallel arrays."""
    if not any(len(part) for part in ids):
        return _NO_PAIRS
    keys = unique_ints(np.concatenate(segments) * patterns + np.concatenate(ids))
    return keys // patterns, keys % patterns


def _segments_of(ends: array, starts: np.ndarray) -> np.ndarray:
    """The segment of each match, from its exclusive end offset in the joined buffer."""
    last = np.frombuffer(ends, dtype=np.int64) - 1
    return np.searchsorted(starts, last, side="right") - 1


class _BytesScan:
    """A scanner of UTF-8 bytes: `matches` finds every match, `scan` deduplicates them."""

    _count: int

    def matches(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(segment, pattern id) of every match in segments joined by NUL, unsorted."""
        raise NotImplementedError

    def scan(self, segments: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        segment, ids = self.matches(_joined_text(segments))
        return _pairs([segment], [ids], self._count)


class _HyperscanScanner(_BytesScan):
    """Literal-mode Hyperscan database; one scan per batch of documents.

    Start offsets are not needed (a literal match starts `len(pattern)` bytes before its end),
    so no pattern carries HS_FLAG_SOM_LEFTMOST. Scratch space is per thread, cloned on first use.
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        assert hyperscan is not None
        self._count = len(patterns)
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(
            expressions=[p.encode("utf-8") for p in patterns],
            ids=list(range(len(patterns))),
            elements=len(patterns),
            flags=0,
            literal=True,
        )
        self._prototype = hyperscan.Scratch(self._db)
        self._local = threading.local()
        self._lock = threading.Lock()

    def _scratch(self):
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            with self._lock:
                scratch = self._prototype.clone()
            self._local.scratch = scratch
        return scratch

    def matches(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(segment, pattern id) of every match in a joined text, unsorted, repeats kept."""
        data, starts = _utf8(text)
        ids, ends = array("q"), array("q")
        add_id, add_end = ids.append, ends.append

        # Called for every match (the binding takes the GIL for each): keep it minimal.
        def on_match(pid: int, start: int, end: int, flags: int, context: object) -> None:
            add_id(pid)
            add_end(end)

        self._db.scan(data, on_match, scratch=self._scratch())
        return _segments_of(ends, starts), np.frombuffer(ids, dtype=np.int64)

    def scan_one(self, text: str) -> frozenset[int]:
        found: set[int] = set()
        add = found.add

        def on_match(pid: int, start: int, end: int, flags: int, context: object) -> None:
            add(pid)

        self._db.scan(text.encode("utf-8"), on_match, scratch=self._scratch())
        return frozenset(found)


class _AhoScanner(_BytesScan):
    """pyahocorasick automaton over the same literals, as UTF-8 bytes.

    The automaton walks Latin-1 "characters" that are really UTF-8 bytes: a node then has at
    most 256 children instead of thousands of CJK characters, which pyahocorasick searches
    linearly (about 4x faster on Chinese text).
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self._count = len(patterns)
        self._automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        for pid, pattern in enumerate(patterns):
            self._automaton.add_word(pattern.encode("utf-8").decode("latin-1"), pid)
        self._automaton.make_automaton()

    def matches(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(segment, pattern id) of every match in a joined text, unsorted, repeats kept."""
        data, starts = _utf8(text)
        ids, ends = array("q"), array("q")
        add_id, add_end = ids.append, ends.append
        for last, pid in self._automaton.iter(data.decode("latin-1")):
            add_id(pid)
            add_end(last + 1)
        return _segments_of(ends, starts), np.frombuffer(ids, dtype=np.int64)

    def scan_one(self, text: str) -> frozenset[int]:
        latin = text.encode("utf-8").decode("latin-1")
        return frozenset(pid for _, pid in self._automaton.iter(latin))


class _PairScanner:
    """Two-character patterns found by table lookup, the others by a byte scanner.

    Chinese topics are mostly two-character words: at 10,000 topics 14,000 of 24,000 watched
    literals, and three quarters of the matches, each a Python callback in the Hyperscan
    binding. Here every pair of adjacent characters of a batch becomes one integer in numpy
    (each character numbered among those the pairs use), a bit table says which integers are
    watched pairs, and a watched pair's rank among the set bits is its place in the sorted
    pattern ids: a few array operations per batch, whatever the number of matches.
    The other literals go to `rest` (Hyperscan or pyahocorasick), which then has fewer
    patterns and reports fewer matches.
    """

    def __init__(self, patterns: Sequence[str], pairs: list[int], backend: str) -> None:
        self._count = len(patterns)
        taken = set(pairs)
        others = [pid for pid in range(len(patterns)) if pid not in taken]
        self._rest = _byte_scanner([patterns[pid] for pid in others], backend)
        self._rest_ids = np.asarray(others, dtype=np.int64)
        chars = sorted({c for pid in pairs for c in patterns[pid]})
        self._width = len(chars) + 1  # character numbers 1..n; 0 for the rest
        self._number = np.zeros(0x110000, dtype=np.uint16)  # 2.2 MB; at most 8,192 in use
        self._number[[ord(c) for c in chars]] = np.arange(1, len(chars) + 1)
        keys = np.asarray([self._key(patterns[pid]) for pid in pairs], dtype=np.int64)
        order = np.argsort(keys)
        # The pattern ids by key; a watched key's place among them is its rank in the bit table.
        self._ids = np.asarray(pairs, dtype=np.int64)[order]
        watched = np.zeros(-(-self._width * self._width // 64) * 64, dtype=bool)
        watched[keys] = True
        self._words = np.packbits(watched, bitorder="little").view(np.uint64)
        counts = np.bitwise_count(self._words).astype(np.int64)
        self._rank = np.cumsum(counts) - counts  # watched keys before each word
        self._by_text = {patterns[pid]: pid for pid in pairs}

    def _key(self, pair: str) -> int:
        return int(self._number[ord(pair[0])]) * self._width + int(self._number[ord(pair[1])])

    def scan(self, segments: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        text = _joined_text(segments)
        rest_segments, rest_ids = self._rest.matches(text)
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        numbers = self._number[codes].astype(np.int64)
        keys = numbers[:-1] * self._width + numbers[1:]
        words = self._words[keys >> 6]
        shift = (keys & 63).astype(np.uint64)
        at = np.flatnonzero((words >> shift) & _ONE)
        below = words[at] & ((_ONE << shift[at]) - _ONE)
        ids = self._ids[self._rank[keys[at] >> 6] + np.bitwise_count(below)]
        segments_ = np.searchsorted(_starts(codes), at, side="right") - 1
        return _pairs([segments_, rest_segments], [ids, self._rest_ids[rest_ids]], self._count)

    def scan_one(self, text: str) -> frozenset[int]:
        by_text = self._by_text
        found = {
            by_text[text[i : i + 2]] for i in range(len(text) - 1) if text[i : i + 2] in by_text
        }
        found.update(int(self._rest_ids[pid]) for pid in self._rest.scan_one(text))
        return frozenset(found)


class _EmptyScanner(_BytesScan):
    _count = 0

    def scan(self, segments: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return _NO_PAIRS

    def matches(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        return _NO_PAIRS

    def scan_one(self, text: str) -> frozenset[int]:
        return frozenset()


def make_scanner(patterns: Sequence[str], backend: str) -> Scanner:
    """A scanner for `patterns` (distinct, non-empty); backend "hyperscan", "aho" or "auto"."""
    if backend not in ("auto", "hyperscan", "aho"):
        raise ValueError(f'backend must be "auto", "hyperscan" or "aho", not {backend!r}')
    if backend == "hyperscan" and hyperscan is None:
        raise ImportError("the hyperscan backend needs the hyperscan package")
    pairs = [pid for pid, pattern in enumerate(patterns) if len(pattern) == 2]
    chars = len({c for pid in pairs for c in patterns[pid]})
    if len(pairs) >= PAIR_TABLE_MIN and chars <= _PAIR_TABLE_MAX_CHARS:
        return _PairScanner(patterns, pairs, backend)
    return _byte_scanner(patterns, backend)


def _byte_scanner(patterns: Sequence[str], backend: str) -> _BytesScan:
    if not patterns:
        return _EmptyScanner()
    if backend == "aho" or hyperscan is None:
        return _AhoScanner(patterns)
    return _HyperscanScanner(patterns)
