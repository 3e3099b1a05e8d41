"""usage per hour by key: what a key has spent reads its own hours, not every key's

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_usage_hourly_key_spend", "usage_hourly", ["key_id", "hour_ms", "cost_usd"])


def downgrade() -> None:
    op.drop_index("ix_usage_hourly_key_spend", table_name="usage_hourly")
