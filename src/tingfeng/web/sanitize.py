"""Collected HTML made safe to show: nh3 (ammonia) keeps text formatting and drops the rest.

Most pages print collected text escaped (Jinja2 autoescaping). Where a page shows a post's
original HTML (a post's detail), it goes through `clean_html` first: no scripts, no event
handlers, no styles, no frames or forms, links only to http(s) and opened with
rel="noopener noreferrer nofollow", and no images (a post's pictures would tell its author
who read it, and when).
"""

from __future__ import annotations

import nh3
from markupsafe import Markup

TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "i", "li", "ol", "p", "pre", "q", "s", "small", "span", "strong", "sub", "sup",
    "table", "tbody", "td", "th", "thead", "tr", "u", "ul", "mark",
}  # fmt: skip
ATTRIBUTES = {"a": {"href", "title"}, "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan"}}


def clean_html(html: str | None) -> Markup:
    """Untrusted HTML → markup that is safe to put in a page."""
    if not html:
        return Markup("")
    return Markup(
        nh3.clean(
            html,
            tags=TAGS,
            attributes=ATTRIBUTES,
            url_schemes={"http", "https"},
            link_rel="noopener noreferrer nofollow",
            strip_comments=True,
        )
    )
