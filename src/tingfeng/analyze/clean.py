"""Turn collected HTML or raw text into clean plain text.

Every collected post is untrusted. The HTML parser (lexbor via selectolax) only builds a tree and
runs nothing; we read text nodes out of that tree, so no markup ever reaches the output.
"""

from __future__ import annotations

import html
import re

from selectolax.lexbor import LexborHTMLParser

__all__ = ["clean_text", "html_to_text", "looks_like_html"]

# Elements whose content is never visible prose (code, styling, embedded documents, fallbacks).
_DROP_TAGS = [
    "script",
    "style",
    "noscript",
    "template",
    "iframe",
    "svg",
    "math",
    "object",
    "embed",
    "applet",
    "canvas",
    "audio",
    "video",
    "head",
]

# Block-level elements end a line. "Paragraph" blocks are separated by a blank line, the rest
# (div, li, ...) by a single newline, roughly as a browser renders them.
_PARAGRAPH_TAGS = (
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "table",
    "ul",
    "ol",
    "dl",
    "hr",
    "figure",
)
_LINE_TAGS = (
    "div",
    "li",
    "dt",
    "dd",
    "tr",
    "article",
    "section",
    "header",
    "footer",
    "nav",
    "aside",
    "main",
    "address",
    "figcaption",
    "caption",
    "fieldset",
    "form",
    "details",
    "summary",
    "center",
    "body",
)
_PARAGRAPH_SELECTOR = ",".join(_PARAGRAPH_TAGS)
_LINE_SELECTOR = ",".join(_LINE_TAGS)

# Sentinels inserted into the tree as text. Control characters are deleted from the input before
# parsing, so these can only come from us.
_LINE = "\x01"
_PARA = "\x02"
_BR = "\x03"
_SENTINEL_RUN = re.compile("[ \x01\x02\x03]*[\x01\x02\x03][ \x01\x02\x03]*")
# HTML source whitespace is insignificant (browsers collapse it); NBSP from &nbsp; is a space too.
_HTML_SPACE = re.compile("[ \t\n\r\f\xa0]+")

# Control and invisible characters removed from every text: C0 (but tab/newline/CR, handled
# below), DEL, C1, soft hyphen, zero-width and bidi controls (bidi overrides can disguise text),
# word joiner and invisible operators, BOM, Mongolian vowel separator, interlinear annotations.
_REMOVED = (
    [c for c in range(0x00, 0x20) if c not in (0x09, 0x0A, 0x0D)]
    + list(range(0x7F, 0xA0))
    + [0xAD, 0x180E]
    + list(range(0x200B, 0x2010))
    + list(range(0x202A, 0x202F))
    + list(range(0x2060, 0x2065))
    + list(range(0x2066, 0x206A))
    + [0xFEFF, 0xFFF9, 0xFFFA, 0xFFFB]
)
_DELETE_TABLE: dict[int, int | None] = dict.fromkeys(_REMOVED)
# Line and paragraph separators, vertical tab and form feed become plain newlines.
_DELETE_TABLE.update({0x0B: 0x0A, 0x0C: 0x0A, 0x2028: 0x0A, 0x2029: 0x0A})

# The same characters as a regex class: finding none (the usual case) is a fast C scan, while
# str.translate looks up every character of non-ASCII text in a dict (~10x slower).
_TRANSLATED = re.compile(
    "[" + "".join(re.escape(chr(code)) for code in sorted(_DELETE_TABLE)) + "]"
)

