"""Reading articles out of web pages, and dates out of the strings sites write.

`extract_article` finds the main text of a page on its own (trafilatura, with a plain fallback
so a page never yields nothing); `select_fields` reads the fields a person pointed at with CSS or
XPath selectors. Both return an `Article`. `parse_datetime` reads the many ways Chinese and other
sites write a time, including unix timestamps and relative forms ("3分钟前").
"""

from __future__ import annotations

import email.utils
import logging
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urljoin

import lxml.etree
import lxml.html
import trafilatura
from dateutil import parser as date_parser
from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError
from trafilatura.htmlprocessing import convert_to_html

from tingfeng.collect.errors import ConfigError
from tingfeng.collect.items import RawItem

log = logging.getLogger(__name__)

# The fields `select_fields` understands, with the aliases people naturally write.
FIELD_ALIASES: dict[str, str] = {
    "title": "title",
    "content": "content",
    "text": "content",
    "body": "content",
    "author": "author",
    "published_at": "published_at",
    "date": "published_at",
    "time": "published_at",
}


@dataclass(slots=True)
class Article:
    """What was read from one page. Any field may be missing."""

    title: str | None = None
    text: str | None = None
    html: str | None = None
    author: str | None = None
    published_at: datetime | None = None

    @property
    def is_empty(self) -> bool:
        return not (self.title or self.text)

    def to_item(self, *, kind: str, url: str, extra: dict[str, Any]) -> RawItem:
        """The collected item for this page."""
        return RawItem(
            kind=kind,
            url=url,
            title=self.title,
            text=self.text,
            html=self.html,
            author=self.author,
            published_at=self.published_at,
            extra=extra,
        )


# --------------------------------------------------------------------------------------------
# Dates


_YEAR_FIRST = re.compile(
    r"(?P<y>(?:19|20)\d{2})\s*[-/.年]\s*(?P<m>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*日?"
    r"(?:\s*(?:T|\s)?\s*(?:上午|下午|晚上)?\s*(?P<H>\d{1,2})\s*[:时点]\s*(?P<M>\d{1,2})"
    r"(?:\s*[:分]\s*(?P<S>\d{1,2})(?:\.\d+)?)?)?"
    r"(?:\s*(?P<tz>Z|[+-]\d{2}:?\d{2}|UTC|GMT)(?![\w]))?"
)
_MONTH_FIRST = re.compile(
    r"^(?P<m>\d{1,2})\s*[-/月]\s*(?P<d>\d{1,2})\s*日?(?:\s*(?P<H>\d{1,2})\s*[:时点]\s*(?P<M>\d{1,2}))?$"
)
_RELATIVE = re.compile(r"^(?P<n>\d+)\s*(?P<unit>秒|分钟|小时|天|周|个月)前$")
_RELATIVE_UNITS = {
    "秒": timedelta(seconds=1),
    "分钟": timedelta(minutes=1),
    "小时": timedelta(hours=1),
    "天": timedelta(days=1),
    "周": timedelta(weeks=1),
    "个月": timedelta(days=30),
}
_DAY_WORDS = {"今天": 0, "昨天": 1, "前天": 2}
_DAY_WORD = re.compile(r"^(?P<w>今天|昨天|前天)\s*(?:(?P<H>\d{1,2})\s*[:时点]\s*(?P<M>\d{1,2}))?$")
_EPOCH = re.compile(r"^\d{9,13}(?:\.\d+)?$")
_YEAR = re.compile(r"(?:19|20)\d{2}")


def _epoch(value: float) -> datetime | None:
    # Milliseconds are common in JSON APIs (Weibo, Zhihu); seconds everywhere else.
    seconds = value / 1000 if value > 1e11 else value
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _zone(text: str | None) -> timezone | None:
    if not text:
        return None
    if text in ("Z", "UTC", "GMT"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4])))


def _plausible(value: datetime) -> datetime | None:
    # Guards against fuzzy parsing turning a stray number into year 7 or 2999.
    return value if 1990 <= value.year <= 2100 else None


