"""Importing files: JSONL, JSON arrays, CSV, XLSX and the CED Weibo cascades.

A file is read as a stream of records (a JSON line, a CSV or sheet row, a CED post or repost)
and each record becomes one `RawItem`, or one `ItemError` when it cannot be read, so a bad row
never stops an import. A `mapping` says which column (or dotted JSON path) feeds which item
field; presets in `collect/presets/import_*.json` hold ready mappings for common exports
(MediaCrawler, 12345 hotline work orders).

The same code serves the `import` source kind (the connector below) and the
`tingfeng ingest FILE` command (`read_items`). The connector keeps in `state["offset"]` how
many records it has read, so the next run starts after them (and picks up lines appended since);
resuming skips records without mapping them (CED: whole cascades at once). Re-reading is safe
anyway: the store ignores items it already holds.

Times: naive date-times stay naive (the pipeline reads them in the source's time zone);
numeric epochs (seconds, milliseconds or microseconds) become aware UTC times.
"""

from __future__ import annotations

import codecs
import csv
import email.utils
import gzip
import io
import json
import math
import os
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from functools import cache
from itertools import chain, islice
from pathlib import Path
from typing import IO, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tingfeng.collect.charset import detect_encoding
from tingfeng.collect.connectors.base import CollectContext, Connector, register
from tingfeng.collect.errors import CollectError, ConfigError
from tingfeng.collect.items import POST_KINDS, ItemError, RawItem

Format = Literal["auto", "jsonl", "json", "csv", "xlsx", "ced"]
MappingValue = str | list[str]

# Item fields a mapping may fill; "id" fills `external_id`. "extra.NAME" keys fill extra[NAME].
FIELDS = (
    "text",
    "html",
    "title",
    "url",
    "id",
    "author",
    "published_at",
    "reposts",
    "comments",
    "likes",
    "views",
    "reposts_of",
    "reply_to",
    "kind",
    "lang",
    "platform",
)
_ALIASES = {"external_id": "id"}
_COUNT_FIELDS = ("reposts", "comments", "likes", "views")
_STRING_FIELDS = ("title", "url", "author", "lang", "platform")
_LINK_FIELDS = ("reposts_of", "reply_to")

# Used when neither a mapping nor a preset is given: our own field names plus common ones.
DEFAULT_MAPPING: dict[str, list[str]] = {
    "text": ["text", "content", "body", "正文", "内容"],
    "html": ["html"],
    "title": ["title", "标题"],
    "url": ["url", "link", "链接"],
    "id": ["id", "external_id", "mid"],
    "author": ["author", "user", "作者"],
    "published_at": ["published_at", "time", "date", "created_at", "发布时间", "时间"],
    "reposts": ["reposts"],
    "comments": ["comments"],
    "likes": ["likes"],
    "views": ["views"],
    "reposts_of": ["reposts_of"],
    "reply_to": ["reply_to"],
    "kind": ["kind"],
    "lang": ["lang"],
    "platform": ["platform"],
}

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"

# Weibo shows a repost without words as "转发微博"; CED stores it as an empty text. The item keeps
# Weibo's wording, because the pipeline drops items without text and those reposts carry the
# spread paths (40 % of CED reposts are such).
EMPTY_REPOST_TEXT = "转发微博"
# China has kept UTC+8 without daylight saving since 1991; CED dates are China local times.
CHINA_TZ = timezone(timedelta(hours=8), "CST")

_SAMPLE_BYTES = 64 * 1024
_HEADER_SCAN_ROWS = 20
# Larger than any real cell, yet a bound: csv's default of 128 KiB rejects long posts.
_CSV_FIELD_LIMIT = 64 * 1024 * 1024
_JSON_CHUNK = 1 << 20
# An array element still not complete after this many characters is broken JSON, not a big post.
_JSON_MAX_ENTRY = 64 << 20

_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook is one)"),
    (b"\xd0\xcf\x11\xe0", "an old Office file (.xls/.doc)"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"SQLite format 3", "an SQLite database"),
)


# --------------------------------------------------------------------------------------------
# Configuration and presets


