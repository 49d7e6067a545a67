"""`json_api`: any JSON API (or JSON embedded in a page) mapped to items with JSONPath.

A config names the URL (with {keyword}, {page}, {cursor}, {base_url}), where the list of items
is (`items_path`) and where each field of an item is (`fields`, JSONPaths relative to the item).
Presets in `tingfeng/collect/presets/*.json` hold ready mappings for public APIs (Mastodon,
Bluesky, Reddit, Hacker News, Weibo/Zhihu/Baidu hot lists); a config's own values override them.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any, Literal
from urllib.parse import quote, urljoin

from jsonpath_ng import JSONPath
from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.ext import parse as jsonpath_parse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tingfeng.collect.connectors.base import CollectContext, Connector, register
from tingfeng.collect.connectors.board import need_fetcher
from tingfeng.collect.counts import parse_count
from tingfeng.collect.errors import CollectError, ConfigError
from tingfeng.collect.extract import parse_datetime
from tingfeng.collect.items import ItemError, RawItem

# A folder of data files inside the `tingfeng.collect` package (shipped as package data).
PRESET_PACKAGE = "tingfeng.collect"
PRESET_FOLDER = "presets"

ITEM_FIELDS = (
    "text",
    "title",
    "url",
    "id",
    "author",
    "published_at",
    "reposts",
    "comments",
    "likes",
    "views",
    "html",
    "lang",
    "reply_to",
    "reposts_of",
)
COUNT_FIELDS = ("reposts", "comments", "likes", "views")
TEMPLATE_NAMES = ("base_url", "keyword", "page", "cursor")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\}")

PathSpec = str | list[str]


# --------------------------------------------------------------------------------------------
# Presets


def preset_names() -> list[str]:
    """Names of the shipped json_api presets.

    The presets folder is shared with other connectors (import_*.json for file imports); a
    json_api preset is one that sets a url_template.
    """
    folder = resources.files(PRESET_PACKAGE).joinpath(PRESET_FOLDER)
    if not folder.is_dir():
        return []
    names = (p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))
    return sorted(name for name in names if _is_json_api_preset(name))


@cache
def _load_preset_text(name: str) -> str:
    path = resources.files(PRESET_PACKAGE).joinpath(PRESET_FOLDER, f"{name}.json")
    return path.read_text(encoding="utf-8")


def _is_json_api_preset(name: str) -> bool:
    try:
        data = json.loads(_load_preset_text(name))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "url_template" in data


def load_preset(name: str) -> dict[str, Any]:
    """A preset's values (keys starting with "_" are documentation and dropped)."""
    if not re.fullmatch(r"[a-z0-9_]+", name) or name not in preset_names():
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(preset_names())}")
    data = json.loads(_load_preset_text(name))
    return {key: value for key, value in data.items() if not key.startswith("_")}


