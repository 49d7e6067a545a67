"""The schema: sources, posts, readings, topics, events, the office, alerts, duty, cases.

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
    # The grouping journal: one number per batch grouped under the grouping lock, so another
    # ingest process knows which memberships it has not seen yet (tingfeng.events.stream).
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    __table_args__ = (
        Index("ix_event_posts_event_id", "event_id", "post_id"),
        Index("ix_event_posts_seq", "seq"),
    )


class GroupingJournal(Base):
    """One batch grouped by some ingest process: the order batches were grouped in, and the
    hour its spike counts were flushed up to, so other processes can replay it (scale-out)."""

    __tablename__ = "grouping_journal"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    spikes_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    process: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


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


# --- the office: people and departments (sign-in arrives with the web application) -------------


class Department(Base):
    """单位、科室: an organisational unit, in a hierarchy (parent_id)."""

    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class User(Base):
    """A person of the office: who receives alerts, who is on duty, who acknowledges."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(24), default="analyst")
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id", ondelete="SET NULL"), nullable=True
    )
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(40), nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    # Sign-in: consecutive failed passwords, and until when the account is locked after too many.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    password_changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    language: Mapped[str | None] = mapped_column(String(8), nullable=True)  # zh, en


class WebSession(Base):
    """A signed-in browser: the cookie holds a random token, only its SHA-256 is kept here."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_web_sessions_user_id", "user_id"),)


class ApiToken(Base):
    """A personal API token for scripts; shown once, only its SHA-256 is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_api_tokens_user_id", "user_id"),)


# --- alerts (预警): rules, channels, the alerts themselves, the outbox, escalation ------------