class ImportConfig(BaseModel):
    """Where the file is and how to read it."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        description="File to read: .jsonl, .json, .csv, .tsv, .xlsx, CED; .gz allowed."
    )
    format: Format = Field("auto", description="File format; auto: from the extension and content.")
    mapping: dict[str, MappingValue] = Field(
        default_factory=dict,
        description="Item field -> column or dotted JSON path (a list: first non-empty wins). "
        "Fields: " + ", ".join(FIELDS) + "; extra.NAME keeps a column in extra.",
    )
    preset: str | None = Field(
        None, description="Ready mapping from collect/presets/import_*.json."
    )
    platform: str | None = Field(None, description="Platform of the items, e.g. weibo.")
    kind: Literal["article", "post", "comment", "repost"] | None = Field(
        None, description="Kind of the items when the mapping gives none (default post)."
    )
    encoding: str = Field("auto", description="Text encoding; auto detects (BOM, UTF-8, GBK...).")
    time_format: str | None = Field(None, description="strptime format of the time column.")
    sheet: str | None = Field(None, description="Worksheet of an .xlsx file (default the first).")
    delimiter: str | None = Field(None, description="CSV delimiter (default: guessed).")

    @field_validator("path")
    @classmethod
    def _path_given(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("give the path of the file to import")
        return value.strip()

    @field_validator("mapping")
    @classmethod
    def _check_mapping(cls, value: dict[str, MappingValue]) -> dict[str, MappingValue]:
        clean: dict[str, MappingValue] = {}
        for key, column in value.items():
            name = _ALIASES.get(key, key)
            if name not in FIELDS and not (name.startswith("extra.") and len(name) > 6):
                raise ValueError(
                    f"unknown field {key!r}; map one of {', '.join(FIELDS)} or extra.NAME"
                )
            columns = [column] if isinstance(column, str) else list(column)
            if not columns or not all(isinstance(c, str) and c.strip() for c in columns):
                raise ValueError(f"the column for {key!r} is empty")
            clean[name] = column
        return clean

    @field_validator("encoding")
    @classmethod
    def _check_encoding(cls, value: str) -> str:
        value = value.strip() or "auto"
        if value.lower() != "auto":
            try:
                codecs.lookup(value)
            except LookupError as exc:
                raise ValueError(f"unknown encoding {value!r}; try utf-8, gb18030 or auto") from exc
        return value

    @field_validator("delimiter")
    @classmethod
    def _check_delimiter(cls, value: str | None) -> str | None:
        if value is not None:
            value = {"\\t": "\t", "tab": "\t"}.get(value, value)
            if len(value) != 1:
                raise ValueError("the delimiter must be one character, e.g. ',' or '\\t'")
        return value

    @field_validator("preset")
    @classmethod
    def _check_preset(cls, value: str | None) -> str | None:
        if value:
            load_preset(value)  # raises with the list of presets
        return value or None


@dataclass(frozen=True)
class Variant:
    """One way of reading records: chosen when every column in `when` is present."""

    fields: dict[str, tuple[str, ...]]
    when: tuple[str, ...] = ()
    kind: str | None = None
    # Fields the user mapped by hand: a column missing from the file is then a mistake.
    strict: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    variants: tuple[Variant, ...]
    platform: str | None = None
    time_format: str | None = None
    format: str | None = None


def preset_names() -> list[str]:
    """Names of the import presets shipped with Tingfeng."""
    return sorted(p.stem for p in PRESET_DIR.glob("import_*.json"))


def _columns(value: MappingValue) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


@cache
def load_preset(name: str) -> Preset:
    """The preset `name` ("import_mediacrawler_weibo", "mediacrawler_weibo" or a .json path)."""
    stem = name.strip().removesuffix(".json")
    candidates = [PRESET_DIR / f"{stem}.json", PRESET_DIR / f"import_{stem}.json"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise ConfigError(
            f"Unknown import preset {name!r}; choose one of: {', '.join(preset_names()) or 'none'}."
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        variants = tuple(
            Variant(
                fields={_ALIASES.get(k, k): _columns(v) for k, v in spec["mapping"].items()},
                when=_columns(spec.get("when", ())),
                kind=spec.get("kind"),
            )
            for spec in raw.get("variants")
            or [{"mapping": raw["mapping"], "kind": raw.get("kind")}]
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"The import preset {path.name} is damaged: {exc}") from exc
    return Preset(
        name=path.stem,
        title=raw.get("_about") or raw.get("title") or path.stem,
        variants=variants,
        platform=raw.get("platform"),
        time_format=raw.get("time_format"),
        format=raw.get("format"),
    )


def _variants(config: ImportConfig) -> tuple[Variant, ...]:
    """How records are read: the preset's variants (or the default) under the user's mapping."""
    user = {name: _columns(value) for name, value in config.mapping.items()}
    if config.preset:
        base = load_preset(config.preset).variants
    elif user:
        base = (Variant(fields={}),)
    else:
        base = (Variant(fields={k: tuple(v) for k, v in DEFAULT_MAPPING.items()}),)
    return tuple(
        Variant(
            fields={**variant.fields, **user},
            when=variant.when,
            kind=variant.kind,
            strict=frozenset(user),
        )
        for variant in base
    )


# --------------------------------------------------------------------------------------------
# Reading values


def _from_epoch(number: float) -> datetime:
    magnitude = abs(number)
    if magnitude < 1e11:
        seconds = number
    elif magnitude < 1e14:
        seconds = number / 1e3
    else:
        seconds = number / 1e6
    try:
        value = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"{number!r} is not a plausible time") from exc
    if not 1990 <= value.year <= 2100:
        raise ValueError(f"{number!r} is not a plausible time (it reads as {value:%Y-%m-%d})")
    return value


_DATE_NUMBERS = re.compile(
    r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})"
    r"(?:[ T]+(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,6}))?)?)?$"
)
_CHINESE_DATE = re.compile(
    r"^(?:(\d{4})\s*年\s*)?(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]\s*"
    r"(?:(\d{1,2})\s*[:：时点]\s*(\d{1,2})\s*(?:[:：分]\s*(?:(\d{1,2})\s*秒?)?)?)?$"
)
_MONTH_DAY = re.compile(r"^(\d{1,2})-(\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_WEIBO_API = "%a %b %d %H:%M:%S %z %Y"


def _without_year(month: int, day: int, clock: tuple[int, int, int], now: datetime) -> datetime:
    """A date shown without its year ("3月5日 10:20"): the latest such date not in the future."""
    reference = now.replace(tzinfo=None) if now.tzinfo else now
    value = datetime(reference.year, month, day, *clock)
    if value > reference + timedelta(days=1):
        value = value.replace(year=reference.year - 1)
    return value


def parse_time(
    value: Any,
    time_format: str | None = None,
    *,
    now: datetime | None = None,
    excel: bool = False,
) -> datetime | None:
    """A date-time from a cell or JSON value; None for an empty one; ValueError if unreadable.

    Naive results stay naive. Numbers are Unix epochs in s, ms or µs (aware UTC); with `excel`,
    numbers in the range of Excel day serials are read as such (a date cell saved as a number).
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a time")
        if excel and 20_000 <= value < 80_000:
            return datetime(1899, 12, 30) + timedelta(days=float(value))
        return _from_epoch(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a date/time, found a JSON {json_type(value)}")
    text = value.strip()
    if not text:
        return None
    if time_format:
        try:
            return datetime.strptime(text, time_format)
        except ValueError as exc:
            raise ValueError(f"{text!r} does not match the time format {time_format!r}") from exc
    return _parse_time_text(text, now or datetime.now())


def _parse_time_text(text: str, now: datetime) -> datetime:
    if text.isdigit():
        if len(text) == 8:  # 20240305
            return datetime.strptime(text, "%Y%m%d")
        if len(text) == 14:  # 20240305102030
            return datetime.strptime(text, "%Y%m%d%H%M%S")
        return _from_epoch(int(text))
    try:
        return _from_epoch(float(text))
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    match = _DATE_NUMBERS.match(text)
    if match:
        y, mo, d, h, mi, s, frac = match.groups()
        micro = int((frac or "0").ljust(6, "0"))
        return datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), micro)
    match = _CHINESE_DATE.match(text)
    if match:
        y, mo, d, h, mi, s = match.groups()
        clock = (int(h or 0), int(mi or 0), int(s or 0))
        if y:
            return datetime(int(y), int(mo), int(d), *clock)
        return _without_year(int(mo), int(d), clock, now)
    match = _MONTH_DAY.match(text)
    if match:
        mo, d, h, mi, s = match.groups()
        return _without_year(int(mo), int(d), (int(h), int(mi), int(s or 0)), now)
    try:
        return datetime.strptime(text, _WEIBO_API)
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(text)
        if parsed is not None:
            return parsed
    except (TypeError, ValueError, IndexError):
        pass
    if re.search(r"\d{4}", text):
        from dateutil import parser as dateutil_parser

        try:
            return dateutil_parser.parse(text, default=datetime(now.year, 1, 1))
        except (ValueError, OverflowError):
            pass
    raise ValueError(f"cannot read {text!r} as a date/time")


