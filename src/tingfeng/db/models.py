"""The schema: sources, posts, readings, topics and events.

Times are stored in UTC (`UtcDateTime` makes them aware on the way out on both SQLite and
PostgreSQL). The same models serve both databases; Alembic migrations in `migrations/` create
them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for 1e9+ posts.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC; naive values are refused so no local time slips in."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; attach a time zone first")
        value = value.astimezone(UTC)
        # SQLite has no time zone type; store naive UTC so text comparison orders correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: Any) -> datetime | None:
    """A timestamp read with raw SQL (ISO text on SQLite, a datetime on PostgreSQL) as aware UTC."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Source(Base):
    """信源: one place to collect from."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    interval_s: Mapped[int] = mapped_column(Integer, default=900)
    hot_interval_s: Mapped[int] = mapped_column(Integer, default=60)
    hot_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    region: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # Media tier (tingfeng.events.heat.MediaTier): weighs the source in heat and grading.
    tier: Mapped[str | None] = mapped_column(String(24), nullable=True)
    # argon2 hash of the push token (push sources only); the token itself is shown once.
    push_token_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    # Scheduling and health.
    next_fetch_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_item_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    items_total: Mapped[int] = mapped_column(BigInteger, default=0)
    # Exponentially weighted mean gap between runs that yielded items, for "stale".
    typical_gap_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Set while a worker runs this source, so two workers never fetch it at once.
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class Post(Base):
    """信息/帖文: one collected item, original and analysed forms side by side."""

    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Hash of the identity key (platform+id, canonical URL or content); unique, so
    # re-ingesting an item never creates a second row.
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16), default="post")
    platform: Mapped[str | None] = mapped_column(String(40), nullable=True)
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    canonical_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    title: Mapped[str | None] = mapped_column(Text, nullable=True)
    text_original: Mapped[str | None] = mapped_column(Text, nullable=True)
    html: Mapped[str | None] = mapped_column(Text, nullable=True)
    text_clean: Mapped[str] = mapped_column(Text, default="")
    title_norm: Mapped[str] = mapped_column(Text, default="")
    text_norm: Mapped[str] = mapped_column(Text, default="")
    tokens: Mapped[str] = mapped_column(Text, default="")
    lang: Mapped[str] = mapped_column(String(8), default="other")
    content_hash: Mapped[str] = mapped_column(String(32))
    # The id of the first-seen post of this post's duplicate group (itself for an original).
    dup_group: Mapped[int | None] = mapped_column(BigId, nullable=True)
    dup_kind: Mapped[str] = mapped_column(String(8), default="original")
    author: Mapped[str | None] = mapped_column(String(200), nullable=True)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    fetched_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    reposts: Mapped[int | None] = mapped_column(Integer, nullable=True)
    comments: Mapped[int | None] = mapped_column(Integer, nullable=True)
    likes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    views: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Parent links: the external key as collected, and the resolved post id once both are stored.
    reposts_of_key: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reposts_of_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    reply_to_key: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reply_to_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (
        Index("ix_posts_source_published", "source_id", "published_at"),
        Index("ix_posts_published", "published_at"),
        Index("ix_posts_content_hash", "content_hash"),
        Index("ix_posts_dup_group", "dup_group"),
        # Partial: most posts have no URL (social posts) or no parent (originals), and entries
        # for NULLs would only cost writes.
        *(
            Index(
                f"ix_posts_{col}",
                col,
                sqlite_where=text(f"{col} IS NOT NULL"),
                postgresql_where=text(f"{col} IS NOT NULL"),
            )
            for col in ("canonical_url", "reposts_of_key", "reply_to_key")
        ),
    )


class FetchLog(Base):
    """One run of a source: when, how long, what it found, what went wrong."""

    __tablename__ = "fetch_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    ok: Mapped[bool] = mapped_column(Boolean, default=False)
    items_read: Mapped[int] = mapped_column(Integer, default=0)
    items_stored: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # host:pid of the process that ran it, to see how work spreads over workers.
    worker: Mapped[str | None] = mapped_column(String(100), nullable=True)

    __table_args__ = (Index("ix_fetch_log_source_started", "source_id", "started_at"),)


class PostReading(Base):
    """研判: what the analysis stages read in a post (see tingfeng.analyze.reading)."""

    __tablename__ = "readings"

    post_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    # Models and taxonomy that produced it; `tingfeng reanalyze` redoes readings of other versions.
    version: Mapped[str] = mapped_column(String(40))
    analysed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    polarity: Mapped[str] = mapped_column(String(10), default="unknown")
    polarity_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    emotion: Mapped[str] = mapped_column(String(10), default="unknown")
    emotion_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    needs_verification: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    credibility_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    keywords: Mapped[list[Any]] = mapped_column(JSON, default=list)
    entities: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    regions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    categories: Mapped[list[Any]] = mapped_column(JSON, default=list)
    problems: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (
        Index("ix_readings_version", "version"),
        Index("ix_readings_polarity", "polarity"),
    )


class PostLabel(Base):
    """A filterable label of a post from its reading: a category slug or a region code."""

    __tablename__ = "post_labels"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # "category" or "region"
    value: Mapped[str] = mapped_column(String(64), primary_key=True)
    post_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )

    __table_args__ = (Index("ix_post_labels_post_id", "post_id"),)


class TaxonomyVersion(Base):
    """Each saved state of the category taxonomy; the newest one is in force."""

    __tablename__ = "taxonomy_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(40))
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


class Topic(Base):
    """监测方案: what an office watches, as a query in the topic language (tingfeng.topics)."""

    __tablename__ = "topics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    query: Mapped[str] = mapped_column(Text)
    exclusions: Mapped[list[str]] = mapped_column(JSON, default=list)
    # None: every source; otherwise the ids of the sources the topic applies to.
    source_ids: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class TopicVersion(Base):
    """Each saved state of a topic, so a change can be compared and undone."""

    __tablename__ = "topic_versions"

    topic_id: Mapped[int] = mapped_column(
        ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    query: Mapped[str] = mapped_column(Text)
    exclusions: Mapped[list[str]] = mapped_column(JSON, default=list)
    source_ids: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    saved_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    saved_by: Mapped[str | None] = mapped_column(String(100), nullable=True)


class TopicMatch(Base):
    """A post that matched a topic, with the terms that matched (for highlighting)."""

    __tablename__ = "topic_matches"

    topic_id: Mapped[int] = mapped_column(
        ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True
    )
    post_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    terms: Mapped[list[str]] = mapped_column(JSON, default=list)
    matched_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (Index("ix_topic_matches_post_id", "post_id"),)


class Event(Base):
    """事件: matched posts grouped by what happened, with its profile, heat and level."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(Text, default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open")  # open, merged
    merged_into: Mapped[int | None] = mapped_column(BigId, nullable=True)
    first_post_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    first_source_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    first_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    posts: Mapped[int] = mapped_column(Integer, default=0)
    heat: Mapped[float | None] = mapped_column(Float, nullable=True)
    level: Mapped[str | None] = mapped_column(String(16), nullable=True)
    level_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    grade: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    grade_state: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Timeline, sentiment mix, keywords, places, sources, spread...: see tingfeng.events.profile.
    profile: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    profiled_posts: Mapped[int] = mapped_column(Integer, default=0)
    profiled_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (
        Index("ix_events_last_seen_at", "last_seen_at"),
        Index("ix_events_status", "status"),
    )