class AlertRule(Base):
    """When to warn whom, how: conditions, recipients, channels, de-duplication, rate, digest."""

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # See tingfeng.alerts.rules.Conditions.
    conditions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # "event": one alert per event (posts of the event fold into it); "post": one per post.
    per: Mapped[str] = mapped_column(String(8), default="event")
    # See tingfeng.alerts.recipients.Recipients.
    recipients: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    channel_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    level: Mapped[str] = mapped_column(String(16), default="general")
    dedup_window_s: Mapped[int] = mapped_column(Integer, default=86400)
    rate_limit_per_hour: Mapped[int] = mapped_column(Integer, default=30)
    digest_minutes: Mapped[int] = mapped_column(Integer, default=0)
    escalate: Mapped[bool] = mapped_column(Boolean, default=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class Channel(Base):
    """Where messages go besides the in-app list: e-mail, a webhook, or an apprise URL."""

    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # email, webhook, apprise
    target: Mapped[str] = mapped_column(Text, default="")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class Alert(Base):
    """预警: raised by a rule (or by a missing duty report), with why it fired."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule_id: Mapped[int | None] = mapped_column(
        ForeignKey("alert_rules.id", ondelete="SET NULL"), nullable=True
    )
    kind: Mapped[str] = mapped_column(String(16), default="rule")  # rule, duty
    # "rule:subject" (e.g. "3:event:17"); with seq, unique: an alert per rule, subject, window.
    dedup_key: Mapped[str] = mapped_column(String(120))
    seq: Mapped[int] = mapped_column(Integer, default=1)
    subject: Mapped[str] = mapped_column(String(60))  # post:5, event:17, spike:topic:3, shift:2
    event_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    post_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    last_post_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    hits: Mapped[int] = mapped_column(Integer, default=1)
    level: Mapped[str] = mapped_column(String(16), default="general")
    title: Mapped[str] = mapped_column(Text, default="")
    excerpt: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open, acknowledged
    # "sent": messages queued at once; "held": waiting for a digest (digest mode, rate limit).
    delivery: Mapped[str] = mapped_column(String(8), default="sent")
    acked_by_user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    acked_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    acked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    acked_via: Mapped[str | None] = mapped_column(String(16), nullable=True)
    escalation_step: Mapped[int] = mapped_column(Integer, default=0)
    escalation_level: Mapped[str | None] = mapped_column(String(16), nullable=True)
    next_escalation_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    window_until: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (
        UniqueConstraint("dedup_key", "seq", name="uq_alerts_dedup_key_seq"),
        Index("ix_alerts_event_id", "event_id"),
        Index("ix_alerts_due", "status", "next_escalation_at"),
        Index("ix_alerts_created_at", "created_at"),
    )


class AlertLog(Base):
    """What happened to an alert: fired, folded, escalated, acknowledged, level raised."""

    __tablename__ = "alert_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    what: Mapped[str] = mapped_column(String(16))
    by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (Index("ix_alert_log_alert_id", "alert_id"),)


class Delivery(Base):
    """The outbox: one message to one recipient on one channel, sent at most once when it can be.

    Written in the same transaction as what caused it; `key` is unique, so re-running the cause
    adds nothing twice. Channel NULL is the in-app list (delivered by being written).
    """

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(160), unique=True)
    alert_id: Mapped[int | None] = mapped_column(
        ForeignKey("alerts.id", ondelete="CASCADE"), nullable=True
    )
    # alert, escalation, level_up, digest, duty
    purpose: Mapped[str] = mapped_column(String(16), default="alert")
    channel_id: Mapped[int | None] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), nullable=True
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    )
    address: Mapped[str | None] = mapped_column(String(254), nullable=True)
    message: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # pending, sending, sent, failed (gave up after max attempts; shown on the alerts page),
    # cancelled (an escalation message not yet sent when the alert was acknowledged)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    read_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        Index("ix_deliveries_user_id", "user_id", "channel_id", "read_at"),
        Index("ix_deliveries_alert_id", "alert_id"),
    )


class EscalationPolicy(Base):
    """逐级上报: for one level, who is told next when an alert is not acknowledged in time."""

    __tablename__ = "escalation_policies"

    level: Mapped[str] = mapped_column(String(16), primary_key=True)
    # [{"after_minutes": 15, "recipients": {...}, "channel_ids": [...]}, ...]: each step's delay
    # counts from the step before (the first from the alert); see tingfeng.alerts.escalation.
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # After the last step: tell its recipients again every `repeat_minutes`, at most `max_repeats`.
    repeat_minutes: Mapped[int] = mapped_column(Integer, default=0)
    max_repeats: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


# --- duty (值班): shifts, swaps and shift reports ----------------------------------------------


class DutyShift(Base):
    """A recurring shift (白班 08:00 for 12 h…) with its rotation of people per duty role."""

    __tablename__ = "duty_shifts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    starts_at: Mapped[str] = mapped_column(String(5))  # "08:00", local time
    hours: Mapped[float] = mapped_column(Float)
    days: Mapped[str] = mapped_column(String(10), default="all")  # all, workdays, restdays
    # {"A": [user ids in rotation order], "B": [...]}: the nth occurrence goes to member n % len.
    rotation: Mapped[dict[str, list[int]]] = mapped_column(JSON, default=dict)
    starts_on: Mapped[str] = mapped_column(String(10))  # first occurrence, "2026-11-02"
    # Who is told when a shift's report is missing (tingfeng.alerts.recipients.Recipients).
    report_to: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class DutySwap(Base):
    """换班: one occurrence of a shift taken by someone else than the rotation says."""

    __tablename__ = "duty_swaps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    shift_id: Mapped[int] = mapped_column(ForeignKey("duty_shifts.id", ondelete="CASCADE"))
    on_date: Mapped[str] = mapped_column(String(10))  # the occurrence's start date
    role: Mapped[str] = mapped_column(String(8), default="A")
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    replaces_user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (
        UniqueConstraint("shift_id", "on_date", "role", name="uq_duty_swaps_occurrence"),
    )


class ShiftReport(Base):
    """At a shift's end: its notable items and handover notes, or a zero report (零报告)."""

    __tablename__ = "shift_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    shift_id: Mapped[int] = mapped_column(ForeignKey("duty_shifts.id", ondelete="CASCADE"))
    on_date: Mapped[str] = mapped_column(String(10))
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str] = mapped_column(String(8))  # notable, zero
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    handover: Mapped[str] = mapped_column(Text, default="")
    filed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (UniqueConstraint("shift_id", "on_date", name="uq_shift_reports_occurrence"),)