_COUNT_UNITS = {"万": 10_000, "w": 10_000, "W": 10_000, "亿": 100_000_000, "k": 1_000, "K": 1_000}


def parse_count(value: Any) -> int | None:
    """A non-negative count from 1234, "1,234", "1.2万", "10万+", "3k"; None when unreadable.

    Counts are lenient on purpose: a post with an odd like count is still worth keeping.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value >= 0 else None
    if not isinstance(value, str):
        return None
    text = value.strip().replace(",", "").replace("，", "").rstrip("+")
    if not text:
        return None
    factor = 1
    if text[-1] in _COUNT_UNITS:
        factor = _COUNT_UNITS[text[-1]]
        text = text[:-1]
    try:
        number = float(text) * factor
    except ValueError:
        return None
    return int(number) if math.isfinite(number) and number >= 0 else None


def _as_id(value: Any) -> str | None:
    """An identifier as text; spreadsheets turn long ids into floats, which are undone here."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float | str):
        text = str(value).strip()
        return text or None
    return None


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise ValueError(f"expected text, found a JSON {json_type(value)}")


_KIND_WORDS = {
    "原创": "post",
    "微博": "post",
    "帖子": "post",
    "转发": "repost",
    "retweet": "repost",
    "share": "repost",
    "评论": "comment",
    "回复": "comment",
    "reply": "comment",
    "文章": "article",
    "新闻": "article",
    "news": "article",
}


def _as_kind(value: Any) -> str:
    text = (_as_text(value) or "").strip()
    kind = _KIND_WORDS.get(text, text.lower())
    if kind not in POST_KINDS:
        raise ValueError(f"kind {text!r} is not one of {', '.join(POST_KINDS)}")
    return kind


