"""Which Chinese administrative divisions (province, prefecture city, county) a post concerns.

The division table is the `cpca` package's `resources/adcodes.csv` (12-digit codes, names,
coordinates), read with the csv module: importing `cpca` itself would pull in pandas. Levels
and parents come from the code: digits 1-2 the province, 3-4 the city, 5-6 the county.

Names are matched with an Aho-Corasick automaton (leftmost-longest, no overlaps) over full
names and short forms made by rule (杭州市 → 杭州, 广西壮族自治区 → 广西). A short form that
is too generic to stand alone (a two-character district such as 朝阳/鼓楼, a county name that
is also a common word such as 公安, a city name that collides with a province such as 吉林)
is kept "in context only": it counts when its parent division is named in the same text or
is the source's region ("北京朝阳" → 北京市朝阳区). A two-character match must also be a
word of its own in jieba's segmentation (not 中山 in 孙中山). Ambiguous names (鼓楼区 is in four cities)
are settled by the other divisions in the text, then by the source's region; when still tied
the answer is their common ancestor, or nothing. See docs/analysis-regions-entities.md.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Literal, NamedTuple

import ahocorasick
import rjieba

__all__ = [
    "Division",
    "DivisionTable",
    "Evidence",
    "Level",
    "Origin",
    "RegionFinder",
    "RegionMatch",
    "adcodes_path",
    "default_finder",
    "default_table",
    "resolve_region",
    "short_name",
]

Level = Literal["province", "city", "county"]
Origin = Literal["text", "source"]
Resolution = Literal["name", "text", "source", "ancestor"]

# Rows that only group others ("市辖区" under each city, "县" under 重庆, the 省直辖 groups):
# not places anyone names, so they are not divisions; their children hang on the province.
_PLACEHOLDER_NAMES = frozenset({"市辖区", "县", "省直辖县级行政区划", "自治区直辖县级行政区划"})

_SUFFIX = re.compile(
    r"(特别行政区|自治区|自治州|自治县|自治旗|地区|林区|新区|特区|矿区|省|市|盟|区|县|旗)$"
)
# District suffixes: two-character district names are mostly ordinary words (西湖, 鼓楼, 新华).
_DISTRICT_SUFFIXES = frozenset({"区", "新区", "矿区"})

# A two-character county short form at least this frequent in jieba's dictionary is mostly an
# ordinary word (公安 2800, 合作 13477, 南部 5611, 平原 7457; 义乌 92, 昆山 147, 萧山 63).
_COMMON_WORD_FREQ = 200

# City short forms whose everyday meaning is not the place (Alibaba, silver, guests,
# well-being, 长治久安). Kept, but only in context (甘肃白银, source region 甘肃).
_WORD_LIKE_CITY_SHORT_FORMS = frozenset({"阿里", "白银", "来宾", "安康", "长治"})

# Word boundaries around a two-character match come from segmenting this many characters on
# either side of it (or the whole text, when it has many such matches).
_BOUNDARY_WINDOW = 6

# Latin spellings of province and city short forms (杭州 → hangzhou; 香港 → hong kong), made by
# scripts/division_latin.py with pypinyin. They are read only in texts without Chinese
# characters: a Chinese post names its places in Chinese, and its pinyin is in addresses and
# user names (@shenzhen_news), not in what the post is about.
LATIN_FORMS = Path(__file__).with_name("division_latin.json")
_CJK = re.compile("[\u3400-\u9fff\uf900-\ufaff]")


def adcodes_path() -> Path:
    """Where the `cpca` package keeps `adcodes.csv`, found without importing `cpca`."""
    spec = importlib.util.find_spec("cpca")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the division table needs the cpca package: pip install cpca")
    for location in spec.submodule_search_locations:
        path = Path(location) / "resources" / "adcodes.csv"
        if path.is_file():
            return path
    raise FileNotFoundError("cpca is installed but has no resources/adcodes.csv")


def _nations(directory: Path) -> tuple[str, ...]:
    """Ethnic group names (from cpca's 56_nations.csv), longest first, with and without 族."""
    path = directory / "56_nations.csv"
    names: set[str] = set()
    if path.is_file():
        with path.open(encoding="utf-8-sig") as handle:
            for line in handle:
                name = line.strip()
                if len(name) < 2:
                    continue
                names.add(name)
                # "巴音郭楞蒙古自治州", "伊犁哈萨克自治州": the 族 is often left out.
                if name.endswith("族") and len(name) >= 3:
                    names.add(name[:-1])
    return tuple(sorted(names, key=len, reverse=True))


@cache
def _default_nations() -> tuple[str, ...]:
    try:
        return _nations(adcodes_path().parent)
    except FileNotFoundError:
        return ()


def short_name(name: str, nations: Iterable[str] | None = None) -> str | None:
    """The name without its administrative suffix (杭州市 → 杭州), or None if nothing is left.

    Autonomous areas also lose their ethnic groups (广西壮族自治区 → 广西, 恩施土家族苗族自治州
    → 恩施) while at least two characters remain (内蒙古自治区 → 内蒙古). A remainder that is
    only an ethnic group (鄂伦春自治旗) or a single character (沛县) gives None.
    """
    match = _SUFFIX.search(name)
    if match is None:
        return None
    rest = name[: match.start()]
    if match.group(1).startswith("自治"):
        groups = _default_nations() if nations is None else tuple(nations)
        stripped = True
        while stripped:
            stripped = False
            for group in groups:
                if rest.endswith(group):
                    if len(rest) - len(group) < 2:
                        if rest == group:
                            return None
                        break
                    rest = rest[: -len(group)]
                    stripped = True
                    break
    return rest if len(rest) >= 2 else None


def _suffix_of(name: str) -> str:
    match = _SUFFIX.search(name)
    return match.group(1) if match else ""


@dataclass(frozen=True, slots=True)
class Division:
    """One administrative division: 6-digit code, name, level, ancestors and coordinates."""

    code: str
    name: str
    level: Level
    parents: tuple[str, ...]
    """Ancestor codes, province first (empty for a province; one for a municipality's district
    and for a county governed directly by its province, such as 仙桃市)."""
    path: tuple[str, ...]
    """Names from the province down to this division, e.g. ("浙江省", "杭州市", "西湖区")."""
    longitude: float | None = None
    latitude: float | None = None

    @property
    def parent(self) -> str | None:
        return self.parents[-1] if self.parents else None

    @property
    def province(self) -> str:
        """Code of the province-level division this one belongs to (itself for a province)."""
        return self.parents[0] if self.parents else self.code

    def is_ancestor_of(self, other: Division) -> bool:
        return self.code in other.parents

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "level": self.level,
            "parents": list(self.parents),
            "path": list(self.path),
        }


