"""storage quotas: a key's own storage limits, and an index for the file-expiry sweep

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_storage_bytes", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("max_files", sa.Integer(), nullable=True))
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.create_index("ix_files_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_index("ix_files_expires_at")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("max_files")
        batch_op.drop_column("max_storage_bytes")
