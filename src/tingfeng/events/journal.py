"""The grouping journal: how several ingest processes share one event grouper.

Event grouping is a streaming decision (does this post join an open event or start one?) and
its memory lives in each ingesting process. With many workers (scale-out), each would see only
its own batches and split one story into several events. Instead:

- grouping is serialised across processes by the grouping lock, held to the end of the
  ingest transaction (a PostgreSQL advisory lock; on SQLite the write transaction is already
  the only writer);
- every batch gets the next journal number (`grouping_journal`, with the time its spike counts
  were flushed up to), and its memberships (`event_posts`) carry the number;
- before grouping, a process replays the entries with a higher number than it has seen,
  written by the others, into its grouper and spike detector, flushes included.

So each batch is grouped against every post grouped before it, whichever worker stored it:
the result is the one a single worker would give on the same order of batches.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, text, update

from tingfeng.db.models import EventPost, GroupingJournal, Post, PostReading, TopicMatch

# pg_advisory_xact_lock key: any constant of our own ("听风" grouping).
GROUPING_LOCK_KEY = 0x5446_4752


def take_grouping_lock(conn: Connection) -> None:
    """Wait for the grouping lock; it is released when the transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": GROUPING_LOCK_KEY})


def last_seq(conn: Connection) -> int:
    return int(conn.execute(select(func.max(GroupingJournal.seq))).scalar() or 0)


def open_entry(conn: Connection, seq: int, process: str, now: datetime) -> None:
    conn.execute(
        insert(GroupingJournal).values(seq=seq, spikes_until=None, process=process, created_at=now)
    )


def note_flush(conn: Connection, seq: int, until: datetime) -> None:
    conn.execute(
        update(GroupingJournal).where(GroupingJournal.seq == seq).values(spikes_until=until)
    )


def writer_of(conn: Connection, seq: int) -> str | None:
    return conn.execute(  # type: ignore[no-any-return]
        select(GroupingJournal.process).where(GroupingJournal.seq == seq)
    ).scalar()


def entries_since(
    conn: Connection, seq: int, limit: int = 500
) -> list[tuple[int, datetime | None, str | None]]:
    """(seq, spikes_until, process) of the batches grouped after `seq`, oldest first."""
    return [
        (int(r[0]), r[1], r[2])
        for r in conn.execute(
            select(GroupingJournal.seq, GroupingJournal.spikes_until, GroupingJournal.process)
            .where(GroupingJournal.seq > seq)
            .order_by(GroupingJournal.seq)
            .limit(limit)
        )
    ]


@dataclass(slots=True)
class JournalRow:
    seq: int
    event_id: int
    post_id: int
    source_id: int
    title: str
    text: str
    lang: str | None
    published_at: datetime | None
    reposts_of_id: int | None
    dup_group: int | None
    keywords: tuple[str, ...]
    topic_ids: tuple[int, ...]


def rows_between(conn: Connection, first: int, last: int) -> list[JournalRow]:
    """Memberships of the batches numbered `first`..`last`, by batch."""
    rows = conn.execute(
        select(
            EventPost.seq, EventPost.event_id, Post.id, Post.source_id, Post.title_norm,
            Post.text_norm, Post.lang, Post.published_at, Post.reposts_of_id, Post.dup_group,
            PostReading.keywords,
        )
        .join(Post, Post.id == EventPost.post_id)
        .outerjoin(PostReading, PostReading.post_id == Post.id)
        .where(EventPost.seq >= first, EventPost.seq <= last)
        .order_by(EventPost.seq, Post.id)
    ).all()  # fmt: skip
    topics: dict[int, list[int]] = defaultdict(list)
    ids = [r[2] for r in rows]
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        for topic_id, post_id in conn.execute(
            select(TopicMatch.topic_id, TopicMatch.post_id).where(TopicMatch.post_id.in_(chunk))
        ):
            topics[post_id].append(topic_id)
    return [
        JournalRow(
            seq=r[0], event_id=r[1], post_id=r[2], source_id=r[3], title=r[4] or "",
            text=r[5] or "", lang=r[6], published_at=r[7], reposts_of_id=r[8],
            dup_group=r[9] if r[9] is not None and r[9] != r[2] else None,
            keywords=_keywords(r[10]), topic_ids=tuple(sorted(topics.get(r[2], ()))),
        )
        for r in rows
    ]  # fmt: skip


def _keywords(stored: Any) -> tuple[str, ...]:
    # The same eight the grouping process used (tingfeng.events.stream.stored_post).
    out: list[str] = []
    for entry in stored or ():
        word = entry[0] if isinstance(entry, list | tuple) else entry
        if isinstance(word, str):
            out.append(word)
        if len(out) == 8:
            break
    return tuple(out)