def parse_datetime(value: Any, *, now: datetime | None = None) -> datetime | None:
    """A datetime from what a site wrote, or None.

    Understands ISO 8601, RFC 822 (feeds), unix seconds or milliseconds (numbers or digit
    strings), Chinese forms ("2024年3月5日 14:20", "发布时间：2024-03-05 14:20:00") and, when
    `now` is given, relative forms ("3分钟前", "昨天 08:30", "03-05 14:20"). The result is naive
    when the text named no zone (the source's zone applies), aware otherwise.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float):
        return _epoch(float(value))
    if not isinstance(value, str):
        return None
    # NFKC turns full-width digits and colons ("２０２４：") into ASCII ones.
    text = unicodedata.normalize("NFKC", value).strip()
    if not text:
        return None
    if _EPOCH.match(text):
        return _epoch(float(text))
    try:
        return _plausible(datetime.fromisoformat(text))
    except ValueError:
        pass
    if "," in text or text[:3].isalpha():
        try:
            # RFC 822, as RSS writes it; "-0000" (zone unknown) comes back naive.
            return _plausible(email.utils.parsedate_to_datetime(text))
        except (TypeError, ValueError, IndexError):
            pass
    found = _YEAR_FIRST.search(text)
    if found:
        parsed = _from_groups(found)
        if parsed is not None:
            return parsed
    if now is not None:
        relative = _relative(text, now)
        if relative is not None:
            return relative
    try:
        return _plausible(date_parser.parse(text))
    except (ValueError, OverflowError):
        pass
    if _YEAR.search(text):
        try:
            return _plausible(date_parser.parse(text, fuzzy=True))
        except (ValueError, OverflowError):
            pass
    return None


def _from_groups(found: re.Match[str]) -> datetime | None:
    g = found.groupdict()
    try:
        hour = int(g["H"] or 0)
        text = found.group(0)
        if hour < 12 and ("下午" in text or "晚上" in text):
            hour += 12
        parsed = datetime(
            int(g["y"]), int(g["m"]), int(g["d"]), hour, int(g["M"] or 0), int(g["S"] or 0)
        )
    except ValueError:
        return None
    zone = _zone(g.get("tz")) if g["H"] else None
    return _plausible(parsed.replace(tzinfo=zone) if zone else parsed)


def _relative(text: str, now: datetime) -> datetime | None:
    # "3分钟前" is an interval from now, so it keeps now's zone. "昨天 08:30" and "03-05 14:20"
    # are wall-clock times of the site: naive, like any time written without a zone.
    if text == "刚刚":
        return now
    found = _RELATIVE.match(text)
    if found:
        return now - int(found["n"]) * _RELATIVE_UNITS[found["unit"]]
    found = _DAY_WORD.match(text)
    if found:
        day = now - timedelta(days=_DAY_WORDS[found["w"]])
        return day.replace(
            hour=int(found["H"] or 0),
            minute=int(found["M"] or 0),
            second=0,
            microsecond=0,
            tzinfo=None,
        )
    found = _MONTH_FIRST.match(text)
    if found:
        try:
            guess = now.replace(
                month=int(found["m"]),
                day=int(found["d"]),
                hour=int(found["H"] or 0),
                minute=int(found["M"] or 0),
                second=0,
                microsecond=0,
                tzinfo=None,
            )
        except ValueError:
            return None
        # "12-30" read on January 2nd is last year's.
        if guess - now.replace(tzinfo=None) > timedelta(days=1):
            guess = guess.replace(year=guess.year - 1)
        return guess
    return None


# --------------------------------------------------------------------------------------------
# Pages and selectors

_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
_BLOCK_TAGS = frozenset(
    (
        "p",
        "div",
        "br",
        "li",
        "ul",
        "ol",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "tr",
        "table",
        "section",
        "article",
        "blockquote",
        "pre",
        "header",
        "footer",
        "dd",
        "dt",
        "figure",
        "figcaption",
        "hr",
    )
)
_DROP_TAGS = ("script", "style", "noscript", "template")
_SPACES = re.compile(r"[ \t\r\f\v\u00a0\u3000]+")


def _collapse(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment: one line per block, scripts dropped, spaces collapsed."""
    try:
        root = lxml.html.fragment_fromstring(
            _XML_DECLARATION.sub("", fragment), create_parent="div"
        )
    except (lxml.etree.ParserError, ValueError):
        return _collapse(fragment)
    return _element_text(root)


