"""The parameters of a search, read the same way by the search page, the search API and the
export, so a search can be bookmarked and its export link gives the file of what the page lists.

Times without a zone are the office's time zone, as on the command line; an `until` given as a
bare date includes that whole day. Lists may repeat the parameter or separate values with commas
or spaces. The posts' language is `post_lang` on the page, since `?lang=` switches the pages'
own language there (tingfeng.web.i18n); the API also takes `lang`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Depends, Query
from sqlalchemy import Connection

from tingfeng.events.grading import Level
from tingfeng.search.service import SearchFilters, where_ids
from tingfeng.web.i18n import gettext

QUICK_RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
_SPLIT = re.compile(r"[\s,，、;；]+")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_POSITION = re.compile(r"position (\d+)")


class FilterError(ValueError):
    """A filter value that cannot be used; the message says which and why."""


def split_values(values: list[str] | None) -> list[str]:
    """Values given repeatedly or in one field separated by spaces or commas."""
    return [v for value in values or [] for v in _SPLIT.split(value) if v]


@dataclass
class SearchRequest:
    """What a search asks for, as given (the page, the API and the export read the same)."""

    q: str = ""
    sort: str = "newest"
    within: str = ""
    since: str = ""
    until: str = ""
    source_ids: list[int] = field(default_factory=list)
    langs: list[str] = field(default_factory=list)
    polarities: list[str] = field(default_factory=list)
    emotions: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    levels: list[str] = field(default_factory=list)
    needs_verification: str = ""
    topic_ids: list[int] = field(default_factory=list)
    where: str = ""

    @property
    def narrowed(self) -> bool:
        """Whether any filter beyond the query is set (the page opens its filters then)."""
        return any(
            (self.within, self.since, self.until, self.source_ids, self.langs, self.polarities,
             self.emotions, self.categories, self.regions, self.levels, self.needs_verification,
             self.topic_ids, self.where)
        )  # fmt: skip

    def params(self, **extra: Any) -> list[tuple[str, str]]:
        """The request as URL parameters, empty ones left out (for links that keep it)."""
        pairs: list[tuple[str, Any]] = [
            ("q", self.q), ("sort", "" if self.sort == "newest" else self.sort),
            ("within", self.within), ("since", self.since), ("until", self.until),
            *(("source_id", v) for v in self.source_ids),
            # Not `lang`, which also switches the pages' language (tingfeng.web.i18n).
            *(("post_lang", v) for v in self.langs),
            *(("polarity", v) for v in self.polarities), *(("emotion", v) for v in self.emotions),
            *(("category", v) for v in self.categories), *(("region", v) for v in self.regions),
            *(("level", v) for v in self.levels), ("needs_verification", self.needs_verification),
            *(("topic_id", v) for v in self.topic_ids), ("where", self.where),
            *extra.items(),
        ]  # fmt: skip
        return [(k, str(v)) for k, v in pairs if v not in ("", None)]

    def url(self, path: str, **extra: Any) -> str:
        return f"{path}?{urlencode(self.params(**extra))}"

    def filters(self, conn: Connection, tz: str, now: datetime) -> SearchFilters:
        """The search service's filters; FilterError (or the query errors of `where`)."""
        since = _parse_time(self.since, "since", tz)
        if self.within:
            if self.within not in QUICK_RANGES:
                raise FilterError(
                    gettext("时间范围 %(value)s 无效：可选 24h、7d、30d。") % {"value": self.within}
                )
            recent = now - QUICK_RANGES[self.within]
            since = max(since, recent) if since else recent
        filters = SearchFilters(
            since=since,
            until=_parse_time(self.until, "until", tz, end_of_day=True),
            source_ids=self.source_ids,
            langs=self.langs,
            polarities=self.polarities,
            emotions=self.emotions,
            categories=self.categories,
            regions=_region_codes(self.regions),
            needs_verification=_parse_bool(self.needs_verification),
            topic_ids=self.topic_ids,
            event_levels=_levels(self.levels),
        )
        if self.where.strip():
            filters.post_ids = where_ids(
                conn, self.where, since=filters.since, until=filters.until,
                source_ids=filters.source_ids or None,
            )  # fmt: skip
        return filters


