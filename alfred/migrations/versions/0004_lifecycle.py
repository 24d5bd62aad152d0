"""The PII lifecycle: the archive ledger and each personal row's archive_id

Revision ID: 0004_lifecycle
Revises: 0003_tokens_media
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_lifecycle"
down_revision = "0003_tokens_media"
branch_labels = None
depends_on = None

# table -> the column its age is read from
TABLES = {
    "messages": "created_at",
    "message_statuses": "created_at",
    "send_attempts": "created_at",
    "quarantined_events": "created_at",
    "customer_windows": "last_inbound_at",
}


def upgrade() -> None:
    op.create_table(
        "lifecycle_archives",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("records", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("first_entry", sa.String(length=32), nullable=True),
        sa.Column("last_entry", sa.String(length=32), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lifecycle_archives")),
        sa.UniqueConstraint("key", name=op.f("uq_lifecycle_archives_key")),
    )
    with op.batch_alter_table("lifecycle_archives", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lifecycle_archives_day"), ["day"], unique=False)
        batch_op.create_index(batch_op.f("ix_lifecycle_archives_state"), ["state"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_lifecycle_archives_tenant_id"), ["tenant_id"], unique=False
        )
    for table, column in TABLES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("archive_id", sa.Integer(), nullable=True))
        due, held = sa.text("archive_id IS NULL"), sa.text("archive_id IS NOT NULL")
        op.create_index(
            f"ix_{table}_lifecycle_due",
            table,
            ["tenant_id", column],
            postgresql_where=due,
            sqlite_where=due,
        )
        op.create_index(
            f"ix_{table}_archive_id",
            table,
            ["archive_id"],
            postgresql_where=held,
            sqlite_where=held,
        )


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_archive_id", table_name=table)
        op.drop_index(f"ix_{table}_lifecycle_due", table_name=table)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("archive_id")
    op.drop_table("lifecycle_archives")