def _element_text(root: Any) -> str:
    for bad in root.xpath(".//script|.//style|.//noscript|.//template"):
        bad.drop_tree()
    for element in root.iter():
        if isinstance(element.tag, str) and element.tag.lower() in _BLOCK_TAGS:
            # A newline after each block keeps paragraphs apart in the text.
            element.tail = "\n" + (element.tail or "")
    lines = (_collapse(line) for line in root.text_content().split("\n"))
    return "\n".join(line for line in lines if line)


@dataclass(slots=True)
class Match:
    """One thing a selector matched: an element, or a string from an XPath like `//a/@href`."""

    text: str
    html: str | None
    attrs: Mapping[str, str | None]
    # An element's descendants' attributes are looked up through this (link inside a <li>).
    _node: Any = None

    def attr(self, name: str) -> str | None:
        return self.attrs.get(name)

    def descendant_attr(self, name: str) -> str | None:
        """The attribute on the element itself, else on its first descendant having it."""
        if self.attrs.get(name):
            return self.attrs[name]
        node = self._node
        if isinstance(node, LexborNode):
            # CSS attribute names cannot be quoted; a name with odd characters just finds nothing.
            try:
                inner = node.css_first(f"[{name}]")
            except SelectolaxError:
                return None
            return inner.attributes.get(name) if inner is not None else None
        if node is not None and hasattr(node, "xpath"):
            found = node.xpath(f".//*[@{name}]/@{name}") if re.fullmatch(r"[\w:-]+", name) else []
            return str(found[0]) if found else None
        return None

    @property
    def value(self) -> str:
        """The value a person means: content= of a <meta>, datetime= of a <time>, else the text."""
        for key in ("content", "datetime"):
            if self.attrs.get(key):
                return str(self.attrs[key]).strip()
        return self.text


def is_xpath(selector: str) -> bool:
    return selector.startswith(("/", "xpath:", "(/"))


class Page:
    """An HTML page parsed once, queried with CSS (selectolax lexbor) or XPath (lxml)."""

    def __init__(self, html: str, url: str | None = None) -> None:
        self.html = html
        self.url = url
        self._lexbor: LexborHTMLParser | None = None
        self._lxml: Any = None

    @property
    def lexbor(self) -> LexborHTMLParser:
        if self._lexbor is None:
            self._lexbor = LexborHTMLParser(self.html)
        return self._lexbor

    @property
    def lxml_root(self) -> Any:
        if self._lxml is None:
            try:
                # lxml refuses str input carrying an encoding declaration; the text is decoded.
                self._lxml = lxml.html.document_fromstring(_XML_DECLARATION.sub("", self.html))
            except (lxml.etree.ParserError, ValueError):
                self._lxml = lxml.html.document_fromstring("<html><body></body></html>")
        return self._lxml

    @property
    def base_url(self) -> str | None:
        """The URL relative links resolve against: <base href> if the page has one."""
        base = self.lexbor.css_first("base[href]")
        href = base.attributes.get("href") if base is not None else None
        if href and self.url:
            return urljoin(self.url, href)
        return href or self.url

    def select(self, selector: str) -> list[Match]:
        """All matches of a CSS selector, or of an XPath one (starting with "/" or "xpath:")."""
        if is_xpath(selector):
            return self._xpath(selector.removeprefix("xpath:").strip())
        try:
            nodes = self.lexbor.css(selector)
        except SelectolaxError as exc:
            raise ConfigError(f"The CSS selector {selector!r} is not valid: {exc}.") from exc
        return [
            Match(
                text=_collapse(node.text(deep=True, separator="", strip=False)),
                html=node.html,
                attrs=dict(node.attributes),
                _node=node,
            )
            for node in nodes
        ]

    def _xpath(self, expression: str) -> list[Match]:
        try:
            results = self.lxml_root.xpath(expression)
        except lxml.etree.XPathError as exc:
            raise ConfigError(f"The XPath selector {expression!r} is not valid: {exc}.") from exc
        if not isinstance(results, list):
            # count() and string() give a scalar; treat it as one string match.
            results = [results]
        matches: list[Match] = []
        for result in results:
            if isinstance(result, lxml.etree._Element):
                if not isinstance(result.tag, str):
                    continue  # comments and processing instructions
                matches.append(
                    Match(
                        text=_collapse(result.text_content()),
                        html=lxml.html.tostring(result, encoding="unicode", with_tail=False),
                        attrs=dict(result.attrib),
                        _node=result,
                    )
                )
            elif isinstance(result, str | bytes | int | float):
                text = result.decode() if isinstance(result, bytes) else str(result)
                matches.append(Match(text=_collapse(text), html=None, attrs={}))
        return matches

    def links(self, selector: str, attr: str = "href") -> list[str]:
        """Absolute URLs read from `attr` of each match (or of a descendant), in page order."""
        base = self.base_url
        out: list[str] = []
        for match in self.select(selector):
            raw = match.descendant_attr(attr) if match.html is not None else match.text
            if not raw:
                continue
            raw = raw.strip()
            if raw.startswith(("javascript:", "mailto:", "tel:", "#")):
                continue
            out.append(urljoin(base, raw) if base else raw)
        return out


