"""The figures several reports share, each one query over a period [start, end).

Post volumes, mixes, sources and regions come from tingfeng.web.overview's window queries (the
overview page's own); deadlines from tingfeng.cases.ledger.deadline_stats (the 超期统计 of the
cases pages); shift reports from tingfeng.alerts.duty's table. Nothing here writes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, func, select

from tingfeng.alerts.duty import REPORT_KINDS
from tingfeng.cases.ledger import deadline_stats
from tingfeng.cases.service import level_zh
from tingfeng.db.models import (
    Alert,
    Case,
    DutyShift,
    Event,
    EventGrade,
    Post,
    PostLabel,
    ShiftReport,
    Topic,
    TopicMatch,
    User,
)
from tingfeng.events.grading import Level
from tingfeng.reports.common import SERIOUS, Period, local_midnight
from tingfeng.web.overview import _count, _mixes, _posts_between, _top_regions, _top_sources


def volume(conn: Connection, p: Period) -> dict[str, Any]:
    """Posts in the period and in the period of the same length just before it."""
    total = _count(conn, p.start, p.until)
    length = p.end - p.start
    before = _count(conn, p.start - length, p.start - timedelta(microseconds=1))
    change = total - before
    return {
        "total": total,
        "previous": before,
        "change": change,
        "change_pct": round(change * 100.0 / before, 1) if before else None,
    }


def mixes(conn: Connection, p: Period) -> dict[str, Any]:
    """Polarity and emotion mix, top sources and regions: the overview's queries on the period."""
    w = _posts_between(p.start, p.until)
    polarity, emotion = _mixes(conn, w)
    return {
        "polarity": polarity,
        "emotion": emotion,
        "sources": _top_sources(conn, w),
        "regions": _top_regions(conn, w),
    }


def daily_volumes(conn: Connection, p: Period, tz: str) -> list[tuple[str, int]]:
    """(date, posts) for each local day of the period."""
    zone = ZoneInfo(tz)
    out = []
    for day in p.days:
        start = local_midnight(day, zone)
        end = local_midnight(day + timedelta(days=1), zone) - timedelta(microseconds=1)
        out.append((day.isoformat(), _count(conn, start, end)))
    return out


def _seen_in(e: Any, p: Period) -> Any:
    return and_(e.c.last_seen_at >= p.start, e.c.first_seen_at < p.end)


def events_in(conn: Connection, p: Period, limit: int = 10) -> list[dict[str, Any]]:
    """Events active in the period (seen in it), hottest first, with their first post's link."""
    e = Event.__table__
    rows = conn.execute(
        select(e.c.id, e.c.title, e.c.summary, e.c.level, e.c.heat, e.c.posts,
               e.c.first_seen_at, e.c.first_post_id, Post.url)
        .select_from(e.outerjoin(Post, Post.id == e.c.first_post_id))
        .where(e.c.status == "open", _seen_in(e, p))
        .order_by(func.coalesce(e.c.heat, -1.0).desc(), e.c.id.desc())
        .limit(limit)
    ).all()  # fmt: skip
    return [_event_row(r) for r in rows]


def _event_row(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "title": r.title or f"事件 {r.id}",
        "summary": one_line(r.summary or r.title or ""),
        "level": r.level or "general",
        "level_zh": level_zh(r.level),
        "heat": round(r.heat, 1) if r.heat is not None else None,
        "posts": r.posts,
        "url": r.url or "",
    }


def one_line(text: str, limit: int = 80) -> str:
    """The first sentence, at most `limit` characters (an extractive one-line summary)."""
    text = " ".join((text or "").split())
    for stop in "。！？!?\n":
        if stop in text:
            text = text.split(stop)[0] + stop
            break
    return text if len(text) <= limit else text[: limit - 1] + "…"


def new_events(conn: Connection, p: Period) -> list[dict[str, Any]]:
    e = Event.__table__
    rows = conn.execute(
        select(e.c.id, e.c.title, e.c.summary, e.c.level, e.c.heat, e.c.posts,
               e.c.first_seen_at, e.c.first_post_id, Post.url)
        .select_from(e.outerjoin(Post, Post.id == e.c.first_post_id))
        .where(e.c.status == "open", e.c.first_seen_at >= p.start, e.c.first_seen_at < p.end)
        .order_by(e.c.id)
    ).all()  # fmt: skip
    return [_event_row(r) for r in rows]


def escalated_events(conn: Connection, p: Period) -> list[dict[str, Any]]:
    """Events whose level was raised in the period: a grade above the one before it."""
    g = EventGrade.__table__
    raised_ids = [
        r.event_id
        for r in conn.execute(
            select(g.c.event_id).where(g.c.graded_at >= p.start, g.c.graded_at < p.end).distinct()
        )
    ]
    out = []
    for event_id in sorted(raised_ids):
        grades = conn.execute(
            select(g.c.level, g.c.graded_at).where(g.c.event_id == event_id, g.c.graded_at < p.end)
            .order_by(g.c.graded_at, g.c.id)
        ).all()  # fmt: skip
        before = [x for x in grades if x.graded_at < p.start]
        during = [x for x in grades if x.graded_at >= p.start]
        start_rank = _rank(before[-1].level) if before else _rank("general")
        top = max(during, key=lambda x: _rank(x.level))
        if _rank(top.level) > start_rank:
            title = conn.execute(select(Event.title).where(Event.id == event_id)).scalar()
            out.append(
                {
                    "id": event_id,
                    "title": title or f"事件 {event_id}",
                    "from": level_zh(before[-1].level) if before else level_zh("general"),
                    "to": level_zh(top.level),
                    "level": top.level,
                }
            )
    return out


