"""usage per hour: the request logs added up per hour, key, model, provider and kind of
call, kept as logs are written, so that usage over weeks reads hours rather than logs;
filled from the logs there are

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_hourly",
        sa.Column("hour_ms", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("hour_ms", "kind", "model", "provider", "key_id"),
        sqlite_with_rowid=False,
    )
    op.execute(FILL)


# every log there is, added up per hour (integer division truncates alike on both)
FILL = (
    "INSERT INTO usage_hourly (hour_ms, key_id, model, provider, kind, requests, errors,"
    " input_tokens, cached_tokens, output_tokens, cost_usd)"
    " SELECT created_at_ms / 3600000 * 3600000, key_id, model, provider, kind, count(*),"
    " sum(CASE WHEN status != 'succeeded' THEN 1 ELSE 0 END), sum(input_tokens),"
    " sum(cached_tokens), sum(output_tokens), sum(cost_usd)"
    " FROM request_logs GROUP BY created_at_ms / 3600000 * 3600000, key_id, model, provider,"
    " kind"
)


def downgrade() -> None:
    op.drop_table("usage_hourly")