# --- cases (舆情处理单): the matter from assessment to public reply to archive ----------------


class CaseTemplate(Base):
    """A kind of matter (督办件, 媒体来电…): the tasks, deadlines and approval chain it presets."""

    __tablename__ = "case_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    origin: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # [{"title": "核实现场情况", "kind": "verify", "due_working_days": 1, "due_hours": null}]
    tasks: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Overrides of tingfeng.cases.deadlines.DEFAULT_SLA for cases of this template.
    deadlines: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # How many approval levels a reply needs (1: the department's approver; 2: and above).
    approval_levels: Mapped[int] = mapped_column(Integer, default=1)
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class RoutingRule(Base):
    """属地管理, 谁主管谁负责: which department a matter of this region/category/topic belongs to."""

    __tablename__ = "routing_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    # {"regions": [...], "categories": [...], "topic_ids": [...], "source_ids": [...],
    #  "keywords": [...]}: every key given must match; within a key any value matches.
    conditions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id", ondelete="CASCADE"))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class Case(Base):
    """舆情处理单: one matter, its origin, its state, who handles it and by when."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)  # 2026-0001
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text, default="")
    # online, assigned (督办件), onsite (现场/媒体来电), liaison, board (留言板), manual
    origin: Mapped[str] = mapped_column(String(16))
    # assigned: {"office", "instructions", "deadline"}; onsite: {"caller", "outlet", "question"}…
    origin_detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    event_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    alert_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    post_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    board_message_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    template_id: Mapped[int | None] = mapped_column(
        ForeignKey("case_templates.id", ondelete="SET NULL"), nullable=True
    )
    level: Mapped[str] = mapped_column(String(16), default="general")
    category: Mapped[str | None] = mapped_column(String(100), nullable=True)
    region: Mapped[str | None] = mapped_column(String(100), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="new")
    # The state before "returned"/"rejected", so the case goes back to where it was sent back.
    returned_to: Mapped[str | None] = mapped_column(String(16), nullable=True)
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id", ondelete="SET NULL"), nullable=True
    )
    suggested_department_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    routing: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    handling: Mapped[str] = mapped_column(Text, default="")  # the handling proposed on assessment
    result: Mapped[str] = mapped_column(Text, default="")  # 处置结果, written on closing
    approval_levels: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    archived_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # After closing, the event is watched until then for a relapse (a rise in negative volume).
    watch_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    watch_baseline: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    reopened: Mapped[int] = mapped_column(Integer, default=0)
    last_progress: Mapped[str] = mapped_column(Text, default="")
    last_progress_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    __table_args__ = (
        Index("ix_cases_state", "state"),
        Index("ix_cases_department_id", "department_id"),
        Index("ix_cases_event_id", "event_id"),
    )


class CaseTransition(Base):
    """One step of a case through its states: who, when, from, to, why."""

    __tablename__ = "case_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(24))
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    by: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (Index("ix_case_transitions_case_id", "case_id"),)


class CaseTask(Base):
    """A task inside a case (核实现场, 准备材料…) with its assignee and due time."""

    __tablename__ = "case_tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16), default="other")  # verify, contact, materials
    assignee_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    department_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(10), default="open")  # open, done, cancelled
    note: Mapped[str] = mapped_column(Text, default="")
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (Index("ix_case_tasks_case_id", "case_id"),)


class CaseDeadline(Base):
    """One timed step of a case (受理, 报告, 部门反馈, 回复…): due, met, reminded, overdue.

    Kept after it is met, so overdue statistics can be counted per step and department.
    """

    __tablename__ = "case_deadlines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(24))
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    department_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(10), default="open")  # open, met, cancelled
    met_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    reminded_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    overdue_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (
        Index("ix_case_deadlines_case_id", "case_id"),
        Index("ix_case_deadlines_due", "status", "due_at"),
    )


class Reply(Base):
    """回复: one public reply of a case (first facts, progress, result, or point-to-point)."""

    __tablename__ = "replies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(
        String(10), default="facts"
    )  # facts, progress, result, point
    # draft, submitted, approved, returned, published
    state: Mapped[str] = mapped_column(String(10), default="draft")
    version: Mapped[int] = mapped_column(Integer, default=1)
    approvals_needed: Mapped[int] = mapped_column(Integer, default=1)
    approvals: Mapped[int] = mapped_column(Integer, default=0)  # of the current version
    in_reply_to_post_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    platform: Mapped[str | None] = mapped_column(String(100), nullable=True)
    account: Mapped[str | None] = mapped_column(String(200), nullable=True)
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    published_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    published_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Volume and sentiment of the case's event in the hours before and after publishing.
    effect: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (Index("ix_replies_case_id", "case_id"),)


class ReplyVersion(Base):
    """A draft's text as it was at one version; never changed once written."""

    __tablename__ = "reply_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reply_id: Mapped[int] = mapped_column(ForeignKey("replies.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (UniqueConstraint("reply_id", "version", name="uq_reply_versions_version"),)