class DivisionTable:
    """All divisions, by code and by name. Read-only once built; `load()` the default."""

    def __init__(self, divisions: Iterable[Division], placeholders: dict[str, str] | None = None):
        self._by_code: dict[str, Division] = {d.code: d for d in divisions}
        # Placeholder codes (110100 北京 市辖区, 429000 湖北 省直辖) → the real division above.
        self._placeholders = dict(placeholders or {})
        self._by_name: dict[str, list[Division]] = {}
        self._children: dict[str, list[Division]] = {}
        for division in sorted(self._by_code.values(), key=lambda d: d.code):
            self._by_name.setdefault(division.name, []).append(division)
            if division.parent is not None:
                self._children.setdefault(division.parent, []).append(division)

    @classmethod
    def load(cls, path: Path | None = None) -> DivisionTable:
        """Read an adcodes.csv (columns adcode,name,longitude,latitude); default: cpca's."""
        path = adcodes_path() if path is None else path
        rows: dict[str, tuple[str, float | None, float | None]] = {}
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for row in csv.DictReader(handle):
                adcode = (row.get("adcode") or "").strip()
                name = (row.get("name") or "").strip()
                if len(adcode) < 6 or not adcode[:6].isdigit() or not name:
                    continue
                rows[adcode[:6]] = (name, _float(row.get("longitude")), _float(row.get("latitude")))

        placeholders: dict[str, str] = {}
        real: dict[str, tuple[str, float | None, float | None]] = {}
        for code, value in rows.items():
            if value[0] in _PLACEHOLDER_NAMES and code[2:] != "0000":
                placeholders[code] = code[:2] + "0000"
            else:
                real[code] = value

        divisions: list[Division] = []
        for code, (name, lon, lat) in real.items():
            province = code[:2] + "0000"
            city = code[:4] + "00"
            if code == province:
                level: Level = "province"
                parents: tuple[str, ...] = ()
            elif code == city:
                level, parents = "city", (province,)
            else:
                level = "county"
                parents = (province, city) if city in real else (province,)
            if province not in real:
                continue  # an orphan row would have no path; the file has none
            path_names = (*(real[p][0] for p in parents), name)
            divisions.append(Division(code, name, level, parents, path_names, lon, lat))
        return cls(divisions, placeholders)

    def get(self, code: str) -> Division | None:
        """The division with this 6-digit (or 12-digit) code; placeholder codes give the parent."""
        code = code[:6]
        found = self._by_code.get(code)
        if found is None and code in self._placeholders:
            found = self._by_code.get(self._placeholders[code])
        return found

    def by_name(self, name: str) -> list[Division]:
        """Divisions with exactly this full name (鼓楼区 gives four)."""
        return list(self._by_name.get(name, ()))

    def children(self, code: str) -> list[Division]:
        return list(self._children.get(code, ()))

    def provinces(self) -> list[Division]:
        return [d for d in self._by_code.values() if d.level == "province"]

    def ancestors(self, division: Division) -> list[Division]:
        return [self._by_code[code] for code in division.parents]

    def __len__(self) -> int:
        return len(self._by_code)

    def __iter__(self) -> Iterator[Division]:
        return iter(sorted(self._by_code.values(), key=lambda d: d.code))

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and code[:6] in self._by_code


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