def _lookup(record: Mapping[str, Any], path: str) -> Any:
    """The value at `path`: a key, or a dotted path into nested objects ("user.name", "pics.0")."""
    if path in record:
        return record[path]
    if "." not in path:
        return None
    current: Any = record
    for part in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
        if current is None:
            return None
    return current


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages ("string", "list", "object")."""
    names = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    kind = names.get(type(value))
    return kind or ("number" if isinstance(value, int | float) else type(value).__name__)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


# --------------------------------------------------------------------------------------------
# Records to items


@dataclass
class _Bad:
    """A record that could not even be read (bad JSON, bad CSV quoting)."""

    message: str


@dataclass
class Mapper:
    """Turns records (dicts) into items following the variants of a mapping."""

    variants: tuple[Variant, ...]
    platform: str | None
    kind: str | None
    time_format: str | None
    now: datetime
    excel: bool = False
    # For tabular files the variant is fixed by the header; JSON records choose per record.
    fixed: Variant | None = None
    encoding: str = "utf-8"
    replacement_decoded: bool = False
    _checked_first: bool = field(default=False, repr=False)

    def variant_for(self, record: Mapping[str, Any]) -> Variant | None:
        if self.fixed is not None:
            return self.fixed
        for variant in self.variants:
            if all(not _blank(_lookup(record, column)) for column in variant.when):
                return variant
        return None

    def expected_text(self) -> list[str]:
        seen: list[str] = []
        for variant in self.variants:
            for column in variant.fields.get("text", ()) + variant.fields.get("html", ()):
                if column not in seen:
                    seen.append(column)
        return seen

    # -- tabular files

    def choose_header(self, rows: list[tuple[int, list[Any]]], what: str) -> tuple[int, list[str]]:
        """The header row among the first rows (exports often put a title above it)."""
        for position, (_number, cells) in enumerate(rows):
            header = [str(c).strip() if c is not None else "" for c in cells]
            columns = set(header)
            for variant in self.variants:
                if not all(w in columns for w in variant.when):
                    continue
                text_columns = variant.fields.get("text", ()) + variant.fields.get("html", ())
                if any(c in columns for c in text_columns):
                    self._fix(variant, header, what)
                    return position, header
        first = next(
            (
                [str(c) for c in cells if c not in (None, "")]
                for _, cells in rows
                if any(c not in (None, "") for c in cells)
            ),
            [],
        )
        raise ConfigError(
            f"{what} has no column for the text: expected one of "
            f"{', '.join(map(repr, self.expected_text())) or '(none mapped)'}; "
            f"columns found: {', '.join(map(repr, first[:40])) or 'none'}. "
            "Set mapping.text to the column that holds the text (and map the other columns), "
            "or choose the matching preset."
        )

    def _fix(self, variant: Variant, header: list[str], what: str) -> None:
        columns = set(header)
        missing = [
            f"{name} -> {' / '.join(map(repr, variant.fields[name]))}"
            for name in sorted(variant.strict)
            if not any(c in columns for c in variant.fields[name])
        ]
        if missing:
            raise ConfigError(
                f"{what} lacks the mapped column(s) {'; '.join(missing)}; columns found: "
                f"{', '.join(map(repr, [h for h in header if h][:40]))}. Fix the mapping."
            )
        self.fixed = variant

    # -- one record

    def check_first(self, record: Mapping[str, Any], what: str) -> None:
        """Fail early when the first JSON record has none of the mapped text fields."""
        if self._checked_first:
            return
        self._checked_first = True
        for variant in self.variants:
            text_columns = variant.fields.get("text", ()) + variant.fields.get("html", ())
            if any(_lookup(record, c) is not None for c in text_columns):
                return
        raise ConfigError(
            f"{what}: the first record has no text field: expected one of "
            f"{', '.join(map(repr, self.expected_text())) or '(none mapped)'}; "
            f"fields found: {', '.join(map(repr, list(record)[:40])) or 'none'}. "
            "Set mapping.text (a field name or a dotted path such as mblog.text) or a preset."
        )

    def build(self, record: Mapping[str, Any], where: str) -> RawItem | ItemError:
        variant = self.variant_for(record)
        if variant is None:
            wanted = " or ".join(repr(w) for v in self.variants for w in v.when)
            return ItemError(where, f"no mapping fits this record: it has no {wanted} field")
        try:
            return self._build(record, variant)
        except ValueError as exc:
            return ItemError(where, str(exc))

    def _first(
        self,
        record: Mapping[str, Any],
        columns: tuple[str, ...],
        link: bool = False,
        own_id: str | None = None,
    ) -> Any:
        for column in columns:
            value = _lookup(record, column)
            if _blank(value):
                continue
            # Top-level comments carry a parent id of "0" (MediaCrawler) or their own id (Weibo).
            if link and (_as_id(value) in ("0", own_id)):
                continue
            return value
        return None

    def _build(self, record: Mapping[str, Any], variant: Variant) -> RawItem:
        fields = variant.fields
        get = self._first

        def column_of(name: str) -> str:
            return " / ".join(fields.get(name, ())) or "(not mapped)"

        try:
            text = _as_text(get(record, fields.get("text", ())))
            html = _as_text(get(record, fields.get("html", ())))
        except ValueError as exc:
            raise ValueError(f"{column_of('text')}: {exc}") from exc
        if _blank(text) and _blank(html):
            raise ValueError(f"no text (column {column_of('text')} is empty or missing)")
        for value in (text, html):
            # Only CSV is decoded with replacement; elsewhere U+FFFD may be genuine text.
            if self.replacement_decoded and value and "\ufffd" in value:
                raise ValueError(
                    f"the text has bytes that are not valid {self.encoding}: the file is probably "
                    "in another encoding; set encoding (e.g. gb18030 or utf-8)"
                )
        item = RawItem(
            text=text if not _blank(text) else None, html=html if not _blank(html) else None
        )
        strict = variant.strict

        def optional(name: str, convert: Any, value: Any) -> Any:
            # A field the user mapped must read; one from a preset or the default mapping may
            # meet other data under its name (a "user" object, a "kind" of "video"): then unset.
            try:
                return convert(value)
            except ValueError as exc:
                if name in strict:
                    raise ValueError(f"{column_of(name)}: {exc}") from exc
                return None

        item.external_id = _as_id(get(record, fields.get("id", ())))
        for name in _STRING_FIELDS:
            value = optional(name, _as_text, get(record, fields.get(name, ())))
            if not _blank(value):
                setattr(item, name, value.strip())
        for name in _COUNT_FIELDS:
            setattr(item, name, parse_count(get(record, fields.get(name, ()))))
        for name in _LINK_FIELDS:
            value = get(record, fields.get(name, ()), link=True, own_id=item.external_id)
            setattr(item, name, _as_id(value))
        time_columns = fields.get("published_at", ())
        raw_time = get(record, time_columns)
        if raw_time is not None:
            try:
                item.published_at = parse_time(
                    raw_time, self.time_format, now=self.now, excel=self.excel
                )
            except ValueError as exc:
                used = next((c for c in time_columns if _lookup(record, c) is raw_time), "time")
                hint = "" if self.time_format else "; set time_format, e.g. %Y/%m/%d %H:%M"
                raise ValueError(f"{used}: {exc}{hint}") from exc
        raw_kind = get(record, fields.get("kind", ()))
        kind = optional("kind", _as_kind, raw_kind) if raw_kind is not None else None
        item.kind = kind or variant.kind or self.kind or "post"
        if item.platform is None:
            item.platform = self.platform
        for name, columns in fields.items():
            if name.startswith("extra."):
                value = get(record, columns)
                if value is not None:
                    if isinstance(value, datetime | date):
                        value = value.isoformat()
                    item.extra[name[6:]] = value
        return item


# --------------------------------------------------------------------------------------------
# Files


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """The file to read, or a ConfigError saying why it cannot be."""
    resolved = Path(path).expanduser()
    if not resolved.exists():
        where = "" if resolved.is_absolute() else f" (relative paths are read from {Path.cwd()})"
        raise ConfigError(f"The file {str(path)!r} does not exist{where}. Check the path.")
    if resolved.is_dir():
        raise ConfigError(f"{str(path)!r} is a folder; give the file to import inside it.")
    if not os.access(resolved, os.R_OK):
        raise ConfigError(f"The file {str(path)!r} cannot be read: check its permissions.")
    return resolved


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


@contextmanager
def open_binary(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes, decompressed when it is gzip (recognised by content, not name)."""
    if _is_gzip(path):
        with gzip.open(path, "rb") as handle:
            yield handle
    else:
        with path.open("rb") as handle:
            yield handle


