"""send_attempts.call_id: one id per Graph call, so an accepted call is recorded once

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("send_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("call_id", sa.String(length=32), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_send_attempts_call_id"), ["call_id"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("send_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_send_attempts_call_id"))
        batch_op.drop_column("call_id")