@cache
def default_table() -> DivisionTable:
    """The table from cpca's adcodes.csv, read once per process."""
    return DivisionTable.load()


class Evidence(NamedTuple):
    """Where the text names a division: the words matched and their [start, end) offsets."""

    text: str
    code: str
    """The division these words were resolved to (an ancestor's, once merged into a match)."""
    spans: tuple[tuple[int, int], ...]

    @property
    def count(self) -> int:
        return len(self.spans)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "code": self.code, "spans": [list(s) for s in self.spans]}


@dataclass(slots=True)
class RegionMatch:
    """A division a post concerns, with why: the text's words, or the source's region."""

    code: str
    name: str
    level: Level
    path: tuple[str, ...]
    path_codes: tuple[str, ...]
    origin: Origin
    resolved_by: Resolution | None
    """How the name was settled: "name" (it names one division), "text" (other divisions in
    the text), "source" (the source's region), "ancestor" (still ambiguous: the common
    ancestor of the candidates). None for the source's region itself."""
    evidence: tuple[Evidence, ...] = ()

    @property
    def mentions(self) -> int:
        """Times the text names this division itself (not counting its ancestors)."""
        return sum(e.count for e in self.evidence if e.code == self.code)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "level": self.level,
            "path": list(self.path),
            "path_codes": list(self.path_codes),
            "origin": self.origin,
            "resolved_by": self.resolved_by,
            "evidence": [e.to_dict() for e in self.evidence],
        }


@dataclass(frozen=True, slots=True)
class _Key:
    """One string the automaton finds, and the divisions it may name."""

    text: str
    primary: tuple[Division, ...]
    """Divisions the string names on its own."""
    context: tuple[Division, ...]
    """Divisions it names only when their parent is in the text or the source's region."""
    check_boundary: bool
    latin: bool = False
    """A Latin spelling (hangzhou): matched between non-letters, in texts without Chinese."""


@dataclass(slots=True)
class _Found:
    division: Division
    resolved_by: Resolution
    evidence: list[Evidence]

    @property
    def first(self) -> int:
        return min(e.spans[0][0] for e in self.evidence)


_RESOLUTION_RANK = {"name": 0, "text": 1, "source": 2, "ancestor": 3}