class EventPost(Base):
    """Which event a post belongs to, and how it joined (repost, duplicate, content, manual)."""

    __tablename__ = "event_posts"

    post_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    event_id: Mapped[int] = mapped_column(BigId, ForeignKey("events.id", ondelete="CASCADE"))
    joined_by: Mapped[str] = mapped_column(String(16), default="content")
    joined_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (Index("ix_event_posts_event_id", "event_id", "post_id"),)


class EventDecision(Base):
    """A person's choice about events (merge, split, grade override), remembered and audited."""

    __tablename__ = "event_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # merge, split, override, clear_override
    event_id: Mapped[int] = mapped_column(BigId)
    other_event_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    post_ids: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    level: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (Index("ix_event_decisions_event_id", "event_id"),)


class EventGrade(Base):
    """The history of an event's level: each change, computed or overridden, with its reasons."""

    __tablename__ = "event_grades"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(BigId, ForeignKey("events.id", ondelete="CASCADE"))
    graded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    level: Mapped[str] = mapped_column(String(16))
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    overridden: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    explanation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (Index("ix_event_grades_event_id", "event_id", "graded_at"),)


class SpikeRecord(Base):
    """突增: an hour in which a topic's or an event's volume was unusual for that hour of week."""

    __tablename__ = "spikes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    series: Mapped[str] = mapped_column(String(40))  # "topic:3", "event:17"
    hour: Mapped[datetime] = mapped_column(UtcDateTime)
    count: Mapped[int] = mapped_column(Integer)
    expected: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    ratio: Mapped[float] = mapped_column(Float)
    baseline: Mapped[str] = mapped_column(String(16))
    detected_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (UniqueConstraint("series", "hour", name="uq_spikes_series_hour"),)


class DetectorState(Base):
    """Saved state of a streaming detector (spike baselines), restored after a restart."""

    __tablename__ = "detector_state"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
