"""Import configuration: the options of an import, the item fields a mapping may fill, presets.

Presets in `collect/presets/import_*.json` hold ready mappings for common exports; a preset may
hold several variants, each chosen by the columns a record has.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tingfeng.collect.errors import ConfigError

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

# This file is collect/connectors/imports/config.py; the presets live in collect/presets.
PRESET_DIR = Path(__file__).resolve().parent.parent.parent / "presets"


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