class RegionFinder:
    """Finds divisions in normalised text. Build once (~0.3 s with the table); reading
    (`find`, `find_all`, `resolve_region`) is thread-safe: nothing changes after the build."""

    def __init__(
        self,
        table: DivisionTable | None = None,
        *,
        cut: Callable[[str], list[str]] | None = None,
        latin_forms: dict[str, list[str]] | None = None,
    ) -> None:
        """`cut` segments text around two-character matches to check that they are words of
        their own (大同小异, 孙中山 are not 大同, 中山); default: rjieba's dictionary, no HMM.
        Pass `Segmenter.cut` so that the administrator's user words apply. `latin_forms`
        maps short forms to their Latin spellings (default: `LATIN_FORMS`)."""
        self.table = default_table() if table is None else table
        self._cut = cut if cut is not None else _plain_cut
        self._keys = self._build_keys(self.table)
        self._keys += self._latin_keys(
            self._keys, _load_latin_forms() if latin_forms is None else latin_forms
        )
        self._automaton = ahocorasick.Automaton()
        for index, key in enumerate(self._keys):
            self._automaton.add_word(_encode(key.text), index)
        self._automaton.make_automaton()
        self._resolve_cached = lru_cache(maxsize=4096)(self._resolve_uncached)

    @staticmethod
    def _build_keys(table: DivisionTable) -> list[_Key]:
        full: dict[str, list[Division]] = {}
        short: dict[str, list[tuple[Division, str]]] = {}
        for division in table:
            full.setdefault(division.name, []).append(division)
            form = short_name(division.name)
            if form and form != division.name:
                short.setdefault(form, []).append((division, _suffix_of(division.name)))

        province_forms = {d.name for d in table.provinces()} | {
            form for form, items in short.items() if any(d.level == "province" for d, _ in items)
        }
        users: dict[str, int] = {}
        for text, divisions in full.items():
            users[text] = users.get(text, 0) + len(divisions)
        for text, items in short.items():
            users[text] = users.get(text, 0) + len(items)

        primary: dict[str, list[Division]] = {}
        context: dict[str, list[Division]] = {}
        for text, divisions in full.items():
            for division in divisions:
                # 城区, 郊区, 矿区, 东区 are ordinary words; 市中区, 市南区 are read across
                # 城市 or 本市 ("城市南区").
                generic = division.level == "county" and (
                    (len(text) == 2 and text.endswith("区")) or text.startswith("市")
                )
                (context if generic else primary).setdefault(text, []).append(division)
        for text, items in short.items():
            for division, suffix in items:
                if division.level == "province":
                    alone = True
                elif division.level == "city":
                    alone = text not in province_forms and text not in _WORD_LIKE_CITY_SHORT_FORMS
                else:
                    alone = (
                        (suffix not in _DISTRICT_SUFFIXES or len(text) >= 3)
                        and users[text] == 1
                        and not (len(text) == 2 and _dictionary_freq(text) >= _COMMON_WORD_FREQ)
                    )
                (primary if alone else context).setdefault(text, []).append(division)

        keys = []
        for text in sorted(set(primary) | set(context)):
            main = tuple(dict.fromkeys(primary.get(text, ())))
            extra = tuple(d for d in dict.fromkeys(context.get(text, ())) if d not in main)
            keys.append(_Key(text, main, extra, check_boundary=len(text) <= 2))
        return keys

    @staticmethod
    def _latin_keys(keys: list[_Key], forms: dict[str, list[str]]) -> list[_Key]:
        """A key for each Latin spelling, naming what its Chinese form names (primary and
        in context alike: "jilin" is the province, the city only in context, as 吉林 is).
        Forms spelled alike (苏州 and 宿州, suzhou) make one ambiguous key."""
        by_text = {key.text: key for key in keys}
        merged: dict[str, tuple[list[Division], list[Division]]] = {}
        for form, spellings in forms.items():
            key = by_text.get(form)
            if key is None:
                continue
            for spelling in spellings:
                primary, context = merged.setdefault(spelling.lower(), ([], []))
                primary.extend(key.primary)
                context.extend(key.context)
        out = []
        for text in sorted(merged):
            primary, context = merged[text]
            main = tuple(dict.fromkeys(primary))
            extra = tuple(d for d in dict.fromkeys(context) if d not in main)
            out.append(_Key(text, main, extra, check_boundary=False, latin=True))
        return out

    def names(self, *, standalone_only: bool = False) -> frozenset[str]:
        """Every name and short form matched; `standalone_only`: those that name a division
        without context (杭州, 合肥; not 朝阳 in 北京朝阳 nor the county 公安)."""
        return frozenset(
            key.text for key in self._keys if not key.latin and (key.primary or not standalone_only)
        )

    # --- configuration values ---------------------------------------------------------------

    def resolve_region(self, value: str | Division | None) -> Division | None:
        """The division a configured region names: "杭州", "浙江省杭州市", "330100", "330106".

        None when it names none, or several that cannot be told apart (鼓楼区, 杭州 宁波).
        """
        if isinstance(value, Division):
            return value
        if not isinstance(value, str):
            return None
        return self._resolve_cached(value.strip())

    def _resolve_uncached(self, value: str) -> Division | None:
        if not value:
            return None
        if value.isascii() and value.isdigit():
            if len(value) in (2, 4):
                value = value.ljust(6, "0")
            return self.table.get(value) if len(value) >= 6 else None
        named = self.table.by_name(value)
        if len(named) == 1:
            return named[0]
        found, complete = self._analyse(value, None, check_boundaries=False)
        specific = self._specific(found)
        if complete and len(specific) == 1:
            return self.table.get(specific[0].code)
        return None

    # --- posts ------------------------------------------------------------------------------

    def find(self, text: str, source_region: str | Division | None = None) -> list[RegionMatch]:
        """The most specific divisions the text names, each with its ancestors' evidence merged
        in ("浙江杭州西湖区" → one match, 西湖区); else the source's region; else nothing."""
        source = self.resolve_region(source_region) if source_region is not None else None
        found, _ = self._analyse(text, source)
        if not found:
            return [self._from_source(source)] if source is not None else []
        return self._specific(found)

    def find_all(self, text: str, source_region: str | Division | None = None) -> list[RegionMatch]:
        """Every division the text names, ancestors included, each with its own evidence."""
        source = self.resolve_region(source_region) if source_region is not None else None
        found, _ = self._analyse(text, source)
        if not found:
            return [self._from_source(source)] if source is not None else []
        ordered = sorted(found.values(), key=lambda f: f.first)
        return [self._match(f.division, "text", f.resolved_by, f.evidence) for f in ordered]

    def _analyse(
        self, text: str, source: Division | None, *, check_boundaries: bool = True
    ) -> tuple[dict[str, _Found], bool]:
        """Divisions named in `text` by code, and whether every name settled on one division."""
        if not text or not isinstance(text, str):
            return {}, True
        keys = self._keys
        raw = self._scan(text)
        if not raw:
            return {}, True
        bounds: set[int] | None = None
        if check_boundaries:
            checks = sum(1 for _, _, index in raw if keys[index].check_boundary)
            # One segmentation of the whole text when the windows would cover it anyway.
            if checks and len(text) <= checks * (2 * _BOUNDARY_WINDOW + 2):
                bounds = self._word_bounds(text, 0)
        groups: dict[int, list[tuple[int, int]]] = {}
        chinese: bool | None = None
        for position, (start, end, index) in enumerate(raw):
            if keys[index].latin:
                if chinese is None:
                    chinese = _CJK.search(text) is not None
                if chinese or not _latin_word(text, start, end):
                    continue
            elif check_boundaries and keys[index].check_boundary:
                starts_ok, ends_ok = self._boundaries(text, start, end, bounds)
                # Names run together ("山西大同", "上海浦东") are one word to jieba: a side
                # touching another name counts as a boundary.
                starts_ok = starts_ok or (position > 0 and raw[position - 1][1] == start)
                ends_ok = ends_ok or (position + 1 < len(raw) and raw[position + 1][0] == end)
                if not (starts_ok and ends_ok):
                    continue
            spans = groups.get(index)
            if spans is None:
                groups[index] = [(start, end)]
            else:
                spans.append((start, end))
        if not groups:
            return {}, True

        # Which groups name a division (on their own), and which name one below a division;
        # needed only when some name is ambiguous or context-only.
        named: dict[str, set[int]] = {}
        below: dict[str, set[int]] = {}
        if any(len(keys[i].primary) != 1 or keys[i].context for i in groups):
            for index in groups:
                for division in keys[index].primary:
                    named.setdefault(division.code, set()).add(index)
                    for parent in division.parents:
                        below.setdefault(parent, set()).add(index)

        line: tuple[str, ...] = (*source.parents, source.code) if source is not None else ()
        found: dict[str, _Found] = {}
        complete = True
        for index, spans in groups.items():
            key = keys[index]
            if len(key.primary) == 1 and not key.context:
                choice: tuple[Division, Resolution] | None = (key.primary[0], "name")
            else:
                choice = self._choose(key, index, named, below, source, line)
            if choice is None:
                complete = False
                continue
            division, how = choice
            if how == "ancestor":
                complete = False
            evidence = Evidence(key.text, division.code, tuple(spans))
            existing = found.get(division.code)
            if existing is None:
                found[division.code] = _Found(division, how, [evidence])
            else:
                existing.evidence.append(evidence)
                if _RESOLUTION_RANK[how] < _RESOLUTION_RANK[existing.resolved_by]:
                    existing.resolved_by = how
        return found, complete

    def _choose(
        self,
        key: _Key,
        index: int,
        named: dict[str, set[int]],
        below: dict[str, set[int]],
        source: Division | None,
        line: tuple[str, ...],
    ) -> tuple[Division, Resolution] | None:
        if len(key.primary) == 1 and not key.context:
            return key.primary[0], "name"

        # Score: (other names in the text related to the candidate, relation to the source).
        scored: list[tuple[int, int, Division]] = []
        for division in key.primary:
            support = set(below.get(division.code, ()))
            for parent in division.parents:
                support |= named.get(parent, set())
            support.discard(index)
            near = 0
            if source is not None:
                if division.code == source.code or division.code in source.parents:
                    near = 2 if division.code == source.code else 1
                if source.code in division.parents:
                    near = 2
            scored.append((len(support), near, division))
        for division in key.context:
            parent = division.parent
            if parent is None:
                continue
            in_text = bool(named.get(parent, set()) - {index})
            near = 0
            if source is not None and (parent in line or division.code in line):
                near = 2 if (parent == source.code or division.code in line) else 1
            if in_text or near:
                scored.append((int(in_text), near, division))

        if not scored:
            return None
        best = max((t, s) for t, s, _ in scored)
        if best == (0, 0):
            winners = list(key.primary)
            how: Resolution = "name"
        else:
            winners = [d for t, s, d in scored if (t, s) == best]
            how = "text" if best[0] else "source"
        if len(winners) == 1:
            return winners[0], how
        if not winners:
            return None
        # Still tied: the deepest division that contains every candidate, if any.
        common = set(winners[0].parents) | {winners[0].code}
        for division in winners[1:]:
            common &= set(division.parents) | {division.code}
        if not common:
            return None
        ancestors = [d for d in map(self.table.get, common) if d is not None]
        if not ancestors:
            return None
        return max(ancestors, key=lambda d: len(d.parents)), "ancestor"

    def _scan(self, text: str) -> list[tuple[int, int, int]]:
        """Leftmost-longest, non-overlapping (start, end, key index) matches in `text`."""
        found = []
        for last, index in self._automaton.iter(_encode(text)):
            # Four symbols a character: a match must start on a character's first symbol.
            if last & 3 == 3:
                end = (last + 1) >> 2
                found.append((end - len(self._keys[index].text), end, index))
        if all(found[i][1] <= found[i + 1][0] for i in range(len(found) - 1)):
            return found  # no overlaps (the usual case): already in order
        found.sort(key=lambda m: (m[0], -m[1]))
        chosen = []
        position = 0
        for match in found:
            if match[0] >= position:
                chosen.append(match)
                position = match[1]
        return chosen

    def _word_bounds(self, text: str, offset: int) -> set[int]:
        """Offsets (plus `offset`) where the segmentation of `text` starts or ends a word."""
        bounds = {offset}
        try:
            pieces = self._cut(text)
        except Exception:  # a segmenter failure must not lose matches: every offset counts
            return set(range(offset, offset + len(text) + 1))
        for piece in pieces:
            offset += len(piece)
            bounds.add(offset)
        return bounds

    def _boundaries(
        self, text: str, start: int, end: int, bounds: set[int] | None
    ) -> tuple[bool, bool]:
        """Whether text[start:end] begins and ends on word boundaries of the segmentation
        (in 孙中山 and 大同小异, 中山 and 大同 do not)."""
        if bounds is None:  # segment a window around the match only
            left = max(0, start - _BOUNDARY_WINDOW)
            bounds = self._word_bounds(text[left : end + _BOUNDARY_WINDOW], left)
        return start in bounds, end in bounds

    def _specific(self, found: dict[str, _Found]) -> list[RegionMatch]:
        """Drop divisions that another found division lies under; move their evidence down."""
        covered = {code for item in found.values() for code in item.division.parents}
        deeper = [item for code, item in found.items() if code not in covered]
        if len(deeper) > 1:
            deeper.sort(key=lambda item: item.first)
        matches = []
        for item in deeper:
            evidence = list(item.evidence)
            for code in item.division.parents:
                if code in found:
                    evidence.extend(found[code].evidence)
            if len(evidence) > 1:
                evidence.sort(key=lambda e: e.spans[0][0])
            matches.append(self._match(item.division, "text", item.resolved_by, evidence))
        return matches

    def _match(
        self,
        division: Division,
        origin: Origin,
        how: Resolution | None,
        evidence: Iterable[Evidence] = (),
    ) -> RegionMatch:
        return RegionMatch(
            code=division.code,
            name=division.name,
            level=division.level,
            path=division.path,
            path_codes=(*division.parents, division.code),
            origin=origin,
            resolved_by=how,
            evidence=tuple(evidence),
        )

    def _from_source(self, source: Division) -> RegionMatch:
        return self._match(source, "source", None)


