"""PDF reports: the HTML report laid out by WeasyPrint, in the Noto CJK fonts (fonts-noto-cjk)."""

from __future__ import annotations

from tingfeng.reports.common import Document
from tingfeng.reports.render.html import render_html
from tingfeng.settings import Settings


def render_pdf(doc: Document, settings: Settings) -> bytes:
    from weasyprint import HTML

    # No base URL: the report holds everything (charts as data URIs); nothing is fetched.
    return HTML(string=render_html(doc, settings)).write_pdf()  # type: ignore[no-any-return]
