"""grouping_journal and event_posts.seq: how several ingest processes share one grouper

Each batch grouped under the grouping lock gets the next journal number (with the time its
spike counts were flushed up to); its memberships carry the number. Another process replays
the entries with a higher number before it groups.
A nullable column and an index: readers are never blocked by this upgrade.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ADD COLUMN without a default is instant on PostgreSQL and native on SQLite (no table copy).
    op.add_column("event_posts", sa.Column("seq", sa.BigInteger(), nullable=True))
    op.create_index("ix_event_posts_seq", "event_posts", ["seq"], unique=False)
    op.create_table(
        "grouping_journal",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("spikes_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("process", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_grouping_journal")),
    )


def downgrade() -> None:
    op.drop_table("grouping_journal")
    op.drop_index("ix_event_posts_seq", table_name="event_posts")
    with op.batch_alter_table("event_posts", schema=None) as batch_op:
        batch_op.drop_column("seq")
