"""Turn a `RawItem` into the row of a post: clean, normalise, detect language, segment, hash."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tingfeng.analyze.clean import clean_text, html_to_text
from tingfeng.analyze.duplicates import content_hash, strip_for_dedup
from tingfeng.analyze.language import detect_language
from tingfeng.analyze.normalize import normalize
from tingfeng.analyze.reading import Reader
from tingfeng.analyze.segment import Segmenter
from tingfeng.collect.items import POST_KINDS, RawItem
from tingfeng.ingest.identity import canonical_url, digest, identity_key, parent_uid
from tingfeng.settings import Settings

MAX_TEXT_CHARS = 200_000  # longer bodies are cut: a post is not a book, and the index has limits
# What a short body becomes (normalised, its language, tokens, dedup text and hash) is
# remembered: reposts repeat a few words ("转发微博"), and in the CED stream 54 % of the posts
# repeat an earlier body, so this skips ~8 µs of a helper's ~130 µs per post.
_MEMO_MAX_CHARS = 140
_MEMO_SIZE = 50_000


def segmenter_for(settings: Settings) -> Segmenter:
    """The segmenter with the administrator's dictionary, when there is one."""
    path = settings.user_dict_file
    return Segmenter(path if path.is_file() else None)


def _no_nul(value: str | None) -> str | None:
    return value.replace("\x00", "") if value and "\x00" in value else value


class ItemRejected(ValueError):
    """An item that cannot become a post (nothing to store); the message says why."""


@dataclass(slots=True)
class Draft:
    """A post ready to store, minus the id and duplicate group assigned at write time."""

    row: dict[str, Any]
    dedup_text: str  # what near-duplicate detection compares; "" when too short to group
    parent_uid: str | None
    index: Any = None  # full-text index terms (search.index.index_terms), computed ahead
    values: list[Any] | None = None  # SQLite column values (db.posts.sqlite_values), computed ahead
    reading: Any = None  # analyze.reading.Reading, when analysis is on


class Preparer:
    """Per-process analysis state (the segmenter, time zones) for preparing drafts."""

    def __init__(self, segmenter: Segmenter, default_timezone: str, dedup_min_chars: int) -> None:
        self.segmenter = segmenter
        self.default_timezone = default_timezone
        self.dedup_min_chars = dedup_min_chars
        self.reader: Reader | None = None  # the analysis stages; None: store posts unread
        # Replaces each byline by its keyed pseudonym (tingfeng.privacy.byline_for); None: kept.
        self.byline: Callable[[str], str] | None = None
        self._zones: dict[str, ZoneInfo] = {}
        self._bodies: dict[str, tuple[str, str | None, str, str, str]] = {}
        self._bodies_dictionary: object = None

    def zone(self, name: str | None) -> ZoneInfo:
        key = name or self.default_timezone
        zone = self._zones.get(key)
        if zone is None:
            zone = self._zones[key] = ZoneInfo(key)
        return zone

    def to_utc(self, value: datetime | None, tz: str | None, now: datetime) -> datetime:
        if value is None:
            return now
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.zone(tz))
        value = value.astimezone(UTC)
        # A clock far ahead on the publishing side must not pin a post to the top for months.
        return min(value, now + timedelta(days=1))

    def _author(self, byline: str | None) -> str | None:
        if not byline:
            return None
        return self.byline(byline)[:200] if self.byline else byline[:200]

    def _body(self, clean: str, detect: bool) -> tuple[str, str | None, str, str, str]:
        """Normalised text, detected language (None unless `detect`), index tokens, dedup text
        and content hash of a body without a title."""
        dictionary = self.segmenter.dictionary
        if dictionary is not self._bodies_dictionary:  # user words change the tokens
            self._bodies = {}
            self._bodies_dictionary = dictionary
        parts = self._bodies.get(clean)
        if parts is None:
            text_norm = normalize(clean)
            stripped = strip_for_dedup(text_norm)
            parts = (
                text_norm,
                detect_language(clean) if detect else None,
                self.segmenter.tokens(text_norm),
                stripped,
                content_hash(stripped, stripped=True),
            )
            if len(clean) <= _MEMO_MAX_CHARS:
                if len(self._bodies) >= _MEMO_SIZE:
                    self._bodies = {}  # crude but bounded, as Reader's memory of readings
                self._bodies[clean] = parts
        elif detect and parts[1] is None:  # first seen from a source that named its language
            parts = (parts[0], detect_language(clean), *parts[2:])
            self._bodies[clean] = parts
        return parts

    def prepare(self, item: RawItem, source_id: int, tz: str | None, now: datetime) -> Draft:
        clean = html_to_text(item.html) if item.html else clean_text(item.text or "")
        clean = clean[:MAX_TEXT_CHARS]
        title = clean_text(item.title or "")[:2000] if item.title else ""
        if not clean and not title:
            raise ItemRejected("the item has neither text nor a title")
        if title:
            text_norm, title_norm = normalize(clean), normalize(title)
            lang = item.lang or detect_language(f"{title} {clean}")
            tokens = self.segmenter.tokens(text_norm)
            stripped = strip_for_dedup(f"{title_norm} {text_norm}" if title_norm else text_norm)
            chash = content_hash(stripped, stripped=True)
        else:
            title_norm = ""
            text_norm, detected, tokens, stripped, chash = self._body(clean, not item.lang)
            lang = item.lang or detected or "other"
        canon = canonical_url(item.url)
        key = identity_key(item, source_id, canon, digest(f"{title_norm}\n{text_norm}"))
        kind = item.kind if item.kind in POST_KINDS else "post"
        row: dict[str, Any] = {
            "uid": digest(key),
            "source_id": source_id,
            "kind": kind,
            "platform": item.platform,
            "external_id": item.external_id[:200] if item.external_id else None,
            "url": item.url,
            "canonical_url": canon,
            # NUL is refused by PostgreSQL text columns (and means nothing in a post).
            "title": _no_nul(item.title),
            "text_original": _no_nul(item.text)
            if item.text is not None and not item.html
            else None,
            "html": _no_nul(item.html),
            "text_clean": clean,
            "title_norm": title_norm,
            "text_norm": text_norm,
            "tokens": tokens,
            "lang": lang,
            "content_hash": chash,
            "author": self._author(item.author),
            "published_at": self.to_utc(item.published_at, tz, now),
            "fetched_at": now,
            "reposts": item.reposts,
            "comments": item.comments,
            "likes": item.likes,
            "views": item.views,
            "reposts_of_key": parent_uid(item.reposts_of, item, source_id),
            "reply_to_key": parent_uid(item.reply_to, item, source_id),
            "extra": item.extra or None,
            # Set when the batch is written; present now so every row has every column.
            "id": None,
            "dup_group": None,
            "dup_kind": "original",
            "reposts_of_id": None,
            "reply_to_id": None,
        }
        dedup_text = stripped if len(stripped) >= self.dedup_min_chars else ""
        return Draft(
            row=row, dedup_text=dedup_text, parent_uid=row["reposts_of_key"] or row["reply_to_key"]
        )