def _head(path: Path, size: int = _SAMPLE_BYTES) -> bytes:
    try:
        with open_binary(path) as handle:
            return handle.read(size)
    except (OSError, EOFError, zlib.error) as exc:
        raise ConfigError(f"{path.name} cannot be read: {exc}. Is it a damaged .gz file?") from exc


def _what_binary(sample: bytes) -> str | None:
    """What a binary file looks like ("a PNG image"), or None when it may be text."""
    for magic, what in _MAGIC:
        if sample.startswith(magic):
            return what
    if b"\x00" in sample[:4096] and not sample.startswith(
        (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    ):
        return "a binary file"
    return None


def _first_char(sample: bytes) -> bytes:
    return sample.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]


def _strip_gz(name: str) -> str:
    return name[:-3] if name.lower().endswith(".gz") else name


def detect_format(path: Path, sample: bytes, config: ImportConfig | None = None) -> str:
    """The format of `path` from its extension, then its first bytes."""
    name = _strip_gz(path.name.lower())
    suffix = name.rsplit(".", 1)[-1] if "." in name else ""
    if suffix in ("xls", "et"):
        raise ConfigError(
            f"{path.name} is an old-style Excel workbook; save it as .xlsx (or export CSV) first."
        )
    by_suffix = {
        "jsonl": "jsonl",
        "ndjson": "jsonl",
        "jsonlines": "jsonl",
        "json": "json",
        "csv": "csv",
        "tsv": "csv",
        "txt": "csv",
        "xlsx": "xlsx",
        "xlsm": "xlsx",
    }
    fmt = by_suffix.get(suffix)
    if fmt is None:
        if sample.startswith(b"PK\x03\x04"):
            fmt = "xlsx"
        elif _first_char(sample) in (b"{", b"["):
            fmt = "json"
        else:
            fmt = "csv"
    if fmt == "json" and _first_char(sample) != b"[":
        fmt = "jsonl"  # one object per line (or a single object) under a .json name
    # A CED file given without a mapping is recognised: `tingfeng ingest cascades.jsonl.gz` works.
    if fmt == "jsonl" and (config is None or (not config.mapping and not config.preset)):
        first_line = sample.split(b"\n", 1)[0]
        if b'"reposts"' in first_line:
            try:
                if _ced_problem(json.loads(first_line)) is None:
                    fmt = "ced"
            except ValueError:
                pass
    return fmt


def _choose_encoding(config: ImportConfig, sample: bytes) -> str:
    if config.encoding.lower() != "auto":
        return config.encoding
    return detect_encoding(sample)


def _text_stream(handle: IO[bytes], encoding: str) -> io.TextIOWrapper:
    # Undecodable bytes become U+FFFD and the row carrying them is reported, not the whole file.
    return io.TextIOWrapper(handle, encoding=encoding, errors="replace", newline="")


def _jsonl_records(
    handle: IO[bytes], encoding: str, skip: int = 0
) -> Iterator[tuple[str, dict[str, Any] | _Bad]]:
    """(where, object) per non-empty line, decoded one by one: one bad line is one error.

    The first `skip` records are passed over without decoding them (resuming a large file).
    """
    wide = codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))
    lines: Iterable[bytes | str] = _text_stream(handle, encoding) if wide else handle
    codec = "utf-8" if encoding == "utf-8-sig" else encoding
    for number, line in enumerate(lines, 1):
        where = f"line {number}"
        if isinstance(line, bytes):
            if number == 1 and line.startswith(codecs.BOM_UTF8):
                line = line[3:]
            if not line.strip():
                continue
            if skip:
                skip -= 1
                continue
            try:
                text = line.decode(codec)
            except UnicodeDecodeError as exc:
                yield where, _Bad(f"not valid {codec} text ({exc.reason}); set encoding")
                continue
        else:
            text = line.lstrip("\ufeff") if number == 1 else line
            if not text.strip():
                continue
            if skip:
                skip -= 1
                continue
        try:
            record = json.loads(text)
        except ValueError as exc:
            yield where, _Bad(f"invalid JSON: {exc}")
            continue
        if not isinstance(record, dict):
            yield where, _Bad(f"expected a JSON object, found a {json_type(record)}")
            continue
        yield where, record


