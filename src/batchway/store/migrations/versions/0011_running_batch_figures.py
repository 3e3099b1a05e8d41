"""running batch figures: a batch keeps its figures on its row while it runs too (counts
per ended state, tokens, cost, models and providers), kept up to date as its lines change;
batches not ended yet get theirs from their lines

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_LINES = "FROM batch_items WHERE batch_id = batches.id"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        distinct = (
            "(SELECT json_group_array({c}) FROM (SELECT DISTINCT {c} FROM batch_items"
            " WHERE batch_id = batches.id ORDER BY {c}))"
        )
    else:
        distinct = (
            f"(SELECT coalesce(json_agg(DISTINCT {{c}} ORDER BY {{c}}), '[]'::json) {_LINES})"
        )
    counts = ", ".join(
        f"{state} = (SELECT count(*) {_LINES} AND state = '{state}')"
        for state in ("succeeded", "failed", "cancelled", "expired")
    )
    tokens = ", ".join(
        f"{column} = (SELECT coalesce(sum({column}), 0) {_LINES} AND state = 'succeeded')"
        for column in ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")
    )
    op.execute(
        f"UPDATE batches SET {counts}, {tokens},"
        f" cost_usd = (SELECT coalesce(sum(cost_usd), 0) {_LINES}),"
        f" models = {distinct.format(c='model')},"
        f" providers = {distinct.format(c='provider')}"
        " WHERE status IN ('validating', 'in_progress', 'finalizing', 'cancelling')"
    )


def downgrade() -> None:
    # running batches' figures were added up from their lines again before this revision
    op.execute(
        "UPDATE batches SET succeeded = 0, failed = 0, cancelled = 0, expired = 0,"
        " input_tokens = 0, cached_tokens = 0, output_tokens = 0, reasoning_tokens = 0,"
        " cost_usd = 0, models = NULL, providers = NULL"
        " WHERE status IN ('validating', 'in_progress', 'finalizing', 'cancelling')"
    )
