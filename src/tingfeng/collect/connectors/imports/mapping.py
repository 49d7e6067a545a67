"""Records to items: a `Mapper` turns each record (a dict) into a `RawItem` or an `ItemError`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from tingfeng.collect.connectors.imports.config import Variant
from tingfeng.collect.connectors.imports.values import (
    _as_id,
    _as_kind,
    _as_text,
    _blank,
    _lookup,
    parse_count,
    parse_time,
)
from tingfeng.collect.errors import ConfigError
from tingfeng.collect.items import ItemError, RawItem

_COUNT_FIELDS = ("reposts", "comments", "likes", "views")
_STRING_FIELDS = ("title", "url", "author", "lang", "platform")
_LINK_FIELDS = ("reposts_of", "reply_to")


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