Texts = Annotated[list[str] | None, Query()]
Ids = Annotated[list[int] | None, Query()]


def search_request(
    q: Annotated[str, Query(max_length=1000, description='AND/OR/NOT, "phrases".')] = "",
    sort: Annotated[str, Query(description="newest, oldest or relevance.")] = "newest",
    within: Annotated[str, Query(description="Only the last 24h, 7d or 30d.")] = "",
    since: Annotated[str, Query(description="ISO 8601; no zone: the office's.")] = "",
    until: Annotated[str, Query(description="Before this; a bare date includes the day.")] = "",
    source_id: Ids = None,
    lang: Annotated[list[str] | None, Query(description="Post language: zh, en, other.")] = None,
    post_lang: Annotated[list[str] | None, Query(description="The same as lang.")] = None,
    polarity: Texts = None,
    emotion: Texts = None,
    category: Texts = None,
    region: Texts = None,
    level: Annotated[
        list[str] | None, Query(description="The event's level: general … critical, 一般 … 特大.")
    ] = None,
    needs_verification: Annotated[str, Query(description="true or false.")] = "",
    topic_id: Ids = None,
    where: Annotated[str, Query(max_length=4000, description="Topic-language filter.")] = "",
) -> SearchRequest:
    """The search parameters of the page, the search API and the export (lists: repeat the
    parameter, or separate values with commas or spaces)."""
    return SearchRequest(
        q=q,
        sort=sort,
        within=within,
        since=since.strip(),
        until=until.strip(),
        source_ids=source_id or [],
        langs=split_values([*(lang or []), *(post_lang or [])]),
        polarities=split_values(polarity),
        emotions=split_values(emotion),
        categories=split_values(category),
        regions=split_values(region),
        levels=split_values(level),
        needs_verification=needs_verification.strip().lower(),
        topic_ids=topic_id or [],
        where=where,
    )


Searched = Annotated[SearchRequest, Depends(search_request)]


def _parse_time(value: str, name: str, tz: str, *, end_of_day: bool = False) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise FilterError(
            f"{name} 不是有效的时间 (is not a date/time): {value!r}; use ISO 8601, e.g. 2024-03-05"
        ) from None
    if end_of_day and len(value) == 10:  # a bare date: through the end of that day
        parsed = datetime.combine(parsed.date() + timedelta(days=1), time())
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=ZoneInfo(tz))


def _parse_bool(value: str) -> bool | None:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if value:
        raise FilterError(f"needs_verification must be true or false, not {value!r}")
    return None


def _region_codes(values: list[str]) -> list[str]:
    from tingfeng.analyze.regions import region_codes

    return region_codes(values) if values else []  # ValueError names the unknown region


# Codes, Chinese names and Roman numerals, as the topic language's `level:` takes them.
_LEVEL_NAMES = {name: lv.value for lv in Level for name in (lv.value, lv.zh, lv.roman.lower())}


def _levels(values: list[str]) -> list[str]:
    out = []
    for value in values:
        level = _LEVEL_NAMES.get(value.strip().lower()) or _LEVEL_NAMES.get(value.strip())
        if level is None:
            raise FilterError(
                f"unknown level {value!r}: use general, serious, major, critical (一般/较大/重大/特大)"
            )
        out.append(level)
    return out


def error_at(text: str, message: str, position: int | None = None) -> dict[str, Any]:
    """An error to show under the field it is about, with the character it points at marked.

    `position` is 0-based; without it, "position N" (1-based) in the message is used.
    """
    if position is None:
        found = _POSITION.search(message)
        position = int(found.group(1)) - 1 if found else None
    if position is None or position < 0:
        return {"message": message, "position": None}
    position = min(position, len(text))
    return {
        "message": message,
        "position": position + 1,
        "before": text[:position],
        "at": text[position : position + 1] or " ",
        "after": text[position + 1 :],
    }