def _json_array_records(
    handle: IO[bytes], encoding: str
) -> Iterator[tuple[str, dict[str, Any] | _Bad]]:
    """(where, object) per element of a top-level JSON array, read in chunks, never whole."""
    stream = _text_stream(handle, "utf-8-sig" if encoding == "utf-8" else encoding)
    decoder = json.JSONDecoder()
    buffer = stream.read(_JSON_CHUNK).lstrip("\ufeff")
    pos = 0
    eof = False
    number = 0

    def skip_space() -> None:
        nonlocal buffer, pos, eof
        while True:
            while pos < len(buffer) and buffer[pos] in " \t\r\n":
                pos += 1
            if pos < len(buffer) or eof:
                return
            more = stream.read(_JSON_CHUNK)
            eof = not more
            buffer, pos = buffer[pos:] + more, 0

    skip_space()
    if buffer[pos : pos + 1] != "[":
        raise ConfigError("The JSON file does not start with '[': expected an array of objects.")
    pos += 1
    while True:
        skip_space()
        if pos >= len(buffer):
            yield f"entry {number + 1}", _Bad("the file ends inside the JSON array (truncated?)")
            return
        if buffer[pos] == "]":
            return
        if number and buffer[pos] == ",":
            pos += 1
            skip_space()
        number += 1
        while True:
            try:
                record, end = decoder.raw_decode(buffer, pos)
                break
            except ValueError as exc:
                if eof:
                    # No way to find the next element after broken JSON: report and stop.
                    yield f"entry {number}", _Bad(f"invalid JSON: {exc}; the rest is skipped")
                    return
                if len(buffer) - pos > _JSON_MAX_ENTRY:
                    yield f"entry {number}", _Bad(f"invalid JSON: {exc}; the rest is skipped")
                    return
                more = stream.read(max(_JSON_CHUNK, len(buffer)))
                eof = not more
                buffer, pos = buffer[pos:] + more, 0
        pos = end
        if pos > _JSON_CHUNK:  # drop what was read so memory stays bounded
            buffer, pos = buffer[pos:], 0
        if isinstance(record, dict):
            yield f"entry {number}", record
        else:
            yield (
                f"entry {number}",
                _Bad(f"expected a JSON object, found a {json_type(record)}"),
            )


