"""request logs of a batch by id: ``(batch_id, id)`` replaces ``(batch_id)``, so that the
newest log of a batch is one probe (it bounds the walk down a batch's logs)

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("request_logs", schema=None) as batch_op:
        batch_op.create_index("ix_request_logs_batch_id", ["batch_id", "id"], unique=False)
        batch_op.drop_index("ix_request_logs_batch")


def downgrade() -> None:
    with op.batch_alter_table("request_logs", schema=None) as batch_op:
        batch_op.create_index("ix_request_logs_batch", ["batch_id"], unique=False)
        batch_op.drop_index("ix_request_logs_batch_id")
