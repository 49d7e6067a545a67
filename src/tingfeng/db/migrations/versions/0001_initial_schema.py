"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21 22:26:54.359797
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
from alembic import op

# The full-text index over character bigrams (see tingfeng.search.tokens): an FTS5 table on
# SQLite whose rowid is the post's sort_key, a tsvector column with a GIN index on PostgreSQL.
# Written out here rather than
# imported so this migration stays what it was when it shipped.


def _create_search_index() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE post_fts USING fts5(title, body, content='', "
            "tokenize='unicode61 remove_diacritics 0')"
        )
    else:
        op.create_table(
            "post_search",
            sa.Column("post_id", sa.BigInteger(), primary_key=True),
            sa.Column("sort_key", sa.BigInteger(), nullable=False),
            sa.Column("vector", sa.dialects.postgresql.TSVECTOR(), nullable=False),
        )
        op.execute("CREATE INDEX ix_post_search_vector ON post_search USING gin (vector)")
        op.execute("CREATE INDEX ix_post_search_sort_key ON post_search (sort_key)")


def _drop_search_index() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS post_fts")
    else:
        op.drop_table("post_search")


revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("hot_interval_s", sa.Integer(), nullable=False),
        sa.Column("hot_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("region", sa.String(length=100), nullable=True),
        sa.Column("push_token_hash", sa.String(length=200), nullable=True),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_fetch_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_item_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("items_total", sa.BigInteger(), nullable=False),
        sa.Column("typical_gap_s", sa.Float(), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sources")),
        sa.UniqueConstraint("name", name=op.f("uq_sources_name")),
    )
    op.create_table(
        "fetch_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("items_read", sa.Integer(), nullable=False),
        sa.Column("items_stored", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_fetch_log_source_id_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fetch_log")),
    )
    with op.batch_alter_table("fetch_log", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fetch_log_source_started", ["source_id", "started_at"], unique=False
        )

    op.create_table(
        "posts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("platform", sa.String(length=40), nullable=True),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("canonical_url", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("text_original", sa.Text(), nullable=True),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("text_clean", sa.Text(), nullable=False),
        sa.Column("title_norm", sa.Text(), nullable=False),
        sa.Column("text_norm", sa.Text(), nullable=False),
        sa.Column("tokens", sa.Text(), nullable=False),
        sa.Column("lang", sa.String(length=8), nullable=False),
        sa.Column("content_hash", sa.String(length=32), nullable=False),
        sa.Column("dup_group", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("dup_kind", sa.String(length=8), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reposts", sa.Integer(), nullable=True),
        sa.Column("comments", sa.Integer(), nullable=True),
        sa.Column("likes", sa.Integer(), nullable=True),
        sa.Column("views", sa.BigInteger(), nullable=True),
        sa.Column("reposts_of_key", sa.String(length=32), nullable=True),
        sa.Column(
            "reposts_of_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("reply_to_key", sa.String(length=32), nullable=True),
        sa.Column(
            "reply_to_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_posts_source_id_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_posts")),
        sa.UniqueConstraint("uid", name=op.f("uq_posts_uid")),
    )
    with op.batch_alter_table("posts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_posts_canonical_url",
            ["canonical_url"],
            unique=False,
            sqlite_where=sa.text("canonical_url IS NOT NULL"),
            postgresql_where=sa.text("canonical_url IS NOT NULL"),
        )
        batch_op.create_index("ix_posts_content_hash", ["content_hash"], unique=False)
        batch_op.create_index("ix_posts_dup_group", ["dup_group"], unique=False)
        batch_op.create_index("ix_posts_published", ["published_at"], unique=False)
        batch_op.create_index(
            "ix_posts_reposts_of_key",
            ["reposts_of_key"],
            unique=False,
            sqlite_where=sa.text("reposts_of_key IS NOT NULL"),
            postgresql_where=sa.text("reposts_of_key IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_posts_reply_to_key",
            ["reply_to_key"],
            unique=False,
            sqlite_where=sa.text("reply_to_key IS NOT NULL"),
            postgresql_where=sa.text("reply_to_key IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_posts_source_published", ["source_id", "published_at"], unique=False
        )

    _create_search_index()


def downgrade() -> None:
    _drop_search_index()
    with op.batch_alter_table("posts", schema=None) as batch_op:
        batch_op.drop_index("ix_posts_source_published")
        batch_op.drop_index("ix_posts_reposts_of_key")
        batch_op.drop_index("ix_posts_reply_to_key")
        batch_op.drop_index("ix_posts_published")
        batch_op.drop_index("ix_posts_dup_group")
        batch_op.drop_index("ix_posts_content_hash")
        batch_op.drop_index("ix_posts_canonical_url")

    op.drop_table("posts")
    with op.batch_alter_table("fetch_log", schema=None) as batch_op:
        batch_op.drop_index("ix_fetch_log_source_started")

    op.drop_table("fetch_log")
    op.drop_table("sources")
