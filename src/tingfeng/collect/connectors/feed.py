"""`feed`: RSS 0.9x/1.0/2.0, Atom and JSON Feed.

The feed is fetched by our fetcher (conditional GET, SSRF guard, robots.txt) and only then handed
to feedparser as bytes, so feedparser never touches the network. Entries that carry only a
short summary can have their article page fetched and extracted.
"""

from __future__ import annotations

import calendar
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import feedparser
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tingfeng.collect.connectors.base import CollectContext, Connector, register
from tingfeng.collect.errors import CollectError
from tingfeng.collect.extract import extract_article, html_to_text, parse_datetime
from tingfeng.collect.items import ItemError, RawItem

log = logging.getLogger(__name__)

JSON_FEED_TYPES = ("application/feed+json", "application/json")


class FeedConfig(BaseModel):
    """Configuration of a `feed` source."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Address of the RSS, Atom or JSON Feed.")
    fetch_article: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Fetch each entry's page: auto = only when the entry has just a short "
        "summary; always; never.",
    )
    summary_min_chars: int = Field(
        200, ge=0, description="In auto mode, summaries shorter than this fetch the article."
    )
    max_items: int | None = Field(None, ge=1, description="Entries read per run at most.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// address")
        return value


@dataclass(slots=True)
class FeedEntry:
    """One entry, whatever format it came in."""

    link: str | None = None
    guid: str | None = None
    title: str | None = None
    content_html: str | None = None  # full content (content:encoded, atom content)
    summary_html: str | None = None  # description / summary
    content_text: str | None = None  # JSON Feed's plain-text content
    author: str | None = None
    published_raw: str | None = None
    published_utc: datetime | None = None  # feedparser's normalised time, when the raw one fails
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ParsedFeed:
    entries: list[FeedEntry]
    title: str | None
    problem: str | None  # why the document is not a readable feed, when nothing was read


def _struct_to_utc(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _looks_like_json(content: bytes, content_type: str) -> bool:
    if any(kind in content_type for kind in JSON_FEED_TYPES):
        return True
    return content.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


def parse_json_feed(content: bytes) -> ParsedFeed:
    """A JSON Feed (1.0 or 1.1) read into entries."""
    try:
        doc = json.loads(content.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return ParsedFeed([], None, f"invalid JSON ({exc})")
    if not isinstance(doc, dict) or not str(doc.get("version", "")).startswith(
        "https://jsonfeed.org/version/"
    ):
        return ParsedFeed([], None, "JSON without a jsonfeed.org version")
    feed_authors = doc.get("authors") or ([doc["author"]] if doc.get("author") else [])
    entries = []
    for item in doc.get("items") or []:
        if not isinstance(item, dict):
            continue
        # 1.1 has "authors" (a list); 1.0 had a single "author"; both fall back to the feed's.
        authors = item.get("authors") or ([item["author"]] if item.get("author") else [])
        names = [a.get("name") for a in authors or feed_authors if isinstance(a, dict)]
        entries.append(
            FeedEntry(
                link=item.get("url") or item.get("external_url"),
                guid=str(item["id"]) if item.get("id") is not None else None,
                title=item.get("title"),
                content_html=item.get("content_html"),
                summary_html=item.get("summary"),
                content_text=item.get("content_text"),
                author=", ".join(n for n in names if n) or None,
                published_raw=item.get("date_published") or item.get("date_modified"),
                extra={"tags": item["tags"]} if item.get("tags") else {},
            )
        )
    return ParsedFeed(entries, doc.get("title"), None)


def parse_xml_feed(content: bytes, url: str, content_type: str) -> ParsedFeed:
    """An RSS or Atom document read with feedparser (from bytes: it never fetches)."""
    parsed = feedparser.parse(
        io.BytesIO(content),
        response_headers={"content-type": content_type, "content-location": url},
    )
    entries = []
    for entry in parsed.entries:
        contents = [c.get("value") for c in entry.get("content") or [] if c.get("value")]
        raw_time = entry.get("published") or entry.get("updated") or entry.get("created")
        parsed_time = (
            entry.get("published_parsed")
            or entry.get("updated_parsed")
            or entry.get("created_parsed")
        )
        entries.append(
            FeedEntry(
                link=entry.get("link"),
                guid=entry.get("id"),
                title=entry.get("title"),
                # Several <content> elements (text and html) exist; the longest is the full one.
                content_html=max(contents, key=len) if contents else None,
                summary_html=entry.get("summary"),
                author=entry.get("author"),
                published_raw=raw_time,
                published_utc=_struct_to_utc(parsed_time),
                extra={"tags": [t.get("term") for t in entry.get("tags") or [] if t.get("term")]}
                if entry.get("tags")
                else {},
            )
        )
    problem = None
    if not entries:
        if parsed.get("bozo"):
            problem = str(parsed.get("bozo_exception") or "the document is not well-formed")
        elif not parsed.get("version"):
            problem = "no RSS, RDF or Atom root element was found"
    return ParsedFeed(entries, parsed.feed.get("title"), problem)


def parse_feed(content: bytes, url: str, content_type: str = "") -> ParsedFeed:
    """Read RSS 0.9x/1.0/2.0, Atom or JSON Feed bytes."""
    if _looks_like_json(content, content_type.lower()):
        return parse_json_feed(content)
    return parse_xml_feed(content, url, content_type)


@register
class FeedConnector(Connector):
    """Entries of an RSS, Atom or JSON Feed."""

    kind = "feed"
    title = "RSS / Atom / JSON Feed"
    Config = FeedConfig

    def collect(self, ctx: CollectContext) -> Iterator[RawItem | ItemError]:
        config: FeedConfig = self.config  # type: ignore[assignment]
        fetcher = ctx.fetcher
        if fetcher is None:
            raise CollectError("The feed connector needs the network, but no fetcher was given.")
        # The validators dict lives in the source state so the next run sends If-None-Match.
        validators = ctx.state.setdefault("validators", {})
        result = fetcher.get(config.url, validators=validators)
        if result.not_modified:
            return
        feed = parse_feed(result.content, result.url, result.headers.get("content-type", ""))
        if not feed.entries and feed.problem:
            raise CollectError(
                f"The feed at {config.url} is not valid RSS/Atom/JSON Feed: {feed.problem}; "
                "check that the URL points to a feed"
            )
        limits = [n for n in (config.max_items, ctx.limit) if n is not None]
        limit = min(limits) if limits else None
        count = 0
        for number, entry in enumerate(feed.entries, start=1):
            if limit is not None and count >= limit:
                break
            if not (
                entry.link
                or entry.title
                or entry.content_html
                or entry.summary_html
                or entry.content_text
            ):
                yield ItemError(f"entry {number} of feed", "has no link, title or content")
                continue
            item = self._item(entry, feed.title)
            if self._wants_article(entry, config) and not self._known(ctx, entry):
                self._add_article(item, entry, fetcher)
            count += 1
            yield item

    @staticmethod
    def _known(ctx: CollectContext, entry: FeedEntry) -> bool:
        return any(key and ctx.is_known(key) for key in (entry.link, entry.guid))

    @staticmethod
    def _wants_article(entry: FeedEntry, config: FeedConfig) -> bool:
        if not entry.link or config.fetch_article == "never":
            return False
        if config.fetch_article == "always":
            return True
        if entry.content_html or entry.content_text:
            return False
        summary = html_to_text(entry.summary_html) if entry.summary_html else ""
        return len(summary) < config.summary_min_chars

    @staticmethod
    def _item(entry: FeedEntry, feed_title: str | None) -> RawItem:
        # The raw string keeps the zone the feed wrote (or its absence); feedparser's parsed
        # value is always UTC, so it is only the fallback.
        published = parse_datetime(entry.published_raw) if entry.published_raw else None
        extra: dict[str, Any] = dict(entry.extra)
        if feed_title:
            extra["feed_title"] = feed_title
        return RawItem(
            kind="article",
            url=entry.link,
            external_id=entry.guid or entry.link,
            title=entry.title,
            html=entry.content_html or entry.summary_html,
            text=entry.content_text if not (entry.content_html or entry.summary_html) else None,
            author=entry.author,
            published_at=published or entry.published_utc,
            extra=extra,
        )

    @staticmethod
    def _add_article(item: RawItem, entry: FeedEntry, fetcher: Any) -> None:
        """Replace a summary by the article page's text; on failure the summary stays."""
        assert entry.link is not None
        try:
            page = fetcher.get(entry.link)
        except CollectError as exc:
            item.extra["article_error"] = exc.message
            return
        content_type = page.headers.get("content-type", "text/html")
        if "html" not in content_type and "xml" not in content_type:
            # A podcast enclosure or a PDF: nothing to extract, the summary stays.
            item.extra["article_error"] = f"the link is not a web page ({content_type})"
            return
        article = extract_article(page.text, page.url)
        if not article.text:
            item.extra["article_error"] = "no article text found on the page"
            return
        if entry.summary_html:
            item.extra["summary"] = entry.summary_html
        item.html = article.html
        item.text = article.text
        item.title = item.title or article.title
        item.author = item.author or article.author
        item.published_at = item.published_at or article.published_at
        if page.url != entry.link:
            item.extra["final_url"] = page.url
