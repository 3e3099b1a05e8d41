"""ids never reused: SQLite tables with integer ids count them with AUTOINCREMENT

Without AUTOINCREMENT SQLite hands the id of a deleted row with the highest id to the next
row, so a deleted batch's line ids came back for new lines while request logs still named
the old ones (``request_logs.item_id`` is unique). PostgreSQL identities never reuse ids.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TABLES = ("batch_items", "request_logs")


def _rebuild(autoincrement: bool) -> None:
    for table in _TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    _rebuild(True)
    # ids deleted before this migration are never handed out again either
    op.execute(
        sa.text(
            "UPDATE sqlite_sequence SET seq = max(seq,"
            " coalesce((SELECT max(item_id) FROM request_logs), 0))"
            " WHERE name = 'batch_items'"
        )
    )
    op.execute(
        sa.text(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'batch_items',"
            " coalesce((SELECT max(item_id) FROM request_logs), 0)"
            " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'batch_items')"
        )
    )


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        _rebuild(False)
