"""One post with everything known about it: the reading, its duplicate group, its event and
the evidence kept for it (the post's detail page and GET /api/v1/posts/{id}).

Collected fields are returned as stored: they are untrusted, and whoever prints them escapes
them (the raw `html` only ever goes through the sanitiser).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from tingfeng.cases.evidence import CATEGORY_LABELS
from tingfeng.db.models import Event, EventPost, Evidence, Post, Source
from tingfeng.events.grading import Level
from tingfeng.ingest.readings import readings_of

# The other posts of a duplicate group listed with a post (the group's size is always given).
DUPLICATES_SHOWN = 50


class PostNotFound(LookupError):
    """No stored post has this id."""


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _post_fields(post: Any) -> dict[str, Any]:
    return {
        "id": post.id,
        "source_id": post.source_id,
        "kind": post.kind,
        "platform": post.platform,
        "url": post.url,
        "title": post.title,
        # The public byline only: nothing else about the author is kept or shown.
        "author": post.author,
        "lang": post.lang,
        "published_at": _iso(post.published_at),
        "fetched_at": _iso(post.fetched_at),
        "text_original": post.text_original,
        "text_clean": post.text_clean,
        "html": post.html,
        "reposts": post.reposts,
        "comments": post.comments,
        "likes": post.likes,
        "views": post.views,
        "reposts_of_id": post.reposts_of_id,
        "reply_to_id": post.reply_to_id,
        "dup_group": post.dup_group,
        "dup_kind": post.dup_kind,
    }


def _duplicates(conn: Connection, post: Any) -> dict[str, Any]:
    """The other posts of the post's duplicate group (转载/重复), oldest first."""
    group = post.dup_group
    if group is None:
        return {"group": None, "kind": post.dup_kind, "total": 0, "posts": []}
    p = Post.__table__
    others = (p.c.dup_group == group) & (p.c.id != post.id)
    total = conn.execute(select(func.count()).select_from(p).where(others)).scalar_one()
    rows = conn.execute(
        select(
            p.c.id,
            p.c.title,
            p.c.text_clean,
            p.c.source_id,
            p.c.published_at,
            p.c.dup_kind,
            Source.name,
        )
        .join(Source, Source.id == p.c.source_id)
        .where(others)
        .order_by(p.c.id)
        .limit(DUPLICATES_SHOWN)
    ).all()
    return {
        "group": group,
        "kind": post.dup_kind,
        "total": int(total),
        "posts": [
            {
                "id": r.id,
                "title": r.title,
                "text": (r.text_clean or "")[:120],
                "source_id": r.source_id,
                "source": r.name,
                "published_at": _iso(r.published_at),
                "dup_kind": r.dup_kind,
            }
            for r in rows
        ],
    }


def _events(conn: Connection, post_id: int) -> list[dict[str, Any]]:
    e = Event.__table__
    rows = conn.execute(
        select(e.c.id, e.c.title, e.c.status, e.c.level, e.c.heat, e.c.posts, EventPost.joined_by)
        .join(EventPost, EventPost.event_id == e.c.id)
        .where(EventPost.post_id == post_id)
    ).all()
    return [
        {
            "id": r.id,
            "title": r.title,
            "status": r.status,
            "level": r.level,
            "level_zh": Level(r.level).zh if r.level in Level.__members__ else None,
            "heat": r.heat,
            "posts": r.posts,
            "joined_by": r.joined_by,
        }
        for r in rows
    ]


def _evidence(conn: Connection, post_id: int) -> list[dict[str, Any]]:
    t = Evidence.__table__
    rows = conn.execute(select(t).where(t.c.post_id == post_id).order_by(t.c.id)).all()
    return [
        {
            "id": r.id,
            "number": r.number,
            "category": r.category,
            "category_label": CATEGORY_LABELS.get(r.category, r.category),
            "case_id": r.case_id,
            "alert_id": r.alert_id,
            "url": r.url,
            "title": r.title,
            "captured_at": _iso(r.captured_at),
            "status": r.status,
            "error": r.error,
            "http_status": r.http_status,
            "warc_sha256": r.warc_sha256,
            "png_sha256": r.png_sha256,
        }
        for r in rows
    ]


def post_detail(conn: Connection, post_id: int) -> dict[str, Any]:
    """Everything about one post; raises PostNotFound."""
    post = conn.execute(select(Post.__table__).where(Post.id == post_id)).first()
    if post is None:
        raise PostNotFound(f"There is no post {post_id} (never stored, or deleted).")
    source = conn.execute(
        select(Source.id, Source.name, Source.kind).where(Source.id == post.source_id)
    ).first()
    return {
        **_post_fields(post),
        "source": {"id": source.id, "name": source.name, "kind": source.kind} if source else None,
        "reading": readings_of(conn, [post_id]).get(post_id),
        "duplicates": _duplicates(conn, post),
        "events": _events(conn, post_id),
        "evidence": _evidence(conn, post_id),
    }


def events_of(conn: Connection, post_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The event each of `post_ids` belongs to (id, title, level), for lists of posts."""
    if not post_ids:
        return {}
    e = Event.__table__
    rows = conn.execute(
        select(EventPost.post_id, e.c.id, e.c.title, e.c.level)
        .join(EventPost, EventPost.event_id == e.c.id)
        .where(EventPost.post_id.in_(post_ids))
    ).all()
    return {r.post_id: {"id": r.id, "title": r.title, "level": r.level} for r in rows}