def _rank(level: str | None) -> int:
    try:
        return Level(level or "general").rank
    except ValueError:
        return 0


def serious_events(conn: Connection, p: Period) -> list[dict[str, Any]]:
    """Events at or above 较大 seen in the period."""
    e = Event.__table__
    rows = conn.execute(
        select(e.c.id, e.c.title, e.c.summary, e.c.level, e.c.heat, e.c.posts,
               e.c.first_seen_at, e.c.first_post_id, Post.url)
        .select_from(e.outerjoin(Post, Post.id == e.c.first_post_id))
        .where(e.c.status == "open", e.c.level.in_(SERIOUS), _seen_in(e, p))
        .order_by(e.c.id)
    ).all()  # fmt: skip
    return [_event_row(r) for r in rows]


def alerts(conn: Connection, p: Period) -> dict[str, Any]:
    """Warnings (预警) raised in the period, by level; acknowledged in it; raised and still open."""
    a = Alert.__table__
    raised = a.c.created_at >= p.start, a.c.created_at < p.end
    by_level = {
        level: int(n)
        for level, n in conn.execute(
            select(a.c.level, func.count()).where(*raised).group_by(a.c.level)
        )
    }
    acked = conn.execute(
        select(func.count()).where(a.c.acked_at >= p.start, a.c.acked_at < p.end)
    ).scalar()
    still_open = conn.execute(select(func.count()).where(*raised, a.c.status == "open")).scalar()
    return {
        "issued": sum(by_level.values()),
        "by_level": [
            {"level": lv, "level_zh": level_zh(lv), "count": by_level[lv]}
            for lv in sorted(by_level, key=_rank, reverse=True)
        ],
        "serious": sum(n for lv, n in by_level.items() if lv in SERIOUS),
        "acknowledged": int(acked or 0),
        "open": int(still_open or 0),
    }


def cases(conn: Connection, p: Period) -> dict[str, Any]:
    """Cases opened and closed in the period; deadlines due in it met on time, late, overdue."""
    c = Case.__table__
    opened = conn.execute(
        select(func.count()).where(c.c.created_at >= p.start, c.c.created_at < p.end)
    ).scalar()
    closed = conn.execute(
        select(func.count()).where(c.c.closed_at >= p.start, c.c.closed_at < p.end)
    ).scalar()
    stats = deadline_stats(conn, p.start, p.until)
    return {
        "opened": int(opened or 0),
        "closed": int(closed or 0),
        "deadlines_due": sum(s["due"] for s in stats),
        "on_time": sum(s["on_time"] for s in stats),
        "late": sum(s["late"] for s in stats),
        "overdue": sum(s["overdue"] for s in stats),
        "deadline_stats": stats,
    }


def shift_reports(conn: Connection, p: Period) -> list[dict[str, Any]]:
    """The duty shifts' reports (值班报告 / 零报告) of the period's dates."""
    rows = conn.execute(
        select(ShiftReport.on_date, ShiftReport.kind, ShiftReport.items, ShiftReport.handover,
               DutyShift.name, User.display_name, User.username)
        .join(DutyShift, DutyShift.id == ShiftReport.shift_id)
        .outerjoin(User, User.id == ShiftReport.user_id)
        .where(ShiftReport.on_date >= p.first.isoformat(),
               ShiftReport.on_date <= p.last.isoformat())
        .order_by(ShiftReport.on_date, DutyShift.name)
    ).all()  # fmt: skip
    return [
        {
            "on_date": r.on_date,
            "shift": r.name,
            "kind": r.kind,
            "kind_zh": REPORT_KINDS.get(r.kind, r.kind),
            "items": len(r.items or []),
            "handover": r.handover or "",
            "by": r.display_name or r.username or "",
        }
        for r in rows
    ]


def top_topics(conn: Connection, p: Period, limit: int = 10) -> list[dict[str, Any]]:
    """Topics (监测方案) by the posts of the period they matched."""
    w = _posts_between(p.start, p.until)
    m = TopicMatch.__table__
    n = func.count().label("n")
    rows = conn.execute(
        select(Topic.id, Topic.name, n)
        .select_from(w.join(m, m.c.post_id == w.c.id).join(Topic, Topic.id == m.c.topic_id))
        .group_by(Topic.id, Topic.name)
        .order_by(n.desc(), Topic.id)
        .limit(limit)
    ).all()
    return [{"id": r.id, "name": r.name, "posts": int(r.n)} for r in rows]


def categories(conn: Connection, p: Period, limit: int = 12) -> list[dict[str, Any]]:
    """Posts of the period per category label (post_labels kind "category")."""
    from tingfeng.ingest.readings import current_taxonomy

    names = {c.slug: c.name_zh for c in current_taxonomy(conn).categories}
    w = _posts_between(p.start, p.until)
    lab = PostLabel.__table__
    n = func.count().label("n")
    rows = conn.execute(
        select(lab.c.value, n)
        .select_from(w.join(lab, and_(lab.c.post_id == w.c.id, lab.c.kind == "category")))
        .group_by(lab.c.value)
        .order_by(n.desc(), lab.c.value)
        .limit(limit)
    ).all()
    return [{"slug": v, "name": names.get(v, v), "posts": int(c)} for v, c in rows]


def post_count_where(conn: Connection, p: Period, *clauses: Any) -> int:
    w = _posts_between(p.start, p.until)
    return int(conn.execute(select(func.count()).select_from(w).where(*clauses)).scalar() or 0)


__all__ = [
    "alerts",
    "cases",
    "categories",
    "escalated_events",
    "events_in",
    "mixes",
    "new_events",
    "one_line",
    "serious_events",
    "shift_reports",
    "top_topics",
    "volume",
]
