"""The schema: sources, posts and the fetch log.

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
