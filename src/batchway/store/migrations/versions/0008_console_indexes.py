"""console indexes: newest-first log pages of a key or a model; a batch's lines of a state
in input order; the batches with lines of a model, and a status's batches in listing order;
a key's spending read from its index alone

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# (table, index, columns); each new one is built before the one it replaces is dropped
_ADDED = (
    ("request_logs", "ix_request_logs_key_id", ["key_id", "id"]),
    ("request_logs", "ix_request_logs_model_id", ["model", "id"]),
    ("request_logs", "ix_request_logs_key_spend", ["key_id", "created_at_ms", "cost_usd"]),
    ("batch_items", "ix_batch_items_batch_state_line", ["batch_id", "state", "line"]),
    ("batch_items", "ix_batch_items_batch_model", ["batch_id", "model"]),
    ("batches", "ix_batches_status_sort", ["status", "sort_key"]),
)
_REPLACED = (
    ("request_logs", "ix_request_logs_key_time", ["key_id", "created_at_ms"]),
    ("batch_items", "ix_batch_items_batch_state", ["batch_id", "state"]),
    ("batches", "ix_batches_status", ["status"]),
)


def upgrade() -> None:
    for table, name, columns in _ADDED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(name, columns, unique=False)
    for table, name, _columns in _REPLACED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name)


def downgrade() -> None:
    for table, name, columns in _REPLACED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(name, columns, unique=False)
    for table, name, _columns in reversed(_ADDED):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name)