class ReplyApproval(Base):
    """One approver's decision on one version of a reply, at one level of the chain."""

    __tablename__ = "reply_approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reply_id: Mapped[int] = mapped_column(ForeignKey("replies.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    level: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(10))  # approved, returned
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (Index("ix_reply_approvals_reply_id", "reply_id"),)


class Evidence(Base):
    """取证: a key page captured as a WARC record and a full-page screenshot, with their hashes."""

    __tablename__ = "evidence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("cases.id", ondelete="SET NULL"), nullable=True
    )
    alert_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    post_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    # Numbered per category: 原帖-001, 转发-002, 回应-001…
    category: Mapped[str] = mapped_column(String(16), default="post")
    seq: Mapped[int] = mapped_column(Integer, default=1)
    number: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text, default="")
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    discovered_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    reported_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    handling_result: Mapped[str] = mapped_column(Text, default="")
    captured_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(10), default="captured")  # captured, failed
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    warc_path: Mapped[str | None] = mapped_column(Text, nullable=True)  # under data_dir
    warc_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    png_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    png_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_by: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (
        Index("ix_evidence_case_id", "case_id"),
        UniqueConstraint("case_id", "category", "seq", name="uq_evidence_number"),
    )


class BoardMessage(Base):
    """留言板: a question, complaint or suggestion left on the public board, and its answer."""

    __tablename__ = "board_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(12), default="question")  # question, complaint…
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(String(100), nullable=True)  # shown as given
    contact: Mapped[str | None] = mapped_column(String(200), nullable=True)  # never shown
    # sha256 of the private follow link's token; the token itself is shown to the asker once.
    follow_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # new, accepted (a case is open), answered, closed (no answer needed), spam
    status: Mapped[str] = mapped_column(String(10), default="new")
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    case_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    answered_by: Mapped[str | None] = mapped_column(String(200), nullable=True)  # the office
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (Index("ix_board_messages_status", "status", "created_at"),)


class AuditEntry(Base):
    """The audit log: append only, each entry carries the hash of the one before it."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor: Mapped[str] = mapped_column(String(200))  # user name, or "system"
    action: Mapped[str] = mapped_column(String(40))  # case.assign, reply.publish, grade.override
    subject: Mapped[str] = mapped_column(String(60), default="")  # case:3, reply:7, setting:x
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    __table_args__ = (Index("ix_audit_log_subject", "subject"),)


class Report(Base):
    """A generated report (日报, 周报, 月报, 季通报, 专报, 零报告): its file and the data snapshot
    it was computed from (tingfeng.reports)."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # daily, weekly, monthly, quarterly, special…
    period: Mapped[str] = mapped_column(String(40))  # 2026-11-21, 2026-W47, 2026-11, event:17
    number: Mapped[str] = mapped_column(String(40))  # 〔2026〕第12期
    format: Mapped[str] = mapped_column(String(8))  # docx, pdf, html, xlsx
    title: Mapped[str] = mapped_column(Text, default="")
    path: Mapped[str] = mapped_column(Text, default="")
    bytes: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    # {"at", "max_post_id", "rows": {...}, "topics": {id: version}, "taxonomy": "…", "queries"}
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    zero: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (Index("ix_reports_kind_period", "kind", "period"),)
