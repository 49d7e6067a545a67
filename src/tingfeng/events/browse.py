"""Events as people browse them: the filtered list with its total, and what the event page
draws (posts per hour, the origin post, the repost tree, the sources).

The profile cached on the event (tingfeng.events.profile) is refreshed when an event has grown
enough; the page's timeline and tree are read from the event's posts at request time instead,
so a split, a merge or the last few posts show at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, case, exists, func, select, text

from tingfeng.db.models import Event, EventPost, Source, TopicMatch, as_utc
from tingfeng.events.profile import spread_nodes
from tingfeng.events.service import _levels, _summary
from tingfeng.events.spread import spread_path

SORTS = ("heat", "level", "recent", "posts")
STATUSES = ("open", "merged", "all")
# A tree of a few hundred nodes is what a person can read; beyond, the page says it is cut.
TREE_NODES = 300
# Hours without posts are drawn as zeros up to this span; a longer event keeps only busy hours.
MAX_FILLED_HOURS = 24 * 31


@dataclass(frozen=True, slots=True)
class EventFilter:
    levels: Sequence[str] = ()
    status: str = "open"  # open, merged or all
    topic_id: int | None = None
    since: datetime | None = None  # seen at or after (its last post)
    until: datetime | None = None  # started before (its first post)


def _conditions(f: EventFilter) -> list[Any]:
    if f.status not in STATUSES:
        raise ValueError(f"unknown status {f.status!r}: use open, merged or all")
    where: list[Any] = []
    if f.status != "all":
        where.append(Event.status == f.status)
    if f.levels:
        where.append(Event.level.in_(_levels(f.levels)))
    if f.topic_id is not None:
        where.append(
            exists()
            .where(EventPost.event_id == Event.id)
            .where(TopicMatch.post_id == EventPost.post_id)
            .where(TopicMatch.topic_id == f.topic_id)
        )
    if f.since is not None:
        where.append(Event.last_seen_at >= f.since)
    if f.until is not None:
        where.append(Event.first_seen_at < f.until)
    return where


def find_events(
    conn: Connection,
    f: EventFilter,
    *,
    sort: str = "heat",
    limit: int = 30,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """A page of events matching `f`, and how many match in all."""
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}: use {', '.join(SORTS)}")
    where = _conditions(f)
    rank = case(
        {"critical": 3, "major": 2, "serious": 1, "general": 0}, value=Event.level, else_=-1
    )
    order = {
        "heat": (Event.heat.desc().nulls_last(), Event.id.desc()),
        "level": (rank.desc(), Event.heat.desc().nulls_last(), Event.id.desc()),
        "recent": (Event.last_seen_at.desc().nulls_last(), Event.id.desc()),
        "posts": (Event.posts.desc(), Event.id.desc()),
    }[sort]
    total = conn.execute(select(func.count()).select_from(Event).where(*where)).scalar_one()
    rows = conn.execute(
        select(Event).where(*where).order_by(*order).limit(max(1, min(limit, 500)))
        .offset(max(0, offset))
    ).all()  # fmt: skip
    return [_summary(e) for e in rows], int(total)


def _event_post_rows(conn: Connection, event_id: int) -> list[Any]:
    return list(
        conn.execute(
            text(
                "SELECT p.id, p.reposts_of_id, p.author, p.published_at FROM event_posts ep "
                "JOIN posts p ON p.id = ep.post_id WHERE ep.event_id = :e ORDER BY p.id"
            ),
            {"e": event_id},
        )
    )


def hourly_timeline(conn: Connection, event_id: int, tz: str) -> dict[str, Any]:
    """Posts per hour of the event, from its posts: UTC hours, local labels, counts."""
    zone = ZoneInfo(tz)
    counts: Counter[datetime] = Counter()
    undated = 0
    for (published,) in conn.execute(
        text(
            "SELECT p.published_at FROM event_posts ep JOIN posts p ON p.id = ep.post_id "
            "WHERE ep.event_id = :e"
        ),
        {"e": event_id},
    ):
        t = as_utc(published)
        if t is None:
            undated += 1
            continue
        counts[t.replace(minute=0, second=0, microsecond=0)] += 1
    hours = sorted(counts)
    if hours and (hours[-1] - hours[0]) <= timedelta(hours=MAX_FILLED_HOURS):
        span = int((hours[-1] - hours[0]).total_seconds() // 3600)
        hours = [hours[0] + timedelta(hours=i) for i in range(span + 1)]
    return {
        "hours": [h.isoformat() for h in hours],
        "labels": [h.astimezone(zone).strftime("%m-%d %H:00") for h in hours],
        "counts": [counts.get(h, 0) for h in hours],
        "undated": undated,
    }


def _label(author: str | None, post_id: int) -> str:
    return author.strip() if author and author.strip() else f"#{post_id}"


def spread_tree(
    conn: Connection, event_id: int, root: int | None, *, max_nodes: int = TREE_NODES
) -> dict[str, Any] | None:
    """The repost tree under the event's first post, nested for a drawing, cut at `max_nodes`
    posts taken breadth-first (the root and the nearest generations first); None without
    reposts. Posts that joined by content, not by a repost link, are not in the tree."""
    if root is None:
        return None
    rows = _event_post_rows(conn, event_id)
    authors = {r[0]: r[2] for r in rows}
    nodes, root_time = spread_nodes(rows, root)
    if not nodes:
        return None
    spread = spread_path(root, nodes, root_time=root_time, max_edges=max(max_nodes - 1, 0))
    drawn: dict[int, dict[str, Any]] = {
        root: {"name": _label(authors.get(root), root), "post_id": root, "children": []}
    }
    # Breadth-first edges: a parent is always drawn before its children, so the cut keeps a
    # connected tree.
    for parent, child in spread.edges:
        node = {"name": _label(authors.get(child), child), "post_id": child, "children": []}
        drawn[parent]["children"].append(node)
        drawn[child] = node
    return {
        "tree": drawn[root],
        "shown": len(drawn),
        "size": spread.size,
        "capped": spread.size > len(drawn),
        "depth": spread.depth,
        "breadth": spread.breadth,
    }


def origin_post(conn: Connection, post_id: int | None) -> dict[str, Any] | None:
    """The event's first post (源头), with its source's name."""
    if post_id is None:
        return None
    row = conn.execute(
        text(
            "SELECT p.id, p.title, p.text_clean, p.url, p.author, p.published_at, s.id, s.name "
            "FROM posts p JOIN sources s ON s.id = p.source_id WHERE p.id = :p"
        ),
        {"p": post_id},
    ).first()
    if row is None:
        return None
    published = as_utc(row[5])
    return {
        "id": row[0],
        "title": row[1],
        "text": (row[2] or "")[:500],
        "url": row[3],
        "author": row[4],
        "published_at": published.isoformat() if published else None,
        "source_id": row[6],
        "source": row[7],
    }


def source_names(conn: Connection, source_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """Source id → (name, media tier: as configured, else as the profile infers it)."""
    if not source_ids:
        return {}
    from tingfeng.events.profile import source_tiers

    tiers = source_tiers(conn, source_ids)
    rows = conn.execute(select(Source.id, Source.name).where(Source.id.in_(list(source_ids))))
    return {int(sid): (name, str(tiers.get(int(sid), "other"))) for sid, name in rows}