_TRAILING_SPACE = re.compile(r"[^\S\n]+$", re.MULTILINE)
_LEADING_SPACE = re.compile(r"^ +", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n(?:[^\S\n]*\n)+")

# "Looks like HTML": a known tag name (so that "<康熙>" or "1<2" stay text), a comment or a
# doctype. Unknown tag-like text such as "<b and c>" still matches "b"; that is acceptable.
_KNOWN_TAGS = (
    "a|abbr|address|area|article|aside|audio|b|base|bdi|bdo|blockquote|body|br|button|canvas|"
    "caption|center|cite|code|col|colgroup|dd|del|details|dfn|dialog|div|dl|dt|em|embed|"
    "fieldset|figcaption|figure|font|footer|form|frame|frameset|h[1-6]|head|header|hr|html|i|"
    "iframe|img|input|ins|kbd|label|legend|li|link|main|map|mark|meta|meter|nav|noscript|object|"
    "ol|optgroup|option|p|param|picture|pre|q|s|samp|script|section|select|small|source|span|"
    "strike|strong|style|sub|summary|sup|svg|table|tbody|td|template|textarea|tfoot|th|thead|"
    "time|title|tr|u|ul|var|video|wbr"
)
_HTML_HINT = re.compile(
    rf"<(?:/?(?:{_KNOWN_TAGS})(?:\s[^<>]*)?/?>|!--|!doctype)",
    re.IGNORECASE,
)
_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});")


def looks_like_html(text: str) -> bool:
    """True when `text` contains an HTML tag, comment or doctype."""
    return "<" in text and _HTML_HINT.search(text) is not None


def _resolve_sentinels(match: re.Match[str]) -> str:
    run = match.group(0)
    if _PARA in run:
        return "\n\n"
    # <br><br> is a deliberate blank line; a block boundary alone is one line break.
    return "\n\n" if run.count(_BR) >= 2 else "\n"


def html_to_text(html_source: str) -> str:
    """Visible text of an HTML document or fragment: blocks and <br> become line breaks.

    Scripts, styles and other non-prose elements are dropped with their content; entities are
    decoded once by the parser; runs of blank lines collapse to one. Broken HTML is repaired by
    the parser the way browsers do.
    """
    if not html_source:
        return ""
    # Our sentinels and other control characters must not come from the input.
    source = html_source.translate(_DELETE_TABLE)
    tree = LexborHTMLParser(source)
    tree.strip_tags(_DROP_TAGS)
    root = tree.root
    if root is None:
        return ""
    # <pre> keeps its line breaks: turn them into <br> sentinels before whitespace collapsing.
    for node in tree.css("pre, textarea"):
        node.replace_with(_PARA + node.text().replace("\n", _BR) + _PARA)
    for node in tree.css("br"):
        node.replace_with(_BR)
    for node in tree.css(_PARAGRAPH_SELECTOR):
        node.insert_before(_PARA)
        node.insert_after(_PARA)
    for node in tree.css(_LINE_SELECTOR):
        node.insert_before(_LINE)
        node.insert_after(_LINE)
    # Table cells on one row stay on one line but must not run together.
    for node in tree.css("td, th"):
        node.insert_after(" ")
    text = root.text(deep=True, separator="", strip=False)
    text = _HTML_SPACE.sub(" ", text)
    text = _SENTINEL_RUN.sub(_resolve_sentinels, text)
    text = _TRAILING_SPACE.sub("", text)
    # Leading spaces of a line came from collapsed source indentation, not from the author.
    text = _LEADING_SPACE.sub("", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


def clean_text(text: str) -> str:
    """Plain text without control or zero-width characters, with `\\n` newlines.

    Text that looks like HTML goes through `html_to_text`; plain text with character entities
    (common in API payloads, e.g. ``AT&amp;T``) has them decoded once. Trailing spaces of each
    line and blank lines at both ends are removed; runs of blank lines collapse to one. Leading
    indentation (e.g. full-width spaces opening a Chinese paragraph) is kept.
    """
    if not text:
        return ""
    if looks_like_html(text):
        return html_to_text(text)
    if "&" in text and _ENTITY.search(text):
        text = html.unescape(text)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _TRANSLATED.search(text):
        text = text.translate(_DELETE_TABLE)
    if "\n" not in text:
        return text.rstrip()
    text = _TRAILING_SPACE.sub("", text)
    if "\n\n" in text:
        text = _BLANK_LINES.sub("\n\n", text)
    return text.strip("\n")
