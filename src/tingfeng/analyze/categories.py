"""Categories: the hot areas of public opinion (官员与腐败, 民生与收费, …) as an editable taxonomy.

A `Taxonomy` is a list of `Category` entries, each with weighted keywords, exclusion phrases and
an evidence threshold; it is loaded from and saved to JSON (the packaged default is
``taxonomy.json`` beside this module). A `CategoryMatcher` compiles one taxonomy into a single
Aho-Corasick automaton and labels `normalize()`d post text with every category whose evidence
reaches its threshold (multi-label), keeping the matched keywords as evidence.

Taxonomies are immutable: the editing helpers return a new `Taxonomy`, so a service can build a
new matcher and swap the reference while other threads keep classifying with the old one.
See docs/analysis-categories.md for the rules and the JSON format.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import unicodedata
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import ahocorasick_rs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from tingfeng.analyze.normalize import normalize
from tingfeng.problems import ProblemsError

__all__ = [
    "Category",
    "CategoryMatch",
    "CategoryMatcher",
    "KeywordHit",
    "Taxonomy",
    "TaxonomyError",
]

# Bumped when the matching rules change, so `Taxonomy.version` changes with them and stored
# labels made under the old rules are recognisably stale.
_RULES_VERSION = 1
MAX_TERM_CHARS = 32
SNIPPET_CHARS = 40
# Evidence kept per category match; the score always counts every keyword.
MAX_EVIDENCE = 20

_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?")
_ASCII_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
# Snippets end up in JSON columns; PostgreSQL rejects U+0000 there and other C0/C1 controls
# only garble a list view.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")

Weight = Annotated[float, Strict(), Field(gt=0, le=10, allow_inf_nan=False)]


class TaxonomyError(ProblemsError):
    """A taxonomy (or an edit of one) is invalid; `problems` lists each problem on its own."""

    what = "taxonomy"


def _check_terms(terms: Iterable[str], what: str) -> dict[str, str]:
    """Normalised form -> term for each of `terms`; ValueError naming the first bad one."""
    seen: dict[str, str] = {}
    for term in terms:
        if any(unicodedata.category(c) == "Cc" for c in term):
            raise ValueError(f"{what} {term!r} contains a control character")
        norm = normalize(term)
        if not norm:
            raise ValueError(f"{what} {term!r} is empty; remove it or write some text")
        if len(norm) > MAX_TERM_CHARS:
            raise ValueError(
                f"{what} {term!r} is {len(norm)} characters long; at most {MAX_TERM_CHARS}"
            )
        if norm in seen:
            raise ValueError(
                f"{what}s {seen[norm]!r} and {term!r} are the same after normalisation "
                "(Simplified, half-width, lower case); keep one"
            )
        seen[norm] = term
    return seen


class Category(BaseModel):
    """One hot area: keywords with weights, exclusion phrases and the evidence threshold.

    A post is labelled when the summed weights of the distinct keywords found reach
    `min_score` and at least `min_keywords` distinct keywords were found.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    slug: str = Field(description="stable identifier: lower-case letters, digits and hyphens")
    name_zh: str = Field(min_length=1, max_length=40)
    name_en: str = Field(min_length=1, max_length=80)
    description: str = Field(default="", max_length=1000)
    # Strict: "2" or true where a number belongs is an editing mistake to report, not coerce.
    enabled: Annotated[bool, Strict()] = True
    min_score: Annotated[float, Strict(), Field(gt=0, le=100, allow_inf_nan=False)] = 2.0
    min_keywords: Annotated[int, Strict(), Field(ge=1, le=20)] = 1
    keywords: dict[str, Weight] = Field(default_factory=dict)
    exclude: tuple[str, ...] = ()

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG.fullmatch(value):
            raise ValueError(
                f"slug {value!r} must be 1-48 lower-case ASCII letters, digits and inner hyphens,"
                " e.g. 'public-safety'"
            )
        return value

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, value: dict[str, float]) -> dict[str, float]:
        # Keys are kept as written (stripped): evidence shows the administrator's own spelling.
        stripped = {term.strip(): weight for term, weight in value.items()}
        if len(stripped) != len(value):
            raise ValueError("two keywords differ only in surrounding spaces; keep one")
        _check_terms(stripped, "keyword")
        return stripped

    @field_validator("exclude")
    @classmethod
    def _exclude(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        value = tuple(phrase.strip() for phrase in value)
        _check_terms(value, "exclusion")
        return value

    @model_validator(mode="after")
    def _exclusion_is_not_a_keyword(self) -> Category:
        keywords = {normalize(term): term for term in self.keywords}
        for phrase in self.exclude:
            if normalize(phrase) in keywords:
                raise ValueError(
                    f"exclusion {phrase!r} equals keyword {keywords[normalize(phrase)]!r}, so "
                    "that keyword could never count; remove the keyword instead"
                )
        return self


class Taxonomy(BaseModel):
    """An ordered set of categories with unique slugs; treat it as immutable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal[1] = 1
    categories: tuple[Category, ...] = ()

    @field_validator("categories")
    @classmethod
    def _unique_slugs(cls, value: tuple[Category, ...]) -> tuple[Category, ...]:
        seen: set[str] = set()
        for category in value:
            if category.slug in seen:
                raise ValueError(f"slug {category.slug!r} is used by two categories; rename one")
            seen.add(category.slug)
        return value

    # --- loading and saving ----------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any) -> Taxonomy:
        """Validate plain data (as parsed from JSON); TaxonomyError says what to fix."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise TaxonomyError(_describe(exc, data)) from None

    @classmethod
    def from_json(cls, text: str | bytes) -> Taxonomy:
        """Parse and validate the JSON form; duplicate keys are errors, not silently merged."""
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as exc:
            raise TaxonomyError([f"not valid JSON: {exc}"]) from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Taxonomy:
        """Read a taxonomy JSON file (UTF-8, a BOM is tolerated)."""
        return cls.from_json(Path(path).read_text(encoding="utf-8-sig"))

    @classmethod
    def default(cls) -> Taxonomy:
        """The taxonomy shipped with Tingfeng (``tingfeng/analyze/taxonomy.json``)."""
        text = resources.files("tingfeng.analyze").joinpath("taxonomy.json").read_text("utf-8")
        return cls.from_json(text)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, the same shape `from_dict` reads."""
        return self.model_dump(mode="json")

    def to_json(self, *, indent: int | None = 2) -> str:
        """JSON text; Chinese is written as is, not as \\u escapes."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent) + "\n"

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON form atomically (a crash leaves the old file or the new one)."""
        target = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(self.to_json())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # --- reading -------------------------------------------------------------------------

    @cached_property
    def version(self) -> str:
        """16 hex digits over everything that changes labels (not names or descriptions).

        Stored beside each post's labels: a different version means the post should be
        re-analysed. Keyword spelling variants with the same normalised form and the order of
        categories or keywords do not change it; disabled categories do not count.
        """
        content = sorted(
            (
                c.slug,
                c.min_score,
                c.min_keywords,
                sorted((normalize(t), w) for t, w in c.keywords.items()),
                sorted(normalize(p) for p in c.exclude),
            )
            for c in self.categories
            if c.enabled
        )
        payload = json.dumps([_RULES_VERSION, content], ensure_ascii=False, separators=(",", ":"))
        return hashlib.blake2b(payload.encode("utf-8"), digest_size=8).hexdigest()

    @property
    def slugs(self) -> tuple[str, ...]:
        """Category slugs in taxonomy order."""
        return tuple(c.slug for c in self.categories)

    def category(self, slug: str) -> Category:
        """The category with this slug; TaxonomyError listing the known slugs if none."""
        for category in self.categories:
            if category.slug == slug:
                return category
        raise TaxonomyError([f"no category {slug!r}; known: {', '.join(self.slugs) or '(none)'}"])

    def lint(self) -> list[str]:
        """Warnings about legal but probably unintended content (the taxonomy still works).

        Exclusions that touch no keyword of their category do nothing; a keyword containing one
        of its category's exclusions can never count.
        """
        warnings = []
        for c in self.categories:
            terms = [normalize(t) for t in c.keywords]
            for phrase in c.exclude:
                norm = normalize(phrase)
                if not any(_overlaps(norm, term) for term in terms):
                    warnings.append(
                        f"category {c.slug!r}: exclusion {phrase!r} overlaps no keyword, so it "
                        "has no effect"
                    )
                for term, original in zip(terms, c.keywords, strict=True):
                    if norm in term:
                        warnings.append(
                            f"category {c.slug!r}: keyword {original!r} contains exclusion "
                            f"{phrase!r}, so it can never count"
                        )
            if c.enabled and c.keywords and sum(c.keywords.values()) < c.min_score:
                warnings.append(
                    f"category {c.slug!r}: all keywords together weigh less than min_score "
                    f"{c.min_score:g}, so it can never match"
                )
        return warnings

    # --- editing (each returns a new, validated Taxonomy) ----------------------------------

    def add_category(self, category: Category | Mapping[str, Any]) -> Taxonomy:
        """A copy with `category` appended; its slug must be new."""
        data = category.model_dump() if isinstance(category, Category) else dict(category)
        return self._replace([*self._dump(), data])

    def update_category(self, slug: str, /, **changes: Any) -> Taxonomy:
        """A copy with fields of one category replaced, e.g. ``min_score=3`` or ``slug="x"``."""
        self.category(slug)
        return self._replace([{**c, **changes} if c["slug"] == slug else c for c in self._dump()])

    def remove_category(self, slug: str) -> Taxonomy:
        """A copy without the category (labels already stored under its slug stay)."""
        self.category(slug)
        return self._replace([c for c in self._dump() if c["slug"] != slug])

    def add_keywords(
        self, slug: str, keywords: Mapping[str, float] | Iterable[str], *, weight: float = 1.0
    ) -> Taxonomy:
        """A copy with keywords added; a mapping gives each its weight, else all get `weight`.

        A keyword already present (same normalised form) gets the new weight.
        """
        if isinstance(keywords, str):
            raise TypeError("pass a list of keywords, not one string")
        new = dict(keywords) if isinstance(keywords, Mapping) else dict.fromkeys(keywords, weight)

        def edit(c: dict[str, Any]) -> dict[str, Any]:
            replaced = {normalize(t) for t in new if isinstance(t, str)}
            kept = {t: w for t, w in c["keywords"].items() if normalize(t) not in replaced}
            return {**c, "keywords": {**kept, **new}}

        return self._edit(slug, edit)

    def remove_keywords(self, slug: str, keywords: Iterable[str]) -> Taxonomy:
        """A copy without these keywords (matched by normalised form); unknown ones are errors."""
        return self._edit(slug, lambda c: {**c, "keywords": _without(c, "keywords", keywords)})

    def add_exclusions(self, slug: str, phrases: Iterable[str]) -> Taxonomy:
        """A copy with exclusion phrases added (ones already present are skipped)."""
        if isinstance(phrases, str):
            raise TypeError("pass a list of phrases, not one string")

        def edit(c: dict[str, Any]) -> dict[str, Any]:
            present = {normalize(p) for p in c["exclude"]}
            added = [p for p in phrases if not isinstance(p, str) or normalize(p) not in present]
            return {**c, "exclude": [*c["exclude"], *added]}

        return self._edit(slug, edit)

    def remove_exclusions(self, slug: str, phrases: Iterable[str]) -> Taxonomy:
        """A copy without these exclusion phrases; unknown ones are errors."""
        return self._edit(slug, lambda c: {**c, "exclude": list(_without(c, "exclude", phrases))})

    def _dump(self) -> list[dict[str, Any]]:
        return [c.model_dump() for c in self.categories]

    def _edit(self, slug: str, edit: Any) -> Taxonomy:
        self.category(slug)
        return self._replace([edit(c) if c["slug"] == slug else c for c in self._dump()])

    def _replace(self, categories: list[dict[str, Any]]) -> Taxonomy:
        return Taxonomy.from_dict({"format": self.format, "categories": categories})


def _without(category: dict[str, Any], field: str, terms: Iterable[str]) -> Any:
    """`category[field]` (a dict or a list) less `terms`, compared in normalised form."""
    if isinstance(terms, str):
        raise TypeError("pass a list, not one string")
    drop = {normalize(t): t for t in terms}
    present = {normalize(t) for t in category[field]}
    missing = [t for norm, t in drop.items() if norm not in present]
    if missing:
        what = "keyword" if field == "keywords" else "exclusion"
        raise TaxonomyError(
            [f"category {category['slug']!r} has no {what} {', '.join(map(repr, missing))}"]
        )
    if isinstance(category[field], dict):
        return {t: w for t, w in category[field].items() if normalize(t) not in drop}
    return [t for t in category[field] if normalize(t) not in drop]


def _overlaps(a: str, b: str) -> bool:
    """Whether an occurrence of `a` can share characters with an occurrence of `b`."""
    if a in b or b in a:
        return True
    shortest = min(len(a), len(b))
    return any(a.endswith(b[:k]) or b.endswith(a[:k]) for k in range(1, shortest))


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise TaxonomyError(
                [f"duplicate key {key!r} in one JSON object (a keyword or field given twice)"]
            )
        result[key] = value
    return result


def _describe(exc: ValidationError, data: Any) -> list[str]:
    """One line per pydantic error: which category, which field, what to fix."""
    raw = data.get("categories") if isinstance(data, dict) else None
    problems = []
    for error in exc.errors():
        loc = list(error["loc"])
        where = "taxonomy"
        if len(loc) >= 2 and loc[0] == "categories" and isinstance(loc[1], int):
            index = loc[1]
            slug = None
            if isinstance(raw, list | tuple) and index < len(raw):
                item = raw[index]
                slug = item.get("slug") if isinstance(item, dict) else getattr(item, "slug", None)
            where = f"category {slug!r} (#{index + 1})" if slug else f"category #{index + 1}"
            loc = loc[2:]
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            model = Category if where.startswith("category") else Taxonomy
            message = f"unknown field {loc[-1]!r}; allowed: {', '.join(model.model_fields)}"
            loc = loc[:-1]
        elif loc and loc[0] == "keywords" and len(loc) == 2 and error["type"] != "value_error":
            message = (
                f"weight of keyword {loc[1]!r} must be a number > 0 and ≤ 10, "
                f"got {error['input']!r}"
            )
            loc = loc[:1]
        elif error["type"] == "missing":
            message = f"required field {loc[-1]!r} is missing"
            loc = loc[:-1]
        elif error["type"] != "value_error" and isinstance(
            error.get("input"), str | int | float | bool | None
        ):
            message = f"{message}, got {error['input']!r}"
        field = f", field {'.'.join(str(p) for p in loc)!r}" if loc else ""
        problems.append(f"{where}{field}: {message}")
    return problems


# --- matching ---------------------------------------------------------------------------------


# NamedTuples rather than frozen dataclasses: a labelled post creates several of these, and a
# tuple is built ~3x faster than a frozen dataclass (which sets each field via object.__setattr__).
class KeywordHit(NamedTuple):
    """One keyword found in a post: as written in the taxonomy, times found, its weight."""

    keyword: str
    count: int
    weight: float


class CategoryMatch(NamedTuple):
    """A label: category slug, score (summed weights), evidence, context of the first hit."""

    slug: str
    score: float
    evidence: tuple[KeywordHit, ...]
    snippet: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for storage."""
        return {
            "slug": self.slug,
            "score": self.score,
            "evidence": [
                {"keyword": h.keyword, "count": h.count, "weight": h.weight} for h in self.evidence
            ],
            "snippet": self.snippet,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoryMatch:
        """The inverse of `to_dict`."""
        return cls(
            slug=data["slug"],
            score=float(data["score"]),
            evidence=tuple(
                KeywordHit(h["keyword"], int(h["count"]), float(h["weight"]))
                for h in data["evidence"]
            ),
            snippet=data["snippet"],
        )


@dataclass(frozen=True, slots=True)
class _Rule:
    slug: str
    min_score: float
    min_keywords: int
    terms: tuple[str, ...]  # keyword as written, by keyword index
    weights: tuple[float, ...]


_EXCLUSION = -1


class CategoryMatcher:
    """A taxonomy compiled for classifying; immutable, so threads may share one.

    All keywords and exclusion phrases of all enabled categories go into one Aho-Corasick
    automaton (ahocorasick_rs, a DFA): a post is scanned once, whatever the size of the
    taxonomy, and the Python work is proportional to the hits, not to the text.
    """

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy
        self.version = taxonomy.version
        rules: list[_Rule] = []
        # normalised term -> entries (rule index, keyword index or _EXCLUSION); a term may be a
        # keyword of several categories and an exclusion of others.
        table: dict[str, list[tuple[int, int]]] = {}
        for category in sorted(taxonomy.categories, key=lambda c: c.slug):
            if not category.enabled or not category.keywords:
                continue
            index = len(rules)
            terms = tuple(category.keywords)
            rules.append(
                _Rule(
                    category.slug,
                    category.min_score,
                    category.min_keywords,
                    terms,
                    tuple(category.keywords.values()),
                )
            )
            for number, term in enumerate(terms):
                table.setdefault(normalize(term), []).append((index, number))
            for phrase in category.exclude:
                table.setdefault(normalize(phrase), []).append((index, _EXCLUSION))
        self._rules = tuple(rules)
        patterns = list(table)
        # By pattern index: (needs a word edge on the left, on the right, entries). An ASCII
        # keyword edge must be a word edge ("ban" is not in "banana"); Chinese is written
        # without spaces, so a Chinese edge may touch anything.
        self._patterns = tuple(
            (term[0] in _ASCII_ALNUM, term[-1] in _ASCII_ALNUM, tuple(table[term]))
            for term in patterns
        )
        self._automaton: ahocorasick_rs.AhoCorasick | None = None
        if patterns:
            # Standard match kind: overlapping matches are needed, since exclusions overlap
            # keywords by design. The DFA costs memory (~MBs) and is the fastest to scan.
            self._automaton = ahocorasick_rs.AhoCorasick(
                patterns,
                matchkind=ahocorasick_rs.MatchKind.Standard,
                implementation=ahocorasick_rs.Implementation.DFA,
            )

    def __reduce__(self) -> tuple[Any, ...]:
        # The automaton cannot be pickled; it is rebuilt from the taxonomy (~0.1 s).
        return (CategoryMatcher, (self.taxonomy,))

    def classify(self, text: str, *, normalized: bool = True) -> list[CategoryMatch]:
        """Categories of a post, best score first; [] when none reaches its threshold.

        `text` must be `normalize()`d (as the pipeline stores it); pass ``normalized=False`` to
        have it normalised here, e.g. for text typed by an administrator.
        """
        if not text or self._automaton is None:
            return []
        if not normalized:
            text = normalize(text)
        try:
            found = self._automaton.find_matches_as_indexes(text, overlapping=True)
        except UnicodeEncodeError:
            # Lone surrogates (broken UTF-16 from some sources) cannot cross into Rust; one
            # "?" per surrogate keeps every offset.
            text = text.encode("utf-8", "replace").decode("utf-8")
            found = self._automaton.find_matches_as_indexes(text, overlapping=True)
        if not found:
            return []
        size = len(text)
        patterns = self._patterns
        # rule index -> [(start, end, keyword index or _EXCLUSION)], ends exclusive.
        hits: dict[int, list[tuple[int, int, int]]] = {}
        for pattern, start, end in found:
            left, right, entries = patterns[pattern]
            if (left and start > 0 and text[start - 1] in _ASCII_ALNUM) or (
                right and end < size and text[end] in _ASCII_ALNUM
            ):
                continue
            for rule, number in entries:
                if rule in hits:
                    hits[rule].append((start, end, number))
                else:
                    hits[rule] = [(start, end, number)]
        matches = []
        for rule, spans in hits.items():
            match = self._judge(self._rules[rule], spans, text)
            if match is not None:
                matches.append(match)
        if len(matches) > 1:
            matches.sort(key=lambda m: (-m.score, m.slug))
        return matches

    @staticmethod
    def _judge(rule: _Rule, hits: list[tuple[int, int, int]], text: str) -> CategoryMatch | None:
        """The category's match from its raw hits, or None below the threshold."""
        weights = rule.weights
        # Upper bound first: most posts with a stray hit fail here without any span work.
        distinct: set[int] = set()
        bound = 0.0
        excluded = False
        for hit in hits:
            number = hit[2]
            if number == _EXCLUSION:
                excluded = True
            elif number not in distinct:
                distinct.add(number)
                bound += weights[number]
        if bound < rule.min_score:
            return None
        keywords = _outside_exclusions(hits) if excluded else sorted(hits, key=_span_order)
        # A keyword inside a longer keyword of the same category is one piece of evidence, not
        # two ("贪污受贿" holds 贪污 and 受贿 side by side, but "校园暴力" does not add 暴力).
        counts: dict[int, int] = {}
        score = 0.0
        first = None
        reach = -1
        for hit in keywords:
            if hit[1] <= reach:
                continue
            reach = hit[1]
            number = hit[2]
            if number in counts:
                counts[number] += 1
            else:
                counts[number] = 1
                score += weights[number]
            if first is None:
                first = hit
        if first is None or score < rule.min_score or len(counts) < rule.min_keywords:
            return None
        terms = rule.terms
        evidence = tuple(
            sorted(
                (KeywordHit(terms[n], c, weights[n]) for n, c in counts.items()),
                key=_evidence_order,
            )[:MAX_EVIDENCE]
        )
        return CategoryMatch(
            rule.slug, round(score, 3), evidence, _snippet(text, first[0], first[1])
        )


def _evidence_order(hit: KeywordHit) -> tuple[float, int]:
    # Strongest evidence first, then the most repeated; ties keep their order in the post.
    return (-hit.weight, -hit.count)


def _span_order(hit: tuple[int, int, int]) -> tuple[int, int]:
    # By start, the longer of two hits starting together first: then a hit is nested in an
    # earlier one exactly when it ends no later than the furthest end so far.
    return (hit[0], -hit[1])


def _outside_exclusions(hits: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """The keyword hits, in `_span_order`, that share no character with an exclusion hit."""
    exclusions = sorted(h for h in hits if h[2] == _EXCLUSION)
    starts = [h[0] for h in exclusions]
    # reach[i]: the furthest end among exclusions[0..i]; an exclusion overlapping [s, e)
    # exists iff one starting before e ends after s.
    reach = []
    furthest = -1
    for _, end, _ in exclusions:
        furthest = max(furthest, end)
        reach.append(furthest)
    kept = []
    for hit in hits:
        if hit[2] == _EXCLUSION:
            continue
        before = bisect_left(starts, hit[1])
        if before == 0 or reach[before - 1] <= hit[0]:
            kept.append(hit)
    kept.sort(key=_span_order)
    return kept


def _snippet(text: str, start: int, end: int) -> str:
    """At most SNIPPET_CHARS characters of `text` around [start, end), controls blanked."""
    margin = max(0, (SNIPPET_CHARS - (end - start)) // 2)
    left = max(0, start - margin)
    right = min(len(text), left + SNIPPET_CHARS)
    left = max(0, right - SNIPPET_CHARS)
    snippet = text[left:right]
    # isprintable() is a quick C check; control characters are rare. (str.translate would look
    # up every character of a non-ASCII string in the table: ~8 µs for 40 characters.)
    if not snippet.isprintable():
        snippet = _CONTROLS.sub(" ", snippet)
    return snippet.strip()
