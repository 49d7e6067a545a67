"""topics (监测方案), topic matches, events (事件), their grades, decisions and spikes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("sources", sa.Column("tier", sa.String(length=24), nullable=True))
    op.create_table(
        "topics",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("exclusions", sa.JSON(), nullable=False),
        sa.Column("source_ids", sa.JSON(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topics")),
        sa.UniqueConstraint("name", name=op.f("uq_topics_name")),
    )
    op.create_table(
        "topic_versions",
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("exclusions", sa.JSON(), nullable=False),
        sa.Column("source_ids", sa.JSON(), nullable=True),
        sa.Column("saved_at", _TS, nullable=False),
        sa.Column("saved_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["topics.id"],
            name=op.f("fk_topic_versions_topic_id_topics"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("topic_id", "version", name=op.f("pk_topic_versions")),
    )
    op.create_table(
        "topic_matches",
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("post_id", _ID, nullable=False),
        sa.Column("terms", sa.JSON(), nullable=False),
        sa.Column("matched_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["topics.id"],
            name=op.f("fk_topic_matches_topic_id_topics"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["post_id"],
            ["posts.id"],
            name=op.f("fk_topic_matches_post_id_posts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("topic_id", "post_id", name=op.f("pk_topic_matches")),
    )
    op.create_index("ix_topic_matches_post_id", "topic_matches", ["post_id"])
    op.create_table(
        "events",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("merged_into", _ID, nullable=True),
        sa.Column("first_post_id", _ID, nullable=True),
        sa.Column("first_source_id", sa.Integer(), nullable=True),
        sa.Column("first_seen_at", _TS, nullable=True),
        sa.Column("last_seen_at", _TS, nullable=True),
        sa.Column("posts", sa.Integer(), nullable=False),
        sa.Column("heat", sa.Float(), nullable=True),
        sa.Column("level", sa.String(length=16), nullable=True),
        sa.Column("level_score", sa.Float(), nullable=True),
        sa.Column("grade", sa.JSON(), nullable=True),
        sa.Column("grade_state", sa.JSON(), nullable=True),
        sa.Column("profile", sa.JSON(), nullable=True),
        sa.Column("profiled_posts", sa.Integer(), nullable=False),
        sa.Column("profiled_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_last_seen_at", "events", ["last_seen_at"])
    op.create_index("ix_events_status", "events", ["status"])
    op.create_table(
        "event_posts",
        sa.Column("post_id", _ID, nullable=False),
        sa.Column("event_id", _ID, nullable=False),
        sa.Column("joined_by", sa.String(length=16), nullable=False),
        sa.Column("joined_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["post_id"],
            ["posts.id"],
            name=op.f("fk_event_posts_post_id_posts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name=op.f("fk_event_posts_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("post_id", name=op.f("pk_event_posts")),
    )
    op.create_index("ix_event_posts_event_id", "event_posts", ["event_id", "post_id"])
    op.create_table(
        "event_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("event_id", _ID, nullable=False),
        sa.Column("other_event_id", _ID, nullable=True),
        sa.Column("post_ids", sa.JSON(), nullable=True),
        sa.Column("level", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("decided_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_decisions")),
    )
    op.create_index("ix_event_decisions_event_id", "event_decisions", ["event_id"])
    op.create_table(
        "event_grades",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", _ID, nullable=False),
        sa.Column("graded_at", _TS, nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("overridden", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("explanation", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name=op.f("fk_event_grades_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_grades")),
    )
    op.create_index("ix_event_grades_event_id", "event_grades", ["event_id", "graded_at"])
    op.create_table(
        "spikes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("series", sa.String(length=40), nullable=False),
        sa.Column("hour", _TS, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("expected", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("ratio", sa.Float(), nullable=False),
        sa.Column("baseline", sa.String(length=16), nullable=False),
        sa.Column("detected_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spikes")),
        sa.UniqueConstraint("series", "hour", name="uq_spikes_series_hour"),
    )
    op.create_table(
        "detector_state",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_detector_state")),
    )


def downgrade() -> None:
    for table in (
        "detector_state",
        "spikes",
        "event_grades",
        "event_decisions",
        "event_posts",
        "events",
        "topic_matches",
        "topic_versions",
        "topics",
    ):
        op.drop_table(table)
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("tier")
