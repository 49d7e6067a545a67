"""readings of posts, filter labels, the category taxonomy

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "readings",
        sa.Column("post_id", _ID, nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("analysed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("polarity", sa.String(length=10), nullable=False),
        sa.Column("polarity_score", sa.Float(), nullable=True),
        sa.Column("emotion", sa.String(length=10), nullable=False),
        sa.Column("emotion_score", sa.Float(), nullable=True),
        sa.Column("needs_verification", sa.Boolean(), nullable=True),
        sa.Column("credibility_score", sa.Float(), nullable=True),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("entities", sa.JSON(), nullable=False),
        sa.Column("regions", sa.JSON(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["post_id"], ["posts.id"], name=op.f("fk_readings_post_id_posts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("post_id", name=op.f("pk_readings")),
    )
    op.create_index("ix_readings_version", "readings", ["version"])
    op.create_index("ix_readings_polarity", "readings", ["polarity"])
    op.create_table(
        "post_labels",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("post_id", _ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["post_id"], ["posts.id"], name=op.f("fk_post_labels_post_id_posts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("kind", "value", "post_id", name=op.f("pk_post_labels")),
    )
    op.create_index("ix_post_labels_post_id", "post_labels", ["post_id"])
    op.create_table(
        "taxonomy_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_taxonomy_versions")),
    )


def downgrade() -> None:
    op.drop_table("taxonomy_versions")
    op.drop_table("post_labels")
    op.drop_table("readings")
