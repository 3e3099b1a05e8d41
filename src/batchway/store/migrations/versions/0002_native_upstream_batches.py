"""native upstream batches

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upstream_batches",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("upstream_file_id", sa.String(length=200), nullable=True),
        sa.Column("upstream_batch_id", sa.String(length=200), nullable=True),
        sa.Column("upstream_status", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("next_poll_at", sa.Float(), nullable=False),
        sa.Column("poll_interval", sa.Float(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("upstream_batches", schema=None) as batch_op:
        batch_op.create_index("ix_upstream_batches_due", ["state", "next_poll_at"], unique=False)

    with op.batch_alter_table("batch_items", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("execute_only", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.add_column(sa.Column("upstream_batch_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batch_items", schema=None) as batch_op:
        batch_op.drop_column("upstream_batch_id")
        batch_op.drop_column("execute_only")

    with op.batch_alter_table("upstream_batches", schema=None) as batch_op:
        batch_op.drop_index("ix_upstream_batches_due")

    op.drop_table("upstream_batches")