def merge_preset(preset: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Config values over preset values; mappings (fields, headers) merge one level deep."""
    merged = dict(preset)
    for key, value in config.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


# --------------------------------------------------------------------------------------------
# JSONPath helpers


@cache
def compile_path(path: str) -> JSONPath:
    """A compiled JSONPath (jsonpath-ng extended syntax); ValueError when it does not parse."""
    try:
        return jsonpath_parse(path)
    except (JsonPathLexerError, JsonPathParserError) as exc:
        raise ValueError(f"{path!r} is not a valid JSONPath: {exc}") from exc
    except Exception as exc:  # the parser raises bare Exceptions for some syntax errors
        raise ValueError(f"{path!r} is not a valid JSONPath: {exc}") from exc


def _paths(spec: PathSpec) -> list[str]:
    return [spec] if isinstance(spec, str) else list(spec)


def find_first(data: Any, spec: PathSpec) -> tuple[bool, Any]:
    """(matched, value) for the first path of `spec` that matches; a null value still matched.

    Paths of a list are alternatives: the first giving a non-empty value wins.
    """
    matched = False
    for path in _paths(spec):
        found = compile_path(path).find(data)
        if not found:
            continue
        matched = True
        value = found[0].value
        if value not in (None, "", [], {}):
            return True, value
    return matched, None


def find_values(data: Any, spec: PathSpec) -> Any:
    """The value of the first path of `spec` that matches; a list when it matched several
    (a wildcard such as tags[*].name); None when nothing matched."""
    for path in _paths(spec):
        found = [m.value for m in compile_path(path).find(data)]
        if len(found) > 1:
            return found
        if found and found[0] not in (None, "", [], {}):
            return found[0]
    return None


def to_int(value: Any) -> int | None:
    """A count from what APIs write: 12, "12", "1,234", "1.2万", "3.4k"."""
    return parse_count(value)


def to_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [to_text(v) for v in value]
        return "\n".join(p for p in parts if p) or None
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


class _ItemUrlFormatter(string.Formatter):
    """Formats item URL templates: {name} raw, {name:q} URL-encoded, {name:last} last segment."""

    def format_field(self, value: Any, format_spec: str) -> str:
        text = "" if value is None else str(value)
        if format_spec == "q":
            return quote(text, safe="")
        if format_spec == "last":
            return text.rstrip("/").rsplit("/", 1)[-1]
        return super().format_field(text, format_spec)


# --------------------------------------------------------------------------------------------
# Configuration


class JsonApiConfig(BaseModel):
    """Configuration of a `json_api` source."""

    model_config = ConfigDict(extra="forbid")

    preset: str | None = Field(None, description="Name of a shipped preset giving defaults.")
    base_url: str | None = Field(
        None, description="Scheme and host put in {base_url} (a Mastodon instance, a mirror)."
    )
    url_template: str = Field(
        description="Request URL with {keyword}, {page}, {cursor} and {base_url} placeholders."
    )
    keywords: list[str] = Field(default_factory=list, description="Keywords for {keyword}.")
    method: Literal["GET"] = Field("GET", description="HTTP method (only GET).")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")
    items_path: str = Field(description="JSONPath of the items in a response, e.g. $.data[*].")
    fields: dict[str, PathSpec] = Field(
        description="Item field -> JSONPath relative to the item (or a list of alternatives): "
        + ", ".join(ITEM_FIELDS)
        + "."
    )
    extra_fields: dict[str, PathSpec] = Field(
        default_factory=dict, description="More values kept in the item's extra (optional)."
    )
    item_url: str | None = Field(
        None,
        description="Template building the item URL from mapped fields, e.g. "
        "https://news.ycombinator.com/item?id={id} ({title:q} URL-encodes, {id:last} takes "
        "the last path segment).",
    )
    cursor_path: str | None = Field(
        None, description="JSONPath of the next-page cursor in a response."
    )
    cursor_param: str | None = Field(
        None, description="Query parameter carrying the cursor (when {cursor} is not used)."
    )
    first_page: int = Field(1, ge=0, description="Number of the first {page}.")
    max_pages: int = Field(1, ge=1, le=100, description="Requests per keyword per run at most.")
    max_items: int | None = Field(None, ge=1, description="Items per run at most.")
    platform: str | None = Field(None, description="Platform name, e.g. mastodon, weibo.")
    item_kind: Literal["article", "post", "comment", "repost"] = Field(
        "post", description="Kind of the collected items."
    )
    json_pattern: str | None = Field(
        None,
        description="Regular expression whose first group is JSON inside an HTML page "
        "(e.g. Baidu's <!--s-data:...-->); without it the response must be JSON.",
    )
    skip_when: list[str] = Field(
        default_factory=list, description="JSONPaths; an item where one is truthy is skipped (ads)."
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset"):
            return merge_preset(load_preset(str(data["preset"])), data)
        return data

    @field_validator("items_path", "cursor_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None:
            compile_path(value)
        return value

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, PathSpec]) -> dict[str, PathSpec]:
        unknown = sorted(set(value) - set(ITEM_FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; use {', '.join(ITEM_FIELDS)}")
        if not {"text", "title", "html"} & set(value):
            raise ValueError("must map at least one of text, title or html")
        for spec in value.values():
            for path in _paths(spec):
                compile_path(path)
        return value

    @field_validator("extra_fields", mode="after")
    @classmethod
    def _extra_fields(cls, value: dict[str, PathSpec]) -> dict[str, PathSpec]:
        for spec in value.values():
            for path in _paths(spec):
                compile_path(path)
        return value

    @field_validator("skip_when")
    @classmethod
    def _skip_when(cls, value: list[str]) -> list[str]:
        for path in value:
            compile_path(path)
        return value

    @field_validator("json_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                if re.compile(value).groups < 1:
                    raise ValueError("needs a group (...) around the JSON")
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _template(self) -> JsonApiConfig:
        names = set(_PLACEHOLDER.findall(self.url_template))
        unknown = sorted(names - set(TEMPLATE_NAMES))
        if unknown:
            raise ValueError(
                f"url_template has unknown placeholder(s) {', '.join(unknown)}; "
                f"use {', '.join(TEMPLATE_NAMES)}"
            )
        if "base_url" in names and not self.base_url:
            raise ValueError("url_template uses {base_url} but base_url is not set")
        if "keyword" in names and not [k for k in self.keywords if k.strip()]:
            raise ValueError("url_template uses {keyword} but no keywords are given")
        if self.keywords and "keyword" not in names:
            raise ValueError("keywords are given but url_template has no {keyword}")
        url = self.render(keyword="x", page=self.first_page, cursor=None)
        if not url.lower().startswith(("http://", "https://")):
            raise ValueError("url_template must give an http:// or https:// address")
        if self.item_url:
            allowed = set(ITEM_FIELDS) | {"base_url"}
            for _, name, _, _ in string.Formatter().parse(self.item_url):
                if name is not None and name not in allowed:
                    raise ValueError(f"item_url has unknown placeholder {{{name}}}")
        return self

    def render(self, *, keyword: str | None, page: int, cursor: str | None) -> str:
        """The request URL for one page."""
        values = {
            "base_url": (self.base_url or "").rstrip("/"),
            "keyword": quote(keyword or "", safe=""),
            "page": str(page),
            "cursor": quote(cursor or "", safe=""),
        }
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), self.url_template)


# --------------------------------------------------------------------------------------------
# The connector


@register
class JsonApiConnector(Connector):
    """Items from a JSON API, mapped with JSONPath; presets for common public APIs."""

    kind = "json_api"
    title = "JSON API (Mastodon, Bluesky, Reddit, HN, hot lists, custom)"
    Config = JsonApiConfig

    def collect(self, ctx: CollectContext) -> Iterator[RawItem | ItemError]:
        config: JsonApiConfig = self.config  # type: ignore[assignment]
        fetcher = need_fetcher(ctx, self.kind)
        limits = [n for n in (config.max_items, ctx.limit) if n is not None]
        limit = min(limits) if limits else None
        uses_keyword = "{keyword}" in config.url_template
        keywords: list[str | None] = (
            list(dict.fromkeys(k.strip() for k in config.keywords if k.strip()))
            if uses_keyword
            else [None]
        )
        seen: set[str] = set()
        count = 0
        for keyword in keywords:
            cursor: str | None = None
            page = config.first_page
            for _ in range(config.max_pages):
                if limit is not None and count >= limit:
                    return
                url = config.render(keyword=keyword, page=page, cursor=cursor)
                params = (
                    {config.cursor_param: cursor}
                    if cursor and config.cursor_param and "{cursor}" not in config.url_template
                    else None
                )
                result = fetcher.get(url, params=params, headers=config.headers or None)
                data = self._decode(result, config)
                raw_items = self._items(data, config, result.url)
                if not raw_items:
                    break
                mapped = [self._map(item, config, result.url) for item in raw_items]
                self._check_mapping(mapped, config, result.url)
                fresh = 0
                for number, (item, _) in enumerate(mapped, start=1):
                    if item is None:
                        continue  # skipped (an advert)
                    if isinstance(item, ItemError):
                        yield ItemError(f"item {number} of {result.url}", item.message)
                        continue
                    key = item.external_id or item.url
                    if key and (key in seen or self._known(ctx, item)):
                        continue
                    if key:
                        seen.add(key)
                    if keyword is not None:
                        item.extra.setdefault("keyword", keyword)
                    fresh += 1
                    count += 1
                    yield item
                    if limit is not None and count >= limit:
                        return
                if not fresh:
                    break  # a page of known items: the older pages are known too
                if config.cursor_path:
                    _, next_cursor = find_first(data, config.cursor_path)
                    if next_cursor in (None, "", False) or str(next_cursor) == cursor:
                        break
                    cursor = str(next_cursor)
                elif "{page}" in config.url_template:
                    page += 1
                else:
                    break

    @staticmethod
    def _known(ctx: CollectContext, item: RawItem) -> bool:
        return any(key and ctx.is_known(key) for key in (item.url, item.external_id))

    @staticmethod
    def _decode(result: Any, config: JsonApiConfig) -> Any:
        if config.json_pattern:
            found = re.search(config.json_pattern, result.text, re.DOTALL)
            if not found:
                raise CollectError(
                    f"The pattern {config.json_pattern!r} found no data in the page at "
                    f"{result.url}; the site may have changed."
                )
            raw = found.group(1)
            try:
                return json.loads(raw)
            except json.JSONDecodeError as exc:
                raise CollectError(
                    f"The data found by {config.json_pattern!r} in {result.url} is not JSON: {exc}."
                ) from exc
        try:
            return json.loads(result.text)
        except (json.JSONDecodeError, ValueError) as exc:
            start = result.text[:80].strip().replace("\n", " ")
            raise CollectError(
                f"The response from {result.url} is not JSON ({exc}); it starts with {start!r}. "
                "A login or block page often looks like this."
            ) from exc

    @staticmethod
    def _items(data: Any, config: JsonApiConfig, url: str) -> list[Any]:
        """The items of a response; an empty list when the API found nothing.

        A path matching nothing is a mapping error, unless the part of it that does exist is an
        empty list or object: that is simply a page without results.
        """
        expression = compile_path(config.items_path)
        found = expression.find(data)
        one_list = len(found) == 1 and isinstance(found[0].value, list)
        if one_list and not config.items_path.endswith("]"):
            # "$.statuses" written for "$.statuses[*]": take the list's elements.
            return list(found[0].value)
        if found:
            return [match.value for match in found]
        # Climb to the nearest part of the path that exists: if it is empty, there are simply
        # no results; if it holds something, the path does not fit the response.
        part: Any = expression
        while True:
            part = getattr(part, "left", None)
            if part is None:
                break
            ancestors = part.find(data)
            if ancestors:
                if all(m.value in (None, [], {}) for m in ancestors):
                    return []
                break
        if data in (None, [], {}):
            return []
        keys = ", ".join(list(data)[:10]) if isinstance(data, dict) else type(data).__name__
        raise ConfigError(
            f"items_path {config.items_path!r} matched nothing in the response from {url} "
            f"(it has: {keys}); check the path against the API's response."
        )

    @staticmethod
    def _map(
        data: Any, config: JsonApiConfig, url: str
    ) -> tuple[RawItem | ItemError | None, set[str]]:
        """One item mapped, and the names of the fields whose path matched."""
        for path in config.skip_when:
            if any(match.value for match in compile_path(path).find(data)):
                return None, set(config.fields)
        values: dict[str, Any] = {}
        matched: set[str] = set()
        for name, spec in config.fields.items():
            hit, value = find_first(data, spec)
            if hit:
                matched.add(name)
            values[name] = value
        extra: dict[str, Any] = {}
        for name, spec in config.extra_fields.items():
            value = find_values(data, spec)
            if value is not None:
                extra[name] = value
        item_url = to_text(values.get("url"))
        if config.item_url:
            fmt_values = {name: values.get(name) for name in ITEM_FIELDS}
            fmt_values["base_url"] = (config.base_url or "").rstrip("/")
            try:
                built = _ItemUrlFormatter().format(config.item_url, **fmt_values)
            except (KeyError, ValueError, IndexError) as exc:
                return ItemError("item", f"item_url could not be built: {exc}"), matched
            if item_url:
                extra.setdefault("link", item_url)
            item_url = built
        if item_url:
            # Relative permalinks (Reddit's) resolve against the API's host.
            item_url = urljoin(url, item_url)
        item = RawItem(
            kind=config.item_kind,
            platform=config.platform,
            text=to_text(values.get("text")),
            html=to_text(values.get("html")),
            title=to_text(values.get("title")),
            url=item_url,
            external_id=to_text(values.get("id")),
            author=to_text(values.get("author")),
            published_at=parse_datetime(values.get("published_at")),
            lang=to_text(values.get("lang")),
            reply_to=to_text(values.get("reply_to")),
            reposts_of=to_text(values.get("reposts_of")),
            reposts=to_int(values.get("reposts")),
            comments=to_int(values.get("comments")),
            likes=to_int(values.get("likes")),
            views=to_int(values.get("views")),
            extra=extra,
        )
        if not (item.text or item.html or item.title):
            return ItemError("item", "has no text, html or title"), matched
        return item, matched

    @staticmethod
    def _check_mapping(
        mapped: list[tuple[RawItem | ItemError | None, set[str]]], config: JsonApiConfig, url: str
    ) -> None:
        """A field path that matched in none of a page's items is wrong, not just empty."""
        considered = [names for item, names in mapped if item is not None]
        if not considered:
            return
        for name, spec in config.fields.items():
            if not any(name in names for names in considered):
                raise ConfigError(
                    f"The field mapping {name} = {spec!r} matched nothing in any of the "
                    f"{len(considered)} items from {url}; check the path against the API's "
                    "response."
                )
