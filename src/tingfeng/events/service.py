"""Read events for the command line, the API and the pages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select, text

from tingfeng.db.models import Event, EventGrade, EventPost, SpikeRecord, Topic
from tingfeng.events.decisions import EventError, _level_name
from tingfeng.events.grading import Level


def _levels(values: Sequence[str]) -> list[str]:
    out = []
    for v in values:
        name = _level_name(v)
        if name not in Level.__members__:
            raise ValueError(
                f"unknown level {v!r}: use general, serious, major, critical (一般/较大/重大/特大)"
            )
        out.append(name)
    return out


def _summary(e: Any) -> dict[str, Any]:
    level = Level(e.level) if e.level in Level.__members__ else None
    return {
        "id": e.id,
        "title": e.title,
        "status": e.status,
        "posts": e.posts,
        "heat": e.heat,
        "level": e.level,
        "level_zh": level.zh if level else None,
        "level_score": e.level_score,
        "first_seen_at": e.first_seen_at,
        "last_seen_at": e.last_seen_at,
        "first_post_id": e.first_post_id,
        "first_source_id": e.first_source_id,
    }


def list_events(
    conn: Connection,
    *,
    levels: Sequence[str] = (),
    limit: int = 30,
    offset: int = 0,
    sort: str = "recent",
    include_merged: bool = False,
) -> list[dict[str, Any]]:
    stmt = select(Event)
    if not include_merged:
        stmt = stmt.where(Event.status == "open")
    if levels:
        stmt = stmt.where(Event.level.in_(_levels(levels)))
    order = {
        "recent": (Event.last_seen_at.desc(), Event.id.desc()),
        "heat": (Event.heat.desc(), Event.id.desc()),
        "posts": (Event.posts.desc(), Event.id.desc()),
    }[sort]
    stmt = stmt.order_by(*order).limit(max(1, min(limit, 500))).offset(max(0, offset))
    return [_summary(e) for e in conn.execute(stmt).all()]


def event_detail(conn: Connection, event_id: int) -> dict[str, Any]:
    e = conn.execute(select(Event).where(Event.id == event_id)).first()
    if e is None:
        raise EventError(f"no event {event_id}; see `tingfeng events list`")
    history = [
        {
            "graded_at": g.graded_at.isoformat(),
            "level": g.level,
            "score": g.score,
            "overridden": g.overridden,
            "reason": g.reason,
            "decided_by": g.decided_by,
        }
        for g in conn.execute(
            select(EventGrade).where(EventGrade.event_id == event_id).order_by(EventGrade.id)
        ).all()
    ]
    topics = [
        {"id": tid, "name": name, "posts": n}
        for tid, name, n in conn.execute(
            text(
                "SELECT t.id, t.name, count(*) FROM event_posts ep "
                "JOIN topic_matches m ON m.post_id = ep.post_id JOIN topics t ON t.id = m.topic_id "
                "WHERE ep.event_id = :e GROUP BY t.id, t.name ORDER BY count(*) DESC"
            ),
            {"e": event_id},
        )
    ]
    return {
        **_summary(e),
        "summary": e.summary,
        "merged_into": e.merged_into,
        "profile": e.profile,
        "grade": e.grade,
        "history": history,
        "topics": topics,
    }


def event_posts(
    conn: Connection, event_id: int, *, limit: int = 50, offset: int = 0
) -> list[dict[str, Any]]:
    rows = conn.execute(
        text(
            "SELECT p.id, p.title, p.text_clean, p.url, p.author, p.published_at, p.source_id, "
            "p.reposts_of_id, ep.joined_by FROM event_posts ep JOIN posts p ON p.id = ep.post_id "
            "WHERE ep.event_id = :e ORDER BY p.id DESC LIMIT :n OFFSET :o"
        ),
        {"e": event_id, "n": max(1, min(limit, 500)), "o": max(0, offset)},
    )
    return [
        {
            "id": r[0],
            "title": r[1],
            "text": (r[2] or "")[:500],
            "url": r[3],
            "author": r[4],
            "published_at": str(r[5]) if r[5] is not None else None,
            "source_id": r[6],
            "reposts_of_id": r[7],
            "joined_by": r[8],
        }
        for r in rows
    ]


def recent_spikes(conn: Connection, *, limit: int = 30) -> list[dict[str, Any]]:
    spikes = list(
        conn.execute(
            select(SpikeRecord)
            .order_by(SpikeRecord.hour.desc(), SpikeRecord.id.desc())
            .limit(limit)
        ).all()
    )
    topic_names = dict(conn.execute(select(Topic.id, Topic.name)).all())
    event_ids = [int(s.series.split(":")[1]) for s in spikes if s.series.startswith("event:")]
    titles = (
        dict(conn.execute(select(Event.id, Event.title).where(Event.id.in_(event_ids))).all())
        if event_ids
        else {}
    )
    out = []
    for s in spikes:
        kind, _, ref = s.series.partition(":")
        name = topic_names.get(int(ref)) if kind == "topic" else titles.get(int(ref))
        out.append(
            {
                "series": s.series,
                "name": name or "",
                "hour": s.hour.isoformat(),
                "count": s.count,
                "expected": s.expected,
                "score": s.score,
                "ratio": s.ratio,
                "baseline": s.baseline,
            }
        )
    return out


def newest_post_ids(event_id: int, limit: int = 2000) -> Any:
    """A subquery of the ids of the event's newest `limit` posts: what a huge event is sampled
    by (its topics, its sources)."""
    newest = (
        select(EventPost.post_id)
        .where(EventPost.event_id == event_id)
        .order_by(EventPost.post_id.desc())
        .limit(limit)
        .subquery()
    )
    return select(newest.c.post_id)
