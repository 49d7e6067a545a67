"""What the topic list shows beside each topic: recent matches and who changed it last."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from tingfeng.db.models import Post, TopicMatch, TopicVersion


def match_counts_since(conn: Connection, since: datetime) -> dict[int, int]:
    """Topic id → posts published since `since` that the topic matched.

    Counted by the post's publication time, not by when it was matched, so a re-match of old
    posts after a change does not look like a burst of new ones.
    """
    rows = conn.execute(
        select(TopicMatch.topic_id, func.count())
        .join(Post, Post.id == TopicMatch.post_id)
        .where(Post.published_at >= since)
        .group_by(TopicMatch.topic_id)
    )
    return {int(tid): int(n) for tid, n in rows}


def last_changes(conn: Connection) -> dict[int, dict[str, Any]]:
    """Topic id → its newest saved version: {"version", "saved_at", "saved_by"}."""
    newest = (
        select(TopicVersion.topic_id, func.max(TopicVersion.version).label("version"))
        .group_by(TopicVersion.topic_id)
        .subquery()
    )
    rows = conn.execute(
        select(TopicVersion.topic_id, TopicVersion.version, TopicVersion.saved_at,
               TopicVersion.saved_by)
        .join(newest, (newest.c.topic_id == TopicVersion.topic_id)
              & (newest.c.version == TopicVersion.version))
    )  # fmt: skip
    return {
        int(tid): {"version": version, "saved_at": saved_at, "saved_by": saved_by}
        for tid, version, saved_at, saved_by in rows
    }
