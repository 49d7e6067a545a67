"""Leads: items a liaison hands in by hand (a link or pasted text), outside any schedule.

`lead_item` turns one submission into a `RawItem`; a URL is fetched through the fetcher, so the
SSRF guard and robots.txt apply to it like to any configured source. The `lead` connector kind
exists so a "leads" source can own these items; its scheduled runs collect nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from tingfeng.collect.connectors.base import CollectContext, Connector, register
from tingfeng.collect.errors import CollectError
from tingfeng.collect.extract import extract_article
from tingfeng.collect.items import ItemError, RawItem

if TYPE_CHECKING:
    from tingfeng.collect.fetcher import Fetcher


def lead_item(
    fetcher: Fetcher | None,
    *,
    url: str | None = None,
    text: str | None = None,
    submitted_by: str,
    note: str | None = None,
) -> RawItem:
    """One lead as an item: the page at `url` (an article) or the pasted `text` (a post).

    With both, the pasted text is the item's text (the page may be a login wall) and the page
    only adds title, author and time; a page that cannot be fetched is then no failure.
    Raises CollectError when nothing usable was given or the page failed without pasted text.
    """
    url = (url or "").strip() or None
    text = (text or "").strip() or None
    submitted_by = submitted_by.strip()
    if not submitted_by:
        raise CollectError("A lead needs the name of who submitted it.", permanent=True)
    if url is None and text is None:
        raise CollectError("A lead needs a link or some text.", permanent=True)
    extra: dict[str, Any] = {"lead": True, "submitted_by": submitted_by}
    if note and note.strip():
        extra["note"] = note.strip()

    if url is None:
        return RawItem(kind="post", text=text, extra=extra)

    if not url.lower().startswith(("http://", "https://")):
        raise CollectError(
            f"The link {url!r} is not an http:// or https:// address.", permanent=True
        )
    if fetcher is None:
        raise CollectError("Reading a link needs the network, but no fetcher was given.")
    try:
        page = fetcher.get(url)
        article = extract_article(page.text, page.url)
    except CollectError as exc:
        if text is None:
            raise
        extra["fetch_error"] = exc.message
        return RawItem(kind="article", url=url, text=text, extra=extra)
    if page.url != url:
        extra["final_url"] = page.url
    if text is not None:
        # What the person pasted is what they saw; the page may be a login wall, so their text
        # wins and the page only adds title, author and time.
        return RawItem(
            kind="article",
            url=url,
            text=text,
            title=article.title,
            author=article.author,
            published_at=article.published_at,
            extra=extra,
        )
    if not article.text and not article.title:
        raise CollectError(f"No text was found at {url}; paste the text instead.")
    return article.to_item(kind="article", url=url, extra=extra)


class LeadConfig(BaseModel):
    """A leads source has nothing to configure."""

    model_config = ConfigDict(extra="forbid")


@register
class LeadConnector(Connector):
    """Holder of hand-submitted leads; scheduled runs collect nothing."""

    kind = "lead"
    title = "Leads submitted by hand"
    Config = LeadConfig
    uses_network = False

    def collect(self, ctx: CollectContext) -> Iterator[RawItem | ItemError]:
        # Leads arrive through `lead_item` when a person submits one, never by schedule.
        return iter(())
