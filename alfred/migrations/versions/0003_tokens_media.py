"""Inbound media (the media table) and when a token was last verified by debug_token

Revision ID: 0003_tokens_media
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_tokens_media"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "media",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("media_id", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("mime_type", sa.String(length=128), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("blob_url", sa.Text(), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media")),
        sa.UniqueConstraint("tenant_id", "media_id", name=op.f("uq_media_tenant_id_media_id")),
    )
    op.create_index(op.f("ix_media_message_id"), "media", ["message_id"], unique=False)
    op.create_index(op.f("ix_media_tenant_id"), "media", ["tenant_id"], unique=False)
    with op.batch_alter_table("tenant_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenant_tokens", schema=None) as batch_op:
        batch_op.drop_column("verified_at")
    op.drop_index(op.f("ix_media_tenant_id"), table_name="media")
    op.drop_index(op.f("ix_media_message_id"), table_name="media")
    op.drop_table("media")
