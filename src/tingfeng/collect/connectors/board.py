"""`board`: a list page of links (a news column, a forum board) and the pages they point to.

The list logic lives in `ListCrawler` so `site_search` reuses it for search-result pages: find
item links with a selector, follow a "next page" link, skip items already stored, stop paging
once a whole page is already known, and read each item page with selectors or automatically.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import lxml.etree
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from selectolax.lexbor import LexborHTMLParser, SelectolaxError

from tingfeng.collect.connectors.base import CollectContext, Connector, register
from tingfeng.collect.errors import CollectError
from tingfeng.collect.extract import (
    FIELD_ALIASES,
    Article,
    Page,
    extract_article,
    is_xpath,
    select_fields,
)
from tingfeng.collect.items import ItemError, RawItem

if TYPE_CHECKING:
    from tingfeng.collect.fetcher import Fetcher

_HTML_TYPES = ("html", "xml", "text/plain")


def check_selector(selector: str) -> str:
    """The selector, if it compiles as CSS or XPath; a ValueError saying why otherwise."""
    selector = selector.strip()
    if not selector:
        raise ValueError("must not be empty")
    if is_xpath(selector):
        try:
            lxml.etree.XPath(selector.removeprefix("xpath:").strip())
        except lxml.etree.XPathSyntaxError as exc:
            raise ValueError(f"{selector!r} is not a valid XPath expression: {exc}") from exc
    else:
        try:
            LexborHTMLParser("<html></html>").css(selector)
        except SelectolaxError as exc:
            raise ValueError(f"{selector!r} is not a valid CSS selector") from exc
    return selector


def need_fetcher(ctx: CollectContext, kind: str) -> Fetcher:
    if ctx.fetcher is None:
        raise CollectError(f"The {kind} connector needs the network, but no fetcher was given.")
    return ctx.fetcher


class ListConfig(BaseModel):
    """How to read a list page and its item pages (shared by `board` and `site_search`)."""

    model_config = ConfigDict(extra="forbid")

    item_selector: str = Field(
        description="CSS selector (or XPath starting with / or xpath:) of the item links; an "
        "element without the link attribute uses its first descendant that has it."
    )
    link_attr: str = Field("href", description="Attribute holding the item URL.")
    next_selector: str | None = Field(None, description="Selector of the next-page link.")
    max_pages: int = Field(1, ge=1, le=100, description="List pages read per run at most.")
    article_selectors: dict[str, str] = Field(
        default_factory=dict,
        description="Selectors for title, content, author, published_at on item pages; "
        "fields left out are found automatically.",
    )
    max_items: int | None = Field(None, ge=1, description="Item pages fetched per run at most.")
    item_kind: Literal["article", "post", "comment", "repost"] = Field(
        "article", description="Kind of the collected items."
    )

    @field_validator("item_selector")
    @classmethod
    def _item_selector(cls, value: str) -> str:
        return check_selector(value)

    @field_validator("next_selector")
    @classmethod
    def _next_selector(cls, value: str | None) -> str | None:
        return check_selector(value) if value is not None and value.strip() else None

    @field_validator("article_selectors")
    @classmethod
    def _article_selectors(cls, value: dict[str, str]) -> dict[str, str]:
        for key, selector in value.items():
            if key not in FIELD_ALIASES:
                raise ValueError(
                    f"unknown field {key!r}; use title, content, author or published_at"
                )
            check_selector(selector)
        return value


class ListCrawler:
    """Walks list pages and yields their items; one per connector run (it remembers links)."""

    def __init__(self, spec: ListConfig, ctx: CollectContext, fetcher: Fetcher) -> None:
        self.spec = spec
        self.ctx = ctx
        self.fetcher = fetcher
        limits = [n for n in (spec.max_items, ctx.limit) if n is not None]
        self.limit: int | None = min(limits) if limits else None
        self.count = 0
        self.seen: set[str] = set()
        # Whether the item selector matched on any first page (site_search judges by it).
        self.matched_any = False

    @property
    def done(self) -> bool:
        return self.limit is not None and self.count >= self.limit

    def crawl(
        self,
        start_url: str,
        *,
        extra: dict[str, Any] | None = None,
        require_matches: bool = True,
    ) -> Iterator[RawItem | ItemError]:
        """Items from `start_url` and the pages after it.

        With `require_matches`, an item selector matching nothing on the first page is a
        configuration error (the site changed, or the selector is wrong).
        """
        page_url: str | None = start_url
        visited: set[str] = set()
        for number in range(1, self.spec.max_pages + 1):
            if page_url is None or page_url in visited or self.done:
                return
            visited.add(page_url)
            try:
                result = self.fetcher.get(page_url)
            except CollectError as exc:
                if number == 1:
                    raise
                # A later list page failing keeps what the earlier ones gave.
                yield ItemError(f"list page {number} ({page_url})", exc.message)
                return
            page = Page(result.text, result.url)
            links = list(dict.fromkeys(page.links(self.spec.item_selector, self.spec.link_attr)))
            if not links:
                if number == 1 and require_matches:
                    raise CollectError(
                        f"The item selector {self.spec.item_selector!r} matched nothing on "
                        f"{page_url}; check the selector against the page (the site may have "
                        "changed its layout).",
                        permanent=True,
                    )
                return
            if number == 1:
                self.matched_any = True
            fresh = [
                link for link in links if link not in self.seen and not self.ctx.is_known(link)
            ]
            self.seen.update(links)
            for link in fresh:
                if self.done:
                    return
                item = self._item(link, page_url, extra)
                if isinstance(item, RawItem):
                    self.count += 1
                yield item
            if not fresh:
                return  # everything on this page was seen before: older pages are too
            page_url = self._next_page(page)

    def _next_page(self, page: Page) -> str | None:
        if not self.spec.next_selector:
            return None
        found = page.links(self.spec.next_selector, "href")
        return found[0] if found else None

    def _item(self, link: str, list_url: str, extra: dict[str, Any] | None) -> RawItem | ItemError:
        try:
            result = self.fetcher.get(link)
        except CollectError as exc:
            return ItemError(link, exc.message)
        content_type = result.headers.get("content-type", "text/html")
        if not any(kind in content_type for kind in _HTML_TYPES):
            return ItemError(link, f"not a web page (content type {content_type})")
        try:
            article = self.read_article(result.text, result.url)
        except CollectError as exc:
            return ItemError(link, exc.message)
        if article.is_empty:
            return ItemError(link, "no title or text found on the page")
        item_extra: dict[str, Any] = {"list_url": list_url, **(extra or {})}
        if result.url != link:
            item_extra["final_url"] = result.url
        return article.to_item(kind=self.spec.item_kind, url=link, extra=item_extra)

    def read_article(self, html: str, url: str) -> Article:
        """The item page read by the configured selectors, the rest found automatically."""
        selectors = self.spec.article_selectors
        if not selectors:
            return extract_article(html, url)
        article = select_fields(html, url, selectors, now=self.ctx.now())
        covered = {FIELD_ALIASES[key] for key in selectors}
        if "content" in covered and article.text is None:
            content_key = next(k for k in selectors if FIELD_ALIASES[k] == "content")
            raise CollectError(
                f"The content selector {selectors[content_key]!r} matched nothing on {url}."
            )
        if {"title", "content", "published_at"} - covered:
            auto = extract_article(html, url)
            if "title" not in covered:
                article.title = auto.title
            if "content" not in covered:
                article.text, article.html = auto.text, auto.html
            if "published_at" not in covered:
                article.published_at = auto.published_at
            if "author" not in covered:
                article.author = auto.author
        return article


class BoardConfig(ListConfig):
    """Configuration of a `board` source."""

    # "list_url" is accepted too: it is what the CLI's --url option fills in for a board.
    url: str = Field(
        validation_alias=AliasChoices("url", "list_url"),
        description="Address of the first list page.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// address")
        return value


@register
class BoardConnector(Connector):
    """Items linked from a list page (news column, forum board), with pagination."""

    kind = "board"
    title = "List page (news column, forum board)"
    Config = BoardConfig

    def collect(self, ctx: CollectContext) -> Iterator[RawItem | ItemError]:
        config: BoardConfig = self.config  # type: ignore[assignment]
        crawler = ListCrawler(config, ctx, need_fetcher(ctx, self.kind))
        yield from crawler.crawl(config.url)