def select_fields(
    html: str, url: str | None, selectors: Mapping[str, str], *, now: datetime | None = None
) -> Article:
    """Read an article's fields with a selector each (keys: title, content, author, published_at).

    A field whose selector matches nothing stays None. Content keeps every match, joined.
    """
    page = Page(html, url)
    article = Article()
    for key, selector in selectors.items():
        field = FIELD_ALIASES.get(key)
        if field is None:
            raise ConfigError(
                f"Unknown article field {key!r}; use title, content, author or published_at."
            )
        matches = page.select(selector)
        if not matches:
            continue
        if field == "content":
            fragments = [m.html if m.html is not None else m.text for m in matches]
            article.html = "\n".join(fragments)
            text = "\n".join(
                html_to_text(m.html) if m.html is not None else m.text for m in matches
            ).strip()
            article.text = text or None
        elif field == "published_at":
            for match in matches:
                article.published_at = parse_datetime(match.value, now=now)
                if article.published_at is not None:
                    break
        else:
            value = next((m.value for m in matches if m.value), None)
            setattr(article, field, value)
    return article


# --------------------------------------------------------------------------------------------
# Automatic extraction

_META_DATES = (
    "article:published_time",
    "og:article:published_time",
    "og:published_time",
    "og:release_date",
    "pubdate",
    "publishdate",
    "publish_date",
    "publishtime",
    "publish-date",
    "datepublished",
    "dc.date.issued",
    "dc.date",
    "dcterms.created",
    "sailthru.date",
    "weibo:article:create_at",
    "bytedance:published_time",
)
_META_AUTHORS = ("author", "article:author", "dc.creator", "byl", "weibo:article:author")
_LABELLED_DATE = re.compile(
    r"(?:发布时间|发表时间|发布日期|发文日期|成文日期|更新时间|时间|日期|发表于|发布于)\s*[:：]?\s*"
    r"((?:19|20)\d{2}\s*[-/.年]\s*\d{1,2}\s*[-/.月]\s*\d{1,2}\s*日?"
    r"(?:\s*\d{1,2}\s*[:：时点]\s*\d{1,2}(?:\s*[:：分]\s*\d{1,2})?)?)"
)
# "作者：王晓东", "本报记者 陈思远": a separator is required so "记者从…获悉" is no author.
_LABELLED_AUTHOR = re.compile(
    r"(?:作者|记者|撰文|文\s*/)(?:\s*[:：]\s*|[ \t\u3000]+)"
    r"([\u4e00-\u9fa5·]{2,8}|[A-Za-z][A-Za-z .'-]{1,30}?)(?=[\s|｜/，,、)）]|$)"
)
_ANY_DATETIME = re.compile(
    r"(?:19|20)\d{2}\s*[-/.年]\s*\d{1,2}\s*[-/.月]\s*\d{1,2}\s*日?\s*\d{1,2}\s*[:：时点]\s*\d{1,2}"
    r"(?:\s*[:：分]\s*\d{1,2})?"
)


