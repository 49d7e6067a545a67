"""PDF reports: the HTML report laid out by WeasyPrint, in the Noto CJK fonts (fonts-noto-cjk)."""

from __future__ import annotations

from typing import Any

from tingfeng.reports.common import Document
from tingfeng.reports.render.html import render_html
from tingfeng.settings import Settings


def _data_only() -> Any:
    """A URL fetcher for WeasyPrint that reads data: URIs (the charts) and nothing else.

    The report holds everything it shows; collected text is escaped, but should markup from a
    post ever slip into the HTML, WeasyPrint must still not fetch a URL it names (an internal
    address, a file on the server).
    """
    try:
        from weasyprint.urls import URLFetcher
    except ImportError:  # WeasyPrint before the URLFetcher class: a function does the same
        from weasyprint import default_url_fetcher

        def fetch(url: str, *args: Any, **kwargs: Any) -> Any:
            if not url.startswith("data:"):
                raise ValueError(f"reports fetch nothing from outside: {url[:80]}")
            return default_url_fetcher(url, *args, **kwargs)

        return fetch
    return URLFetcher(allowed_protocols={"data"})


def render_pdf(doc: Document, settings: Settings) -> bytes:
    from weasyprint import HTML

    # No base URL and data: URIs only: nothing is fetched.
    html = HTML(string=render_html(doc, settings), url_fetcher=_data_only())
    return html.write_pdf()  # type: ignore[no-any-return]