def _guess_delimiter(head: str, path: Path) -> str:
    """The delimiter used most in the first lines (a title line above the header has none)."""
    if _strip_gz(path.name.lower()).endswith(".tsv"):
        return "\t"
    lines = head.splitlines()[:_HEADER_SCAN_ROWS]
    counts = {d: sum(line.count(d) for line in lines) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _tabular_records(
    rows: Iterator[tuple[int, list[Any] | _Bad]], mapper: Mapper, what: str, unit: str
) -> Iterator[tuple[str, dict[str, Any] | _Bad]]:
    """Dicts keyed by the header (found among the first rows) for each non-empty data row."""
    head = list(islice(rows, _HEADER_SCAN_ROWS))
    readable = [(n, cells) for n, cells in head if not isinstance(cells, _Bad)]
    if not readable:
        raise ConfigError(f"{what} is empty: it has no header row and no data.")
    header_at, header = mapper.choose_header(readable, what)
    header_number = readable[header_at][0]
    columns = [(i, name) for i, name in enumerate(header) if name]
    for number, cells in chain((r for r in head if r[0] > header_number), rows):
        if isinstance(cells, _Bad):
            yield f"{unit} {number}", cells
        elif any(c not in (None, "") for c in cells):
            yield f"{unit} {number}", {n: cells[i] if i < len(cells) else None for i, n in columns}


def _csv_rows(stream: io.TextIOWrapper, delimiter: str) -> Iterator[tuple[int, list[Any] | _Bad]]:
    """(first line number, cells) per CSV record; a broken record yields (line, _Bad)."""
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.reader(stream, delimiter=delimiter)
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, _Bad(f"unreadable CSV row: {exc}")
            continue
        yield (
            start,
            [c.lstrip("\ufeff") if i == 0 and start == 1 else c for i, c in enumerate(cells)],
        )


@contextmanager
def _open_workbook(path: Path, sheet: str | None) -> Iterator[Any]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, KeyError or its own errors
        raise ConfigError(
            f"{path.name} is not a readable .xlsx workbook ({type(exc).__name__}: {exc}). "
            "Save it from Excel or WPS as .xlsx, or export it as CSV."
        ) from exc
    try:
        if sheet is None:
            worksheet = book.worksheets[0]
        elif sheet in book.sheetnames:
            worksheet = book[sheet]
        else:
            raise ConfigError(
                f"{path.name} has no sheet {sheet!r}; sheets: {', '.join(book.sheetnames)}."
            )
        # Some tools write a wrong <dimension>; without this, read-only mode may stop early.
        worksheet.reset_dimensions()
        yield worksheet
    finally:
        book.close()


# --------------------------------------------------------------------------------------------
# CED cascades


def _ced_problem(record: Any) -> str | None:
    """Why `record` is not a CED cascade, or None when it is one."""
    if not isinstance(record, dict):
        return f"a JSON {json_type(record)} instead of an object"
    missing = [k for k in ("id", "text", "time", "reposts") if k not in record]
    if missing:
        return f"no {', '.join(missing)} field (fields: {', '.join(list(record)[:20])})"
    if not isinstance(record["reposts"], list):
        return "reposts is not a list"
    return None


def ced_source_time(value: Any) -> datetime:
    """The source post's time, aware UTC: CED gives Unix seconds, a few give Weibo API text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return datetime.fromtimestamp(int(text), UTC)
        try:
            return datetime.strptime(text, _WEIBO_API).astimezone(UTC)
        except ValueError:
            pass
    raise ValueError(f"unreadable time {value!r}")


def ced_repost_time(text: str, source_local: datetime | None) -> datetime:
    """A repost's naive China local time; "02月06日 17:45" (no year) is dated after the post."""
    if len(text) == 19 and text[4] == "-":
        return datetime.fromisoformat(text)
    match = _CHINESE_DATE.match(text.strip())
    if match and source_local is not None:
        y, mo, d, h, mi, s = match.groups()
        value = datetime(
            int(y) if y else source_local.year,
            int(mo),
            int(d),
            int(h or 0),
            int(mi or 0),
            int(s or 0),
        )
        if not y and value < source_local - timedelta(days=1):
            value = value.replace(year=value.year + 1)
        return value
    return datetime.fromisoformat(text.strip())


def ced_source_item(record: dict[str, Any], platform: str = "weibo") -> RawItem:
    """The source post of a cascade; ValueError when its time cannot be read."""
    counts = record.get("counts") or {}
    user = record.get("user") or {}
    return RawItem(
        platform=platform,
        external_id=str(record["id"]),
        kind="post",
        text=record.get("text") or "",
        published_at=ced_source_time(record["time"]),
        reposts=parse_count(counts.get("reposts")),
        comments=parse_count(counts.get("comments")),
        likes=parse_count(counts.get("likes")),
        extra={
            "source_app": record.get("source_app"),
            "label": record.get("label"),
            "followers": user.get("followers"),
            "verified": user.get("verified"),
        },
    )


def ced_repost_item(
    repost: dict[str, Any], source_id: str, source_local: datetime | None, platform: str = "weibo"
) -> RawItem:
    """One repost of a cascade; ValueError when its date cannot be read."""
    text = repost.get("text") or ""
    extra: dict[str, Any] = {"cascade": source_id}
    if not text.strip():
        extra["empty_repost"] = True
    return RawItem(
        platform=platform,
        external_id=str(repost["mid"]),
        kind="repost",
        text=text if text.strip() else EMPTY_REPOST_TEXT,
        author=repost.get("uid") or None,
        published_at=ced_repost_time(str(repost.get("date") or ""), source_local),
        reposts_of=str(repost.get("parent") or "") or source_id,
        extra=extra,
    )


def ced_local_time(record: dict[str, Any]) -> datetime | None:
    """The source post's naive China local time, the reference for repost dates without a year."""
    try:
        return ced_source_time(record["time"]).astimezone(CHINA_TZ).replace(tzinfo=None)
    except (ValueError, KeyError, OverflowError, OSError):
        return None


def _ced_items(
    handle: IO[bytes], name: str, platform: str, offset: int
) -> Iterator[RawItem | ItemError]:
    """Each cascade's source post, then its reposts; the first `offset` items are skipped."""
    skip = offset
    first = True
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            record = json.loads(line)
            problem = _ced_problem(record)
        except ValueError as exc:
            record, problem = None, f"invalid JSON: {exc}"
        if problem is not None:
            if first:
                raise ConfigError(
                    f"{name} is not a CED cascades file: its first line is {problem}. "
                    "CED lines hold id, text, time and reposts; for other JSON files use "
                    "format jsonl with a mapping."
                )
            if skip:
                skip -= 1
                continue
            yield ItemError(where, f"not a CED cascade: {problem}")
            continue
        first = False
        reposts = record["reposts"]
        if skip > len(reposts):  # the whole cascade was read before: skip it cheaply
            skip -= len(reposts) + 1
            continue
        source_id = str(record["id"])
        if skip:
            skip -= 1
        else:
            try:
                yield ced_source_item(record, platform)
            except (ValueError, TypeError, OverflowError, OSError) as exc:
                yield ItemError(where, f"source post {source_id}: {exc}")
        local = ced_local_time(record)
        for index, repost in enumerate(reposts):
            if skip:
                skip -= 1
                continue
            try:
                yield ced_repost_item(repost, source_id, local, platform)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                yield ItemError(f"{where}, repost {index}", f"unreadable repost: {exc}")


# --------------------------------------------------------------------------------------------
# Reading a file


def iter_file(
    config: ImportConfig,
    *,
    offset: int = 0,
    limit: int | None = None,
    now: datetime | None = None,
) -> Iterator[RawItem | ItemError]:
    """Items (and errors) of the file in `config`, one per record, after skipping `offset` records.

    `limit` stops after that many items (errors do not count). Raises ConfigError when the file
    is missing or is not what the format says.
    """
    path = resolve_path(config.path)
    sample = _head(path)
    preset = load_preset(config.preset) if config.preset else None
    fmt = config.format
    if fmt == "auto":
        fmt = (preset.format if preset and preset.format else None) or detect_format(
            path, sample, config
        )
    if fmt != "xlsx":
        binary = _what_binary(sample)
        if binary is not None:
            hint = " Use format xlsx." if binary.startswith("a ZIP") else ""
            raise ConfigError(
                f"{path.name} does not look like a {fmt.upper()} file: it starts like {binary}."
                f"{hint} Give a JSONL, JSON, CSV, XLSX or CED file (optionally .gz)."
            )
    elif not sample.startswith(b"PK\x03\x04"):
        what = _what_binary(sample) or "a text file"
        raise ConfigError(
            f"{path.name} is not an .xlsx workbook: it looks like {what}. "
            "Choose the matching format (csv, jsonl) or save the sheet as .xlsx."
        )
    if limit is not None and limit <= 0:
        return
    items = _items(path, fmt, config, sample, offset, now or datetime.now(), preset)
    produced = 0
    for item in items:
        yield item
        if isinstance(item, RawItem):
            produced += 1
            if limit is not None and produced >= limit:
                return


def _items(
    path: Path,
    fmt: str,
    config: ImportConfig,
    sample: bytes,
    offset: int,
    now: datetime,
    preset: Preset | None,
) -> Iterator[RawItem | ItemError]:
    if fmt == "ced":
        with open_binary(path) as handle:
            yield from _guard(
                _ced_items(handle, path.name, config.platform or "weibo", offset), path
            )
        return
    encoding = _choose_encoding(config, sample)
    mapper = Mapper(
        variants=_variants(config),
        platform=config.platform or (preset.platform if preset else None),
        kind=config.kind,
        time_format=config.time_format or (preset.time_format if preset else None),
        now=now,
        excel=fmt == "xlsx",
        encoding=encoding,
        replacement_decoded=fmt == "csv",
    )
    what = path.name
    with _records(path, fmt, config, sample, encoding, mapper, offset) as records:
        first_record = True
        for where, record in _guard(records, path):
            if isinstance(record, _Bad):
                yield ItemError(where, record.message)
                continue
            if first_record and fmt in ("jsonl", "json"):
                mapper.check_first(record, what)
            first_record = False
            yield mapper.build(record, where)


@contextmanager
def _records(
    path: Path,
    fmt: str,
    config: ImportConfig,
    sample: bytes,
    encoding: str,
    mapper: Mapper,
    skip: int,
) -> Iterator[Iterator[tuple[str, dict[str, Any] | _Bad]]]:
    """The file's records, the first `skip` left out."""
    what = path.name
    if fmt == "xlsx":
        with _open_workbook(path, config.sheet) as sheet:
            rows = ((n, list(r)) for n, r in enumerate(sheet.iter_rows(values_only=True), 1))
            records = _tabular_records(rows, mapper, f"{what} (sheet {sheet.title!r})", "row")
            yield islice(records, skip, None)
        return
    with open_binary(path) as handle:
        if fmt == "jsonl" or (fmt == "json" and _first_char(sample) != b"["):
            # (A .json file holding objects one after another is read as JSON Lines.)
            yield _jsonl_records(handle, encoding, skip)
        elif fmt == "json":
            yield islice(_json_array_records(handle, encoding), skip, None)
        elif fmt == "csv":
            head = sample.decode(encoding, errors="replace").lstrip("\ufeff")
            delimiter = config.delimiter or _guess_delimiter(head, path)
            rows = _csv_rows(_text_stream(handle, encoding), delimiter)
            yield islice(_tabular_records(rows, mapper, what, "line"), skip, None)
        else:
            raise ConfigError(f"Unknown format {fmt!r}: use jsonl, json, csv, xlsx or ced.")


def _guard(items: Iterator[Any], path: Path) -> Iterator[Any]:
    """Turns a damaged compressed stream into a sentence instead of a zlib traceback."""
    try:
        yield from items
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise CollectError(
            f"{path.name} is damaged or truncated ({exc}); the items before the damage were read. "
            "Fetch the file again."
        ) from exc


def read_items(
    path: str | os.PathLike[str],
    format: Format = "auto",
    mapping: dict[str, MappingValue] | None = None,
    platform: str | None = None,
    limit: int | None = None,
    *,
    preset: str | None = None,
    encoding: str = "auto",
    time_format: str | None = None,
    kind: str | None = None,
    sheet: str | None = None,
    delimiter: str | None = None,
    offset: int = 0,
    now: datetime | None = None,
) -> Iterator[RawItem | ItemError]:
    """Items of a file, streamed: what `tingfeng ingest FILE --format ...` reads.

    Raises ConfigError for a bad option or a wrong file, before the first item.
    """
    raw: dict[str, Any] = {
        "path": str(path),
        "format": format,
        "mapping": mapping or {},
        "platform": platform,
        "preset": preset,
        "encoding": encoding,
        "time_format": time_format,
        "kind": kind,
        "sheet": sheet,
        "delimiter": delimiter,
    }
    config = ImportConnector.from_config({k: v for k, v in raw.items() if v is not None}).config
    assert isinstance(config, ImportConfig)
    items = iter_file(config, offset=offset, limit=limit, now=now)
    # Start reading now, so a wrong file fails here rather than at the first next().
    first = next(items, None)
    if first is None:
        return iter(())
    return _chain_first(first, items)


def _chain_first(
    first: RawItem | ItemError, rest: Iterator[RawItem | ItemError]
) -> Iterator[RawItem | ItemError]:
    yield first
    yield from rest


# --------------------------------------------------------------------------------------------
# The connector


@register
class ImportConnector(Connector):
    """Reads a file on this machine once; items appended to it later are read on the next run."""

    kind: ClassVar[str] = "import"
    title: ClassVar[str] = "File import (JSONL, CSV, Excel, CED)"
    Config: ClassVar[type[BaseModel]] = ImportConfig
    uses_network: ClassVar[bool] = False

    def collect(self, ctx: CollectContext) -> Iterator[RawItem | ItemError]:  # type: ignore[override]
        """Items from `state["offset"]` on. Re-reading is safe: the store ignores items it holds."""
        config = self.config
        assert isinstance(config, ImportConfig)
        path = resolve_path(config.path)
        size = path.stat().st_size
        offset = int(ctx.state.get("offset", 0))
        # A smaller file is a new file, not a grown one: read it from the start.
        if size < int(ctx.state.get("size", 0)):
            offset = 0
        ctx.state["size"] = size
        ctx.state["offset"] = offset
        for item in iter_file(config, offset=offset, limit=ctx.limit, now=ctx.now()):
            # Counted before yielding: a consumer that stops here has received this record.
            offset += 1
            ctx.state["offset"] = offset
            yield item