def _encode(text: str) -> str:
    """Each character as its four UTF-32 bytes, one symbol per byte.

    pyahocorasick looks a symbol up among a node's children one by one, and the names start
    with ~1,500 different characters: on characters the root alone cost ~0.5 µs a character.
    As bytes, no node has more than 256 children (the root one), which makes a scan ~6x faster
    even though the text is four times longer; encoding costs about 1% of that.
    """
    return text.encode("utf-32-be", "surrogatepass").decode("latin-1")


def _plain_cut(text: str) -> list[str]:
    return rjieba.cut(text, False)


def _dictionary_freq(word: str) -> int:
    """Frequency of `word` in jieba's dictionary (0 if absent); see jieba's suggest_freq."""
    try:
        if not rjieba.has_word(word):
            return 0
        # For a dictionary word suggest_freq is its own frequency + 1.
        return max(0, int(rjieba.suggest_freq(word)) - 1)
    except Exception:
        return 0


def _latin_word(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] stands between non-letters (not "shanghai" in "shanghaied")."""
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return not (before.isalnum() or after.isalnum())


def _load_latin_forms() -> dict[str, list[str]]:
    try:
        forms = json.loads(LATIN_FORMS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # without the file, English posts simply get no regions
    return forms if isinstance(forms, dict) else {}


@cache
def default_finder() -> RegionFinder:
    """A finder over the default table, built once per process."""
    return RegionFinder()


def resolve_region(name_or_code: str) -> Division | None:
    """The division a configured region names ("杭州", "浙江省杭州市", "330100"), or None."""
    return default_finder().resolve_region(name_or_code)


def region_codes(values: Iterable[str]) -> list[str]:
    """Division codes for filter values given as codes or names (330100, 杭州, 浙江省杭州市).

    Raises ValueError naming the first value that is unknown or ambiguous.
    """
    codes = []
    for value in values:
        division = resolve_region(value)
        if division is None:
            raise ValueError(
                f"unknown or ambiguous region {value!r}: give a division code or a fuller name"
            )
        codes.append(division.code)
    return codes
