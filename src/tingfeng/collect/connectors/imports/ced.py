"""CED Weibo cascades: one JSON line per source post, holding its reposts.

Each cascade becomes its source post, then one item per repost (`reposts_of` links the spread).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import IO, Any

from tingfeng.collect.connectors.imports.values import (
    _CHINESE_DATE,
    _WEIBO_API,
    json_type,
    parse_count,
)
from tingfeng.collect.errors import ConfigError
from tingfeng.collect.items import ItemError, RawItem

# Weibo shows a repost without words as "转发微博"; CED stores it as an empty text. The item keeps
# Weibo's wording, because the pipeline drops items without text and those reposts carry the
# spread paths (40 % of CED reposts are such).
EMPTY_REPOST_TEXT = "转发微博"
# China has kept UTC+8 without daylight saving since 1991; CED dates are China local times.
CHINA_TZ = timezone(timedelta(hours=8), "CST")


def _ced_problem(record: Any) -> str | None:
    """Why `record` is not a CED cascade, or None when it is one."""
    if not isinstance(record, dict):
        return f"a JSON {json_type(record)} instead of an object"
    missing = [k for k in ("id", "text", "time", "reposts") if k not in record]
    if missing:
        return f"no {', '.join(missing)} field (fields: {', '.join(list(record)[:20])})"
    if not isinstance(record["reposts"], list):
        return "reposts is not a list"
    return None


def ced_source_time(value: Any) -> datetime:
    """The source post's time, aware UTC: CED gives Unix seconds, a few give Weibo API text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return datetime.fromtimestamp(int(text), UTC)
        try:
            return datetime.strptime(text, _WEIBO_API).astimezone(UTC)
        except ValueError:
            pass
    raise ValueError(f"unreadable time {value!r}")


def ced_repost_time(text: str, source_local: datetime | None) -> datetime:
    """A repost's naive China local time; "02月06日 17:45" (no year) is dated after the post."""
    if len(text) == 19 and text[4] == "-":
        return datetime.fromisoformat(text)
    match = _CHINESE_DATE.match(text.strip())
    if match and source_local is not None:
        y, mo, d, h, mi, s = match.groups()
        value = datetime(
            int(y) if y else source_local.year,
            int(mo),
            int(d),
            int(h or 0),
            int(mi or 0),
            int(s or 0),
        )
        if not y and value < source_local - timedelta(days=1):
            value = value.replace(year=value.year + 1)
        return value
    return datetime.fromisoformat(text.strip())


def ced_source_item(record: dict[str, Any], platform: str = "weibo") -> RawItem:
    """The source post of a cascade; ValueError when its time cannot be read."""
    counts = record.get("counts") or {}
    user = record.get("user") or {}
    return RawItem(
        platform=platform,
        external_id=str(record["id"]),
        kind="post",
        text=record.get("text") or "",
        published_at=ced_source_time(record["time"]),
        reposts=parse_count(counts.get("reposts")),
        comments=parse_count(counts.get("comments")),
        likes=parse_count(counts.get("likes")),
        extra={
            "source_app": record.get("source_app"),
            "label": record.get("label"),
            "followers": user.get("followers"),
            "verified": user.get("verified"),
        },
    )


def ced_repost_item(
    repost: dict[str, Any], source_id: str, source_local: datetime | None, platform: str = "weibo"
) -> RawItem:
    """One repost of a cascade; ValueError when its date cannot be read."""
    text = repost.get("text") or ""
    extra: dict[str, Any] = {"cascade": source_id}
    if not text.strip():
        extra["empty_repost"] = True
    return RawItem(
        platform=platform,
        external_id=str(repost["mid"]),
        kind="repost",
        text=text if text.strip() else EMPTY_REPOST_TEXT,
        author=repost.get("uid") or None,
        published_at=ced_repost_time(str(repost.get("date") or ""), source_local),
        reposts_of=str(repost.get("parent") or "") or source_id,
        extra=extra,
    )


def ced_local_time(record: dict[str, Any]) -> datetime | None:
    """The source post's naive China local time, the reference for repost dates without a year."""
    try:
        return ced_source_time(record["time"]).astimezone(CHINA_TZ).replace(tzinfo=None)
    except (ValueError, KeyError, OverflowError, OSError):
        return None


def _ced_items(
    handle: IO[bytes], name: str, platform: str, offset: int
) -> Iterator[RawItem | ItemError]:
    """Each cascade's source post, then its reposts; the first `offset` items are skipped."""
    skip = offset
    first = True
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            record = json.loads(line)
            problem = _ced_problem(record)
        except ValueError as exc:
            record, problem = None, f"invalid JSON: {exc}"
        if problem is not None:
            if first:
                raise ConfigError(
                    f"{name} is not a CED cascades file: its first line is {problem}. "
                    "CED lines hold id, text, time and reposts; for other JSON files use "
                    "format jsonl with a mapping."
                )
            if skip:
                skip -= 1
                continue
            yield ItemError(where, f"not a CED cascade: {problem}")
            continue
        first = False
        reposts = record["reposts"]
        if skip > len(reposts):  # the whole cascade was read before: skip it cheaply
            skip -= len(reposts) + 1
            continue
        source_id = str(record["id"])
        if skip:
            skip -= 1
        else:
            try:
                yield ced_source_item(record, platform)
            except (ValueError, TypeError, OverflowError, OSError) as exc:
                yield ItemError(where, f"source post {source_id}: {exc}")
        local = ced_local_time(record)
        for index, repost in enumerate(reposts):
            if skip:
                skip -= 1
                continue
            try:
                yield ced_repost_item(repost, source_id, local, platform)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                yield ItemError(f"{where}, repost {index}", f"unreadable repost: {exc}")
