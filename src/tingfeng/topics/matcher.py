"""Match documents against many topics at once, and the reference evaluator it must agree with.

Term semantics (docs/topics.md): matching is on `normalize()`d text. A term matches wherever its
string occurs, except that an edge of the term that is a Latin letter or digit (a "word
character": `is_word_char`) must not touch another word character in the text, so `cat` does
not match `category` but does match `猫cat`. A wildcard `cat*` lifts the check at its end and
its match runs on to the end of the word.

`TopicMatcher` scans each batch of documents once for the literals of every topic's gate (the
two clauses of its CNF least likely to hold, prefilter.py); NumPy then keeps the (document,
topic) pairs in which both gate clauses hold; only those are evaluated exactly, by Python
functions generated from the trees that read the scan's hit sets and fall back to substring
tests for literals the scan does not cover. `evaluate` is the slow reference.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from tingfeng.analyze.normalize import normalize
from tingfeng.topics.prefilter import (
    Atom,
    atom_cnf,
    atom_rate,
    hyperscan_available,
    make_scanner,
    unique_ints,
)
from tingfeng.topics.syntax import (
    CJK_CLASS,
    LEVELS,
    SENTIMENTS,
    And,
    Field,
    Filter,
    Near,
    Node,
    Not,
    Or,
    Term,
    has_cjk,
    is_word_char,
    parse_query,
)
from tingfeng.topics.syntax import site_host as _site_host

__all__ = [
    "Topic",
    "TopicDoc",
    "TopicHit",
    "TopicMatcher",
    "evaluate",
    "highlight_spans",
    "topic_matches",
]

Backend = Literal["auto", "hyperscan", "aho"]

# Clauses of a topic's CNF checked, in numpy, before its exact evaluation in Python. Each adds
# its literals to the scan (more matches to collect) but wakes fewer topics.
_GATE_CLAUSES = 2

# Room for clause numbers when packing (row, clause) into one integer key.
_MAX_CLAUSE_SLOTS = 64

# Batches up to this size take the plain-Python path (`_match_one`).
_SMALL_BATCH = 4

# Documents per scan: large enough to amortise the call, small enough to keep buffers modest.
_BATCH = 2048

# `[^\W_]` is str.isalnum(); minus CJK it is `is_word_char`.
_W = f"[^\\W_{CJK_CLASS}]"
# A "word" when NEAR counts words: a run of Latin letters/digits, or a run of CJK letters.
_RUN = re.compile(f"{_W}+|(?:(?=[{CJK_CLASS}])[^\\W_])+")


# --- Documents, topics, hits ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopicDoc:
    """What a topic can test in one post. `text` is the full text, title included.

    `prepare()` returns the normalised copy (`normalized=True`) that matching reads; the matcher
    prepares unprepared documents itself, so prepare once when matching the same post twice.
    """

    text: str
    title: str = ""
    site: str = ""
    source: str = ""
    source_id: int | None = None
    author: str = ""
    lang: str | None = None
    regions: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    sentiment: str | None = None
    level: str | None = None
    normalized: bool = False

    def __post_init__(self) -> None:
        # Accept any iterable (lists from JSON) but keep the document hashable and immutable.
        if not isinstance(self.regions, frozenset):
            object.__setattr__(self, "regions", frozenset(self.regions))
        if not isinstance(self.categories, frozenset):
            object.__setattr__(self, "categories", frozenset(self.categories))

    def prepare(self) -> TopicDoc:
        """The normalised document: text and names via `normalize()`, canonical field values."""
        if self.normalized:
            return self
        lang = normalize(self.lang).replace("_", "-") if self.lang else None
        sentiment = normalize(self.sentiment) if self.sentiment else None
        level = normalize(self.level) if self.level else None
        return replace(
            self,
            text=normalize(self.text),
            title=normalize(self.title),
            site=_site_host(self.site) if self.site else "",
            source=normalize(self.source),
            author=normalize(self.author),
            lang=lang or None,
            regions=frozenset(_region_code(r) for r in self.regions) - {""},
            categories=frozenset(normalize(c) for c in self.categories) - {""},
            sentiment=SENTIMENTS.get(sentiment, sentiment) if sentiment else None,
            level=LEVELS.get(level, level) if level else None,
            normalized=True,
        )


def _region_code(value: str) -> str:
    """A 6-digit division code for a code (2, 4, 6 or 12 digits) or a resolvable name."""
    value = str(value).strip()
    if value.isascii() and value.isdigit():
        if len(value) in (2, 4):
            return value.ljust(6, "0")
        return value[:6]
    from tingfeng.analyze.regions import resolve_region

    division = resolve_region(value)
    return division.code if division is not None else ""


# Trees are immutable, so the same query text can share one (topics are re-read often).
_parse = lru_cache(maxsize=4096)(parse_query)


@dataclass(frozen=True, slots=True)
class Topic:
    """A saved query; `exclusions` are phrases that veto a match; `source_ids` None = all."""

    id: int
    query: str | Node
    exclusions: tuple[str, ...] = ()
    source_ids: frozenset[int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.exclusions, tuple):
            object.__setattr__(self, "exclusions", tuple(self.exclusions))
        if self.source_ids is not None and not isinstance(self.source_ids, frozenset):
            object.__setattr__(self, "source_ids", frozenset(self.source_ids))

    def parsed(self) -> Node:
        return _parse(self.query) if isinstance(self.query, str) else self.query

    def exclusion_terms(self) -> tuple[Term, ...]:
        terms = []
        for phrase in self.exclusions:
            text = normalize(phrase)
            if not text or any(unicodedata.category(c) == "Cc" for c in text):
                raise ValueError(f"topic {self.id}: invalid exclusion {phrase!r}")
            terms.append(Term(text))
        return tuple(terms)


@dataclass(frozen=True, slots=True)
class TopicHit:
    """A topic that matched; `terms` are its literals found in the post (`protest*` for a
    wildcard), in query order, for highlighting with `highlight_spans`."""

    topic_id: int
    terms: tuple[str, ...] = field(default=())


# What a document matched, in topic order; the empty tuple is shared by all that match nothing.
Hits = tuple[TopicHit, ...]
_NO_HITS: Hits = ()


# --- Reference evaluation (slow, obviously correct) -------------------------------------------


def _occurrences(text: str, term: Term) -> list[tuple[int, int]]:
    """Every (start, end) where `term` matches in `text`, overlapping ones included."""
    lit = term.text
    left_edge = is_word_char(lit[0])
    right_edge = is_word_char(lit[-1])
    spans = []
    start = text.find(lit)
    while start != -1:
        end = start + len(lit)
        if not (left_edge and start > 0 and is_word_char(text[start - 1])):
            if term.wildcard:
                if right_edge:
                    while end < len(text) and is_word_char(text[end]):
                        end += 1
                spans.append((start, end))
            elif not (right_edge and end < len(text) and is_word_char(text[end])):
                spans.append((start, end))
        start = text.find(lit, start + 1)
    return spans


def _gap(text: str, first: tuple[int, int, bool], second: tuple[int, int, bool]) -> int | None:
    """Distance from match `first` to a later match `second`; None if they overlap.

    Characters between them when either literal has CJK, else words: runs of Latin letters
    and digits, or of CJK letters (punctuation, spaces and underscores separate words).
    """
    if first[1] > second[0]:
        return None
    if first[2] or second[2]:
        return second[0] - first[1]
    words, previous = 0, None
    for char in text[first[1] : second[0]]:
        kind = "latin" if is_word_char(char) else "cjk" if char.isalnum() else None
        if kind is not None and kind != previous:
            words += 1
        previous = kind
    return words


def _near_terms(node: Node) -> tuple[Term, ...]:
    if isinstance(node, Term):
        return (node,)
    assert isinstance(node, Or) and all(isinstance(c, Term) for c in node.children)
    return node.children  # type: ignore[return-value]


def _reference_near(node: Near, text: str) -> bool:
    lefts = [
        (s, e, has_cjk(t.text)) for t in _near_terms(node.left) for s, e in _occurrences(text, t)
    ]
    rights = [
        (s, e, has_cjk(t.text)) for t in _near_terms(node.right) for s, e in _occurrences(text, t)
    ]
    for a in lefts:
        for b in rights:
            gap = _gap(text, a, b)
            if gap is not None and gap <= node.distance:
                return True
            if not node.ordered:
                gap = _gap(text, b, a)
                if gap is not None and gap <= node.distance:
                    return True
    return False


def filter_ok(name: str, value: str, doc: TopicDoc) -> bool:
    """Whether a prepared document satisfies the metadata condition `name:value`."""
    if name == "site":
        return doc.site == value or doc.site.endswith("." + value)
    if name == "source":
        if value.isdigit() and doc.source_id is not None and doc.source_id == int(value):
            return True
        return doc.source == value
    if name == "author":
        return doc.author == value
    if name == "lang":
        return doc.lang is not None and (doc.lang == value or doc.lang.startswith(value + "-"))
    if name == "region":
        prefix = (
            value[:2] if value.endswith("0000") else value[:4] if value.endswith("00") else value
        )
        return any(code.startswith(prefix) for code in doc.regions)
    if name == "category":
        return value in doc.categories
    if name == "sentiment":
        return doc.sentiment == value
    if name == "level":
        return doc.level == value
    raise ValueError(f"unknown field {name!r}")


def _reference(node: Node, doc: TopicDoc, text: str) -> bool:
    if isinstance(node, Term):
        return bool(_occurrences(text, node))
    if isinstance(node, Not):
        return not _reference(node.child, doc, text)
    if isinstance(node, And):
        return all(_reference(c, doc, text) for c in node.children)
    if isinstance(node, Or):
        return any(_reference(c, doc, text) for c in node.children)
    if isinstance(node, Near):
        return _reference_near(node, text)
    if isinstance(node, Field):
        return _reference(node.child, doc, doc.title)
    if isinstance(node, Filter):
        return filter_ok(node.name, node.value, doc)
    raise TypeError(f"not a query node: {node!r}")


def evaluate(node: Node | str, doc: TopicDoc) -> bool:
    """Whether `doc` matches the query: the reference the matcher is tested against."""
    tree = _parse(node) if isinstance(node, str) else node
    prepared = doc.prepare()
    return _reference(tree, prepared, prepared.text)


def topic_matches(topic: Topic, doc: TopicDoc) -> bool:
    """Reference for one topic: its source scope, its query, then its exclusions."""
    prepared = doc.prepare()
    if topic.source_ids is not None and prepared.source_id not in topic.source_ids:
        return False
    if not evaluate(topic.parsed(), prepared):
        return False
    return not any(_occurrences(prepared.text, t) for t in topic.exclusion_terms())


# --- Compiled evaluation ----------------------------------------------------------------------


def _needs_check(term: Term) -> bool:
    """Whether a substring hit is not enough (a word-boundary check at a Latin edge)."""
    return is_word_char(term.text[0]) or (not term.wildcard and is_word_char(term.text[-1]))


class _WordChars(dict[str, bool]):
    """char -> is_word_char(char), filled on first sight (dict writes are atomic: thread-safe)."""

    def __missing__(self, char: str) -> bool:
        value = self[char] = is_word_char(char)
        return value


_WORD_CHARS = _WordChars()


def _span_finder(terms: Sequence[Term]) -> Callable[[str], list[tuple[int, int, bool]]]:
    """All matches of any of `terms` as (start, end, literal has CJK); a wildcard's match
    runs on over the word characters that follow (so NEAR measures from the word's end).

    str.find jumps to each occurrence in C; only the neighbours are checked in Python.
    """
    word = _WORD_CHARS
    plans = [
        (
            t.text,
            len(t.text),
            word[t.text[0]],
            word[t.text[-1]] and not t.wildcard,
            word[t.text[-1]] and t.wildcard,
            has_cjk(t.text),
        )
        for t in terms
    ]

    def spans(text: str) -> list[tuple[int, int, bool]]:
        out = []
        size = len(text)
        for lit, length, left, right, extend, cjk in plans:
            i = text.find(lit)
            while i != -1:
                end = i + length
                if not (left and i and word[text[i - 1]]) and not (
                    right and end < size and word[text[end]]
                ):
                    if extend:
                        while end < size and word[text[end]]:
                            end += 1
                    out.append((i, end, cjk))
                i = text.find(lit, i + 1)
        return out

    return spans


def _word_finder(term: Term) -> Callable[[str], bool]:
    """Whether `term` occurs with its word boundaries (see `_span_finder`)."""
    spans = _span_finder((term,))
    lit = term.text
    return lambda text: lit in text and bool(spans(text))


def _make_near(node: Near) -> Callable[[str], bool]:
    """NEAR test on one text: sorted spans, then a bisect per left match (not all pairs)."""
    left_spans = _span_finder(_near_terms(node.left))
    right_spans = _span_finder(_near_terms(node.right))
    limit, ordered = node.distance, node.ordered

    def within(
        firsts: list[tuple[int, int, bool]], seconds: list[tuple[int, int, bool]], text: str
    ) -> bool:
        # `seconds` split by script: the distance unit depends on the pair of literals.
        cjk = sorted(s for s in seconds if s[2])
        latin = sorted(s for s in seconds if not s[2])
        cjk_starts = [s[0] for s in cjk]
        latin_starts = [s[0] for s in latin]
        for _start, end, first_cjk in firsts:
            k = bisect_left(cjk_starts, end)
            if k < len(cjk) and cjk_starts[k] - end <= limit:
                return True
            k = bisect_left(latin_starts, end)
            if k == len(latin):
                continue
            # The nearest later match is the best: words between only grow with distance.
            if first_cjk:
                if latin_starts[k] - end <= limit:
                    return True
            elif len(_RUN.findall(text, end, latin_starts[k])) <= limit:
                return True
        return False

    def near(text: str) -> bool:
        lefts = left_spans(text)
        if not lefts:
            return False
        rights = right_spans(text)
        if not rights:
            return False
        return within(lefts, rights, text) or (not ordered and within(rights, lefts, text))

    return near


class _Compiler:
    """Turns trees into Python functions `f(x, tt, h, ht, d) -> bool`.

    x/tt: normalised text/title; h/ht: ids of scanned patterns found in them; d: the prepared
    document. Generated source holds only integers, names from `self.namespace` and literals
    written with repr(), so it is exactly the tree's logic.
    """

    def __init__(self, scanned: dict[str, int], scan_titles: bool) -> None:
        self.scanned = scanned
        self.scan_titles = scan_titles
        self.namespace: dict[str, Any] = {}
        self._names: dict[tuple[Any, ...], str] = {}

    def _name(self, key: tuple[Any, ...], make: Callable[[], Any]) -> str:
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = f"_{len(self._names)}"
            self.namespace[name] = make()
        return name

    def term(self, term: Term, scope: str) -> str:
        text_var, hits_var = ("x", "h") if scope == "text" else ("tt", "ht")
        pid = self.scanned.get(term.text)
        if scope != "text" and not self.scan_titles:
            pid = None
        present = f"{pid} in {hits_var}" if pid is not None else f"{term.text!r} in {text_var}"
        if not _needs_check(term):
            return f"({present})"
        found = self._name(("word", term), lambda: _word_finder(term))
        return f"({present} and {found}({text_var}))"

    def node(self, node: Node, scope: str = "text") -> str:
        if isinstance(node, Term):
            return self.term(node, scope)
        if isinstance(node, Not):
            return f"(not {self.node(node.child, scope)})"
        if isinstance(node, And):
            children = sorted(node.children, key=_cost)
            return "(" + " and ".join(self.node(c, scope) for c in children) + ")"
        if isinstance(node, Or):
            return "(" + " or ".join(self.node(c, scope) for c in node.children) + ")"
        if isinstance(node, Field):
            return self.node(node.child, node.name)
        if isinstance(node, Filter):
            test = self._name(("filter", node), lambda: _filter_function(node))
            return f"{test}(d)"
        if isinstance(node, Near):
            near = self._name(("near", node), lambda: _make_near(node))
            var = "x" if scope == "text" else "tt"
            # Both operands must be present: cheap tests first, spans only then.
            return f"({self.node(node.left, scope)} and {self.node(node.right, scope)} and {near}({var}))"
        raise TypeError(f"not a query node: {node!r}")


def _cost(node: Node) -> int:
    if isinstance(node, Term | Filter):
        return 0
    if isinstance(node, Near):
        return 2
    return 1


def _filter_function(node: Filter) -> Callable[[TopicDoc], bool]:
    name, value = node.name, node.value
    if name == "site":
        dotted = "." + value
        return lambda d: d.site == value or d.site.endswith(dotted)
    if name == "author":
        return lambda d: d.author == value
    if name == "category":
        return lambda d: value in d.categories
    if name == "sentiment":
        return lambda d: d.sentiment == value
    if name == "level":
        return lambda d: d.level == value
    return lambda d: filter_ok(name, value, d)


def _positive_terms(
    node: Node, scope: str = "text", negated: bool = False
) -> list[tuple[Term, str]]:
    """Terms under an even number of NOTs, with their scope, in query order, once each."""
    out: list[tuple[Term, str]] = []
    if isinstance(node, Term):
        if not negated:
            out.append((node, scope))
    elif isinstance(node, Not):
        out.extend(_positive_terms(node.child, scope, not negated))
    elif isinstance(node, And | Or):
        for child in node.children:
            out.extend(_positive_terms(child, scope, negated))
    elif isinstance(node, Near):
        out.extend(_positive_terms(node.left, scope, negated))
        out.extend(_positive_terms(node.right, scope, negated))
    elif isinstance(node, Field):
        out.extend(_positive_terms(node.child, node.name, negated))
    return list(dict.fromkeys(out))


def _display(term: Term) -> str:
    return term.text + "*" if term.wildcard else term.text


# --- The matcher ------------------------------------------------------------------------------


class TopicMatcher:
    """Every topic against a stream of documents: one pre-filter scan per batch, then exact
    evaluation of the topics whose trigger fired. Immutable once built; safe to share between
    threads (Hyperscan scratch space is per thread)."""

    def __init__(self, topics: Iterable[Topic], backend: Backend = "auto") -> None:
        self.topics: tuple[Topic, ...] = tuple(topics)
        ids = [t.id for t in self.topics]
        if len(set(ids)) != len(ids):
            raise ValueError("topic ids must be unique")
        trees = []
        for topic in self.topics:
            try:
                trees.append(topic.parsed())
            except ValueError as error:
                error.add_note(f"in topic {topic.id}")
                raise
        gates = [_choose_gate(atom_cnf(tree)) for tree in trees]

        # Atom ids: text literal = pattern id p, title literal = P + p, metadata key = 2P + j.
        patterns: dict[str, int] = {}
        for gate in gates:
            for clause in gate:
                for atom in sorted(clause):
                    if atom.is_literal:
                        patterns.setdefault(atom.text, len(patterns))
        size = len(patterns)
        keys: dict[tuple[str, str], int] = {}
        triggers: dict[int, list[int]] = {}  # atom id -> topics whose first clause has it
        extra_atoms: list[list[int]] = []  # per topic: atoms of its other gate clauses
        extra_clause: list[list[int]] = []  # ... and which of those clauses each belongs to
        always: list[int] = []
        scan_titles = False

        def atom_id(atom: Atom) -> int:
            nonlocal scan_titles
            if atom.kind == "text":
                return patterns[atom.text]
            if atom.kind == "title":
                scan_titles = True
                return size + patterns[atom.text]
            return 2 * size + keys.setdefault((atom.kind, atom.text), len(keys))

        for index, gate in enumerate(gates):
            if not gate:
                always.append(index)
            for atom in gate[0] if gate else ():
                triggers.setdefault(atom_id(atom), []).append(index)
            atoms, owners = [], []
            for number, clause in enumerate(gate[1:]):
                for atom in sorted(clause):
                    atoms.append(atom_id(atom))
                    owners.append(number)
            extra_atoms.append(atoms)
            extra_clause.append(owners)
        self.backend = _resolve_backend(backend)
        self.patterns = tuple(patterns)
        self._scanner = make_scanner(self.patterns, self.backend)
        self._atoms = 2 * size + len(keys)
        self._triggers = _csr({a: sorted(set(t)) for a, t in triggers.items()}, self._atoms)
        self._extra_atoms = _csr(dict(enumerate(extra_atoms)), len(trees))
        self._extra_clause = _csr(dict(enumerate(extra_clause)), len(trees))[1]
        self._extra_count = np.asarray([len(g) - 1 if g else 0 for g in gates], dtype=np.int64)
        self._metadata_keys = keys
        self._always = np.asarray(always, dtype=np.int64)
        self._scan_titles = scan_titles
        # The same gate as plain Python structures, for one post at a time (numpy calls cost
        # more than they save on a single post).
        self._trigger_lists = {a: tuple(sorted(set(t))) for a, t in triggers.items()}
        self._extra_lists = [
            tuple(
                frozenset(a for a, o in zip(atoms, owners, strict=True) if o == number)
                for number in range(max(owners, default=-1) + 1)
            )
            for atoms, owners in zip(extra_atoms, extra_clause, strict=True)
        ]
        self._always_list = tuple(always)

        compiler = _Compiler(patterns, self._scan_titles)
        sources = []
        for index, (topic, tree) in enumerate(zip(self.topics, trees, strict=True)):
            test = compiler.node(tree)
            excluded = [compiler.term(t, "text") for t in topic.exclusion_terms()]
            if excluded:
                test = f"{test} and not ({' or '.join(excluded)})"
            found = [
                f"    if {compiler.term(t, s)}: r.append({_display(t)!r})"
                for t, s in _positive_terms(tree)
            ]
            sources.append(f"def m{index}(x, tt, h, ht, d):\n    return {test}\n")
            sources.append(
                f"def t{index}(x, tt, h, ht):\n    r = []\n"
                + "\n".join(found)
                + "\n    return tuple(r)\n"
            )
        namespace = compiler.namespace
        exec(compile("\n".join(sources) or "pass", "<topics>", "exec"), namespace)
        count = len(self.topics)
        self._tests = tuple(namespace[f"m{i}"] for i in range(count))
        self._terms = tuple(namespace[f"t{i}"] for i in range(count))
        self._ids = tuple(ids)
        self._scopes = tuple(t.source_ids for t in self.topics)

    def match(self, doc: TopicDoc) -> Hits:
        """The topics `doc` matches, in the order the topics were given."""
        return self.match_many([doc])[0]

    def match_many(self, docs: Iterable[TopicDoc]) -> list[Hits]:
        """`match` for each document, scanning them in batches.

        A document that matches nothing gets the shared empty tuple: most match nothing, and
        a new object for each would wake the garbage collector, whose full passes over a
        large process cost more than the matching itself (measured: 150 ms a pass).
        """
        out: list[Hits] = []
        batch: list[TopicDoc] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) >= _BATCH:
                out.extend(self._match_batch(batch))
                batch = []
        if batch:
            out.extend(self._match_batch(batch))
        return out

    def _match_batch(self, raw: Sequence[TopicDoc]) -> list[Hits]:
        docs = [d if d.normalized else d.prepare() for d in raw]
        if len(docs) <= _SMALL_BATCH:
            return [self._match_one(doc) for doc in docs]
        out: list[Hits] = [_NO_HITS] * len(docs)
        candidates = self._candidates(docs)
        if candidates is None:
            return out
        pairs, text_found, title_found = candidates
        tests, terms, ids, scopes = self._tests, self._terms, self._ids, self._scopes
        current = -1
        hits: list[TopicHit] = []
        count = len(self.topics)
        pair_docs = pairs // count
        text_sets = _found_in(text_found, pair_docs)
        title_sets = _found_in(title_found, pair_docs)
        for i, k in zip(pair_docs.tolist(), (pairs % count).tolist(), strict=True):
            if i != current:
                if hits:
                    out[current] = tuple(hits)
                    hits = []
                current = i
                doc = docs[i]
                x, tt, source_id = doc.text, doc.title, doc.source_id
                h, ht = text_sets[i], title_sets[i]
            scope = scopes[k]
            if scope is not None and source_id not in scope:
                continue
            if tests[k](x, tt, h, ht, doc):
                hits.append(TopicHit(ids[k], terms[k](x, tt, h, ht)))
        if hits:
            out[current] = tuple(hits)
        return out

    def _match_one(self, doc: TopicDoc) -> Hits:
        """The same steps as `_match_batch` for one prepared post, with sets, not arrays."""
        size = len(self.patterns)
        h = self._scanner.scan_one(doc.text)
        ht = self._scanner.scan_one(doc.title) if self._scan_titles else frozenset()
        atoms = set(h)
        atoms.update(size + p for p in ht)
        if self._metadata_keys:
            for key in _doc_keys(doc):
                atom = self._metadata_keys.get(key)
                if atom is not None:
                    atoms.add(2 * size + atom)
        woken: set[int] = set(self._always_list)
        for atom in atoms:
            topics = self._trigger_lists.get(atom)
            if topics is not None:
                woken.update(topics)
        hits: list[TopicHit] = []
        x, tt = doc.text, doc.title
        for k in sorted(woken):
            if not all(atoms & clause for clause in self._extra_lists[k]):
                continue
            scope = self._scopes[k]
            if scope is not None and doc.source_id not in scope:
                continue
            if self._tests[k](x, tt, h, ht, doc):
                hits.append(TopicHit(self._ids[k], self._terms[k](x, tt, h, ht)))
        return tuple(hits) if hits else _NO_HITS

    def _candidates(self, docs: Sequence[TopicDoc]) -> tuple[np.ndarray, _Found, _Found] | None:
        """(doc * topics + topic) for each pair whose gate clauses all hold, sorted; and the
        pattern ids found in each text and title. One scan of the batch (two with titles),
        then numpy: topics woken by their first gate clause, kept if the others hold too."""
        size = len(self.patterns)
        segments, pids = self._scanner.scan([d.text for d in docs])
        doc_parts, atom_parts = [segments], [pids]
        title_found = _NOTHING
        if self._scan_titles:
            title_segments, title_pids = self._scanner.scan([d.title for d in docs])
            doc_parts.append(title_segments)
            atom_parts.append(title_pids + size)
            title_found = (title_segments, title_pids)
        if self._metadata_keys:
            doc_index: list[int] = []
            atom_index: list[int] = []
            for i, doc in enumerate(docs):
                for key in _doc_keys(doc):
                    atom = self._metadata_keys.get(key)
                    if atom is not None:
                        doc_index.append(i)
                        atom_index.append(2 * size + atom)
            doc_parts.append(np.asarray(doc_index, dtype=np.int64))
            atom_parts.append(np.asarray(atom_index, dtype=np.int64))
        count = len(self.topics)
        found_docs = np.concatenate(doc_parts)
        found_atoms = np.concatenate(atom_parts)
        # Topics whose first (rarest) gate clause has a hit ...
        trigger_ptr, trigger_topics = self._triggers
        woken_docs, at = _spread(found_docs, found_atoms, trigger_ptr)
        pairs = unique_ints(woken_docs * count + trigger_topics[at])
        if len(pairs) and self._extra_count.any():
            # ... then whose other gate clauses all have one too: look up (doc, atom) for
            # each of their atoms among those found, in bulk.
            found_keys = found_docs * self._atoms + found_atoms
            if len(doc_parts) > 1:
                # Text hits alone come sorted and distinct from the scanner; titles and
                # metadata appended after them do not.
                found_keys = unique_ints(found_keys)
            pair_docs, pair_topics = pairs // count, pairs % count
            extra_ptr, extra_atoms = self._extra_atoms
            rows, at = _spread(np.arange(len(pairs)), pair_topics, extra_ptr)
            if len(rows):
                owner = self._extra_clause[at]
                query = pair_docs[rows] * self._atoms + extra_atoms[at]
                at = np.minimum(np.searchsorted(found_keys, query), len(found_keys) - 1)
                hit = found_keys[at] == query if len(found_keys) else np.zeros(len(query), bool)
                held = unique_ints(rows[hit] * _MAX_CLAUSE_SLOTS + owner[hit]) // _MAX_CLAUSE_SLOTS
                satisfied = np.bincount(held, minlength=len(pairs))
                pairs = pairs[satisfied == self._extra_count[pair_topics]]
        if len(self._always):
            every = (np.arange(len(docs))[:, None] * count + self._always[None, :]).ravel()
            pairs = np.union1d(pairs, every)
        if not len(pairs):
            return None
        return pairs, (segments, pids), title_found


def _csr(rows: dict[int, list[int]], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows `0..size-1` (missing rows empty) as CSR arrays: indptr (size + 1) and values,
    each row's values in the given order."""
    counts = np.zeros(size + 1, dtype=np.int64)
    for row, values in rows.items():
        counts[row + 1] = len(values)
    indptr = np.cumsum(counts)
    values = np.zeros(int(indptr[-1]), dtype=np.int64)
    for row, items in rows.items():
        values[indptr[row] : indptr[row + 1]] = items
    return indptr, values


def _spread(
    keys: np.ndarray, rows: np.ndarray, indptr: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each (key, row) pair, one item per value of CSR row `row`: (key, value position)."""
    low = indptr[rows]
    counts = indptr[rows + 1] - low
    total = int(counts.sum())
    if total == 0:
        return keys[:0], keys[:0]
    # Each pair's first position, spread over its run, plus the offset within the run.
    run_start = np.repeat(low - (np.cumsum(counts) - counts), counts)
    return np.repeat(keys, counts), run_start + np.arange(total)


_Found = tuple[np.ndarray, np.ndarray]  # (segment, pattern id) pairs, sorted
_NOTHING: _Found = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))


def _found_in(found: _Found, segments: np.ndarray) -> dict[int, frozenset[int]]:
    """Pattern ids found in each of `segments` (sorted; the documents with candidates), with
    two array lookups for all of them rather than two per document."""
    wanted = unique_ints(segments)
    found_segments, pids = found
    low = np.searchsorted(found_segments, wanted, side="left").tolist()
    high = np.searchsorted(found_segments, wanted, side="right").tolist()
    empty: frozenset[int] = frozenset()
    return {
        segment: frozenset(pids[lo:hi].tolist()) if hi > lo else empty
        for segment, lo, hi in zip(wanted.tolist(), low, high, strict=True)
    }


def _resolve_backend(backend: str) -> str:
    if backend not in ("auto", "hyperscan", "aho"):
        raise ValueError(f'backend must be "auto", "hyperscan" or "aho", not {backend!r}')
    if backend == "hyperscan" and not hyperscan_available():
        raise ImportError("the hyperscan backend needs the hyperscan package")
    if backend == "auto":
        return "hyperscan" if hyperscan_available() else "aho"
    return backend


def _choose_gate(clauses: list[frozenset[Atom]]) -> list[frozenset[Atom]]:
    """The clauses checked before a topic is evaluated: the `_GATE_CLAUSES` least likely to
    hold. Empty: the topic implies nothing positive and is evaluated for every post."""
    ranked = sorted(clauses, key=lambda c: (sum(atom_rate(a) for a in c), len(c), sorted(c)))
    return ranked[:_GATE_CLAUSES]


def _doc_keys(doc: TopicDoc) -> list[tuple[str, str]]:
    """Every (field, value) filter the prepared document satisfies (for filter triggers)."""
    keys: list[tuple[str, str]] = []
    if doc.site:
        parts = doc.site.split(".")
        keys.extend(("site", ".".join(parts[i:])) for i in range(len(parts)))
    if doc.source:
        keys.append(("source", doc.source))
    if doc.source_id is not None:
        keys.append(("source", str(doc.source_id)))
    if doc.author:
        keys.append(("author", doc.author))
    if doc.lang:
        parts = doc.lang.split("-")
        keys.extend(("lang", "-".join(parts[: i + 1])) for i in range(len(parts)))
    for code in doc.regions:
        keys.extend((("region", code), ("region", code[:4] + "00"), ("region", code[:2] + "0000")))
    keys.extend(("category", c) for c in doc.categories)
    if doc.sentiment:
        keys.append(("sentiment", doc.sentiment))
    if doc.level:
        keys.append(("level", doc.level))
    return keys


# --- Highlighting -----------------------------------------------------------------------------


def _aligned(text: str) -> tuple[str, list[int]]:
    """`text` folded character by character (NFKC, lower case, single spaces, Simplified) and,
    for each folded character, the index of the original character it came from."""
    from tingfeng.analyze.normalize import to_simplified

    chars: list[str] = []
    origin: list[int] = []
    space = False
    for index, char in enumerate(text):
        if char.isspace():
            space = bool(chars)
            continue
        folded = unicodedata.normalize("NFKC", char).lower()
        folded = " ".join(folded.split())
        if not folded:
            continue
        if space:
            chars.append(" ")
            origin.append(index - 1)
            space = False
        chars.extend(folded)
        origin.extend([index] * len(folded))
    folded_text = "".join(chars)
    simplified = to_simplified(folded_text)
    # Traditional -> Simplified keeps the length in all but rare phrase conversions; where it
    # does not, highlight in the unconverted text (Traditional terms still match there).
    return (simplified if len(simplified) == len(folded_text) else folded_text), origin


def highlight_spans(text: str, terms: Iterable[str]) -> list[tuple[int, int]]:
    """(start, end) spans of `terms` (as in TopicHit.terms: normalised, `x*` for a wildcard)
    in the ORIGINAL `text`, merged where they overlap, in order."""
    folded, origin = _aligned(text)
    spans: list[tuple[int, int]] = []
    for raw in terms:
        wildcard = raw.endswith("*") and len(raw) > 1
        literal = normalize(raw[:-1] if wildcard else raw)
        if not literal:
            continue
        for start, end in _occurrences(folded, Term(literal, wildcard)):
            spans.append((origin[start], origin[end - 1] + 1))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
