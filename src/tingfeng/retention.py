"""Deleting posts (a removed source, later: expiry after the retention period).

Posts leave the full-text index in the same transaction as the table.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, select

from tingfeng.collect.sources import find_source
from tingfeng.db.models import Post
from tingfeng.search.index import remove_from_index, sort_key

_BATCH = 1000


def delete_posts(conn: Connection, post_ids: list[int]) -> int:
    deleted = 0
    for i in range(0, len(post_ids), _BATCH):
        part = post_ids[i : i + _BATCH]
        rows = conn.execute(
            select(Post.id, Post.published_at, Post.title_norm, Post.text_norm).where(
                Post.id.in_(part)
            )
        ).all()
        remove_from_index(
            conn, [(r.id, sort_key(r.published_at, r.id), r.title_norm, r.text_norm) for r in rows]
        )
        deleted += conn.execute(delete(Post).where(Post.id.in_(part))).rowcount
    return deleted


def delete_posts_of_source(conn: Connection, ref: str | int) -> int:
    source = find_source(conn, ref)
    ids = list(conn.execute(select(Post.id).where(Post.source_id == source.id)).scalars())
    return delete_posts(conn, ids)
