"""batch figures: an ended batch keeps what its lines cost and the models and providers
they went to, so that listings never add up its lines again

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cost_usd", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("models", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("providers", sa.JSON(), nullable=True))
    # batches that ended before now keep their figures too (one pass over their lines)
    ended = "('completed', 'failed', 'expired', 'cancelled')"
    if op.get_bind().dialect.name == "sqlite":
        distinct = (
            "(SELECT json_group_array({c}) FROM (SELECT DISTINCT {c} FROM batch_items"
            " WHERE batch_id = batches.id ORDER BY {c}))"
        )
    else:
        distinct = (
            "(SELECT coalesce(json_agg(DISTINCT {c} ORDER BY {c}), '[]'::json)"
            " FROM batch_items WHERE batch_id = batches.id)"
        )
    op.execute(
        "UPDATE batches SET"
        " cost_usd = (SELECT coalesce(sum(cost_usd), 0) FROM batch_items"
        " WHERE batch_id = batches.id),"
        f" models = {distinct.format(c='model')},"
        f" providers = {distinct.format(c='provider')}"
        f" WHERE status IN {ended}"
    )


def downgrade() -> None:
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_column("providers")
        batch_op.drop_column("models")
        batch_op.drop_column("cost_usd")