def _meta(page: Page, names: tuple[str, ...]) -> str | None:
    wanted = {name.lower(): rank for rank, name in enumerate(names)}
    best: tuple[int, str] | None = None
    for node in page.lexbor.css("meta"):
        attrs = node.attributes
        key = (attrs.get("property") or attrs.get("name") or attrs.get("itemprop") or "").lower()
        content = (attrs.get("content") or "").strip()
        if key in wanted and content and (best is None or wanted[key] < best[0]):
            best = (wanted[key], content)
    return best[1] if best else None


def _page_text(page: Page) -> str:
    body = page.lexbor.body
    if body is None:
        return ""
    for tag in _DROP_TAGS:
        for node in body.css(tag):
            node.decompose()
    # A separator keeps "发布时间：2024-03-05" and the next cell apart; lines come from blocks.
    return body.text(deep=True, separator="\n", strip=True)


def _find_published(page: Page, page_text: str, hint: str | None) -> datetime | None:
    """The publication time: meta tags, then a labelled time in the text, then the hint's day."""
    meta = _meta(page, _META_DATES)
    if meta:
        parsed = parse_datetime(meta)
        if parsed is not None:
            return parsed
    time_node = page.lexbor.css_first("time[datetime]")
    if time_node is not None:
        parsed = parse_datetime(time_node.attributes.get("datetime"))
        if parsed is not None:
            return parsed
    labelled = _LABELLED_DATE.search(page_text)
    if labelled:
        parsed = parse_datetime(labelled.group(1))
        if parsed is not None:
            return parsed
    day = parse_datetime(hint) if hint else None
    written = [p for p in map(parse_datetime, _ANY_DATETIME.findall(page_text)) if p is not None]
    # trafilatura's date is a day only (and sometimes a guess such as January 1st): a date
    # with a time written on the page is better, the one on the same day best.
    if day is not None:
        for parsed in written:
            if parsed.date() == day.date():
                return parsed
    return written[0] if written else day


def _fallback_title(page: Page) -> str | None:
    og = _meta(page, ("og:title", "twitter:title"))
    if og:
        return og
    for selector in ("title", "h1"):
        node = page.lexbor.css_first(selector)
        if node is not None:
            text = _collapse(node.text())
            if text:
                return text
    return None


def extract_article(html: str, url: str | None = None) -> Article:
    """The main article of a page: title, text, HTML fragment, author and publication time.

    trafilatura does the work (favouring recall: a monitoring tool would rather keep a
    paragraph too many than miss the one that matters); when it finds nothing, the page's
    title and whole body text are used so a page is never silently empty.
    """
    document = None
    if html.strip():
        try:
            document = trafilatura.bare_extraction(
                html,
                url=url,
                with_metadata=True,
                favor_recall=True,
                include_comments=False,
                include_tables=True,
                output_format="python",
            )
        except Exception:  # trafilatura raises assorted errors on odd markup
            log.debug("trafilatura failed on %s", url, exc_info=True)
            document = None

    page = Page(html, url)
    article = Article()
    date_hint: str | None = None
    if document is not None and getattr(document, "text", None):
        article.title = _collapse(document.title) if document.title else None
        article.text = document.text.strip() or None
        article.author = document.author or None
        date_hint = document.date
        body = getattr(document, "body", None)
        if body is not None and len(body):
            try:
                root = convert_to_html(body)
                article.html = (
                    "".join(
                        lxml.etree.tostring(child, encoding="unicode", method="html")
                        for child in root.find("body")
                    ).strip()
                    or None
                )
            except (TypeError, ValueError):
                article.html = None

    # Metadata next: read before _page_text, which strips scripts from the shared tree.
    meta_author = _meta(page, _META_AUTHORS)
    fallback_title = _fallback_title(page)
    page_text = _page_text(page)
    if not article.title:
        article.title = fallback_title
    if not article.text:
        article.text = page_text or None
    if not article.author:
        article.author = meta_author
        if not article.author:
            found = _LABELLED_AUTHOR.search(page_text)
            article.author = found.group(1) if found else None
    article.published_at = _find_published(page, page_text, date_hint)
    return article
