"""The effect of a reply (回应效果) and the relapse watch (舆情反弹).

For the case's event: how many posts, and how many of them negative, in the hours before and
after a reply was published, hour by hour. A post's time is when it was published, or when it
was collected if the source gives no time. The same counts tell the relapse watch whether the
negative volume after closing has risen well above the day before closing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from tingfeng.db.models import EventPost, Post, PostReading, as_utc

EFFECT_HOURS = 24


def _posts_of(conn: Connection, event_id: int, start: datetime, end: datetime) -> list[Any]:
    at = func.coalesce(Post.published_at, Post.fetched_at)
    return list(
        conn.execute(
            select(at.label("at"), PostReading.polarity)
            .select_from(EventPost)
            .join(Post, Post.id == EventPost.post_id)
            .outerjoin(PostReading, PostReading.post_id == Post.id)
            .where(EventPost.event_id == event_id, at >= start, at < end)
        ).all()
    )


def negative_posts(conn: Connection, event_id: int, start: datetime, end: datetime) -> int:
    return sum(1 for r in _posts_of(conn, event_id, start, end) if r.polarity == "negative")


def window(conn: Connection, event_id: int, start: datetime, end: datetime) -> dict[str, Any]:
    rows = _posts_of(conn, event_id, start, end)
    negative = sum(1 for r in rows if r.polarity == "negative")
    positive = sum(1 for r in rows if r.polarity == "positive")
    return {
        "posts": len(rows),
        "negative": negative,
        "positive": positive,
        "negative_share": round(negative / len(rows), 3) if rows else None,
    }


def reply_effect(
    conn: Connection,
    event_id: int,
    published_at: datetime,
    now: datetime,
    *,
    hours: int = EFFECT_HOURS,
) -> dict[str, Any]:
    """Before and after the reply, in total and per hour; `complete` once the hours after
    have all passed (until then the clock refreshes it)."""
    start = published_at - timedelta(hours=hours)
    end = published_at + timedelta(hours=hours)
    rows = _posts_of(conn, event_id, start, min(end, now))
    series = [{"hour": h, "posts": 0, "negative": 0} for h in range(-hours, hours)]
    for r in rows:
        at = as_utc(r.at)
        if at is None:
            continue
        index = int((at - start).total_seconds() // 3600)
        if 0 <= index < len(series):
            series[index]["posts"] += 1
            series[index]["negative"] += r.polarity == "negative"
    return {
        "hours": hours,
        "before": window(conn, event_id, start, published_at),
        "after": window(conn, event_id, published_at, min(end, now)),
        "series": series,
        "complete": now >= end,
        "measured_at": now.isoformat(),
    }
