"""`site_search`: a site's own search page, queried with each keyword.

Result pages are read exactly like a board's list pages (`ListCrawler`); this module only builds
the search URL per keyword, in the encoding the site expects (old Chinese sites want GBK).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from urllib.parse import quote

from pydantic import Field, field_validator

from tingfeng.collect.connectors.base import CollectContext, Connector, register
from tingfeng.collect.connectors.board import ListConfig, ListCrawler, need_fetcher
from tingfeng.collect.errors import CollectError
from tingfeng.collect.items import ItemError, RawItem


class SiteSearchConfig(ListConfig):
    """Configuration of a `site_search` source."""

    url_template: str = Field(
        description="Search URL with {keyword} where the (URL-encoded) keyword goes, e.g. "
        "https://example.com/search?q={keyword}."
    )
    keywords: list[str] = Field(min_length=1, description="Keywords searched each run.")
    keyword_encoding: str = Field(
        "utf-8", description="Encoding of the keyword in the URL (gbk for many older sites)."
    )

    @field_validator("url_template")
    @classmethod
    def _template(cls, value: str) -> str:
        value = value.strip()
        if "{keyword}" not in value:
            raise ValueError("must contain {keyword}")
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// address")
        return value

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, value: list[str]) -> list[str]:
        cleaned = [k.strip() for k in value if k.strip()]
        if not cleaned:
            raise ValueError("needs at least one non-empty keyword")
        return list(dict.fromkeys(cleaned))

    @field_validator("keyword_encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        try:
            return codecs.lookup(value.strip()).name
        except LookupError as exc:
            raise ValueError(f"unknown encoding {value!r}") from exc


def search_url(template: str, keyword: str, encoding: str = "utf-8") -> str:
    """The template with the keyword percent-encoded in `encoding` (UnicodeEncodeError if it
    cannot be written in it)."""
    return template.replace("{keyword}", quote(keyword, safe="", encoding=encoding))


@register
class SiteSearchConnector(Connector):
    """Results of a site's own search for each keyword."""

    kind = "site_search"
    title = "Site search (keywords on a site's search page)"
    Config = SiteSearchConfig

    def collect(self, ctx: CollectContext) -> Iterator[RawItem | ItemError]:
        config: SiteSearchConfig = self.config  # type: ignore[assignment]
        crawler = ListCrawler(config, ctx, need_fetcher(ctx, self.kind))
        first_url = None
        for keyword in config.keywords:
            if crawler.done:
                break
            try:
                url = search_url(config.url_template, keyword, config.keyword_encoding)
            except UnicodeEncodeError:
                yield ItemError(
                    f"keyword {keyword!r}",
                    f"cannot be written in {config.keyword_encoding}; search for it elsewhere",
                )
                continue
            first_url = first_url or url
            # No results for one keyword is normal, so an empty page is not an error here.
            yield from crawler.crawl(url, extra={"keyword": keyword}, require_matches=False)
        if first_url is not None and not crawler.matched_any:
            # Every keyword found nothing: likely a selector that no longer fits the page, but
            # it may also be a quiet day, so this is not marked permanent.
            raise CollectError(
                f"The item selector {config.item_selector!r} matched nothing on any search "
                f"result page (e.g. {first_url}); check the selector, or that the site finds "
                "anything for these keywords."
            )
