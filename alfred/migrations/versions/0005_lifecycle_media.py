"""The PII lifecycle reaches stored media: media.archive_id and its two lifecycle indexes

Revision ID: 0005_lifecycle_media
Revises: 0004_lifecycle
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_lifecycle_media"
down_revision = "0004_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.add_column(sa.Column("archive_id", sa.Integer(), nullable=True))
    due, held = sa.text("archive_id IS NULL"), sa.text("archive_id IS NOT NULL")
    op.create_index(
        "ix_media_lifecycle_due",
        "media",
        ["tenant_id", "created_at"],
        postgresql_where=due,
        sqlite_where=due,
    )
    op.create_index(
        "ix_media_archive_id", "media", ["archive_id"], postgresql_where=held, sqlite_where=held
    )


def downgrade() -> None:
    op.drop_index("ix_media_archive_id", table_name="media")
    op.drop_index("ix_media_lifecycle_due", table_name="media")
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.drop_column("archive_id")
