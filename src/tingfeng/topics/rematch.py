"""Match a topic against the posts stored already, and group the new matches into events.

Used after a topic is added or changed (`tingfeng topics rematch`, `topics add --rematch`).
Matches are replaced, so running it twice stores nothing twice; posts already in an event
stay where they are.
"""

from __future__ import annotations

from sqlalchemy import Engine, delete, insert, text

from tingfeng.db.engine import write_transaction
from tingfeng.db.models import TopicMatch, as_utc, utc_now
from tingfeng.topics import TopicHit
from tingfeng.topics.store import get_topic
from tingfeng.topics.stored import match_stored

BATCH = 2000


def rematch_topic(engine: Engine, topic_id: int, *, group: bool = True) -> int:
    """Store the topic's matches among stored posts; returns how many posts match."""
    from tingfeng.events.stream import EventStage, StoredPost

    with engine.connect() as conn:
        topic = get_topic(conn, topic_id)
        found = match_stored(
            conn, topic.query, exclusions=topic.exclusions, source_ids=topic.source_ids
        )
    now = utc_now()
    with write_transaction(engine) as conn:
        conn.execute(delete(TopicMatch).where(TopicMatch.topic_id == topic.id))
        rows = [
            {"topic_id": topic.id, "post_id": pid, "terms": list(terms), "matched_at": now}
            for pid, _, terms in found.matches
        ]
        for i in range(0, len(rows), BATCH):
            conn.execute(insert(TopicMatch), rows[i : i + BATCH])
    if not group or not found.matches:
        return len(found.matches)
    stage = EventStage(engine)
    ids = [m[0] for m in found.matches]
    for i in range(0, len(ids), BATCH):
        chunk = ",".join(str(x) for x in ids[i : i + BATCH])
        with write_transaction(engine) as conn:
            posts = [
                StoredPost(
                    id=r[0],
                    source_id=r[1],
                    title=r[2] or "",
                    text=r[3] or "",
                    lang=r[4],
                    published_at=r[5],
                    reposts_of_id=r[6],
                    dup_group=r[7] if r[7] != r[0] else None,
                )
                for r in conn.execute(
                    text(
                        "SELECT p.id, p.source_id, p.title_norm, p.text_norm, p.lang, "
                        "p.published_at, p.reposts_of_id, p.dup_group FROM posts p "
                        f"WHERE p.id IN ({chunk}) AND NOT EXISTS "
                        "(SELECT 1 FROM event_posts ep WHERE ep.post_id = p.id)"
                    )
                )
            ]
            for p in posts:
                p.published_at = as_utc(p.published_at)
            stage.group(conn, posts, {p.id: [TopicHit(topic.id, ())] for p in posts})
            if posts:
                times = [p.published_at for p in posts if p.published_at]
                if times:
                    stage.flush_spikes(conn, max(times))
    return len(found.matches)
